//! Capture overhead: wrk -> nginx on loopback, requests/s with strata off and on, alternating so
//! that drift on this shared machine hits both sides alike. Prints each round, the medians and
//! their ratio. Needs root, wrk, nginx, and a release strata binary:
//!
//!     cargo build --release -p collector && cargo bench -p strata-e2e --bench capture_overhead
//!
//! ROUNDS and SECONDS (environment) change the length; extra strata arguments go in STRATA_ARGS.

use std::process::Command;

use strata_e2e::agent::Agent;
use strata_e2e::{require_tool, servers};

fn wrk(port: u16, seconds: u32) -> f64 {
    let wrk = require_tool("wrk", "wrk");
    let out = Command::new(wrk)
        .args(["-t1", "-c32", &format!("-d{seconds}s"), &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("Requests/sec:")).unwrap_or_else(|| panic!("wrk said: {text}"));
    line["Requests/sec:".len()..].trim().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not run us for real.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let seconds: u32 = std::env::var("SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let extra_args = std::env::var("STRATA_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra_args.split_whitespace().collect();
    let nginx = servers::nginx();
    wrk(nginx.port, 1); // warm-up
    let (mut off, mut on) = (vec![], vec![]);
    for round in 1..=rounds {
        let rps_off = wrk(nginx.port, seconds);
        let agent = Agent::start_discarding(&extra);
        let rps_on = wrk(nginx.port, seconds);
        let captured = agent.stop();
        assert!(captured.status.success(), "strata failed: {}", captured.stderr);
        println!("round {round}: off {rps_off:>9.0} req/s   on {rps_on:>9.0} req/s   on/off {:.3}", rps_on / rps_off);
        off.push(rps_off);
        on.push(rps_on);
    }
    let (m_off, m_on) = (median(off), median(on));
    println!("median over {rounds} rounds of {seconds} s: off {m_off:.0} req/s, on {m_on:.0} req/s");
    println!("capture_overhead ratio on/off = {:.3} (throughput kept with strata capturing)", m_on / m_off);
}
