//! Records, metrics and spans attributed to their container, pod and workload, against a real
//! container: busybox httpd started by runc in a kubelet-style cgroup
//! (`.../kubepods/besteffort/pod<uid>/<id>`), with a kubelet-style log directory naming its pod
//! (tests/src/container.rs). The Kubernetes API is the stand-in server of tests/src/kube_api.rs
//! serving recorded API responses (tests/fixtures/kube/), not a live API server: none can run
//! here. Everything else is the real kernel, the real runtime and the real agent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_e2e::agent::Agent;
use strata_e2e::container::Container;
use strata_e2e::kube_api::{fixture, FakeApiServer};
use strata_e2e::{free_port, http_get, require_tool, run_ok, servers};

/// The pod and container of the recorded API responses (tests/fixtures/kube/pods-list.json).
const POD_UID: &str = "5d6c2a2e-8a6b-4f5e-9a1b-2c3d4e5f6a7b";
const CONTAINER_ID: &str = "7c2f9d3e41b0a5e6f8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";

/// One agent and one container at a time: the container's ids are fixed (the recorded API
/// responses name them).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-k8s-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `strata run --output jsonl` with Prometheus on `prom_port` and the kubelet log layout under
/// `logs`, plus `extra`.
fn start_agent(prom_port: u16, logs: &Path, extra: &[&str], env: &[(&str, &str)]) -> Agent {
    let listen = format!("127.0.0.1:{prom_port}");
    let pods = logs.join("pods");
    let containers = logs.join("containers");
    let args = [
        &[
            "run",
            "--output",
            "jsonl",
            "--tier",
            "core",
            "--prometheus-listen",
            &listen,
            "--pods-log-dir",
            pods.to_str().unwrap(),
            "--containers-log-dir",
            containers.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat();
    Agent::start_with_env(&args, env)
}

/// `n` requests with curl, each on a connection of its own (busybox httpd forks a child for
/// each, which answers and exits).
fn curl_each(port: u16, path: &str, n: usize) {
    let curl = require_tool("curl", "curl");
    for _ in 0..n {
        run_ok(Command::new(&curl).args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}{path}")]));
    }
}

fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The samples of `metric` in an exposition: (labels, value).
fn samples<'a>(exposition: &'a str, metric: &str) -> Vec<(&'a str, f64)> {
    exposition
        .lines()
        .filter_map(|l| {
            let (labels, value) = l.strip_prefix(metric)?.strip_prefix('{')?.split_once("} ")?;
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels
        .find(&format!(",{name}=\""))
        .map(|i| i + 1)
        .or_else(|| labels.starts_with(&format!("{name}=\"")).then_some(0))?;
    let start = start + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// The request count of the HTTP server series whose labels satisfy `f`, summed.
fn server_count(prom_port: u16, f: impl Fn(&str) -> bool) -> f64 {
    let (_, body) = http_get(prom_port, "/metrics");
    samples(&body, "http_server_request_duration_seconds_count").into_iter().filter(|(l, _)| f(l)).map(|(_, v)| v).sum()
}

/// Records (JSON lines) served by the container's httpd.
fn container_records(records: &[Value], port: u16) -> Vec<&Value> {
    let local = format!("127.0.0.1:{port}");
    records.iter().filter(|r| r["role"] == "server" && r["local"] == local.as_str()).collect()
}

fn otlp_spans(file: &Path) -> Vec<(Value, Value)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut out = vec![];
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["signal"] != "traces" {
            continue;
        }
        for rs in v["request"]["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((rs["resource"].clone(), s.clone()));
                }
            }
        }
    }
    out
}

fn attr(attributes: &Value, key: &str) -> Option<String> {
    let kv = attributes.as_array()?.iter().find(|kv| kv["key"] == key)?;
    kv["value"]["stringValue"].as_str().map(str::to_string)
}

