//! What operators consume, checked with the real consumers: Debian's Prometheus scraping strata
//! while curl drives nginx (rates, p99, the dashboard's and the alert rules' expressions), label
//! convergence under 10 000 distinct paths, and an OTLP receiver that is stopped and restarted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use strata_e2e::agent::Agent;
use strata_e2e::{free_port, http_get, require_tool, run_ok, servers, url_encode};

/// One agent at a time: each sees the whole node's traffic, and the checks count requests.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `strata run --output none --tier core` serving Prometheus on `prom_port`, plus `extra`.
fn agent(prom_port: u16, extra: &[&str], env: &[(&str, &str)]) -> Agent {
    let listen = format!("127.0.0.1:{prom_port}");
    let args = [&["run", "--output", "none", "--tier", "core", "--prometheus-listen", &listen][..], extra].concat();
    Agent::start_exporting(&args, env)
}

/// Runs curl on a config file of `urls` (one connection, kept alive) and returns each
/// transfer's total time in seconds. `rate` paces the transfers (curl's `--rate`, e.g. "20/s").
fn curl(urls: &[String], rate: Option<&str>, headers: &[&str]) -> Vec<f64> {
    let curl = require_tool("curl", "curl");
    let dir = std::env::temp_dir().join(format!("strata-telemetry-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("urls.conf");
    let body: String = urls.iter().map(|u| format!("url = \"{u}\"\noutput = \"/dev/null\"\n")).collect();
    std::fs::write(&config, body).unwrap();
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "-w", "%{time_total}\\n", "-K"]).arg(&config);
    if let Some(r) = rate {
        cmd.args(["--rate", r]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = run_ok(&mut cmd);
    std::fs::remove_dir_all(&dir).unwrap();
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(times.len(), urls.len(), "curl reported every transfer");
    times
}

/// A Prometheus instant query's result vector (fails on an API error).
fn query(prom: u16, expr: &str, at: f64) -> Vec<Value> {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={}&time={at:.3}", url_encode(expr)));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{expr}: {e}: {body}"));
    assert_eq!((status, v["status"].as_str()), (200, Some("success")), "{expr}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The single value of an instant query.
fn scalar(prom: u16, expr: &str, at: f64) -> f64 {
    let r = query(prom, expr, at);
    assert_eq!(r.len(), 1, "{expr} gave {r:?}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Waits until `f` holds, polling; fails with `what` after `timeout`.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The samples of `metric` in a /metrics exposition: (labels, value).
fn samples<'a>(exposition: &'a str, metric: &str) -> Vec<(&'a str, f64)> {
    exposition
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

#[test]
fn prometheus_scrapes_the_request_rate_and_p99_of_live_traffic() {
    let _serial = serial();
    let nginx = servers::nginx();
    let prom_port = free_port();
    let _agent = agent(prom_port, &[], &[]);
    let rules = repo().join("deploy/prometheus/strata-alerts.yml");
    let prom = servers::prometheus(&[prom_port], &[rules]);
    eventually("Prometheus scrapes strata", Duration::from_secs(20), || {
        query(prom.port, "up{job=\"strata\"} == 1", now()).len() == 1
    });

    // 240 requests at 20/s on one kept-alive connection: 12 s of steady traffic.
    let urls: Vec<String> = (0..240).map(|_| format!("http://127.0.0.1:{}/index.html", nginx.port)).collect();
    let times = curl(&urls, Some("20/s"), &[]);
    let end = now();
    // Two scrapes after the last request, so the window ending at `end` is complete.
    std::thread::sleep(Duration::from_secs(3));

    let selector = "service_name=\"nginx\",http_route=\"/index.html\"";
    let rate =
        scalar(prom.port, &format!("sum(rate(http_server_request_duration_seconds_count{{{selector}}}[8s]))"), end);
    assert!((15.0..=25.0).contains(&rate), "nginx's request rate {rate}/s, sent at 20/s");
    let client_rate =
        scalar(prom.port, "sum(rate(http_client_request_duration_seconds_count{service_name=\"curl\"}[8s]))", end);
    assert!((15.0..=25.0).contains(&client_rate), "curl's request rate {client_rate}/s, sent at 20/s");
    let total = scalar(prom.port, &format!("sum(http_server_request_duration_seconds_count{{{selector}}})"), end + 2.0);
    assert_eq!(total, 240.0, "every request counted once");

    // The server's p99 cannot exceed what the client measured end to end (connection included):
    // it must lie below the first bucket bound above curl's slowest transfer.
    let p99 = scalar(
        prom.port,
        &format!(
            "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{selector}}}[8s])))"
        ),
        end,
    );
    let slowest = times.iter().cloned().fold(0.0, f64::max);
    let bound = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 10.0]
        .into_iter()
        .find(|b| *b >= slowest)
        .unwrap();
    assert!(p99 > 0.0 && p99 <= bound, "p99 {p99} s; curl's slowest transfer took {slowest} s");

    // The agent's own telemetry, as Prometheus stored it.
    assert_eq!(scalar(prom.port, "strata_agent_info{tier=\"core\"}", now()), 1.0);
    assert_eq!(scalar(prom.port, "strata_tier_degraded", now()), 0.0);
    assert!(scalar(prom.port, "strata_events_total", now()) >= 480.0, "each request is at least a read and a write");
    assert!(scalar(prom.port, "sum(strata_records_total{protocol=\"http\"})", now()) >= 480.0);

    // Every dashboard expression evaluates against this real data...
    let python = require_tool("python3", "python3");
    run_ok(
        Command::new(python)
            .arg(repo().join("deploy/grafana/check_exprs.py"))
            .arg("--url")
            .arg(format!("http://127.0.0.1:{}", prom.port)),
    );
    // ...and every alert rule loaded and evaluated without error; none fires on healthy traffic.
    let (_, rules) = http_get(prom.port, "/api/v1/rules");
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let all: Vec<&Value> =
        rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert!(all.len() >= 6, "{rules}");
    for r in &all {
        assert_eq!(r["health"], "ok", "{r}");
        assert_ne!(r["state"], "firing", "{r}");
    }
}

#[test]
fn ten_thousand_distinct_paths_stay_within_the_label_limit() {
    let _serial = serial();
    let nginx = servers::nginx();
    let prom_port = free_port();
    let _agent = agent(prom_port, &[], &[]);
    // 5 000 paths that are ids (one route once templated) and 5 000 that are not.
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let mut urls: Vec<String> = (0..5000).map(|i| format!("{base}/users/{}", 100_000 + i * 7)).collect();
    urls.extend((0..5000).map(|i| format!("{base}/page-{i}/view")));
    curl(&urls, None, &[]);

    let mut exposition = String::new();
    eventually("strata has the 20 000 records (both sides)", Duration::from_secs(90), || {
        exposition = http_get(prom_port, "/metrics").1;
        samples(&exposition, "strata_records_total").iter().map(|(_, v)| v).sum::<f64>() >= 20_000.0
    });
    std::thread::sleep(Duration::from_secs(1));
    exposition = http_get(prom_port, "/metrics").1;
    for (metric, service) in [
        ("http_server_request_duration_seconds_count", "nginx"),
        ("http_client_request_duration_seconds_count", "curl"),
    ] {
        // (This test's own scrapes of /metrics are HTTP clients too.)
        let mut series = samples(&exposition, metric);
        series.retain(|(l, _)| label(l, "service_name") == Some(service));
        let routes: std::collections::BTreeSet<&str> =
            series.iter().filter_map(|(l, _)| label(l, "http_route")).collect();
        assert!(routes.len() <= 101, "{metric}: {} distinct routes", routes.len());
        assert!(routes.contains("*"), "{metric}: values past the limit fold into *");
        let users: f64 =
            series.iter().filter(|(l, _)| label(l, "http_route") == Some("/users/{id}")).map(|(_, v)| v).sum();
        assert_eq!(users, 5000.0, "{metric}: every /users/<id> under one templated route");
        let total: f64 = series.iter().map(|(_, v)| v).sum();
        assert_eq!(total, 10_000.0, "{metric}: no request lost to folding");
        assert!(series.len() <= 2 * 101, "{metric}: {} series", series.len());
    }
    let folded: f64 = samples(&exposition, "strata_label_values_folded_total")
        .iter()
        .filter(|(l, _)| label(l, "label") == Some("http.route"))
        .map(|(_, v)| v)
        .sum();
    // Each side folds what passed its first 100 routes: over 4 900 per side.
    assert!(folded >= 9_800.0, "folded route observations: {folded}");
}

/// The lines a sink wrote for `signal`.
fn received(file: &Path, signal: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["signal"] == signal)
        .map(|l| l["request"].clone())
        .collect()
}

fn spans(file: &Path) -> Vec<Value> {
    let mut out = vec![];
    for req in received(file, "traces") {
        for rs in req["resourceSpans"].as_array().unwrap() {
            let service = resource_attr(&rs["resource"], "service.name");
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    let mut s = s.clone();
                    s["service"] = Value::from(service.clone());
                    out.push(s);
                }
            }
        }
    }
    out
}

