//! Capture under load: every request accounted for, and every drop reported. A test binary of its
//! own, and its tests one at a time, so that no other test's traffic or agent competes for the CPU.
//!
//! Losses count only where they are this test's: the kernel and the agent say whose records they
//! dropped (the loss event's pid), so another process's drops on a busy host cannot cover for a
//! request of ours that went missing. A loss nobody can attribute makes the check impossible, and
//! fails it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use strata_e2e::agent::{Agent, Captured};
use strata_e2e::servers;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn data_events<'a>(c: &'a Captured, pid: u32, direction: &'a str) -> Vec<&'a Value> {
    c.of_pid(pid).filter(|e| e["event"] == "data" && e["direction"] == direction).collect()
}

#[test]
fn core_ten_thousand_requests_are_all_accounted_for() {
    const N: usize = 10_000;
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = servers::nginx();
    let agent = Agent::start(&["--tier", "core"]);
    let mut ok = 0;
    let mut buf = [0u8; 4096];
    for i in 0..N {
        let mut s = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
        // One write per request, as a client library would do.
        s.write_all(format!("GET /loop/{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        while s.read(&mut buf).unwrap() > 0 {}
        ok += 1;
    }
    assert_eq!(ok, N);
    std::thread::sleep(Duration::from_millis(500));
    let c = agent.stop();

    let me = std::process::id();
    let mut seen = std::collections::HashSet::new();
    for e in data_events(&c, me, "egress") {
        let p = Captured::payload(e);
        let line = std::str::from_utf8(&p).unwrap().lines().next().unwrap().to_string();
        assert!(seen.insert(line.clone()), "request seen twice: {line}");
    }
    assert_eq!(c.lost_unattributed(), 0, "losses nobody can attribute: the check cannot tell whose they were");
    let lost = c.lost_by(&[me]);
    eprintln!("requests captured {} of {N}, reported lost {lost}", seen.len());
    assert!(
        seen.len() as u64 + lost >= N as u64,
        "{} of {N} requests captured and only {lost} of this process's records reported lost: a silent loss",
        seen.len()
    );
    let served: usize = data_events(&c, nginx.pid(), "ingress")
        .iter()
        .filter(|e| Captured::payload(e).starts_with(b"GET /loop/"))
        .count();
    let lost = c.lost_by(&[nginx.pid()]);
    assert!(served as u64 + lost >= N as u64, "nginx side: {served} of {N}, lost {lost}");
}

#[test]
fn core_a_full_ring_buffer_reports_every_record_it_drops() {
    const N: usize = 2_000;
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = servers::nginx();
    // A one-page ring cannot hold a record with 4 KiB of payload: every request's record is dropped,
    // whatever the scheduling, and each drop must be counted.
    let agent = Agent::start(&["--tier", "core", "--ring-bytes", "4096"]);
    let mut buf = [0u8; 4096];
    let pad = "p".repeat(5000);
    for i in 0..N {
        let mut s = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
        let req = format!("GET /tiny/{i} HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        while s.read(&mut buf).unwrap() > 0 {}
    }
    std::thread::sleep(Duration::from_millis(300));
    let c = agent.stop();
    let me = std::process::id();
    let seen =
        data_events(&c, me, "egress").iter().filter(|e| Captured::payload(e).starts_with(b"GET /tiny/")).count() as u64;
    // This process's records only: nginx's responses and everything else on the host drop too.
    let lost = c
        .of_kind("loss")
        .filter(|e| e["source"] == "kernel_data" && e["pid"] == me)
        .map(|e| e["count"].as_u64().unwrap())
        .sum::<u64>();
    eprintln!("tiny ring: {seen} of {N} requests captured, {lost} of its data records reported lost");
    assert!(lost >= N as u64, "{N} records cannot fit a 4 KiB ring, yet only {lost} were reported lost");
    assert!(seen + lost >= N as u64, "{seen} seen + {lost} lost < {N}: a silent loss");
}
