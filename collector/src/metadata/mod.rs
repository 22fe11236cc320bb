//! Which container, pod and workload a process belongs to: the attribution every record carries
//! on Kubernetes nodes (and on any host whose processes run in containers).
//!
//! ```text
//! pid ─► /proc/<pid>/cgroup ─► container id, pod UID (cgroup.rs, pure)
//!                 │
//!                 ├─► /var/log/pods, /var/log/containers ─► namespace, pod, container (pods_log.rs)
//!                 └─► Kubernetes API, this node's pods ─► labels, workload, pod IPs (kube_watch.rs,
//!                                                          feature `kube`; index in workloads.rs)
//! ```
//!
//! The [`Resolver`] runs on the pipeline thread and attributes each batch of records from a bounded
//! cache by pid (cache.rs): a hash lookup per record, `/proc` read once per process (and checked
//! again every few seconds, or at once when the process connector reports its exit or exec:
//! proc_events.rs). Everything slow (directory scans, the API watch) runs on threads of its own
//! and publishes a new snapshot when something changed. A lookup that fails leaves the record
//! attributed to its process only; nothing is ever dropped or waited for.

pub mod cache;
pub mod cgroup;
#[cfg(feature = "kube")]
pub mod kube_watch;
pub mod pods_log;
pub mod proc_events;
pub mod workloads;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::ser::SerializeMap;

pub use cache::Resolver;
use cgroup::{ContainerId, ContainerRef, Runtime};
use pods_log::PodsLog;
use workloads::{KubeIndex, PodMeta};

/// A value one thread replaces and others read: each reader keeps the `Arc` it loaded and asks
/// for a new one only when the generation moved (one atomic load per batch).
#[derive(Debug, Default)]
pub struct Published<T> {
    generation: AtomicU64,
    value: Mutex<Arc<T>>,
}

impl<T> Published<T> {
    pub fn new(value: T) -> Published<T> {
        Published { generation: AtomicU64::new(0), value: Mutex::new(Arc::new(value)) }
    }