fn resource_attr(resource: &Value, key: &str) -> String {
    attr(&resource["attributes"], key).unwrap_or_default()
}

fn attr(attributes: &Value, key: &str) -> Option<String> {
    let kv = attributes.as_array()?.iter().find(|kv| kv["key"] == key)?;
    let v = &kv["value"];
    v["stringValue"].as_str().map(str::to_string).or_else(|| v["intValue"].as_str().map(str::to_string))
}

fn metric_points(file: &Path, name: &str) -> Vec<Value> {
    let mut out = vec![];
    for req in received(file, "metrics") {
        for rm in req["resourceMetrics"].as_array().unwrap() {
            for sm in rm["scopeMetrics"].as_array().unwrap() {
                for m in sm["metrics"].as_array().unwrap().iter().filter(|m| m["name"] == name) {
                    let data = if m["exponentialHistogram"].is_object() {
                        &m["exponentialHistogram"]
                    } else if m["sum"].is_object() {
                        &m["sum"]
                    } else {
                        &m["gauge"]
                    };
                    out.extend(data["dataPoints"].as_array().unwrap().iter().cloned());
                }
            }
        }
    }
    out
}

fn log_records(file: &Path) -> Vec<Value> {
    let mut out = vec![];
    for req in received(file, "logs") {
        for rl in req["resourceLogs"].as_array().unwrap() {
            for sl in rl["scopeLogs"].as_array().unwrap() {
                out.extend(sl["logRecords"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

/// The agent's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The bound docs/telemetry.md states for the agent's memory while an exporter is down.
const RSS_BOUND_KIB: u64 = 256 * 1024;

#[test]
fn an_otlp_receiver_gets_metrics_spans_and_logs_and_export_resumes_after_it_restarts() {
    let _serial = serial();
    let nginx = servers::nginx();
    let sink_port = free_port();
    let scratch = std::env::temp_dir().join(format!("strata-otlp-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let (first, second) = (scratch.join("first.jsonl"), scratch.join("second.jsonl"));
    let sink = servers::otlp_sink(sink_port, &first);
    let prom_port = free_port();
    let endpoint = format!("http://127.0.0.1:{sink_port}");
    let agent = agent(
        prom_port,
        &["--otlp", "--trace-sample-ratio", "1", "--slow-threshold", "10s"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );
    let base = format!("http://127.0.0.1:{}", nginx.port);
    // A caller's trace context: nginx's span must join this trace, under this span.
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("traceparent: 00-{trace_id}-{parent_id}-01");
    curl(&[format!("{base}/orders/42")], None, &[&traceparent]);
    curl(&[format!("{base}/fail/now")], None, &[]);

    eventually("spans, metrics and logs reach the receiver", Duration::from_secs(30), || {
        let s = spans(&first);
        s.iter().any(|s| s["traceId"] == trace_id && s["kind"] == 2)
            && s.iter().any(|s| s["name"] == "GET /fail/now")
            && !metric_points(&first, "http.server.request.duration").is_empty()
            && !log_records(&first).is_empty()
    });
    let all = spans(&first);
    let server = all.iter().find(|s| s["traceId"] == trace_id && s["kind"] == 2).unwrap();
    assert_eq!(server["parentSpanId"], parent_id, "nginx's span is a child of the caller's: {server}");
    assert_eq!(server["name"], "GET /orders/{id}", "{server}");
    assert_eq!(server["service"], "nginx", "{server}");
    assert_eq!(attr(&server["attributes"], "url.path").as_deref(), Some("/orders/42"));
    let client = all.iter().find(|s| s["traceId"] == trace_id && s["kind"] == 3).unwrap();
    assert_eq!((client["spanId"].as_str(), client["service"].as_str()), (Some(parent_id), Some("curl")), "{client}");
    let failed = all.iter().find(|s| s["name"] == "GET /fail/now" && s["kind"] == 2).unwrap();
    assert_eq!(failed["status"]["code"], 2, "a 503 is a server error: {failed}");
    assert_eq!(failed["parentSpanId"], "", "no trace context: a root span");

    let points = metric_points(&first, "http.server.request.duration");
    let orders = points
        .iter()
        .find(|p| attr(&p["attributes"], "http.route").as_deref() == Some("/orders/{id}"))
        .unwrap_or_else(|| panic!("no /orders/{{id}} point in {points:?}"));
    assert_eq!(attr(&orders["attributes"], "service.name").as_deref(), Some("nginx"));
    assert_eq!(attr(&orders["attributes"], "http.request.method").as_deref(), Some("GET"));
    assert!(orders["scale"].is_number() && orders["count"] == "1", "an exponential histogram: {orders}");
    let fail_point =
        points.iter().find(|p| attr(&p["attributes"], "http.route").as_deref() == Some("/fail/now")).unwrap();
    assert_eq!(attr(&fail_point["attributes"], "error.type").as_deref(), Some("503"));
    assert!(!metric_points(&first, "strata.events").is_empty(), "the agent's own metrics go too");
    let logs = log_records(&first);
    let error = logs
        .iter()
        .find(|l| l["severityText"] == "ERROR" && attr(&l["attributes"], "url.path").as_deref() == Some("/fail/now"))
        .unwrap_or_else(|| panic!("no error log for the 503 in {logs:?}"));
    assert!(error["body"]["stringValue"].as_str().unwrap().contains("503"), "{error}");

    // The receiver goes away: the agent keeps going, counts failed exports, stays bounded.
    drop(sink);
    let mut peak = rss_kib(agent.pid());
    let outage: Vec<String> = (0..400).map(|i| format!("{base}/during/{i}")).collect();
    for chunk in outage.chunks(100) {
        curl(chunk, Some("100/s"), &[]);
        peak = peak.max(rss_kib(agent.pid()));
    }
    eventually("failed exports are counted", Duration::from_secs(20), || {
        let m = http_get(prom_port, "/metrics").1;
        samples(&m, "strata_export_failures_total")
            .iter()
            .any(|(l, v)| label(l, "exporter") == Some("otlp_traces") && *v > 0.0)
    });
    peak = peak.max(rss_kib(agent.pid()));
    assert!(peak < RSS_BOUND_KIB, "agent RSS {peak} KiB while the receiver was down");

    // A receiver on the same address again: export resumes.
    let _sink = servers::otlp_sink(sink_port, &second);
    curl(&[format!("{base}/after/restart")], None, &[]);
    eventually("export resumes after the receiver restarts", Duration::from_secs(30), || {
        spans(&second).iter().any(|s| s["name"] == "GET /after/{id}" || s["name"] == "GET /after/restart")
            && !metric_points(&second, "http.server.request.duration").is_empty()
    });
    eprintln!("agent peak RSS while the receiver was down: {peak} KiB");
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn otlp_over_http_protobuf_delivers_metrics_spans_and_logs() {
    let _serial = serial();
    let nginx = servers::nginx();
    let sink_port = free_port();
    let scratch = std::env::temp_dir().join(format!("strata-otlp-http-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let file = scratch.join("http.jsonl");
    let _sink = servers::otlp_sink(sink_port, &file);
    let endpoint = format!("http://127.0.0.1:{sink_port}");
    // No --otlp: the endpoint variable alone turns OTLP on. The protocol is the specification's
    // default (http/protobuf), named anyway for clarity.
    let _agent = agent(
        free_port(),
        &["--trace-sample-ratio", "1"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );
    curl(&[format!("http://127.0.0.1:{}/missing/7", nginx.port)], None, &[]);
    eventually("spans, metrics and logs arrive over OTLP/HTTP", Duration::from_secs(30), || {
        spans(&file).iter().any(|s| s["name"] == "GET /missing/{id}" && s["kind"] == 3)
            && metric_points(&file, "http.client.request.duration")
                .iter()
                .any(|p| attr(&p["attributes"], "error.type").as_deref() == Some("404"))
            && log_records(&file).iter().any(|l| attr(&l["attributes"], "url.path").as_deref() == Some("/missing/7"))
    });
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn the_alert_rules_pass_promtool() {
    let promtool = require_tool("promtool", "prometheus");
    let dir = repo().join("deploy/prometheus");
    run_ok(Command::new(&promtool).args(["check", "rules"]).arg(dir.join("strata-alerts.yml")));
    // The unit tests: each alert fires on the series that should fire it, and stays quiet otherwise.
    run_ok(Command::new(&promtool).args(["test", "rules"]).arg(dir.join("strata-alerts.test.yml")));
}
