//! SIGINT and SIGTERM leave nothing of strata in the kernel. Its own test binary: cargo runs
//! test binaries one after another, so no other agent's programs are loaded meanwhile.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use strata_e2e::agent::Agent;
use strata_e2e::{require_tool, run_ok};

/// Programs of strata loaded in the kernel, by the name prefix aya gives them (function names).
fn strata_programs() -> Vec<String> {
    let bpftool = require_tool("bpftool", "bpftool");
    let out = run_ok(Command::new(bpftool).args(["prog", "show", "--json"]));
    let progs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = probes_names();
    progs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| ours.contains(n))
        .map(String::from)
        .collect()
}

/// strata's program names, of both hooks (bpftool shows the full name from BTF where the kernel
/// kept 15 bytes).
fn probes_names() -> Vec<&'static str> {
    let objects = probes_core::objects::PROBES.iter().chain(probes_core::objects::RAW_PROBES);
    objects.map(|p| p.program).collect()
}

/// The programs every kernel strata runs these hooks on has loaded (optional ones may be left out).
fn required(probes: &[probes_core::objects::Probe]) -> Vec<&'static str> {
    probes.iter().filter(|p| !p.optional).map(|p| p.program).collect()
}

fn check_detach_on(signal: i32, hooks: &str, probes: &[probes_core::objects::Probe]) {
    let agent = Agent::start(&["--tier", "core", "--syscall-hooks", hooks]);
    let loaded = strata_programs();
    let missing: Vec<&str> = required(probes).into_iter().filter(|p| !loaded.iter().any(|l| l == p)).collect();
    assert!(missing.is_empty(), "while running on {hooks}, strata's programs {missing:?} are not loaded: {loaded:?}");
    let c = agent.stop_with(signal);
    assert!(c.status.success(), "clean exit on signal {signal}: {} {}", c.status, c.stderr);
    // Program teardown is synchronous on close of the last fd; give the kernel's RCU a moment.
    let mut left = strata_programs();
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = strata_programs();
    }
    assert!(left.is_empty(), "programs left behind after signal {signal} on {hooks}: {left:?}");
}

// One test for both signals and both hooks: a parallel agent's programs would be counted as left
// behind.
#[test]
fn sigint_and_sigterm_detach_every_program() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        check_detach_on(signal, "per-syscall", probes_core::objects::PROBES);
        if strata_e2e::kernel_runs_raw_syscall_hooks() {
            check_detach_on(signal, "raw-syscalls", probes_core::objects::RAW_PROBES);
        } else {
            eprintln!("this kernel lacks BTF or is older than 5.11: the raw_syscalls hooks are not tried");
        }
    }
}
