//! `strata compat-check` on this node: the report, the versioned JSON, facts saved and evaluated
//! offline, and exit codes.

use std::process::Command;

use serde_json::Value;
use strata_e2e::{require_root, strata_bin};

fn compat(args: &[&str]) -> std::process::Output {
    require_root();
    Command::new(strata_bin()).arg("compat-check").args(args).output().unwrap()
}

#[test]
fn this_node_runs_core_with_full_fidelity() {
    let out = compat(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["tier"], "core");
    assert_eq!(report["transport"], "ring-buffer");
    assert_eq!(report["btf_source"], "kernel");
    assert_eq!(report["fidelity"], "full");
    assert_eq!(report["rejected"].as_array().unwrap().len(), 0);
    // This machine has no kprobes: noted, and it decides nothing.
    assert!(report["notes"].to_string().contains("kprobes"), "{}", report["notes"]);

    let text = compat(&[]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("✓ ring buffer map") && text.contains("5.8"), "{text}");
    assert!(text.contains("decision: tier core"), "{text}");
}

#[test]
fn saved_facts_evaluate_the_same_offline_and_edited_facts_change_the_tier() {
    let dir = std::env::temp_dir().join(format!("strata-facts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("facts.json");
    let live = compat(&["--json", "--save-facts", saved.to_str().unwrap()]);
    let offline = compat(&["--json", "--facts", saved.to_str().unwrap()]);
    let (live, offline): (Value, Value) =
        (serde_json::from_slice(&live.stdout).unwrap(), serde_json::from_slice(&offline.stdout).unwrap());
    assert_eq!(live["tier"], offline["tier"]);
    assert_eq!(live["facts"], offline["facts"]);

    // The same node without BTF, where the archive had a BTF for it: CO-RE with the archive's.
    let mut facts: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let btf = facts.pointer_mut("/btf").expect("facts carry btf");
    btf["vmlinux"] = serde_json::json!({ "status": "unsupported", "reason": "/sys/kernel/btf/vmlinux not found" });
    btf["size_bytes"] = Value::Null;
    facts["btf_archive_hint"] = serde_json::json!({ "available": true, "location": "https://archive.example/x.btf.tar.xz",
        "path": "/var/cache/strata/btf/archive/x.btf" });
    let report = evaluate(&dir, "archived.json", &facts, 0);
    assert_eq!(report["tier"], "archived-btf", "{report:#}");
    assert_eq!(report["btf_source"], "archive", "{report:#}");
    let core = report["rejected"].as_array().unwrap().iter().find(|r| r["tier"] == "core").expect("core rejected");
    assert!(core["reasons"].to_string().contains("BTF"), "{core}");

    // ... and where the archive failed: passed over with the archive's fault, for perf-event.
    facts["btf_archive_hint"] = serde_json::json!({ "available": false, "location": "https://archive.example/x.btf.tar.xz",
        "error": "BTF archive https://archive.example/x.btf.tar.xz: not found: the archive has no entry for this kernel" });
    let report = evaluate(&dir, "no-archive.json", &facts, 10);
    assert_eq!(report["tier"], "perf-event", "{report:#}");
    let archived = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tier"] == "archived-btf")
        .expect("archived-btf rejected");
    assert!(archived["reasons"].to_string().contains("has no entry for this kernel"), "{archived}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `compat-check --json --facts` on `facts` written to `dir/name`; the exit code must be `code`.
fn evaluate(dir: &std::path::Path, name: &str, facts: &Value, code: i32) -> Value {
    let edited = dir.join(name);
    std::fs::write(&edited, serde_json::to_string(facts).unwrap()).unwrap();
    let out = compat(&["--json", "--facts", edited.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) {
        panic!("edited facts did not load (the test's idea of the facts layout is stale): {stderr}");
    }
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn unreadable_facts_are_a_usage_error() {
    let out = compat(&["--facts", "/nonexistent/facts.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/facts.json"));
    let garbage = std::env::temp_dir().join(format!("strata-garbage-{}.json", std::process::id()));
    std::fs::write(&garbage, "{ not json").unwrap();
    let out = compat(&["--facts", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_file(garbage).unwrap();
}
