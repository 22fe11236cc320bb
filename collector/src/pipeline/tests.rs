//! The pipeline on hand-made event sequences: what conntrack, detection and matching do with
//! opens, data, closes, reused fds, full tables and losses.

use strata_event::*;

use super::conntrack::Limits;
use super::{Pipeline, Record};

const CLIENT: &str = "127.0.0.1:40000";
const SERVER: &str = "127.0.0.1:8080";

fn conn(role: Role) -> Connection {
    Connection { transport: Transport::Tcp, role, local: CLIENT.parse().unwrap(), remote: SERVER.parse().unwrap() }
}

fn event(ts: u64, fd: i32, sock_id: u64, kind: EventKind) -> Event {
    Event { ts_ns: ts, pid: 42, tid: 42, comm: "curl".into(), fd, sock_id, kind }
}

fn open(ts: u64, fd: i32, sock_id: u64) -> Event {
    let o = Open { conn: conn(Role::Client), syscall: Syscall::Connect, in_progress: false, enter_ns: ts };
    event(ts, fd, sock_id, EventKind::Open(o))
}

fn data(ts: u64, fd: i32, sock_id: u64, direction: Direction, bytes: &[u8], moved: u64) -> Event {
    let d = Data {
        conn: conn(Role::Client),
        syscall: Syscall::Write,
        direction,
        byte_count: moved,
        payload: Payload::from(bytes),
        truncated: (bytes.len() as u64) < moved,
        peer_from_msg: false,
        payload_stale: false,
        tls_skipped: false,
        enter_ns: ts,
        exit_ns: ts + 1,
    };
    event(ts + 1, fd, sock_id, EventKind::Data(d))
}

fn close(ts: u64, fd: i32, sock_id: u64) -> Event {
    let c = Close { conn: conn(Role::Client), bytes_sent: 0, bytes_received: 0, first_seen_ns: 0 };
    event(ts, fd, sock_id, EventKind::Close(c))
}

const GET: &[u8] = b"GET /items/1 HTTP/1.1\r\nHost: shop\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn run(p: &mut Pipeline, events: &[Event]) -> Vec<Record> {
    let mut out = vec![];
    for e in events {
        p.push(e, &mut out);
    }
    out
}

#[test]
fn an_exchange_becomes_one_record_with_its_latency_and_sizes() {
    let mut p = Pipeline::new(Limits::default());
    let out = run(
        &mut p,
        &[
            open(100, 5, 7),
            data(1_000, 5, 7, Direction::Egress, GET, GET.len() as u64),
            data(5_000, 5, 7, Direction::Ingress, OK, OK.len() as u64),
            close(6_000, 5, 7),
        ],
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!(
        (r.protocol.name(), r.operation.as_deref(), r.target.as_deref()),
        ("http", Some("GET"), Some("/items/1"))
    );
    assert_eq!(r.status.as_deref(), Some("200"));
    // Request sent at its write's enter (1000), response had at its read's exit (5001).
    assert_eq!((r.start_ns, r.latency_ns), (1_000, Some(4_001)));
    assert_eq!((r.request_bytes, r.response_bytes), (GET.len() as u64, OK.len() as u64));
    assert_eq!((r.endpoint.pid, r.endpoint.role, r.partial), (42, Role::Client, false));
    assert_eq!(p.connections(), 0, "closed connections leave the table");
    assert_eq!(p.stats().evictions.closed, 1);
}

#[test]
fn a_request_left_unanswered_at_close_is_still_a_record() {
    let mut p = Pipeline::new(Limits::default());
    let out = run(&mut p, &[open(1, 5, 7), data(2, 5, 7, Direction::Egress, GET, GET.len() as u64), close(9, 5, 7)]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].latency_ns, out[0].status.as_deref()), (None, None));
    assert_eq!(p.stats().unanswered, 1);
}

