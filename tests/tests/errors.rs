//! What an operator sees when strata cannot run: one clear message and a distinct exit code.

use std::process::Command;

use strata_e2e::{require_tool, strata_bin};

#[test]
fn without_capabilities_it_names_them_and_exits_3() {
    let setpriv = require_tool("setpriv", "util-linux");
    // An unprivileged user with every capability dropped.
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(strata_e2e::strata_bin_for_nobody())
        .args(["run", "--output", "jsonl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("CAP_BPF and CAP_PERFMON"), "stderr: {stderr}");
    assert!(stderr.contains("setcap") && stderr.contains("securityContext"), "stderr says how: {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(strata_bin()).args(["run", "--capture-bytes", "100000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("capture size 100000 is out of range"));
    let out = Command::new(strata_bin()).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
