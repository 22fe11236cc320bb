//! Records through convergence into metrics: instruments and attributes by protocol and role,
//! the label limit, peer names and service-graph edges, and the Prometheus exposition.

use super::agent_stats::AgentStats;
use super::semconv::{self, Converger, Edge};
use crate::pipeline::record::{Attributes, Endpoint};
use crate::pipeline::Record;
use crate::sinks::prometheus::MetricStore;
use crate::sinks::table::Table;

/// The protocol named as records name it.
fn protocol_named(name: &str) -> protocols::message::Protocol {
    use protocols::message::Protocol::*;
    [Http, Http2, Grpc, Redis, Mysql, Postgres, Dns, Kafka].into_iter().find(|p| p.name() == name).expect("a protocol")
}

fn record(protocol: &'static str, role: &'static str, op: &str, target: &str, status: &str) -> Record {
    let (local, remote) = match role {
        "server" => ("127.0.0.1:8080", "127.0.0.1:50000"),
        _ => ("127.0.0.1:50000", "127.0.0.1:8080"),
    };
    Record {
        protocol: protocol_named(protocol),
        operation: Some(op.into()),
        target: Some(target.into()),
        status: Some(status.into()),
        error: None,
        start_ns: 1_000,
        latency_ns: Some(2_500_000),
        request_bytes: 10,
        response_bytes: 20,
        partial: false,
        endpoint: Endpoint {
            pid: 7,
            comm: if role == "server" { "nginx" } else { "curl" }.into(),
            role: if role == "server" { strata_event::Role::Server } else { strata_event::Role::Client },
            transport: strata_event::Transport::Tcp,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            attribution: None,
            peer: None,
        },
        attributes: Attributes::default(),
    }
}

fn attr<'a>(o: &'a semconv::Observation, k: &str) -> Option<&'a str> {
    o.attributes.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
}

#[test]
fn http_records_become_templated_request_durations_with_semconv_error_rules() {
    let mut c = Converger::new(100);
    let server = c.observe(&record("http", "server", "GET", "/users/123/orders", "404")).unwrap();
    assert_eq!(server.instrument, semconv::HTTP_SERVER);
    assert_eq!(attr(&server, "http.route"), Some("/users/{id}/orders"));
    assert_eq!((attr(&server, "status.class"), attr(&server, "error.type")), (Some("4xx"), None));
    assert!(!server.error, "a 404 is the client's error, not the server's");
    assert_eq!(server.operation, "GET /users/{id}/orders");
    assert_eq!(server.seconds, 0.0025);
    let client = c.observe(&record("http2", "client", "GET", "/users/9", "404")).unwrap();
    assert_eq!(client.instrument, semconv::HTTP_CLIENT);
    assert!(client.error);
    assert_eq!(attr(&client, "error.type"), Some("404"));
    assert_eq!(attr(&client, "network.protocol.name"), Some("http2"));
    let failed = c.observe(&record("http", "server", "POST", "/pay", "503")).unwrap();
    assert_eq!((failed.error, attr(&failed, "status.class")), (true, Some("5xx")));
}

#[test]
fn grpc_sql_kafka_and_dns_records_use_their_conventions() {
    let mut c = Converger::new(100);
    let grpc = c.observe(&record("grpc", "client", "POST", "/helloworld.Greeter/SayHello", "5")).unwrap();
    assert_eq!(grpc.instrument, semconv::RPC_CLIENT);
    assert_eq!(
        (attr(&grpc, "rpc.method"), attr(&grpc, "error.type")),
        (Some("/helloworld.Greeter/SayHello"), Some("5"))
    );

    let mut pg = record("postgres", "client", "SELECT", "SELECT * FROM t WHERE id = 42 AND name = 'bob'", "ERR");
    pg.error = Some("SQLSTATE 42P01 relation \"t\" does not exist".into());
    let pg = c.observe(&pg).unwrap();
    assert_eq!(pg.instrument, semconv::DB_CLIENT);
    assert_eq!(attr(&pg, "db.system.name"), Some("postgresql"));
    assert_eq!(attr(&pg, "db.query.text"), Some("SELECT * FROM t WHERE id = ? AND name = ?"));
    assert_eq!(attr(&pg, "error.type"), Some("42P01"));

    let redis = c.observe(&record("redis", "server", "GET", "session:8f3a", "OK")).unwrap();
    assert_eq!(redis.instrument, semconv::DB_SERVER);
    assert_eq!(attr(&redis, "db.query.text"), None, "a Redis key is never a label");

    let kafka = c.observe(&record("kafka", "client", "Produce", "orders", "OK")).unwrap();
    assert_eq!((kafka.instrument, kafka.operation.as_str()), (semconv::MESSAGING_CLIENT, "Produce orders"));
    assert_eq!(attr(&kafka, "messaging.destination.name"), Some("orders"));

    let dns = c.observe(&record("dns", "client", "AAAA", "example.test", "NXDOMAIN")).unwrap();
    assert_eq!((dns.instrument, dns.error), (semconv::DNS_CLIENT, true));
    assert_eq!(attr(&dns, "error.type"), Some("NXDOMAIN"));
}