#[test]
fn a_reused_fd_is_a_new_connection() {
    let mut p = Pipeline::new(Limits::default());
    // The close of the first socket was not seen: the second open on fd 5 names another socket.
    let out = run(
        &mut p,
        &[
            open(1, 5, 7),
            data(2, 5, 7, Direction::Egress, GET, GET.len() as u64),
            data(3, 5, 8, Direction::Egress, GET, GET.len() as u64),
            data(4, 5, 8, Direction::Ingress, OK, OK.len() as u64),
        ],
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].latency_ns, None, "the first socket's request went unanswered");
    assert_eq!(out[1].status.as_deref(), Some("200"), "the second socket's own exchange");
    assert_eq!(p.stats().evictions.reused, 1);
}

#[test]
fn a_socket_dup_ed_onto_other_fds_is_one_connection() {
    // An inetd-style server: the request is read from fd 0 and the response written to fd 1, both
    // the same socket (id 9).
    let server = |mut e: Event| {
        match &mut e.kind {
            EventKind::Data(d) => d.conn.role = Role::Server,
            EventKind::Close(c) => c.conn.role = Role::Server,
            _ => {}
        }
        Event { pid: 7, comm: "httpd".into(), ..e }
    };
    let mut p = Pipeline::new(Limits::default());
    let out = run(
        &mut p,
        &[
            server(data(1, 0, 9, Direction::Ingress, GET, GET.len() as u64)),
            server(data(2, 1, 9, Direction::Egress, OK, OK.len() as u64)),
            server(close(3, 1, 9)),
            server(close(4, 0, 9)),
        ],
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].status.as_deref(), out[0].endpoint.role), (Some("200"), Role::Server));
    assert_eq!(p.connections(), 0);
}

#[test]
fn the_table_is_bounded_and_evictions_counted() {
    let mut p = Pipeline::new(Limits { max_connections: 8, ..Limits::default() });
    let events: Vec<Event> = (0..100).map(|i| open(i, i as i32, 1000 + i)).collect();
    run(&mut p, &events);
    assert!(p.connections() <= 8);
    assert_eq!(p.stats().evictions.table_full, 100 - p.connections() as u64);
}

#[test]
fn idle_connections_are_swept() {
    let mut p = Pipeline::new(Limits { idle_ns: 1_000, ..Limits::default() });
    run(&mut p, &[open(1, 5, 7), open(10_000, 6, 8)]);
    let mut out = vec![];
    p.sweep(10_500, &mut out);
    assert_eq!((p.connections(), p.stats().evictions.idle), (1, 1));
}

#[test]
fn a_truncated_chunk_makes_the_next_one_a_gap_and_the_record_partial() {
    let mut p = Pipeline::new(Limits::default());
    let body = vec![b'x'; 100];
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
    resp.extend_from_slice(&body);
    let out = run(
        &mut p,
        &[
            open(1, 5, 7),
            data(2, 5, 7, Direction::Egress, GET, GET.len() as u64),
            // Only the first 20 bytes of the response were captured.
            data(3, 5, 7, Direction::Ingress, &resp[..20], resp.len() as u64),
            data(4, 5, 7, Direction::Egress, GET, GET.len() as u64),
            data(5, 5, 7, Direction::Ingress, OK, OK.len() as u64),
            close(6, 5, 7),
        ],
    );
    // Whatever the parser could make of the cut response, nothing is reported whole that was not.
    assert!(!out.is_empty());
    assert!(out.iter().all(|r| r.protocol.name() == "http"));
    assert!(out.iter().any(|r| r.partial || r.latency_ns.is_none()), "{out:?}");
}

