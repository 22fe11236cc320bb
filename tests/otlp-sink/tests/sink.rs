//! The sink as the end-to-end tests run it: it says when it listens, refuses a port already taken
//! and bad arguments clearly. (Being an integration test also makes `cargo test --workspace` build
//! the binary next to `strata`, where the end-to-end tests look for it.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const SINK: &str = env!("CARGO_BIN_EXE_strata-otlp-sink");

#[test]
fn it_announces_its_port_and_a_second_sink_on_that_port_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = std::env::temp_dir().join(format!("strata-otlp-sink-test-{}.jsonl", std::process::id()));
    let mut first = Command::new(SINK).arg(port.to_string()).arg(&out).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("listening on 127.0.0.1:{port}"));
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the sink accepts connections");

    let second = Command::new(SINK).arg(port.to_string()).arg(&out).output().unwrap();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"), "{second:?}");

    first.kill().unwrap();
    first.wait().unwrap();
    let _ = std::fs::remove_file(&out);
}

#[test]
fn bad_arguments_exit_2_with_the_usage() {
    let out = Command::new(SINK).arg("not-a-port").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("strata-otlp-sink"), "{out:?}");
}
