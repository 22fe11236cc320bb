//! Request/response records from real clients talking to real servers on loopback, under live
//! capture. Each exchange is recorded to a capture file and the records come from replaying it
//! through the pipeline (the same code `strata run` feeds); with STRATA_UPDATE_FIXTURES=1 the
//! captures become tests/fixtures/<protocol>-*.cap, which tests/fixtures.rs replays without root.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use strata_e2e::agent::Agent;
use strata_e2e::records::{checks, keep_as_fixture, replay, scratch_capture};
use strata_e2e::{require_tool, run_ok, servers};

/// One capture at a time: each agent sees the whole node's traffic.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Records `exchange` under live capture (core tier) and returns the replayed records.
fn capture(name: &str, exchange: impl FnOnce()) -> Vec<Value> {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = scratch_capture(name);
    let agent = Agent::start_recording(&file, &["--tier", "core"]);
    exchange();
    std::thread::sleep(Duration::from_millis(300));
    let c = agent.stop();
    assert!(c.status.success(), "strata record: {}", c.stderr);
    keep_as_fixture(&file, name);
    let records = replay(&file);
    std::fs::remove_file(&file).unwrap();
    records
}

#[test]
fn http1_keep_alive_requests_become_records_on_both_sides() {
    let nginx = servers::nginx();
    let curl = require_tool("curl", "curl");
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let records = capture("http1", || {
        // Two requests on one kept-alive connection, then a POST with a body.
        run_ok(
            Command::new(&curl)
                .args(["-sS", "-o", "/dev/null", "-o", "/dev/null"])
                .arg(format!("{base}/first?x=1"))
                .arg(format!("{base}/second")),
        );
        run_ok(Command::new(&curl).args(["-sS", "-o", "/dev/null", "-d", "name=strata"]).arg(format!("{base}/form")));
    });
    checks::http1(&records, nginx.port);
}

/// `--capture-bytes 64` keeps less than any head here: each side's start line still says what
/// was asked and answered, so every exchange is a partial record with its status and latency, not
/// an unanswered request.
#[test]
fn http1_heads_cut_by_a_small_capture_are_answered_partial() {
    let nginx = servers::nginx();
    let curl = require_tool("curl", "curl");
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = scratch_capture("http1-cut");
    let agent = Agent::start_recording(&file, &["--tier", "core", "--capture-bytes", "64"]);
    run_ok(
        Command::new(&curl)
            .args(["-sS", "-o", "/dev/null", "-o", "/dev/null"])
            .arg(format!("{base}/cut-one"))
            .arg(format!("{base}/cut-two")),
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = agent.stop();
    assert!(c.status.success(), "strata record: {}", c.stderr);
    let records = replay(&file);
    std::fs::remove_file(&file).unwrap();
    for target in ["/cut-one", "/cut-two"] {
        let mine: Vec<&Value> = records.iter().filter(|r| r["target"] == target).collect();
        // curl's side and nginx's side.
        assert_eq!(mine.len(), 2, "{target}: {records:?}");
        for r in mine {
            assert_eq!((r["protocol"].as_str(), r["operation"].as_str()), (Some("http"), Some("GET")), "{r}");
            assert_eq!(r["status"], "200", "answered: {r}");
            assert_eq!(r["partial"], true, "{r}");
            assert!(r["latency_ns"].as_u64().is_some_and(|l| l > 0), "{r}");
        }
    }
}

#[test]
fn http2_cleartext_streams_become_records() {
    let nginx = servers::nginx_h2c();
    // nghttp: curl 7.88 fails reusing an h2c prior-knowledge connection ("Error in the HTTP2
    // framing layer"); nghttp sends all three as concurrent streams of one connection.
    let nghttp = require_tool("nghttp", "nghttp2-client");
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let records = capture("http2", || {
        run_ok(
            Command::new(&nghttp)
                .arg("-n")
                .arg(format!("{base}/one"))
                .arg(format!("{base}/two?page=2"))
                .arg(format!("{base}/three")),
        );
    });
    checks::http2(&records, nginx.port);
}

#[test]
fn grpc_calls_with_ok_and_error_statuses_become_records() {
    let greeter = servers::grpc_greeter();
    let port = greeter.port.to_string();
    let records = capture("grpc", || {
        let out = run_ok(Command::new(strata_e2e::grpc_peer_bin()).args(["call", &port, "alice", "missing", "bob"]));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "OK hello alice\nERR 5 no such greeter: missing\nOK hello bob\n"
        );
    });
    checks::grpc(&records, greeter.port);
}

