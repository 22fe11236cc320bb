//! The Prometheus endpoint against clients that misbehave: one that connects and says nothing must
//! not hold up other scrapes, and one that sends an endless request head must be cut off without
//! the agent buffering it. Also the Kubernetes probes, /healthz and /readyz.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use strata_e2e::agent::Agent;
use strata_e2e::{free_port, http_get};

fn agent(port: u16) -> Agent {
    let listen = format!("127.0.0.1:{port}");
    Agent::start_exporting(&["run", "--output", "none", "--prometheus-listen", &listen], &[])
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_idle_connection_does_not_hold_up_scrapes() {
    let port = free_port();
    let a = agent(port);
    // A client that connects and never sends a byte.
    let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("strata_agent_info"), "{body}");
    // The scrape was answered while the idle connection still stood: a server taking one
    // connection at a time would have had to give up on it first (closing it).
    idle.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match (&idle).read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the idle connection was closed before the scrape was answered: {other:?}"),
    }
    drop(a);
}

#[test]
fn an_endless_request_head_is_cut_off_not_buffered() {
    let port = free_port();
    let a = agent(port);
    let before = rss_kib(a.pid());
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0usize;
    let limit = 100 << 20;
    while sent < limit {
        match conn.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < limit, "the agent took all {sent} bytes of a request head without a line end");
    let grown = rss_kib(a.pid()).saturating_sub(before);
    assert!(grown < 16 << 10, "the agent grew by {grown} KiB reading a request head it should refuse");
    // And it still serves.
    assert_eq!(http_get(port, "/metrics").0, 200);
}

#[test]
fn probes_answer_for_kubernetes() {
    let port = free_port();
    let _a = agent(port);
    assert_eq!(http_get(port, "/healthz"), (200, "ok\n".to_string()));
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("capturing with tier "), "{body}");
    assert_eq!(http_get(port, "/nope").0, 404);
}