#[test]
fn a_record_without_a_response_has_no_duration() {
    let mut r = record("http", "client", "GET", "/", "");
    r.latency_ns = None;
    assert!(Converger::new(100).observe(&r).is_none());
}

#[test]
fn values_past_the_label_limit_fold_into_a_star_and_are_counted() {
    let mut c = Converger::new(2);
    let routes: Vec<String> = ["/a", "/b", "/c", "/a", "/d"]
        .iter()
        .map(|p| {
            let o = c.observe(&record("http", "server", "GET", p, "200")).unwrap();
            attr(&o, "http.route").unwrap().to_string()
        })
        .collect();
    assert_eq!(routes, ["/a", "/b", "*", "/a", "*"]);
    let folded: Vec<(&str, u64)> = c.limiter().folded().collect();
    assert!(folded.contains(&("http.route", 2)), "{folded:?}");
}

#[test]
fn clients_name_their_peer_after_the_local_server_and_count_the_edge() {
    let mut c = Converger::new(100);
    // nginx's side first: strata learns who serves 127.0.0.1:8080. Its client is local
    // (loopback), so the client's record counts the edge.
    let server = c.observe(&record("http", "server", "GET", "/", "200")).unwrap();
    assert_eq!(server.edge, None);
    let client = c.observe(&record("http", "client", "GET", "/", "200")).unwrap();
    assert_eq!(attr(&client, "peer.service"), Some("nginx"));
    let edge = Edge { client: "curl".into(), server: "nginx".into(), connection_type: "", observed_by_client: true };
    assert_eq!(client.edge, Some(edge));
    // A client from elsewhere: only the server saw it, by address.
    let mut remote = record("postgres", "server", "SELECT", "SELECT 1", "OK");
    remote.endpoint.comm = "postgres".into();
    remote.endpoint.remote = "10.1.2.3:40000".parse().unwrap();
    let o = c.observe(&remote).unwrap();
    assert_eq!(attr(&o, "peer.service"), Some("10.1.2.3"));
    let e = o.edge.clone().unwrap();
    assert_eq!((e.client.as_str(), e.server.as_str(), e.connection_type), ("10.1.2.3", "postgres", "database"));
}

#[test]
fn the_exposition_has_cumulative_buckets_escaped_labels_the_graph_and_the_agent() {
    let mut c = Converger::new(100);
    let mut store = MetricStore::default();
    for (path, status) in [("/x", "200"), ("/x", "200"), ("/q\"uote", "500")] {
        store.observe(&c.observe(&record("http", "client", "GET", path, status)).unwrap());
    }
    let stats = AgentStats::new("6.18.0".into());
    stats.set_tier(kernel_compat::Tier::Core);
    stats.add_lost(strata_event::LossSource::KernelData, 3);
    let text = store.render(&stats);
    let x = "service_name=\"curl\",peer_service=\"127.0.0.1:8080\",network_protocol_name=\"http\",\
             http_request_method=\"GET\",http_route=\"/x\",status_class=\"2xx\"";
    assert!(text.contains(&format!("http_client_request_duration_seconds_bucket{{{x},le=\"0.001\"}} 0\n")), "{text}");
    assert!(text.contains(&format!("http_client_request_duration_seconds_bucket{{{x},le=\"0.0025\"}} 2\n")));
    assert!(text.contains(&format!("http_client_request_duration_seconds_bucket{{{x},le=\"+Inf\"}} 2\n")));
    assert!(text.contains(&format!("http_client_request_duration_seconds_count{{{x}}} 2\n")));
    assert!(text.contains("http_route=\"/q\\\"uote\""), "quotes escaped");
    assert!(text.contains("# TYPE http_client_request_duration_seconds histogram\n"));
    let edge = "client=\"curl\",server=\"127.0.0.1:8080\",connection_type=\"\"";
    assert!(text.contains(&format!("traces_service_graph_request_total{{{edge}}} 3\n")), "{text}");
    assert!(text.contains(&format!("traces_service_graph_request_failed_total{{{edge}}} 1\n")));
    assert!(text.contains(&format!("traces_service_graph_request_client_seconds_count{{{edge}}} 3\n")));
    assert!(text.contains("strata_agent_info{tier=\"core\",kernel_release=\"6.18.0\""));
    assert!(text.contains("strata_events_lost_total{source=\"kernel_data\"} 3\n"));
    assert!(text.contains("strata_tier_degraded 0\n"));
}

