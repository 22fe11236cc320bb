//! The Kubernetes API watch (feature `kube`) against recorded API responses, served over HTTP by
//! the end-to-end harness's stand-in server (tests/src/kube_api.rs): no API server runs on these
//! machines, so these are recorded responses in the API server's wire format
//! (tests/fixtures/kube/README.md says how they were made), not a live API server.
//!
//! One node's pods listed with the field selector, owners resolved (ReplicaSet → Deployment, Job →
//! CronJob, one GET each, cached), then a watch stream with ADDED, MODIFIED and DELETED events,
//! and a `410 Gone` that makes the watch list again; and a failing API server that the watch
//! rides out.
#![cfg(feature = "kube")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use collector::metadata::kube_watch;
use collector::metadata::workloads::KubeIndex;
use collector::metadata::Published;
use strata_e2e::kube_api::{fixture, fixture_line, FakeApiServer};

const WEB: &str = "5d6c2a2e-8a6b-4f5e-9a1b-2c3d4e5f6a7b";
const REPORT: &str = "9b1c3e5a-7d2f-4c6b-8a1e-3f5d7b9c1e2a";
const AGENT: &str = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f";
const DB: &str = "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b";
const RS_PATH: &str = "/apis/apps/v1/namespaces/shop/replicasets/web-5d4f8c7b9";
const JOB_PATH: &str = "/apis/batch/v1/namespaces/shop/jobs/report-29012345";

fn recorded_server() -> FakeApiServer {
    FakeApiServer::start(
        vec![fixture("pods-list.json"), fixture("pods-list-after-gone.json")],
        vec![(RS_PATH, fixture("replicaset-web.json")), (JOB_PATH, fixture("job-report.json"))],
    )
}

fn watch(server: &FakeApiServer) -> Arc<Published<KubeIndex>> {
    let index = Arc::new(Published::new(KubeIndex::default()));
    let config = kube::Config::new(server.url().parse().unwrap());
    kube_watch::start_with(config, "node-1".into(), index.clone()).unwrap();
    index
}

/// Waits until the published index satisfies `f`.
fn until(index: &Published<KubeIndex>, what: &str, f: impl Fn(&KubeIndex) -> bool) -> Arc<KubeIndex> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, now) = index.load();
        if f(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20 s; the index: {now:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn label<'a>(index: &'a KubeIndex, uid: &str, key: &str) -> Option<&'a str> {
    index.pod(uid)?.labels.iter().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v.as_ref())
}

#[test]
fn lists_watches_and_lists_again_after_410_gone() {
    let server = recorded_server();
    let index = watch(&server);

    // The list: three pods, their workloads through their owners.
    let listed = until(&index, "the first list", |i| i.len() == 3);
    let web = listed.pod(WEB).unwrap();
    assert_eq!((web.namespace.as_ref(), web.name.as_ref()), ("shop", "web-5d4f8c7b9-x2x7k"));
    assert_eq!(web.owners, [("k8s.replicaset.name", "web-5d4f8c7b9".into()), ("k8s.deployment.name", "web".into())]);
    assert_eq!(web.containers[0].1.as_ref(), "httpd");
    assert_eq!(listed.pod_by_ip("10.244.1.7".parse().unwrap()).unwrap().uid.as_ref(), WEB);
    let report = listed.pod(REPORT).unwrap();
    assert_eq!(report.owners, [("k8s.job.name", "report-29012345".into()), ("k8s.cronjob.name", "report".into())]);
    let agent = listed.pod(AGENT).unwrap();
    assert_eq!(agent.owners, [("k8s.daemonset.name", "strata".into())]);
    assert!(listed.pod_by_ip("192.0.2.10".parse().unwrap()).is_none(), "a hostNetwork pod's IP is the node's");
    let list = server.requests().into_iter().find(|r| r.starts_with("/api/v1/pods?")).unwrap();
    assert!(list.contains("fieldSelector=spec.nodeName%3Dnode-1"), "only this node's pods: {list}");

    // The watch: ADDED, MODIFIED, DELETED.
    server.send(fixture_line("watch-added-db.json"));
    let added = until(&index, "ADDED db-0", |i| i.pod(DB).is_some());
    assert_eq!(added.pod(DB).unwrap().owners, [("k8s.statefulset.name", "db".into())]);
    server.send(fixture_line("watch-modified-web.json"));
    until(&index, "MODIFIED web (label version=v2)", |i| label(i, WEB, "version") == Some("v2"));
    // A finished pod keeps its IP in its status, but the address is free for another pod: the
    // pod stays known, its IP no longer names it.
    let report_ip = "10.244.1.9".parse().unwrap();
    assert_eq!(listed.pod_by_ip(report_ip).unwrap().uid.as_ref(), REPORT, "running, the IP is the Job pod's");
    server.send(fixture_line("watch-deleted-report.json").replace("\"DELETED\"", "\"MODIFIED\""));
    until(&index, "MODIFIED report (Succeeded)", |i| i.pod(REPORT).is_some() && i.pod_by_ip(report_ip).is_none());
    server.send(fixture_line("watch-deleted-report.json"));
    let deleted = until(&index, "DELETED report", |i| i.pod(REPORT).is_none());
    assert_eq!(deleted.len(), 3);

    // 410 Gone: the resourceVersion is too old; the watch lists again and carries on.
    server.send(fixture_line("watch-gone.json"));
    server.end_watch();
    let relisted = until(&index, "the list after 410 Gone", |i| label(i, WEB, "version") == Some("v3"));
    assert_eq!(server.lists_served(), 2);
    assert_eq!(relisted.len(), 3);
    assert!(relisted.pod(DB).is_some() && relisted.pod(REPORT).is_none());
    let watches: Vec<String> = server.requests().into_iter().filter(|r| r.contains("watch=true")).collect();
    assert!(watches[0].contains("resourceVersion=81234"), "the first watch starts at the list's version: {watches:?}");
    assert!(
        watches.iter().any(|w| w.contains("resourceVersion=90120")),
        "after the new list, from its version: {watches:?}"
    );
    // Owners are asked once, however often their pods come by (the ReplicaSet: list, MODIFIED,
    // list again).
    let rs_gets = server.requests().iter().filter(|r| r.starts_with(RS_PATH)).count();
    assert_eq!(rs_gets, 1, "{:?}", server.requests());
    // After the relist the watch goes on.
    server.send(fixture_line("watch-deleted-report.json").replace(REPORT, DB));
    until(&index, "DELETED db-0 on the new watch", |i| i.pod(DB).is_none());
}

#[test]
fn a_failing_api_server_is_ridden_out() {
    let server = recorded_server();
    let forbidden = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:strata:strata\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#;
    server.fail_with(403, forbidden);
    let index = watch(&server);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert!(index.load().1.is_empty());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.requests().len() >= 2, "it retried: {:?}", server.requests());
    server.recover();
    until(&index, "the list once the API answers again", |i| i.len() == 3);
}
