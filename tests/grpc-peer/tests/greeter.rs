//! The peer itself: a server and a client talking, OK and error statuses on one connection.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn calls_get_their_replies_and_statuses_in_order() {
    let bin = env!("CARGO_BIN_EXE_strata-grpc-peer");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut server = Command::new(bin).args(["serve", &port]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "listening");
    let out = Command::new(bin).args(["call", &port, "alice", "missing", "bob"]).output().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK hello alice\nERR 5 no such greeter: missing\nOK hello bob\n");
}