#[test]
fn dns_queries_over_udp_and_tcp_become_records() {
    let dns = servers::dnsmasq();
    let dig = require_tool("dig", "dnsutils");
    let port = dns.port.to_string();
    let query = |args: &[&str]| {
        run_ok(Command::new(&dig).args(["@127.0.0.1", "-p", &port, "+tries=1", "+time=5"]).args(args));
    };
    let records = capture("dns", || {
        query(&["e2e.strata.test", "A"]);
        query(&["e2e.strata.test", "AAAA"]);
        query(&["missing.nx.test", "A"]);
        query(&["+tcp", "tcp.strata.test", "A"]);
    });
    checks::dns(&records, dns.port);
}

#[test]
fn redis_commands_and_a_pipeline_become_records() {
    let redis = servers::redis();
    let cli = require_tool("redis-cli", "redis-tools");
    let port = redis.port.to_string();
    let records = capture("redis", || {
        let cmd = |args: &[&str]| run_ok(Command::new(&cli).args(["-p", &port]).args(args));
        cmd(&["SET", "greeting", "hello"]);
        cmd(&["GET", "greeting"]);
        // An error reply: INCR of a non-number.
        cmd(&["INCR", "greeting"]);
        // A pipeline: three commands written at once (redis-cli --pipe adds an ECHO to find the end).
        let mut pipe = Command::new(&cli)
            .args(["-p", &port, "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        pipe.stdin
            .take()
            .unwrap()
            .write_all(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n")
            .unwrap();
        assert!(pipe.wait().unwrap().success());
    });
    checks::redis(&records, redis.port);
}

#[test]
fn postgres_simple_and_extended_queries_become_records() {
    let pg = servers::postgres();
    let psql = require_tool("psql", "postgresql-client");
    let pgbench = servers::postgres_bin("pgbench");
    let port = pg.port.to_string();
    let script = pg.dir.join("extended.sql");
    std::fs::write(&script, "\\set x 41\nSELECT :x::int + 1 AS answer;\n").unwrap();
    let records = capture("postgres", || {
        let sql = |q: &str| {
            Command::new(&psql)
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-X", "-c", q])
                .output()
                .unwrap()
        };
        assert!(sql("SELECT 1 AS one").status.success());
        assert!(!sql("SELECT * FROM no_such_table").status.success(), "the query must fail");
        // The extended protocol (Parse/Bind/Execute/Sync): pgbench -M extended, two runs of the script.
        run_ok(
            Command::new(&pgbench)
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-n", "-M", "extended", "-t", "2", "-f"])
                .arg(&script)
                .arg("postgres"),
        );
    });
    checks::postgres(&records, pg.port);
}

/// The MySQL client: Perl's DBD::MariaDB (on MariaDB Connector/C). Plain queries go as
/// COM_QUERY; `mariadb_server_prepare` sends the statement over the binary protocol
/// (COM_STMT_PREPARE / COM_STMT_EXECUTE).
const MYSQL_CLIENT: &str = r#"
use strict; use DBI;
my $dbh = DBI->connect("DBI:MariaDB:host=127.0.0.1;port=$ARGV[0]", "root", "", {RaiseError => 1, PrintError => 0});
my $one = $dbh->selectall_arrayref("SELECT 1 AS one");
die "SELECT 1 gave $one->[0][0]" unless $one->[0][0] == 1;
eval { $dbh->do("SELECT * FROM mysql.no_such_table") };
die "the query must fail" unless $@ =~ /no_such_table/;
my $sth = $dbh->prepare("SELECT ? + 1", {mariadb_server_prepare => 1});
$sth->execute(41);
my ($answer) = $sth->fetchrow_array;
die "SELECT ? + 1 gave $answer" unless $answer == 42;
$sth->finish;
$dbh->disconnect;
"#;

#[test]
fn mysql_queries_an_error_and_a_prepared_statement_become_records() {
    let db = servers::mariadb();
    let perl = require_tool("perl", "perl");
    let port = db.port.to_string();
    let records = capture("mysql", || {
        run_ok(Command::new(&perl).args(["-e", MYSQL_CLIENT, &port]));
    });
    checks::mysql(&records, db.port);
}

#[test]
fn kafka_produce_and_fetch_become_records() {
    let broker = servers::kafka_broker();
    let python = require_tool("python3", "python3");
    let client = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/kafka_client.py");
    let has_kafka = Command::new(&python).args(["-c", "import kafka"]).output().unwrap();
    assert!(
        has_kafka.status.success(),
        "kafka-python is not installed: these tests need it (apt-get install python3-kafka)"
    );
    let records = capture("kafka", || {
        let out = run_ok(Command::new(&python).arg(&client).arg(format!("127.0.0.1:{}", broker.port)));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "order-0\norder-1\norder-2\n");
    });
    checks::kafka(&records, broker.port);
}
