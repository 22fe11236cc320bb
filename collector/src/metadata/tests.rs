//! Attribution end to end on a made-up /proc and kubelet log layout: the resolver's cache, its
//! checks against the process's start time, names published later, processes gone before their
//! records, the API's workloads and peers, and what records and metrics carry.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::cgroup::ContainerId;
use super::pods_log::{self, PodsLog};
use super::proc_events::{ProcEvent, ProcLog};
use super::workloads::{owner_chain, KubeIndex, PodMeta};
use super::{Attribution, Published, Resolver};
use crate::pipeline::record::{Attributes, Endpoint};
use crate::pipeline::Record;
use crate::telemetry::semconv::Converger;

const ID: &str = "7c2f9d3e41b0a5e6f8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";
const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "5d6c2a2e-8a6b-4f5e-9a1b-2c3d4e5f6a7b";

/// A /proc entry: its stat (with this start time) and its cgroup file.
fn process(proc_root: &Path, pid: u32, start: u64, cgroup: &str) {
    let dir = proc_root.join(pid.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    // A comm with a space and parentheses, as /proc allows.
    let stat = format!("{pid} (my (odd) app) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 1 2 3\n");
    std::fs::write(dir.join("stat"), stat).unwrap();
    std::fs::write(dir.join("cgroup"), cgroup).unwrap();
}

fn in_pod(id: &str) -> String {
    format!("12:memory:/kubepods/besteffort/pod{UID}/{id}\n0::/kubepods/besteffort/pod{UID}/{id}\n")
}

fn record(pid: u32, remote: &str) -> Record {
    Record {
        protocol: protocols::message::Protocol::Http,
        operation: Some("GET".into()),
        target: Some("/users/7".into()),
        status: Some("200".into()),
        error: None,
        start_ns: 1,
        latency_ns: Some(1_000_000),
        request_bytes: 10,
        response_bytes: 20,
        partial: false,
        endpoint: Endpoint {
            pid,
            comm: "httpd".into(),
            role: strata_event::Role::Server,
            transport: strata_event::Transport::Tcp,
            local: "10.1.0.7:8080".parse().unwrap(),
            remote: remote.parse().unwrap(),
            attribution: None,
            peer: None,
        },
        attributes: Attributes::default(),
    }
}

/// A kubelet log layout with one pod (`shop/web-1`, containers `app` and `sidecar`) and a link
/// for `app` (container ID).
fn pods_log(root: &Path) -> PodsLog {
    let pod_dir = root.join(format!("pods/shop_web-1_{UID}"));
    for c in ["app", "sidecar"] {
        std::fs::create_dir_all(pod_dir.join(c)).unwrap();
        std::fs::write(pod_dir.join(c).join("0.log"), "").unwrap();
    }
    std::fs::create_dir_all(root.join("containers")).unwrap();
    std::os::unix::fs::symlink(pod_dir.join("app/0.log"), root.join(format!("containers/web-1_shop_app-{ID}.log")))
        .unwrap();
    pods_log::scan(&root.join("pods"), &root.join("containers"))
}

fn resolver(proc_root: &Path, logs: PodsLog) -> (Resolver, Arc<Published<PodsLog>>) {
    let logs = Arc::new(Published::new(logs));
    (Resolver::new(proc_root.to_path_buf(), logs.clone(), None, None), logs)
}

fn attribute(r: &mut Resolver, pid: u32) -> Option<Arc<Attribution>> {
    let mut batch = [record(pid, "10.1.0.9:40000")];
    r.attribute(&mut batch);
    batch[0].endpoint.attribution.clone()
}

#[test]
fn processes_in_containers_get_pod_names_and_others_keep_their_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_root = tmp.path().join("proc");
    process(&proc_root, 100, 5000, &in_pod(ID));
    process(&proc_root, 101, 5001, &in_pod(ID));
    process(&proc_root, 102, 5002, &in_pod(ID2));
    process(&proc_root, 200, 6000, "12:memory:/user.slice\n0::/user.slice/user-0.slice/session-1.scope\n");
    let (mut r, _) = resolver(&proc_root, pods_log(tmp.path()));

    let a = attribute(&mut r, 100).expect("in a container");
    assert_eq!(a.container_id.as_ref().map(ContainerId::as_str), Some(ID));
    assert_eq!(
        (a.namespace.as_deref(), a.pod.as_deref(), a.pod_uid.as_deref()),
        (Some("shop"), Some("web-1"), Some(UID))
    );
    assert_eq!((a.container.as_deref(), a.service.as_deref()), (Some("app"), Some("app")));
    // Two processes of one container share one attribution.
    assert!(Arc::ptr_eq(&a, &attribute(&mut r, 101).unwrap()));
    // The pod's other container has no link: the pod, not the container's name.
    let other = attribute(&mut r, 102).unwrap();
    assert_eq!(
        (other.pod.as_deref(), other.container.as_deref(), other.service.as_deref()),
        (Some("web-1"), None, None)
    );
    // A process outside any container, and one that does not exist.
    assert_eq!(attribute(&mut r, 200), None);
    assert_eq!(attribute(&mut r, 999), None);
    assert_eq!(r.stats().processes_read, 4, "/proc read once per process");
    for _ in 0..10 {
        attribute(&mut r, 100);
    }
    assert_eq!(r.stats().processes_read, 4, "cached");
    assert_eq!((r.stats().records, r.stats().attributed), (15, 13));
}

