//! Request/response records: live captures recorded to a file, replayed through the pipeline,
//! and kept as fixtures under tests/fixtures/ (refreshed with STRATA_UPDATE_FIXTURES=1).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// tests/fixtures/ in the checkout.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `strata replay FILE --output jsonl`: the records, after checking the replay succeeded.
pub fn replay(file: &Path) -> Vec<Value> {
    let out = Command::new(crate::strata_bin())
        .args(["replay", file.to_str().unwrap(), "--output", "jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "replay of {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A scratch path for a capture file of this test.
pub fn scratch_capture(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-records-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.cap"))
}

/// With STRATA_UPDATE_FIXTURES=1, keeps a live capture as tests/fixtures/<name>.cap, which the
/// fixture tests replay without root.
pub fn keep_as_fixture(file: &Path, name: &str) {
    if std::env::var_os("STRATA_UPDATE_FIXTURES").is_some() {
        let dest = fixtures_dir().join(format!("{name}.cap"));
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        std::fs::copy(file, &dest).unwrap();
        eprintln!("fixture written: {}", dest.display());
    }
}

/// Records with the given protocol whose endpoint remote or local is `port`.
pub fn of_protocol<'a>(records: &'a [Value], protocol: &str, port: u16) -> Vec<&'a Value> {
    let port = format!(":{port}");
    records
        .iter()
        .filter(|r| {
            r["protocol"] == protocol
                && (r["remote"].as_str().is_some_and(|a| a.ends_with(&port))
                    || r["local"].as_str().is_some_and(|a| a.ends_with(&port)))
        })
        .collect()
}

/// What each exchange of tests/records.rs must yield, checked on live captures and on the
/// fixtures kept from them. `port` is the server's.
pub mod checks {
    use super::of_protocol;
    use serde_json::Value;

    fn field<'a>(records: &'a [&Value], name: &str) -> Vec<&'a str> {
        records.iter().map(|r| r[name].as_str().unwrap_or("-")).collect()
    }

    fn by_role<'a>(records: &[&'a Value], role: &str) -> Vec<&'a Value> {
        records.iter().copied().filter(|r| r["role"] == role).collect()
    }

    /// curl: GET /first?x=1 and GET /second on one connection, then POST /form.
    pub fn http1(records: &[Value], port: u16) {
        let http = of_protocol(records, "http", port);
        for role in ["client", "server"] {
            let side = by_role(&http, role);
            assert_eq!(field(&side, "operation"), ["GET", "GET", "POST"], "{role}: {side:?}");
            assert_eq!(field(&side, "target"), ["/first", "/second", "/form"], "{role}: {side:?}");
            assert_eq!(field(&side, "status"), ["200", "200", "200"], "{role}: {side:?}");
            for r in &side {
                assert!(r["latency_ns"].as_u64().unwrap() > 0, "{r}");
                assert!(r["response_bytes"].as_u64().unwrap() > "hello from nginx\n".len() as u64, "{r}");
                assert_eq!(r["partial"], false, "{r}");
            }
            assert_eq!(side[0]["http.query"], "x=1");
            assert!(side[2]["request_bytes"].as_u64().unwrap() > "name=strata".len() as u64);
        }
        assert!(by_role(&http, "client").iter().all(|r| r["comm"] == "curl"));
        assert!(by_role(&http, "server").iter().all(|r| r["comm"] == "nginx"));
    }

    /// nghttp: GET /one, /two?page=2, /three as concurrent streams of one h2c connection.
    pub fn http2(records: &[Value], port: u16) {
        let all = of_protocol(records, "http2", port);
        for role in ["client", "server"] {
            let mut side = by_role(&all, role);
            side.sort_by_key(|r| r["start_ns"].as_u64());
            assert_eq!(field(&side, "operation"), ["GET", "GET", "GET"], "{role}: {side:?}");
            assert_eq!(field(&side, "target"), ["/one", "/two", "/three"], "{role}: {side:?}");
            assert_eq!(field(&side, "status"), ["200", "200", "200"], "{role}: {side:?}");
            for r in &side {
                assert_eq!(r["partial"], false, "{r}");
                assert!(r["latency_ns"].as_u64().is_some(), "{r}");
                assert_eq!(r["http.host"], format!("127.0.0.1:{port}"), "{r}");
            }
        }
    }

    /// strata-grpc-peer: SayHello alice (OK), missing (NOT_FOUND), bob (OK) on one connection.
    pub fn grpc(records: &[Value], port: u16) {
        let all = of_protocol(records, "grpc", port);
        for role in ["client", "server"] {
            let mut side = by_role(&all, role);
            side.sort_by_key(|r| r["start_ns"].as_u64());
            let method = "/helloworld.Greeter/SayHello";
            assert_eq!(field(&side, "operation"), ["POST", "POST", "POST"], "{role}: {side:?}");
            assert_eq!(field(&side, "target"), [method, method, method], "{role}: {side:?}");
            assert_eq!(field(&side, "status"), ["0", "5", "0"], "{role}: {side:?}");
            assert_eq!(side[1]["error"], "no such greeter: missing", "{role}: {side:?}");
            assert!(side.iter().all(|r| r["http.status"] == "200" && r["partial"] == false), "{role}: {side:?}");
        }
    }

    /// dig: A, AAAA and an NXDOMAIN over UDP, then A over TCP.
    pub fn dns(records: &[Value], port: u16) {
        let dnsr = of_protocol(records, "dns", port);
        for role in ["client", "server"] {
            let side = by_role(&dnsr, role);
            assert_eq!(field(&side, "operation"), ["A", "AAAA", "A", "A"], "{role}: {side:?}");
            assert_eq!(
                field(&side, "target"),
                ["e2e.strata.test", "e2e.strata.test", "missing.nx.test", "tcp.strata.test"],
                "{role}: {side:?}"
            );
            assert_eq!(field(&side, "status"), ["NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"], "{role}: {side:?}");
            assert_eq!(field(&side, "transport"), ["udp", "udp", "udp", "tcp"], "{role}: {side:?}");
            assert_eq!(side[0]["dns.answer"], "192.0.2.7");
            assert_eq!(side[1]["dns.answer"], "2001:db8::7");
            assert_eq!(side[2]["error"], "NXDOMAIN");
        }
    }

    /// redis-cli: SET, GET, a failing INCR, then a pipeline PING, SET, INCR (+ ECHO).
    pub fn redis(records: &[Value], port: u16) {
        let all = of_protocol(records, "redis", port);
        let client = by_role(&all, "client");
        assert_eq!(field(&client, "operation"), ["SET", "GET", "INCR", "PING", "SET", "INCR", "ECHO"], "{client:?}");
        assert_eq!(field(&client, "target"), ["greeting", "greeting", "greeting", "-", "k", "k", "-"], "{client:?}");
        assert_eq!(field(&client, "status"), ["OK", "OK", "ERR", "OK", "OK", "OK", "OK"], "{client:?}");
        assert_eq!(client[2]["error"], "ERR value is not an integer or out of range");
        let server = by_role(&all, "server");
        assert_eq!(field(&server, "operation"), field(&client, "operation"), "the server saw the same: {server:?}");
    }

    /// psql: SELECT 1 and a failing SELECT (simple protocol); pgbench -M extended: two
    /// `SELECT $1::int + 1` (Parse/Bind/Execute/Sync).
    pub fn postgres(records: &[Value], port: u16) {
        let all = of_protocol(records, "postgres", port);
        for role in ["client", "server"] {
            let side = by_role(&all, role);
            let simple: Vec<&Value> = side.iter().copied().filter(|r| r["db.extended"].is_null()).collect();
            let one =
                simple.iter().find(|r| r["target"] == "SELECT 1 AS one").unwrap_or_else(|| panic!("{role}: {side:?}"));
            assert_eq!((one["operation"].as_str(), one["status"].as_str()), (Some("SELECT"), Some("OK")), "{one}");
            // Numbers and flags in records are JSON numbers and booleans.
            assert_eq!(one["db.rows"], 1, "{one}");
            let bad = simple
                .iter()
                .find(|r| r["target"] == "SELECT * FROM no_such_table")
                .unwrap_or_else(|| panic!("{role}: {side:?}"));
            assert_eq!(bad["status"], "ERR", "{bad}");
            let error = bad["error"].as_str().unwrap();
            assert!(error.starts_with("SQLSTATE 42P01") && error.contains("no_such_table"), "{error}");
            let extended: Vec<&Value> = side
                .iter()
                .copied()
                .filter(|r| r["target"].as_str().is_some_and(|t| t.contains("::int + 1")))
                .collect();
            assert_eq!(extended.len(), 2, "{role}: {side:?}");
            for r in extended {
                assert_eq!((r["operation"].as_str(), r["status"].as_str()), (Some("SELECT"), Some("OK")), "{r}");
                assert_eq!(r["db.extended"], true, "{r}");
            }
        }
    }

    /// DBD::MariaDB: SELECT 1, a SELECT of a missing table, then SELECT ? + 1 prepared and
    /// executed over the binary protocol.
    pub fn mysql(records: &[Value], port: u16) {
        let all = of_protocol(records, "mysql", port);
        for role in ["client", "server"] {
            let side = by_role(&all, role);
            let find = |op: &str, target: &str| {
                *side
                    .iter()
                    .find(|r| r["operation"] == op && r["target"] == target)
                    .unwrap_or_else(|| panic!("{role}: no {op} {target} in {side:?}"))
            };
            let one = find("SELECT", "SELECT 1 AS one");
            assert_eq!((one["status"].as_str(), one["db.rows"].as_u64()), (Some("OK"), Some(1)), "{one}");
            let bad = find("SELECT", "SELECT * FROM mysql.no_such_table");
            assert_eq!(bad["status"], "ERR", "{bad}");
            let error = bad["error"].as_str().unwrap();
            assert!(error.starts_with("1146 (42S02)") && error.contains("no_such_table"), "{error}");
            let prepare = find("PREPARE", "SELECT ? + 1");
            assert_eq!(prepare["status"], "OK", "{prepare}");
            let execute = find("EXECUTE", "SELECT ? + 1");
            assert_eq!((execute["status"].as_str(), execute["db.rows"].as_u64()), (Some("OK"), Some(1)), "{execute}");
        }
    }

    /// kafka-python: CreateTopics `orders`, CreateTopics again (TOPIC_ALREADY_EXISTS), three
    /// Produce to `orders`, then Fetch from its beginning.
    pub fn kafka(records: &[Value], port: u16) {
        let all = of_protocol(records, "kafka", port);
        for role in ["client", "server"] {
            let side = by_role(&all, role);
            let of = |op: &str| -> Vec<&Value> { side.iter().copied().filter(|r| r["operation"] == op).collect() };
            let create = of("CreateTopics");
            assert_eq!(field(&create, "target"), ["orders", "orders"], "{role}: {side:?}");
            assert_eq!(field(&create, "status"), ["OK", "ERR"], "{role}: {side:?}");
            assert_eq!(create[1]["error"], "TOPIC_ALREADY_EXISTS", "{role}: {side:?}");
            let produce = of("Produce");
            assert_eq!(field(&produce, "target"), ["orders"; 3], "{role}: {side:?}");
            assert_eq!(field(&produce, "status"), ["OK"; 3], "{role}: {side:?}");
            // The first Fetch brings the three messages; later ones poll until the consumer's
            // timeout, and the last may be cut by the exit.
            let fetch = of("Fetch");
            assert!(!fetch.is_empty(), "{role}: {side:?}");
            assert_eq!((fetch[0]["target"].as_str(), fetch[0]["status"].as_str()), (Some("orders"), Some("OK")));
            let order_bytes = 3 * "order-0".len() as u64;
            assert!(fetch[0]["response_bytes"].as_u64().unwrap() > order_bytes, "{}", fetch[0]);
            assert!(!of("Metadata").is_empty(), "{role}: {side:?}");
            for r in create.iter().chain(&produce).chain(&fetch[..1]) {
                assert_eq!(r["partial"], false, "{r}");
                assert!(r["latency_ns"].as_u64().is_some_and(|l| l > 0), "{r}");
                assert!(r["messaging.client_id"].as_str().is_some_and(|c| c.starts_with("kafka-python")), "{r}");
            }
        }
        assert!(by_role(&all, "client").iter().all(|r| r["comm"] == "python3"));
    }

    /// The server's port in a fixture: the local port of the first server-side record of
    /// `protocol` by the process named `server`.
    pub fn server_port(records: &[Value], protocol: &str, server: &str) -> u16 {
        let r = records
            .iter()
            .find(|r| r["protocol"] == protocol && r["role"] == "server" && r["comm"] == server)
            .unwrap_or_else(|| panic!("no {protocol} record of {server} in the fixture"));
        r["local"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap()
    }
}
