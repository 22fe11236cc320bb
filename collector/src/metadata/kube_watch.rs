//! This node's pods through the Kubernetes API (kube-rs): one watch of the pods whose
//! `spec.nodeName` is this node, and one GET per ReplicaSet and Job to find the Deployment or
//! CronJob above them (cached). Needs a ClusterRole that may `list` and `watch` pods and `get`
//! replicasets and jobs (deploy/kubernetes/base/rbac.yaml).
//!
//! The watch runs on a thread of its own. kube-runtime's watcher lists, then watches from the
//! list's resourceVersion, lists again when the API server answers 410 Gone (the version is too
//! old), and retries with backoff on any error. Each change publishes a new [`KubeIndex`]. A
//! failure is logged (the first at once, then at most once a minute) and never stops the agent:
//! attribution goes on from the kubelet's log directories.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::workloads::{self, KubeIndex, PodMeta};
use super::Published;

/// How long an owner lookup is kept (a Deployment's ReplicaSets change owner only by adoption).
const OWNER_TTL: Duration = Duration::from_secs(600);
/// How long a failed owner lookup is kept before asking again.
const OWNER_RETRY: Duration = Duration::from_secs(60);
/// Owners cached at most.
const MAX_OWNERS: usize = 4096;
/// Errors are logged at most this often (the first at once).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Starts the watch of `node`'s pods on a thread of its own, publishing into `index`, with the
/// configuration kube-rs infers (KUBECONFIG or `~/.kube/config`, else the pod's service account).
pub fn start(node: String, index: Arc<Published<KubeIndex>>) -> std::io::Result<()> {
    spawn(None, node, index)
}

/// The same, with a given configuration.
pub fn start_with(config: kube::Config, node: String, index: Arc<Published<KubeIndex>>) -> std::io::Result<()> {
    spawn(Some(config), node, index)
}

fn spawn(config: Option<kube::Config>, node: String, index: Arc<Published<KubeIndex>>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("strata-kube".into()).spawn(move || runtime.block_on(run(config, node, index)))?;
    Ok(())
}

async fn run(config: Option<kube::Config>, node: String, index: Arc<Published<KubeIndex>>) {
    let config = match config {
        Some(c) => c,
        None => match kube::Config::infer().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!(
                    "Kubernetes API: no configuration ({e}); pods are named from the kubelet's log directories only \
                     (no labels, workloads or peer pods)"
                );
                return;
            }
        },
    };
    let server = config.cluster_url.to_string();
    let client = match Client::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("Kubernetes API at {server}: {e}; pods are named from the kubelet's log directories only");
            return;
        }
    };
    log::info!("Kubernetes API at {server}: watching the pods of node {node}");
    let pods: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={node}");
    let mut stream = watcher(pods, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    let mut owners = Owners::new(client);
    let mut current: HashMap<String, PodMeta> = HashMap::new();
    let mut listing: Option<HashMap<String, PodMeta>> = None;
    let mut errors = ErrorLog::default();
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(Event::Init) => {
                listing = Some(HashMap::new());
                false
            }
            Ok(Event::InitApply(pod)) => {
                let meta = owners.describe(&pod).await;
                if let (Some(l), Some(m)) = (listing.as_mut(), meta) {
                    l.insert(m.uid.to_string(), m);
                }
                false
            }
            Ok(Event::InitDone) => {
                if let Some(l) = listing.take() {
                    current = l;
                }
                if errors.failing() {
                    log::info!("Kubernetes API: watching again ({} pods on this node)", current.len());
                }
                errors.recovered();
                true
            }
            Ok(Event::Apply(pod)) => match owners.describe(&pod).await {
                Some(m) => current.insert(m.uid.to_string(), m.clone()).as_ref() != Some(&m),
                None => false,
            },
            Ok(Event::Delete(pod)) => pod.metadata.uid.as_deref().is_some_and(|uid| current.remove(uid).is_some()),
            Err(e) => {
                errors.failed(&e);
                false
            }
        };
        if changed {
            index.publish(KubeIndex::from_pods(current.values().cloned()));
        }
    }
}

fn watcher(api: Api<Pod>, config: watcher::Config) -> impl futures_util::Stream<Item = watcher::Result<Event<Pod>>> {
    kube::runtime::watcher(api, config)
}

/// Logs the first failure at once, then at most once a minute, with how many happened.
#[derive(Default)]
struct ErrorLog {
    since_logged: u64,
    last: Option<Instant>,
    failing: bool,
}