#[test]
fn the_table_ranks_operations_by_rate_with_their_errors() {
    let mut c = Converger::new(100);
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut table = Table::new(Box::new(Shared(out.clone())), std::time::Duration::ZERO, false);
    for _ in 0..3 {
        table.observe(&c.observe(&record("http", "server", "GET", "/busy", "200")).unwrap());
    }
    table.observe(&c.observe(&record("http", "server", "GET", "/rare", "500")).unwrap());
    assert!(table.tick().unwrap());
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let busy = text.find("GET /busy").expect("busy row");
    let rare = text.find("GET /rare").expect("rare row");
    assert!(busy < rare, "busiest first:\n{text}");
    let rare_line = text[rare..].lines().next().unwrap();
    assert!(rare_line.trim_end().ends_with("100.0%"), "{rare_line}");
    let busy_line = text[busy..].lines().next().unwrap();
    assert!(busy_line.trim_end().ends_with("0.0%"));
    // p50 and p99 are read from the latencies themselves (2.5 ms each), not interpolated.
    assert_eq!(busy_line.matches("2.5 ms").count(), 2, "{busy_line}");
}

#[test]
fn services_are_named_after_their_process_not_the_thread_seen() {
    // A tokio server answers on worker threads; its process is `tansu`.
    let mut c = Converger::new(100).with_process_names(Box::new(|pid| (pid == 7).then(|| "tansu".to_string())));
    let mut r = record("kafka", "server", "Produce", "orders", "OK");
    r.endpoint.comm = "tokio-rt-worker".into();
    assert_eq!(attr(&c.observe(&r).unwrap(), "service.name"), Some("tansu"));
    // A process already gone keeps the thread's name.
    r.endpoint.pid = 8;
    assert_eq!(attr(&c.observe(&r).unwrap(), "service.name"), Some("tokio-rt-worker"));
    // The client of that server then names its peer after the process.
    let client = c.observe(&record("kafka", "client", "Produce", "orders", "OK")).unwrap();
    assert_eq!(attr(&client, "peer.service"), Some("tokio-rt-worker"), "the last server seen on that address");
}

#[test]
fn a_series_worked_out_before_is_shared_and_still_counts_its_folds() {
    let mut c = Converger::new(1);
    let first = c.observe(&record("http", "server", "GET", "/a", "200")).unwrap();
    let again = c.observe(&record("http", "server", "GET", "/a", "200")).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first.series, &again.series), "the same shape, one series");
    let other = c.observe(&record("http", "server", "GET", "/b", "200")).unwrap();
    assert_eq!(attr(&other, "http.route"), Some("*"));
    for _ in 0..3 {
        let o = c.observe(&record("http", "server", "GET", "/b", "200")).unwrap();
        assert!(std::sync::Arc::ptr_eq(&o.series, &other.series));
    }
    let folded: Vec<(&str, u64)> = c.limiter().folded().collect();
    assert!(folded.contains(&("http.route", 4)), "every folded observation counted: {folded:?}");
}

#[test]
fn what_the_converger_learns_later_reaches_series_it_had_already_worked_out() {
    let mut c = Converger::new(100);
    // The client's record first: its peer is an address, until nginx's record names it.
    let before = c.observe(&record("http", "client", "GET", "/", "200")).unwrap();
    assert_eq!(attr(&before, "peer.service"), Some("127.0.0.1:8080"));
    let mut server = record("http", "server", "GET", "/", "200");
    server.endpoint.pid = 8;
    c.observe(&server).unwrap();
    let after = c.observe(&record("http", "client", "GET", "/", "200")).unwrap();
    assert_eq!(attr(&after, "peer.service"), Some("nginx"));
}