    pub fn publish(&self, value: T) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
        self.generation.fetch_add(1, Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// The value and the generation it belongs to (at least).
    pub fn load(&self) -> (u64, Arc<T>) {
        let generation = self.generation();
        (generation, self.value.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// The container, pod and workload of a process (or of a peer pod), with the OpenTelemetry
/// semantic conventions' names. Shared by every record of the container; its `serial` tells
/// apart two values that differ (what the converger keys its memo on).
#[derive(Debug, Default)]
pub struct Attribution {
    pub serial: u64,
    pub container_id: Option<ContainerId>,
    pub runtime: Option<Runtime>,
    pub pod_uid: Option<Box<str>>,
    pub namespace: Option<Box<str>>,
    pub pod: Option<Box<str>>,
    pub container: Option<Box<str>>,
    /// The owner chain from the API, nearest first (`k8s.replicaset.name`, then
    /// `k8s.deployment.name`; see [`PodMeta::owners`]).
    pub owners: Vec<(&'static str, Box<str>)>,
    /// The pod's labels, from the API.
    pub labels: Vec<(Box<str>, Box<str>)>,
    /// What `service.name` becomes: the workload's name (from the API), else the container's
    /// name (stable across a workload's pods and rollouts, unlike the pod's); None when neither is
    /// known, and the process names the service.
    pub service: Option<Arc<str>>,
}

impl PartialEq for Attribution {
    fn eq(&self, o: &Attribution) -> bool {
        (&self.container_id, self.runtime, &self.pod_uid, &self.namespace, &self.pod, &self.container)
            == (&o.container_id, o.runtime, &o.pod_uid, &o.namespace, &o.pod, &o.container)
            && (&self.owners, &self.labels, &self.service) == (&o.owners, &o.labels, &o.service)
    }
}

impl Attribution {
    /// A process's attribution from its container (cgroup), the API's index and the kubelet's
    /// log layout: the API's names first, the log layout's where the API has none.
    pub fn of_container(c: &ContainerRef, kube: &KubeIndex, logs: &PodsLog) -> Attribution {
        let api_container = kube.container(&c.id);
        let uid = c.pod_uid.as_deref().or(api_container.map(|(uid, _)| uid));
        let pod = uid.and_then(|u| kube.pod(u));
        let names = logs.lookup(&c.id, uid);
        let container: Option<Box<str>> =
            api_container.map(|(_, n)| n.into()).or_else(|| names.as_ref().and_then(|n| n.container.clone()));
        let mut a = Attribution {
            serial: SERIAL.fetch_add(1, Relaxed),
            container_id: Some(c.id.clone()),
            runtime: c.runtime,
            pod_uid: uid.map(Into::into).or_else(|| names.as_ref().and_then(|n| n.pod_uid.clone())),
            namespace: pod.map(|p| p.namespace.clone()).or_else(|| names.as_ref().map(|n| n.namespace.clone())),
            pod: pod.map(|p| p.name.clone()).or_else(|| names.as_ref().map(|n| n.pod.clone())),
            container,
            ..Default::default()
        };
        if let Some(p) = pod {
            a.owners = p.owners.clone();
            a.labels = p.labels.clone();
        }
        a.service = a.workload().or(a.container.as_deref()).map(Into::into);
        a
    }

    /// A pod's attribution from the API alone (the peer of a connection).
    pub fn of_pod(p: &PodMeta) -> Attribution {
        let mut a = Attribution {
            serial: SERIAL.fetch_add(1, Relaxed),
            pod_uid: Some(p.uid.clone()),
            namespace: Some(p.namespace.clone()),
            pod: Some(p.name.clone()),
            owners: p.owners.clone(),
            labels: p.labels.clone(),
            ..Default::default()
        };
        // A peer's name: its workload, else its pod (a bare pod has nothing steadier).
        a.service = a.workload().or(a.pod.as_deref()).map(Into::into);
        a
    }

    /// The workload's name: the top of the owner chain.
    pub fn workload(&self) -> Option<&str> {
        self.owners.last().map(|(_, n)| n.as_ref())
    }

    /// Namespace, pod, pod UID, container and container id, those known.
    fn identity(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("k8s.namespace.name", self.namespace.as_deref()),
            ("k8s.pod.name", self.pod.as_deref()),
            ("k8s.pod.uid", self.pod_uid.as_deref()),
            ("k8s.container.name", self.container.as_deref()),
            ("container.id", self.container_id.as_ref().map(ContainerId::as_str)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
    }

    /// What becomes metric attributes (and Prometheus labels): the identity and the workload
    /// (the top owner only: a Deployment's ReplicaSet changes with every rollout and says
    /// nothing the Deployment does not).
    pub fn metric_attributes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.identity().chain(self.owners.last().map(|(k, v)| (*k, v.as_ref())))
    }

    /// Everything, as (attribute, value): the identity, the runtime, every owner and the pod's
    /// labels (`k8s.pod.label.<key>`). Records and OTLP resources carry these.
    pub fn all_attributes(&self) -> Vec<(Cow<'static, str>, &str)> {
        let mut out: Vec<(Cow<'static, str>, &str)> = self.identity().map(|(k, v)| (k.into(), v)).collect();
        if let Some(r) = self.runtime {
            out.push(("container.runtime.name".into(), r.name()));
        }
        out.extend(self.owners.iter().map(|(k, v)| (Cow::Borrowed(*k), v.as_ref())));
        out.extend(self.labels.iter().map(|(k, v)| (Cow::Owned(format!("k8s.pod.label.{k}")), v.as_ref())));
        out
    }

    /// Writes the attributes into a map being serialized, each key behind `prefix`.
    fn serialize_into<M: SerializeMap>(&self, prefix: &str, m: &mut M) -> Result<(), M::Error> {
        for (k, v) in self.all_attributes() {
            if prefix.is_empty() {
                m.serialize_entry(k.as_ref(), v)?;
            } else {
                m.serialize_entry(&format!("{prefix}{k}"), v)?;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Attribution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.serialize_into("", &mut m)?;
        m.end()
    }
}

/// A connection's other end, when it is a pod the API knows: serialized with `peer.` before
/// each key (`peer.k8s.pod.name`).
#[derive(Clone, Debug, PartialEq)]
pub struct Peer(pub Arc<Attribution>);

impl serde::Serialize for Peer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.0.serialize_into("peer.", &mut m)?;
        m.end()
    }
}

/// Whether to watch this node's pods through the Kubernetes API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeApi {
    /// When the node's name is known (--node-name or NODE_NAME) and a configuration is found
    /// (the pod's service account, or KUBECONFIG).
    Auto,
    Off,
}

/// Container, pod and workload attribution: `strata run`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct MetadataArgs {
    /// Attribute each record to its process's container, pod and workload (`false`: the process
    /// only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub attribution: bool,
    /// Where the processes' /proc entries are (the host's /proc mounted elsewhere, in a pod
    /// without hostPID).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// The kubelet's pod log directory, which names each pod (`<namespace>_<pod>_<uid>/<container>/`).
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pub pods_log_dir: PathBuf,
    /// The kubelet's container log links (`<pod>_<namespace>_<container>-<id>.log`), which name
    /// each container of a pod.
    #[arg(long, value_name = "DIR", default_value = "/var/log/containers")]
    pub containers_log_dir: PathBuf,
    /// Watch this node's pods through the Kubernetes API for labels, owning workloads and peer
    /// pods' IPs.
    #[arg(long, value_enum, default_value_t = KubeApi::Auto)]
    pub kube_api: KubeApi,
    /// This node's name, as the API knows it (default: the NODE_NAME variable, which a DaemonSet
    /// sets from spec.nodeName).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Listen to the kernel's process fork/exit events (needs CAP_NET_ADMIN and the host's network
    /// namespace), so processes that exit before their records are processed are still
    /// attributed (through their parent).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub proc_events: bool,
}

/// How often the log directories are checked for changes.
const PODS_LOG_POLL: Duration = Duration::from_secs(1);

impl MetadataArgs {
    /// Starts what attribution needs (the directory watch, the process events, the API watch)
    /// and returns the pipeline thread's resolver; None when attribution is off.
    pub fn start(&self) -> Option<Resolver> {
        if !self.attribution {
            return None;
        }
        let mut watch = pods_log::Watch::new(self.pods_log_dir.clone(), self.containers_log_dir.clone());
        let logs = Arc::new(Published::new(watch.poll().unwrap_or_default()));
        let weak = Arc::downgrade(&logs);
        let spawned = std::thread::Builder::new().name("strata-podslog".into()).spawn(move || poll_logs(watch, weak));
        if let Err(e) = spawned {
            log::warn!("attribution: the pod log watch did not start ({e}); names known at start only");
        }
        let procs =
            self.proc_events.then(|| Arc::new(proc_events::ProcLog::default())).and_then(
                |log| match proc_events::start(log.clone()) {
                    Ok(()) => Some(log),
                    Err(e) => {
                        log::warn!(
                            "attribution: no process events ({e}); processes that exit before their records are \
                         processed keep only their process identity (give CAP_NET_ADMIN and hostNetwork, or \
                         --proc-events false to silence this)"
                        );
                        None
                    }
                },
            );
        let kube = self.start_kube();
        let (pods, containers) = {
            let (_, l) = logs.load();
            (l.pods(), l.containers())
        };
        log::info!(
            "attribution: containers from {}/<pid>/cgroup, names from {} ({pods} pods) and {} ({containers} containers){}{}",
            self.proc_root.display(),
            self.pods_log_dir.display(),
            self.containers_log_dir.display(),
            if procs.is_some() { ", process fork/exit events" } else { "" },
            if kube.is_some() { ", Kubernetes API watch of this node's pods" } else { "" },
        );
        Some(Resolver::new(self.proc_root.clone(), logs, kube, procs))
    }

    fn node_name(&self) -> Option<String> {
        self.node_name.clone().or_else(|| std::env::var("NODE_NAME").ok()).filter(|n| !n.trim().is_empty())
    }

    #[cfg(feature = "kube")]
    fn start_kube(&self) -> Option<Arc<Published<KubeIndex>>> {
        if self.kube_api == KubeApi::Off {
            return None;
        }
        let Some(node) = self.node_name() else {
            log::info!("attribution: no node name (--node-name or NODE_NAME): the Kubernetes API is not watched");
            return None;
        };
        let index = Arc::new(Published::new(KubeIndex::default()));
        match kube_watch::start(node, index.clone()) {
            Ok(()) => Some(index),
            Err(e) => {
                log::warn!("attribution: the Kubernetes API watch did not start ({e}); names come from the pod logs");
                None
            }
        }
    }

    #[cfg(not(feature = "kube"))]
    fn start_kube(&self) -> Option<Arc<Published<KubeIndex>>> {
        if self.kube_api == KubeApi::Auto && self.node_name().is_some() {
            log::info!("attribution: built without the `kube` feature: the Kubernetes API is not watched");
        }
        None
    }
}

/// The pod log watch's thread: publishes each changed index until the resolver is gone.
fn poll_logs(mut watch: pods_log::Watch, published: Weak<Published<PodsLog>>) {
    loop {
        std::thread::sleep(PODS_LOG_POLL);
        let Some(published) = published.upgrade() else { return };
        if let Some(index) = watch.poll() {
            if *published.load().1 != index {
                published.publish(index);
            }
        }
    }
}

#[cfg(test)]
mod tests;