#[test]
fn names_published_later_reach_the_next_records() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_root = tmp.path().join("proc");
    process(&proc_root, 100, 5000, &in_pod(ID));
    // The container runs before its pod's log directory exists (the kubelet makes it soon after).
    let (mut r, logs) = resolver(&proc_root, PodsLog::default());
    let early = attribute(&mut r, 100).unwrap();
    assert_eq!((early.container_id.as_ref().map(ContainerId::as_str), early.pod_uid.as_deref()), (Some(ID), Some(UID)));
    assert_eq!(early.pod, None);
    assert!(Arc::ptr_eq(&early, &attribute(&mut r, 100).unwrap()), "nothing new: the same value");
    logs.publish(pods_log(tmp.path()));
    let later = attribute(&mut r, 100).unwrap();
    assert_eq!((later.pod.as_deref(), later.container.as_deref()), (Some("web-1"), Some("app")));
    assert_ne!(early.serial, later.serial, "a new value: the converger's memo sees it");
    assert_eq!(r.stats().processes_read, 1, "names joined again without reading /proc");
    // Publishing the same names again keeps the same value.
    logs.publish(pods_log::scan(&tmp.path().join("pods"), &tmp.path().join("containers")));
    assert!(Arc::ptr_eq(&later, &attribute(&mut r, 100).unwrap()));
}

#[test]
fn a_reused_pid_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_root = tmp.path().join("proc");
    process(&proc_root, 100, 5000, &in_pod(ID));
    let logs = Arc::new(Published::new(pods_log(tmp.path())));
    let procs = Arc::new(ProcLog::default());
    let mut r = Resolver::new(proc_root.clone(), logs, None, Some(procs.clone()));
    assert!(attribute(&mut r, 100).is_some());
    // Process 100 exits; another process outside any container gets its pid.
    process(&proc_root, 100, 7000, "0::/system.slice/cron.service\n");
    assert!(attribute(&mut r, 100).is_some(), "not checked again within the recheck interval");
    procs.record(&[ProcEvent::Exit { pid: 100 }]);
    assert_eq!(attribute(&mut r, 100), None, "the exit made it check: a new start time, another process");
    // Without process events, the age of the entry does the same.
    let mut r = Resolver::new(proc_root.clone(), Arc::new(Published::new(PodsLog::default())), None, None)
        .with_recheck(Duration::ZERO);
    assert_eq!(attribute(&mut r, 100), None);
    process(&proc_root, 100, 8000, &in_pod(ID));
    assert!(attribute(&mut r, 100).is_some());
    // A process gone meanwhile keeps what it had: its late records are still its own.
    std::fs::remove_dir_all(proc_root.join("100")).unwrap();
    assert!(attribute(&mut r, 100).is_some());
}

