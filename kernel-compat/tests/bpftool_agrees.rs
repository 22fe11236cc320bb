//! Our probes against bpftool's (`bpftool feature probe kernel --json`, libbpf's probes): for
//! every program type, map type and helper both of us report, we must agree.

use std::process::Command;

use kernel_compat::{gather, GatherOptions, Probe};
use serde_json::Value;

fn bpftool() -> String {
    for candidate in ["/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool", "/usr/local/sbin/bpftool"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!(
        "bpftool not found (looked in /usr/sbin, /usr/bin, /sbin, /usr/local/sbin): this test compares our probes with \
         bpftool's and must not be skipped; install it (Debian/Ubuntu: apt-get install bpftool)"
    );
}

#[test]
fn probes_agree_with_bpftool() {
    let out = Command::new(bpftool()).args(["feature", "probe", "kernel", "--json"]).output().expect("run bpftool");
    assert!(out.status.success(), "bpftool failed: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Value = serde_json::from_slice(&out.stdout).expect("bpftool --json output");
    let ours = gather(&GatherOptions::default());
    let b = &ours.bpf;

    let mut compared = 0;
    let mut disagreements = Vec::new();
    let mut check = |what: String, bpftool_says: Option<bool>, probe: &Probe| {
        let Some(bpftool_says) = bpftool_says else { return };
        compared += 1;
        if probe.is_supported() != bpftool_says {
            disagreements.push(format!("{what}: bpftool says {bpftool_says}, we say {probe:?}"));
        }
    };

    check("bpf() syscall".into(), theirs["syscall_config"]["have_bpf_syscall"].as_bool(), &b.syscall);
    for (key, probe) in [
        ("have_tracepoint_prog_type", &b.prog_tracepoint),
        ("have_raw_tracepoint_prog_type", &b.prog_raw_tracepoint),
        ("have_kprobe_prog_type", &b.prog_kprobe),
        ("have_perf_event_prog_type", &b.prog_perf_event),
    ] {
        check(key.into(), theirs["program_types"][key].as_bool(), probe);
    }
    for (key, probe) in [
        ("have_hash_map_type", &b.map_hash),
        ("have_percpu_array_map_type", &b.map_percpu_array),
        ("have_perf_event_array_map_type", &b.map_perf_event_array),
        ("have_ringbuf_map_type", &b.map_ringbuf),
    ] {
        check(key.into(), theirs["map_types"][key].as_bool(), probe);
    }
    // bpftool lists the helpers each program type may call; ours are probed from tracepoint programs.
    let tracepoint_helpers: Vec<&str> = theirs["helpers"]["tracepoint_available_helpers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(!tracepoint_helpers.is_empty(), "bpftool reported no helpers for tracepoint programs");
    for (name, probe) in [
        ("bpf_probe_read", &b.helper_probe_read),
        ("bpf_probe_read_user", &b.helper_probe_read_user),
        ("bpf_probe_read_user_str", &b.helper_probe_read_user_str),
        ("bpf_get_current_task", &b.helper_get_current_task),
        ("bpf_ringbuf_output", &b.helper_ringbuf_output),
    ] {
        check(format!("helper {name}"), Some(tracepoint_helpers.contains(&name)), probe);
    }

    assert_eq!(compared, 14, "bpftool's JSON lacks keys we expected");
    assert!(disagreements.is_empty(), "probes disagree with bpftool:\n{}", disagreements.join("\n"));
}
