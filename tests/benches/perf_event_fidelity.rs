//! How often the perf-event tier's payloads are still right: it reads them from the process after
//! the syscall, while the process runs on. A client sends numbered requests (`GET /fid/N`) to nginx
//! over keep-alive connections, at a fixed rate and then as fast as it can; the share of requests
//! whose captured request line is exactly the one sent is printed for each, next to the same figure
//! for the core tier (which copies in the syscall). The pipeline's parsers see the same bytes, so
//! this is the share they can parse. Needs root, nginx and a release strata:
//!
//!     cargo build --release -p collector && cargo bench -p strata-e2e --bench perf_event_fidelity
//!
//! SECONDS (environment) sets each run's length; extra strata arguments go in STRATA_ARGS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use strata_e2e::agent::{Agent, Captured};
use strata_e2e::servers;

/// Sends numbered requests for `seconds`, at most `rate` per second (None: as fast as possible).
fn drive(port: u16, seconds: u64, rate: Option<u64>) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        if let Some(rate) = rate {
            let due = start + Duration::from_micros(n * 1_000_000 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        // A fresh connection now and then: nginx closes one after keepalive_requests.
        if n > 0 && n.is_multiple_of(10_000) {
            s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        }
        s.write_all(format!("GET /fid/{n} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes()).unwrap();
        // Read the whole response (fixed size: headers + body of `return 200`).
        let mut got = 0;
        loop {
            let k = s.read(&mut buf[got..]).unwrap();
            got += k;
            if k == 0 || buf[..got].windows(17).any(|w| w == b"hello from nginx\n") {
                break;
            }
        }
        n += 1;
    }
    n
}

/// (requests sent, requests whose captured request line was exactly right, data events seen).
fn measure(tier: &str, port: u16, seconds: u64, rate: Option<u64>, extra: &[&str]) -> (u64, u64, u64) {
    let mut args = vec!["--tier", tier];
    args.extend_from_slice(extra);
    let agent = Agent::start(&args);
    let sent = drive(port, seconds, rate);
    std::thread::sleep(Duration::from_millis(500));
    let c = agent.stop();
    let me = std::process::id();
    let server = format!("127.0.0.1:{port}");
    let mut right = 0;
    let mut seen = 0;
    for e in
        c.of_pid(me).filter(|e| e["event"] == "data" && e["direction"] == "egress" && e["remote"] == server.as_str())
    {
        seen += 1;
        let p = Captured::payload(e);
        let line = p.split(|&b| b == b'\r').next().unwrap_or(&[]);
        // The k-th write carries request k: anything else is a stale or torn read.
        if line == format!("GET /fid/{} HTTP/1.1", seen - 1).as_bytes() {
            right += 1;
        }
    }
    (sent, right, seen)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds: u64 = std::env::var("SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let extra_args = std::env::var("STRATA_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra_args.split_whitespace().collect();
    let nginx = servers::nginx();
    for (label, rate) in [("1000 req/s", Some(1000)), ("saturation", None)] {
        for tier in ["core", "perf-event"] {
            let (sent, right, seen) = measure(tier, nginx.port, seconds, rate, &extra);
            println!(
                "{label:>11} {tier:>10}: {sent} requests sent ({:.0}/s), {seen} captured, {right} with the exact request line = {:.1}%",
                sent as f64 / seconds as f64,
                100.0 * right as f64 / sent.max(1) as f64
            );
        }
    }
}
