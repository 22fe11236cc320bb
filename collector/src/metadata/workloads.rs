//! What the Kubernetes API says about this node's pods: labels, owning workload, IPs and the ids
//! of their containers. The watch (`kube_watch.rs`) fills it; this part is plain data and pure
//! code, so it builds and is tested without the `kube` feature.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::cgroup::ContainerId;

/// One pod, as the API describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: Box<str>,
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub labels: Vec<(Box<str>, Box<str>)>,
    /// The owner chain as semantic-convention attributes, nearest first:
    /// `[("k8s.replicaset.name", ..), ("k8s.deployment.name", ..)]`, `[("k8s.job.name", ..),
    /// ("k8s.cronjob.name", ..)]`, `[("k8s.statefulset.name", ..)]`, `[("k8s.daemonset.name", ..)]`.
    pub owners: Vec<(&'static str, Box<str>)>,
    /// The pod's IPs (none, or the node's when it uses the host's network).
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// Container id → container name (init and ephemeral containers included), from the
    /// statuses' `containerID` (`containerd://<id>`, `cri-o://<id>`, `docker://<id>`).
    pub containers: Vec<(ContainerId, Box<str>)>,
}

impl PodMeta {
    /// The workload the pod belongs to: the last owner of the chain (a Deployment rather than its
    /// ReplicaSet, a CronJob rather than its Job).
    pub fn workload(&self) -> Option<&str> {
        self.owners.last().map(|(_, n)| n.as_ref())
    }
}

/// A workload kind's semantic-convention attribute.
pub fn owner_attribute(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ReplicaSet" => "k8s.replicaset.name",
        "Deployment" => "k8s.deployment.name",
        "StatefulSet" => "k8s.statefulset.name",
        "DaemonSet" => "k8s.daemonset.name",
        "Job" => "k8s.job.name",
        "CronJob" => "k8s.cronjob.name",
        _ => return None,
    })
}

/// The kinds whose own owner is worth one more request: a ReplicaSet's Deployment, a Job's
/// CronJob.
pub fn has_owner_above(kind: &str) -> bool {
    matches!(kind, "ReplicaSet" | "Job")
}

/// The owner chain from a pod's controller (kind, name) and what its controller's controller is
/// (`above`, when fetched): kinds without a semantic-convention attribute end the chain.
pub fn owner_chain(controller: Option<(&str, &str)>, above: Option<(&str, &str)>) -> Vec<(&'static str, Box<str>)> {
    let mut chain = Vec::new();
    let Some((kind, name)) = controller else { return chain };
    let Some(attr) = owner_attribute(kind) else { return chain };
    chain.push((attr, name.into()));
    if let Some((kind, name)) = above.filter(|_| has_owner_above(kind)) {
        if let Some(attr) = owner_attribute(kind) {
            chain.push((attr, name.into()));
        }
    }
    chain
}

/// A container id from a status's `containerID` (`<runtime>://<id>`).
pub fn container_id_of(status_id: &str) -> Option<ContainerId> {
    ContainerId::parse(status_id.rsplit_once("://").map_or(status_id, |(_, id)| id))
}

/// This node's pods by UID, by IP and by container id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KubeIndex {
    pods: HashMap<Box<str>, Arc<PodMeta>>,
    by_ip: HashMap<IpAddr, Box<str>>,
    by_container: HashMap<ContainerId, (Box<str>, Box<str>)>,
}

impl KubeIndex {
    pub fn from_pods(pods: impl IntoIterator<Item = PodMeta>) -> KubeIndex {
        let mut index = KubeIndex::default();
        for p in pods {
            if !p.host_network {
                for ip in &p.ips {
                    index.by_ip.insert(*ip, p.uid.clone());
                }
            }
            for (id, name) in &p.containers {
                index.by_container.insert(id.clone(), (p.uid.clone(), name.clone()));
            }
            index.pods.insert(p.uid.clone(), Arc::new(p));
        }
        index
    }

    pub fn pod(&self, uid: &str) -> Option<&Arc<PodMeta>> {
        self.pods.get(uid)
    }

