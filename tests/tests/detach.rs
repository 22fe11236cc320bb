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

/// strata's program names (bpftool shows the full name from BTF where the kernel kept 15 bytes).
fn probes_names() -> Vec<&'static str> {
    probes_core::objects::PROBES.iter().map(|p| p.program).collect()
}

/// The programs every kernel strata runs on has loaded (optional ones may be left out).
fn required_probes() -> usize {
    probes_core::objects::PROBES.iter().filter(|p| !p.optional).count()
}

fn check_detach_on(signal: i32) {
    let agent = Agent::start(&[]);
    let loaded = strata_programs();
    assert!(
        loaded.len() >= required_probes(),
        "while running, strata's {} required programs are loaded: {loaded:?}",
        required_probes()
    );
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
    assert!(left.is_empty(), "programs left behind after signal {signal}: {left:?}");
}

// One test for both signals: a parallel agent's programs would be counted as left behind.
#[test]
fn sigint_and_sigterm_detach_every_program() {
    check_detach_on(libc::SIGINT);
    check_detach_on(libc::SIGTERM);
}
