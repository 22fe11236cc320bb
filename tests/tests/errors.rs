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

/// `--syscall-hooks raw-syscalls` where they cannot be had (over the perf buffer: there is no such
/// object): exit 3, and why.
#[test]
fn raw_syscall_hooks_over_the_perf_buffer_exit_3_with_the_reason() {
    let out = Command::new(strata_bin())
        .args(["run", "--tier", "core", "--transport", "perf-buffer", "--syscall-hooks", "raw-syscalls"])
        .args(["--output", "jsonl", "--prometheus-listen", "off", "--duration", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("the raw_syscalls hooks need the ring buffer"), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
}

/// `--tier kmod` where strata's module cannot be had (here: no build tree at the --headers given,
/// and whatever else this host lacks for modules): exit 3, and the reasons.
#[test]
fn kmod_that_cannot_be_had_exits_3_with_the_reasons() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(strata_bin())
        .args(["run", "--tier", "kmod", "--output", "jsonl", "--prometheus-listen", "off", "--duration", "1s"])
        .args(["--headers", "/nonexistent/kernel-build", "--cache-dir"])
        .arg(cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("--tier kmod cannot run here"), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(std::fs::read_dir(cache.path().join("kmod")).map_or(true, |mut d| d.next().is_none()), "nothing cached");
}

/// `strata kmod build` against a tree kbuild cannot use: exit 3 with make's own reason, nothing
/// cached.
#[test]
fn kmod_build_against_a_broken_tree_says_why() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("Makefile"), "# not a kernel's kbuild\nall:\n\ttrue\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(strata_bin())
        .args(["kmod", "build", "--release", "0.0.0-test", "--headers"])
        .arg(tree.path())
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    // With make and gcc here, make's own complaint; without, which tool is missing.
    assert!(stderr.contains("No rule to make target") || stderr.contains("not on PATH"), "stderr: {stderr}");
    assert!(!cache.path().join("kmod").exists() || std::fs::read_dir(cache.path().join("kmod/0.0.0-test")).is_err());
}