impl ErrorLog {
    fn failed(&mut self, e: &watcher::Error) {
        self.failing = true;
        self.since_logged += 1;
        if self.last.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
            log::warn!(
                "Kubernetes API: {e} ({} failure(s) since the last message; retrying with backoff; meanwhile pods are \
                 named from the kubelet's log directories and the last known labels and workloads are kept)",
                self.since_logged
            );
            self.since_logged = 0;
            self.last = Some(Instant::now());
        }
    }

    fn failing(&self) -> bool {
        self.failing
    }

    fn recovered(&mut self) {
        self.failing = false;
    }
}

/// (kind, namespace, name) of an owned object.
type ObjectKey = (String, String, String);
/// Its controller's (kind, name), if any, and when that was asked.
type Controller = (Option<(String, String)>, Instant);

/// Who owns a ReplicaSet or a Job: one GET each, cached.
struct Owners {
    client: Client,
    cache: HashMap<ObjectKey, Controller>,
    owner_error_said: bool,
}

impl Owners {
    fn new(client: Client) -> Owners {
        Owners { client, cache: HashMap::new(), owner_error_said: false }
    }

    /// The pod as the index keeps it; None without a UID.
    async fn describe(&mut self, pod: &Pod) -> Option<PodMeta> {
        let meta = &pod.metadata;
        let uid = meta.uid.clone()?;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let controller = controller_of(meta);
        let above = match &controller {
            Some((kind, name)) if workloads::has_owner_above(kind) => self.owner(kind, &namespace, name).await,
            _ => None,
        };
        let owners = workloads::owner_chain(
            controller.as_ref().map(|(k, n)| (k.as_str(), n.as_str())),
            above.as_ref().map(|(k, n)| (k.as_str(), n.as_str())),
        );
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        // A finished pod (a Job's, say) keeps its IP in its status until it is deleted, but the
        // network has given the address back: another pod may hold it now.
        let finished = status.and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
        let mut ips: Vec<std::net::IpAddr> = status
            .filter(|_| !finished)
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.ip.parse().ok())
            .collect();
        if let Some(ip) = status.filter(|_| !finished).and_then(|s| s.pod_ip.as_ref()).and_then(|ip| ip.parse().ok()) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let statuses = status.into_iter().flat_map(|s| {
            [&s.container_statuses, &s.init_container_statuses, &s.ephemeral_container_statuses]
                .into_iter()
                .flatten()
                .flatten()
        });
        let containers = statuses
            .filter_map(|c| Some((workloads::container_id_of(c.container_id.as_deref()?)?, c.name.as_str().into())))
            .collect();
        let mut labels: Vec<(Box<str>, Box<str>)> =
            meta.labels.iter().flatten().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect();
        labels.sort();
        Some(PodMeta {
            uid: uid.into(),
            namespace: namespace.into(),
            name: meta.name.clone().unwrap_or_default().into(),
            labels,
            owners,
            ips,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            containers,
        })
    }

    /// The controller of a ReplicaSet or a Job, asked of the API once (cached).
    async fn owner(&mut self, kind: &str, namespace: &str, name: &str) -> Option<(String, String)> {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if let Some((owner, at)) = self.cache.get(&key) {
            let ttl = if owner.is_some() { OWNER_TTL } else { OWNER_RETRY };
            if at.elapsed() < ttl {
                return owner.clone();
            }
        }
        let fetched = match kind {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|o| o.and_then(|rs| controller_of(&rs.metadata))),
            "Job" => Api::<Job>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|o| o.and_then(|job| controller_of(&job.metadata))),
            _ => Ok(None),
        };
        let owner = fetched.unwrap_or_else(|e| {
            // Once at warn (a missing RBAC rule takes every workload name away), then quietly.
            if !self.owner_error_said {
                self.owner_error_said = true;
                log::warn!("Kubernetes API: {kind} {namespace}/{name}: {e}; records keep their pod, without the workload above it (said once)");
            } else {
                log::debug!("Kubernetes API: {kind} {namespace}/{name}: {e}");
            }
            None
        });
        if self.cache.len() >= MAX_OWNERS {
            self.cache.clear();
        }
        self.cache.insert(key, (owner.clone(), Instant::now()));
        owner
    }
}

/// The owner reference marked as controller (else the first one): (kind, name).
fn controller_of(meta: &ObjectMeta) -> Option<(String, String)> {
    let refs: &[OwnerReference] = meta.owner_references.as_deref().unwrap_or_default();
    let r = refs.iter().find(|r| r.controller == Some(true)).or(refs.first())?;
    Some((r.kind.clone(), r.name.clone()))
}
