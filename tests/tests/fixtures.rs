//! The captures kept under tests/fixtures/ (recorded by tests/records.rs from real clients and
//! servers) replayed through the pipeline, without root: the records must match what the clients
//! did, exactly as they did live.

use strata_e2e::records::{checks, fixtures_dir, replay};

fn fixture(name: &str) -> std::path::PathBuf {
    let f = fixtures_dir().join(format!("{name}.cap"));
    assert!(
        f.is_file(),
        "{} is missing: record it with STRATA_UPDATE_FIXTURES=1 cargo test --test records",
        f.display()
    );
    f
}

#[test]
fn http1_fixture() {
    let records = replay(&fixture("http1"));
    checks::http1(&records, checks::server_port(&records, "http", "nginx"));
}

#[test]
fn http2_fixture() {
    let records = replay(&fixture("http2"));
    checks::http2(&records, checks::server_port(&records, "http2", "nginx"));
}

#[test]
fn grpc_fixture() {
    let records = replay(&fixture("grpc"));
    checks::grpc(&records, checks::server_port(&records, "grpc", "strata-grpc-pee"));
}

#[test]
fn dns_fixture() {
    let records = replay(&fixture("dns"));
    checks::dns(&records, checks::server_port(&records, "dns", "dnsmasq"));
}

#[test]
fn redis_fixture() {
    let records = replay(&fixture("redis"));
    checks::redis(&records, checks::server_port(&records, "redis", "redis-server"));
}

#[test]
fn postgres_fixture() {
    let records = replay(&fixture("postgres"));
    checks::postgres(&records, checks::server_port(&records, "postgres", "postgres"));
}

#[test]
fn mysql_fixture() {
    let records = replay(&fixture("mysql"));
    checks::mysql(&records, checks::server_port(&records, "mysql", "mariadbd"));
}

#[test]
fn kafka_fixture() {
    // comm is the thread's name: tansu answers on tokio's worker threads.
    let records = replay(&fixture("kafka"));
    checks::kafka(&records, checks::server_port(&records, "kafka", "tokio-rt-worker"));
}