#[test]
fn a_process_gone_before_its_records_is_attributed_through_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_root = tmp.path().join("proc");
    // A forking server (pid 100) whose child (300) and grandchild (301) served and exited.
    process(&proc_root, 100, 5000, &in_pod(ID));
    let procs = Arc::new(ProcLog::default());
    procs.record(&[ProcEvent::Fork { parent: 100, child: 300 }, ProcEvent::Fork { parent: 300, child: 301 }]);
    let mut r = Resolver::new(proc_root.clone(), Arc::new(Published::new(pods_log(tmp.path()))), None, Some(procs));
    let child = attribute(&mut r, 300).expect("through its parent");
    assert_eq!(child.pod.as_deref(), Some("web-1"));
    assert!(Arc::ptr_eq(&child, &attribute(&mut r, 301).unwrap()), "and the grandchild");
    assert_eq!(attribute(&mut r, 302), None, "a fork not seen: unattributed");
    assert_eq!((r.stats().through_ancestor, r.stats().unresolved), (2, 1));
    // Without the events, a process gone is not attributed.
    let mut r = Resolver::new(proc_root, Arc::new(Published::new(PodsLog::default())), None, None);
    assert_eq!(attribute(&mut r, 300), None);
}

fn web_pod(ip: &str) -> PodMeta {
    PodMeta {
        uid: UID.into(),
        namespace: "shop".into(),
        name: "web-5d4f8c7b9-x2x7k".into(),
        labels: vec![("app".into(), "web".into())],
        owners: owner_chain(Some(("ReplicaSet", "web-5d4f8c7b9")), Some(("Deployment", "web"))),
        ips: vec![ip.parse().unwrap()],
        host_network: false,
        containers: vec![(ContainerId::parse(ID).unwrap(), "nginx".into())],
    }
}

#[test]
fn the_api_names_workloads_and_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_root = tmp.path().join("proc");
    process(&proc_root, 100, 5000, &in_pod(ID));
    let client = PodMeta {
        uid: "11111111-2222-3333-4444-555555555555".into(),
        namespace: "shop".into(),
        name: "report-29012345-abcde".into(),
        owners: owner_chain(Some(("Job", "report-29012345")), Some(("CronJob", "report"))),
        ips: vec!["10.1.0.9".parse().unwrap()],
        ..Default::default()
    };
    let kube = Arc::new(Published::new(KubeIndex::from_pods([web_pod("10.1.0.7"), client])));
    let logs = Arc::new(Published::new(pods_log(tmp.path())));
    let mut r = Resolver::new(proc_root, logs, Some(kube.clone()), None);
    let mut batch = [record(100, "10.1.0.9:40000"), record(100, "192.0.2.1:40000")];
    r.attribute(&mut batch);
    let a = batch[0].endpoint.attribution.clone().unwrap();
    // The API's names win over the log layout's (its container name is `nginx`).
    assert_eq!((a.pod.as_deref(), a.container.as_deref()), (Some("web-5d4f8c7b9-x2x7k"), Some("nginx")));
    assert_eq!(a.workload(), Some("web"));
    assert_eq!(a.service.as_deref(), Some("web"));
    let metric: Vec<(&str, &str)> = a.metric_attributes().collect();
    assert!(metric.contains(&("k8s.deployment.name", "web")));
    assert!(!metric.iter().any(|(k, _)| *k == "k8s.replicaset.name"), "not the ReplicaSet: {metric:?}");
    let peer = batch[0].endpoint.peer.clone().expect("the peer is a pod");
    assert_eq!((peer.0.pod.as_deref(), peer.0.service.as_deref()), (Some("report-29012345-abcde"), Some("report")));
    assert_eq!(batch[1].endpoint.peer, None, "an address no pod has");
    // The service graph's nodes are workloads: the CronJob's pod called the Deployment's.
    let mut c = Converger::new(100);
    let edge = c.observe(&batch[0]).unwrap().edge.clone().expect("a call from off this node's clients");
    assert_eq!((edge.client.as_str(), edge.server.as_str()), ("report", "web"));
    let o = c.observe(&batch[1]).unwrap();
    let edge = o.edge.clone().unwrap();
    assert_eq!((edge.client.as_str(), edge.server.as_str()), ("192.0.2.1", "web"), "no pod at that address: its IP");

    // The record as JSON (docs/records.md).
    let json = serde_json::to_value(&batch[0]).unwrap();
    for (k, v) in [
        ("container.id", ID),
        ("container.runtime.name", ""),
        ("k8s.pod.uid", UID),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-5d4f8c7b9-x2x7k"),
        ("k8s.container.name", "nginx"),
        ("k8s.replicaset.name", "web-5d4f8c7b9"),
        ("k8s.deployment.name", "web"),
        ("k8s.pod.label.app", "web"),
        ("peer.k8s.namespace.name", "shop"),
        ("peer.k8s.pod.name", "report-29012345-abcde"),
        ("peer.k8s.job.name", "report-29012345"),
        ("peer.k8s.cronjob.name", "report"),
    ] {
        if v.is_empty() {
            assert!(json.get(k).is_none(), "{k}: the cgroupfs driver names no runtime: {json}");
        } else {
            assert_eq!(json[k], v, "{k} in {json}");
        }
    }
    assert_eq!(json["pid"], 100);
    let host = serde_json::to_value(record(1, "10.1.0.9:40000")).unwrap();
    assert!(host.as_object().unwrap().keys().all(|k| !k.starts_with("k8s.") && !k.starts_with("container.")), "{host}");

    // A pod deleted from the API: the log layout's names again.
    kube.publish(KubeIndex::default());
    let after = attribute(&mut r, 100).unwrap();
    assert_eq!(
        (after.pod.as_deref(), after.container.as_deref(), after.workload()),
        (Some("web-1"), Some("app"), None)
    );
}