#[test]
fn a_containers_records_metrics_and_spans_carry_its_pod_and_a_host_process_keeps_its_own() {
    let _serial = serial();
    let container = Container::busybox_httpd(POD_UID, CONTAINER_ID);
    let logs = scratch("logs");
    container.write_pod_logs(&logs, "shop", "web-1", "httpd");
    let nginx = servers::nginx();
    let (prom_port, sink_port) = (free_port(), free_port());
    let spans_file = logs.join("otlp.jsonl");
    let _sink = servers::otlp_sink(sink_port, &spans_file);
    let endpoint = format!("http://127.0.0.1:{sink_port}");
    let agent = start_agent(
        prom_port,
        &logs,
        &["--otlp", "--trace-sample-ratio", "1", "--kube-api", "off"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    curl_each(container.port, "/index.html", 5);
    curl_each(nginx.port, "/host", 2);

    // Prometheus: the container's server series carries its pod; nginx's (a host process) does not.
    let in_pod = |l: &str| label(l, "k8s_pod_name") == Some("web-1");
    eventually("5 requests in the container's series, 2 in nginx's", Duration::from_secs(20), || {
        let nginx = server_count(prom_port, |l| label(l, "service_name") == Some("nginx"));
        // (At least: the agent sees the whole node, other nginx servers included.)
        (server_count(prom_port, in_pod) == 5.0 && nginx >= 2.0).then_some(())
    });
    let (_, exposition) = http_get(prom_port, "/metrics");
    let series: Vec<&str> = samples(&exposition, "http_server_request_duration_seconds_count")
        .into_iter()
        .filter(|(l, _)| in_pod(l))
        .map(|(l, _)| l)
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    for (k, v) in [
        ("k8s_namespace_name", "shop"),
        ("k8s_pod_uid", POD_UID),
        ("k8s_container_name", "httpd"),
        ("container_id", CONTAINER_ID),
        // Without the API, the container's name is the service's.
        ("service_name", "httpd"),
    ] {
        assert_eq!(label(series[0], k), Some(v), "{k} in {}", series[0]);
    }
    println!("Prometheus exposition of the container's requests:");
    for line in exposition
        .lines()
        .filter(|l| l.contains("k8s_pod_name=\"web-1\"") && (l.contains("_count") || l.contains("le=\"0.001\"")))
    {
        println!("  {line}");
    }
    let host = samples(&exposition, "http_server_request_duration_seconds_count")
        .into_iter()
        .find(|(l, _)| label(l, "service_name") == Some("nginx"))
        .expect("nginx's series");
    assert!(!host.0.contains("k8s_") && !host.0.contains("container_id"), "a host process: {}", host.0);

    // OTLP spans: the container's under a resource naming its pod (semantic conventions: k8s.*
    // and container.* are resource attributes), the host's without.
    let spans = eventually("the container's 5 server spans", Duration::from_secs(20), || {
        let s = otlp_spans(&spans_file);
        let ours: Vec<(Value, Value)> = s
            .into_iter()
            .filter(|(r, s)| attr(&r["attributes"], "k8s.pod.name").as_deref() == Some("web-1") && s["kind"] == 2)
            .collect();
        (ours.len() == 5).then_some(ours)
    });
    let (resource, span) = &spans[0];
    for (k, v) in [
        ("service.name", "httpd"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.uid", POD_UID),
        ("k8s.container.name", "httpd"),
        ("container.id", CONTAINER_ID),
    ] {
        assert_eq!(attr(&resource["attributes"], k).as_deref(), Some(v), "{k} in {resource}");
    }
    assert_eq!(attr(&span["attributes"], "k8s.pod.name"), None, "on the resource, not on each span: {span}");
    let curl_spans: Vec<(Value, Value)> = otlp_spans(&spans_file)
        .into_iter()
        .filter(|(r, _)| attr(&r["attributes"], "service.name").as_deref() == Some("curl"))
        .collect();
    assert!(!curl_spans.is_empty());
    assert!(curl_spans.iter().all(|(r, _)| attr(&r["attributes"], "k8s.pod.name").is_none()), "curl runs on the host");

    // The records.
    let captured = agent.stop();
    assert!(captured.status.success(), "{}", captured.stderr);
    let ours = container_records(&captured.events, container.port);
    assert_eq!(ours.len(), 5, "{:?}", captured.events);
    for r in &ours {
        assert_eq!(r["container.id"], CONTAINER_ID, "{r}");
        assert_eq!(r["k8s.pod.uid"], POD_UID, "{r}");
        assert_eq!(
            (r["k8s.namespace.name"].as_str(), r["k8s.pod.name"].as_str()),
            (Some("shop"), Some("web-1")),
            "{r}"
        );
        assert_eq!(r["k8s.container.name"], "httpd", "{r}");
    }
    // httpd forks a child per connection, which has exited by the time its record is processed:
    // attributed through its parent (the process connector's fork events).
    assert!(ours.iter().all(|r| r["pid"] != container.pid), "each answered by a forked child: {ours:?}");
    // The agent's closing line: "... N processes already gone resolved through their parent".
    let through_parent: u64 = captured
        .stderr
        .lines()
        .find_map(|l| {
            l.split(" processes already gone resolved through their parent").next().filter(|h| h.len() < l.len())
        })
        .and_then(|head| head.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no attribution summary in: {}", captured.stderr));
    assert!(
        through_parent >= 1,
        "children gone before their records were attributed through httpd: {}",
        captured.stderr
    );
    let curl_records: Vec<&Value> = captured.events.iter().filter(|r| r["comm"] == "curl").collect();
    assert!(curl_records.len() >= 7);
    for r in curl_records {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|k| !k.starts_with("k8s.") && !k.starts_with("container.")), "a host process: {r}");
    }
}

#[test]
fn pod_names_come_when_the_kubelet_writes_the_pods_log_directory() {
    let _serial = serial();
    let container = Container::busybox_httpd(POD_UID, CONTAINER_ID);
    let logs = scratch("late");
    let prom_port = free_port();
    let agent = start_agent(prom_port, &logs, &["--kube-api", "off"], &[]);
    curl_each(container.port, "/before", 3);
    // The cgroup alone: the container and its pod's UID, no names yet.
    eventually("3 requests attributed to the container", Duration::from_secs(20), || {
        let n = server_count(prom_port, |l| {
            label(l, "container_id") == Some(CONTAINER_ID) && label(l, "k8s_pod_name").is_none()
        });
        (n == 3.0).then_some(())
    });
    container.write_pod_logs(&logs, "shop", "web-1", "httpd");
    // The directory is looked at every second: requests until one carries the names.
    eventually("a request attributed to shop/web-1", Duration::from_secs(20), || {
        curl_each(container.port, "/after", 1);
        (server_count(prom_port, |l| label(l, "k8s_pod_name") == Some("web-1")) >= 1.0).then_some(())
    });
    let captured = agent.stop();
    let ours = container_records(&captured.events, container.port);
    let before: Vec<&&Value> = ours.iter().filter(|r| r["target"] == "/before").collect();
    assert_eq!(before.len(), 3);
    for r in before {
        assert_eq!((r["container.id"].as_str(), r["k8s.pod.uid"].as_str()), (Some(CONTAINER_ID), Some(POD_UID)), "{r}");
        assert!(r.get("k8s.pod.name").is_none(), "{r}");
    }
    let last = ours.iter().rev().find(|r| r["target"] == "/after").unwrap();
    assert_eq!(
        (last["k8s.namespace.name"].as_str(), last["k8s.pod.name"].as_str()),
        (Some("shop"), Some("web-1")),
        "{last}"
    );
}

#[test]
fn the_kubernetes_api_names_the_workload_and_an_unreachable_one_leaves_the_pods_log() {
    let _serial = serial();
    let container = Container::busybox_httpd(POD_UID, CONTAINER_ID);
    let logs = scratch("api");
    container.write_pod_logs(&logs, "shop", "web-5d4f8c7b9-x2x7k", "httpd");
    let api = FakeApiServer::start(
        vec![fixture("pods-list.json")],
        vec![
            ("/apis/apps/v1/namespaces/shop/replicasets/web-5d4f8c7b9", fixture("replicaset-web.json")),
            ("/apis/batch/v1/namespaces/shop/jobs/report-29012345", fixture("job-report.json")),
        ],
    );
    let kubeconfig = logs.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let prom_port = free_port();
    let env = [("NODE_NAME", "node-1"), ("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let agent = start_agent(prom_port, &logs, &[], &env);
    // The watch starts with the agent: requests until the workload shows.
    let series = eventually("a request attributed to the Deployment web", Duration::from_secs(30), || {
        curl_each(container.port, "/api", 1);
        let (_, body) = http_get(prom_port, "/metrics");
        samples(&body, "http_server_request_duration_seconds_count")
            .into_iter()
            .find(|(l, _)| label(l, "k8s_deployment_name") == Some("web"))
            .map(|(l, _)| l.to_string())
    });
    println!("the container's series with the API's names: {{{series}}}");
    assert_eq!(label(&series, "service_name"), Some("web"), "the workload names the service: {series}");
    assert_eq!(label(&series, "k8s_pod_name"), Some("web-5d4f8c7b9-x2x7k"));
    assert_eq!(label(&series, "k8s_replicaset_name"), None, "the workload only: {series}");
    let captured = agent.stop();
    let last = container_records(&captured.events, container.port).into_iter().last().unwrap().clone();
    assert_eq!(
        (last["k8s.deployment.name"].as_str(), last["k8s.replicaset.name"].as_str()),
        (Some("web"), Some("web-5d4f8c7b9"))
    );
    assert_eq!(last["k8s.pod.label.app"], "web", "{last}");
    let requests = api.requests();
    assert!(requests.iter().any(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-1")), "{requests:?}");

    // An API server that cannot be reached: a warning, and the kubelet's log names all the same.
    let closed = free_port();
    let dead = FakeApiServer::start(vec![], vec![]);
    let dead_config = logs.join("kubeconfig-dead");
    std::fs::write(
        &dead_config,
        std::fs::read_to_string(&kubeconfig).unwrap().replace(&api.url(), &format!("http://127.0.0.1:{closed}")),
    )
    .unwrap();
    drop(dead);
    let prom_port = free_port();
    let env = [("NODE_NAME", "node-1"), ("KUBECONFIG", dead_config.to_str().unwrap())];
    let agent = start_agent(prom_port, &logs, &[], &env);
    curl_each(container.port, "/no-api", 3);
    eventually("3 requests attributed from the pods log", Duration::from_secs(20), || {
        (server_count(prom_port, |l| label(l, "k8s_pod_name") == Some("web-5d4f8c7b9-x2x7k")) == 3.0).then_some(())
    });
    let captured = agent.stop();
    assert!(captured.status.success(), "{}", captured.stderr);
    assert!(captured.stderr.contains("Kubernetes API:"), "a warning names the API's failure: {}", captured.stderr);
    let ours = container_records(&captured.events, container.port);
    assert_eq!(ours.len(), 3);
    assert!(ours.iter().all(|r| r["k8s.container.name"] == "httpd" && r.get("k8s.deployment.name").is_none()));
}