#[test]
fn a_body_beyond_the_capture_cap_still_makes_a_whole_record() {
    let mut p = Pipeline::new(Limits::default());
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n".to_vec();
    let total = resp.len() as u64 + 20_000;
    resp.extend_from_slice(&[b'x'; 4096 - 40]);
    let out = run(
        &mut p,
        &[
            open(1, 5, 7),
            data(2, 5, 7, Direction::Egress, GET, GET.len() as u64),
            // One read of the whole response, of which the capture kept 4 KiB.
            data(3, 5, 7, Direction::Ingress, &resp, total),
            data(4, 5, 7, Direction::Egress, GET, GET.len() as u64),
            data(5, 5, 7, Direction::Ingress, OK, OK.len() as u64),
            close(6, 5, 7),
        ],
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!((out[0].status.as_deref(), out[0].response_bytes, out[0].partial), (Some("200"), total, false));
    assert_eq!((out[1].status.as_deref(), out[1].partial), (Some("200"), false), "the next exchange is in step");
}

#[test]
fn loss_reported_by_the_capture_is_counted() {
    let mut p = Pipeline::new(Limits::default());
    run(&mut p, &[open(1, 5, 7), Event::loss(2, LossSource::KernelData, 3)]);
    assert_eq!(p.stats().lost_events, 3);
}

#[test]
fn unknown_protocols_are_counted_not_parsed() {
    let mut p = Pipeline::new(Limits::default());
    let noise: Vec<Event> =
        (0..10).map(|i| data(i, 5, 7, Direction::Egress, &[0x16, 0x03, 0x01, 0, 5, 1, 2, 3, 4, 5], 10)).collect();
    let out = run(&mut p, &noise);
    assert!(out.is_empty());
    assert_eq!(p.stats().unrecognized, 1);
}

#[test]
fn a_request_read_length_prefix_first_is_still_recognized() {
    // A Kafka broker reads the 4-byte size, then the request (ApiVersions v0, correlation 7).
    let header = [&[0, 18, 0, 0, 0, 0, 0, 7, 0, 1][..], b"c"].concat();
    let size = (header.len() as u32).to_be_bytes();
    let response = [0, 0, 0, 10, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0];
    let mut p = Pipeline::new(Limits::default());
    let out = run(
        &mut p,
        &[
            open(1, 5, 7),
            data(2, 5, 7, Direction::Egress, &size, 4),
            data(3, 5, 7, Direction::Egress, &header, header.len() as u64),
            data(4, 5, 7, Direction::Ingress, &response, response.len() as u64),
        ],
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].protocol.name(), out[0].operation.as_deref()), ("kafka", Some("ApiVersions")));
    assert_eq!((out[0].status.as_deref(), out[0].request_bytes), (Some("OK"), 4 + header.len() as u64));
}

fn server_data(ts: u64, direction: Direction, bytes: &[u8]) -> Event {
    let mut e = data(ts, 5, 77, direction, bytes, bytes.len() as u64);
    if let EventKind::Data(d) = &mut e.kind {
        d.conn.role = Role::Server;
    }
    e.comm = "nginx".into();
    e
}

fn accept(ts: u64) -> Event {
    let o = Open { conn: conn(Role::Server), syscall: Syscall::Accept4, in_progress: false, enter_ns: ts };
    let mut e = event(ts, 5, 77, EventKind::Open(o));
    e.comm = "nginx".into();
    e
}

/// A server may answer before it has read the whole request: an early 413 while the body is still
/// coming. That answer belongs to that request, and the next request gets its own.
#[test]
fn a_server_answering_before_the_whole_request_pairs_every_response_with_its_own_request() {
    let mut p = Pipeline::new(Limits::default());
    let out = run(
        &mut p,
        &[
            accept(1),
            server_data(10, Direction::Ingress, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234"),
            server_data(20, Direction::Egress, b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"),
            server_data(30, Direction::Ingress, b"56789"),
            server_data(40, Direction::Ingress, GET),
            server_data(50, Direction::Egress, OK),
            server_data(60, Direction::Ingress, b"GET /items/2 HTTP/1.1\r\nHost: shop\r\n\r\n"),
            server_data(70, Direction::Egress, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
    let pairs: Vec<(String, String)> =
        out.iter().map(|r| (r.target.clone().unwrap_or_default(), r.status.clone().unwrap_or_default())).collect();
    assert_eq!(
        pairs,
        [("/upload".into(), "413".into()), ("/items/1".into(), "200".into()), ("/items/2".into(), "404".into())]
    );
    assert_eq!(p.stats().orphans, 0);
}