    /// The pod with this IP (pods on the host's network are left out: their IP is the node's).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Arc<PodMeta>> {
        self.pods.get(self.by_ip.get(&ip)?)
    }

    /// The pod UID and container name of a container id.
    pub fn container(&self, id: &ContainerId) -> Option<(&str, &str)> {
        self.by_container.get(id).map(|(uid, name)| (uid.as_ref(), name.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7c2f9d3e41b0a5e6f8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";

    #[test]
    fn owner_chains_follow_the_conventions() {
        let chain = owner_chain(Some(("ReplicaSet", "web-5d4f8c7b9")), Some(("Deployment", "web")));
        assert_eq!(chain, [("k8s.replicaset.name", "web-5d4f8c7b9".into()), ("k8s.deployment.name", "web".into())]);
        let cron = owner_chain(Some(("Job", "report-29012345")), Some(("CronJob", "report")));
        assert_eq!(cron, [("k8s.job.name", "report-29012345".into()), ("k8s.cronjob.name", "report".into())]);
        // A bare ReplicaSet, a Job without a CronJob.
        assert_eq!(owner_chain(Some(("ReplicaSet", "rs")), None), [("k8s.replicaset.name", "rs".into())]);
        assert_eq!(owner_chain(Some(("Job", "once")), None), [("k8s.job.name", "once".into())]);
        assert_eq!(owner_chain(Some(("StatefulSet", "db")), None), [("k8s.statefulset.name", "db".into())]);
        assert_eq!(owner_chain(Some(("DaemonSet", "agent")), None), [("k8s.daemonset.name", "agent".into())]);
        // A StatefulSet's owner is not asked for, whatever it says.
        assert_eq!(owner_chain(Some(("StatefulSet", "db")), Some(("Operator", "x"))).len(), 1);
        // Static pods (owned by their Node) and unknown kinds: no workload.
        assert!(owner_chain(Some(("Node", "node-1")), None).is_empty());
        assert!(owner_chain(Some(("ReplicationController", "rc")), None).is_empty());
        assert!(owner_chain(None, None).is_empty());
    }

    #[test]
    fn container_ids_from_statuses() {
        for runtime in ["containerd", "cri-o", "docker"] {
            assert_eq!(container_id_of(&format!("{runtime}://{ID}")).unwrap().as_str(), ID);
        }
        assert_eq!(container_id_of(ID).unwrap().as_str(), ID);
        assert_eq!(container_id_of("containerd://"), None);
        assert_eq!(container_id_of("containerd://abc"), None);
    }

    #[test]
    fn index_by_uid_ip_and_container() {
        let web = PodMeta {
            uid: "u1".into(),
            namespace: "shop".into(),
            name: "web-1".into(),
            owners: owner_chain(Some(("ReplicaSet", "web-5d4")), Some(("Deployment", "web"))),
            ips: vec!["10.1.0.7".parse().unwrap(), "fd00::7".parse().unwrap()],
            containers: vec![(ContainerId::parse(ID).unwrap(), "nginx".into())],
            ..Default::default()
        };
        let host = PodMeta {
            uid: "u2".into(),
            namespace: "kube-system".into(),
            name: "proxy".into(),
            ips: vec!["192.0.2.10".parse().unwrap()],
            host_network: true,
            ..Default::default()
        };
        let index = KubeIndex::from_pods([web, host]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.pod("u1").unwrap().workload(), Some("web"));
        assert_eq!(index.pod_by_ip("10.1.0.7".parse().unwrap()).unwrap().name.as_ref(), "web-1");
        assert_eq!(index.pod_by_ip("fd00::7".parse().unwrap()).unwrap().name.as_ref(), "web-1");
        assert!(index.pod_by_ip("192.0.2.10".parse().unwrap()).is_none(), "the node's IP names no pod");
        assert_eq!(index.container(&ContainerId::parse(ID).unwrap()), Some(("u1", "nginx")));
        assert_eq!(index.pod("u2").unwrap().workload(), None);
    }
}