#[test]
fn metrics_carry_the_pod_and_converge_per_attribution() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_root = tmp.path().join("proc");
    process(&proc_root, 100, 5000, &in_pod(ID));
    let kube = Arc::new(Published::new(KubeIndex::from_pods([web_pod("10.1.0.7")])));
    let mut r = Resolver::new(proc_root, Arc::new(Published::new(PodsLog::default())), Some(kube.clone()), None);
    let mut c = Converger::new(100);
    let mut rec = record(100, "10.1.0.9:40000");
    let o = c.observe(&rec).unwrap();
    let label =
        |o: &crate::telemetry::Observation, k: &str| o.attributes.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    assert_eq!(label(&o, "service.name").as_deref(), Some("httpd"), "not attributed: the process");
    assert_eq!(label(&o, "k8s.pod.name"), None);
    r.attribute(std::slice::from_mut(&mut rec));
    let o = c.observe(&rec).unwrap();
    assert_eq!(label(&o, "service.name").as_deref(), Some("web"), "the workload names the service");
    for (k, v) in [
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-5d4f8c7b9-x2x7k"),
        ("k8s.pod.uid", UID),
        ("k8s.container.name", "nginx"),
        ("container.id", ID),
        ("k8s.deployment.name", "web"),
    ] {
        assert_eq!(label(&o, k).as_deref(), Some(v), "{k}");
    }
    // Records of the same shape share a series, until the attribution changes.
    assert!(Arc::ptr_eq(&o.series, &c.observe(&rec).unwrap().series));
    let mut relabelled = web_pod("10.1.0.7");
    relabelled.owners = owner_chain(Some(("StatefulSet", "web-db")), None);
    kube.publish(KubeIndex::from_pods([relabelled]));
    r.attribute(std::slice::from_mut(&mut rec));
    let o2 = c.observe(&rec).unwrap();
    assert_eq!(label(&o2, "k8s.statefulset.name").as_deref(), Some("web-db"));
    assert_eq!(label(&o2, "service.name").as_deref(), Some("web-db"));
    // The label limit applies to the new labels too: a second pod UID folds with a limit of 1.
    let mut c = Converger::new(1);
    for (i, uid) in ["u-1", "u-2"].iter().enumerate() {
        let a = Attribution { serial: 1000 + i as u64, pod_uid: Some((*uid).into()), ..Default::default() };
        let mut rec = record(100 + i as u32, "10.1.0.9:40000");
        rec.endpoint.attribution = Some(Arc::new(a));
        let o = c.observe(&rec).unwrap();
        assert_eq!(label(&o, "k8s.pod.uid").as_deref(), Some(if i == 0 { "u-1" } else { "*" }));
    }
}

#[test]
fn the_cache_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut r, _) = resolver(&tmp.path().join("proc"), PodsLog::default());
    for pid in 1..=(super::cache::MAX_PIDS as u32 + 5_000) {
        attribute(&mut r, pid);
    }
    assert!(r.cached_processes() <= super::cache::MAX_PIDS, "{}", r.cached_processes());
}

#[test]
fn start_times_from_stat() {
    use super::cache::parse_start_time;
    let stat = "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
    assert_eq!(parse_start_time(stat), Some(98765));
    assert_eq!(parse_start_time("4242 (x) S 1"), None);
    assert_eq!(parse_start_time(""), None);
}
