//! Namespace, pod and container names from the kubelet's log layout, which every node has and
//! which needs no API access:
//!
//! ```text
//! /var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart count>.log
//! /var/log/containers/<pod>_<namespace>_<container>-<container id>.log  → a link to the above
//! ```
//!
//! A pod's directory gives its namespace and name by UID; the links under `/var/log/containers`
//! tell which container an id is (a pod with one container needs none). Namespaces, pod names,
//! container names and UIDs never contain `_`, so the names split without ambiguity. The names
//! are parsed by pure functions; [`scan`] and [`Watch`] read the directories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::cgroup::ContainerId;

/// What the kubelet's log layout says about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNames {
    pub namespace: Box<str>,
    pub name: Box<str>,
    /// Its containers' log directories (init containers included), sorted.
    pub containers: Vec<Box<str>>,
}

/// A container's names, from its link under `/var/log/containers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerNames {
    pub namespace: Box<str>,
    pub pod: Box<str>,
    pub container: Box<str>,
    /// From the link's target, when it points into the pods directory.
    pub pod_uid: Option<Box<str>>,
}

/// The names a container goes by, as far as the log layout tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub namespace: Box<str>,
    pub pod: Box<str>,
    pub pod_uid: Option<Box<str>>,
    /// None when the pod has several containers and no link names this one.
    pub container: Option<Box<str>>,
}

/// Both directories, read at one time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodsLog {
    pods: HashMap<Box<str>, PodNames>,
    containers: HashMap<ContainerId, ContainerNames>,
}

/// `<namespace>_<pod>_<uid>` → (namespace, pod, uid).
pub fn parse_pod_dir(name: &str) -> Option<(&str, &str, &str)> {
    let mut parts = name.split('_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !ns.is_empty() && !pod.is_empty() && !uid.is_empty()).then_some((ns, pod, uid))
}

/// `<pod>_<namespace>_<container>-<id>.log` → (pod, namespace, container, id).
pub fn parse_container_link(name: &str) -> Option<(&str, &str, &str, ContainerId)> {
    let (names, id) = name.strip_suffix(".log")?.rsplit_once('-')?;
    let id = ContainerId::parse(id)?;
    let mut parts = names.split('_');
    let (pod, ns, container) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none() && !pod.is_empty() && !ns.is_empty() && !container.is_empty();
    ok.then_some((pod, ns, container, id))
}

impl PodsLog {
    /// Builds the index from directory listings: pod directory names with their container
    /// directories, and container link names with their targets.
    pub fn from_listings<'a>(
        pods: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
        links: impl IntoIterator<Item = (&'a str, Option<&'a Path>)>,
    ) -> PodsLog {
        let mut index = PodsLog::default();
        for (dir, containers) in pods {
            let Some((ns, pod, uid)) = parse_pod_dir(dir) else { continue };
            let mut containers: Vec<Box<str>> = containers.into_iter().map(Into::into).collect();
            containers.sort();
            index.pods.insert(uid.into(), PodNames { namespace: ns.into(), name: pod.into(), containers });
        }
        for (link, target) in links {
            let Some((pod, ns, container, id)) = parse_container_link(link) else { continue };
            // The target is <pods>/<ns>_<pod>_<uid>/<container>/<n>.log.
            let pod_uid = target
                .and_then(|t| t.parent()?.parent()?.file_name()?.to_str())
                .and_then(parse_pod_dir)
                .filter(|(n, p, _)| *n == ns && *p == pod)
                .map(|(_, _, uid)| uid.into());
            index.containers.insert(
                id,
                ContainerNames { namespace: ns.into(), pod: pod.into(), container: container.into(), pod_uid },
            );
        }
        index
    }

    /// The names of a container, by its id, else by its pod's UID (the container's own name only
    /// when the pod has a single container).
    pub fn lookup(&self, id: &ContainerId, pod_uid: Option<&str>) -> Option<Names> {
        if let Some(c) = self.containers.get(id) {
            let pod_uid = c.pod_uid.clone().or_else(|| pod_uid.map(Into::into));
            return Some(Names {
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                pod_uid,
                container: Some(c.container.clone()),
            });
        }
        let uid = pod_uid?;
        let p = self.pods.get(uid)?;
        Some(Names {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
            pod_uid: Some(uid.into()),
            container: match p.containers.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            },
        })
    }

    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    pub fn containers(&self) -> usize {
        self.containers.len()
    }
}

/// Reads both directories (a missing one reads as empty: a node without the links, or no
/// kubelet at all).
pub fn scan(pods_dir: &Path, containers_dir: &Path) -> PodsLog {
    let mut pods: Vec<(String, Vec<String>)> = Vec::new();
    for entry in read_dir(pods_dir) {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if parse_pod_dir(&name).is_none() {
            continue;
        }
        let containers = read_dir(&entry.path())
            .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|c| c.file_name().to_str().map(str::to_string))
            .collect();
        pods.push((name, containers));
    }
    let mut links: Vec<(String, Option<PathBuf>)> = Vec::new();
    for entry in read_dir(containers_dir) {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if parse_container_link(&name).is_some() {
            links.push((name, std::fs::read_link(entry.path()).ok()));
        }
    }
    PodsLog::from_listings(
        pods.iter().map(|(p, c)| (p.as_str(), c.iter().map(String::as_str).collect())),
        links.iter().map(|(l, t)| (l.as_str(), t.as_deref())),
    )
}

fn read_dir(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir).into_iter().flatten().flatten()
}

/// Rescans the directories when they change: a pod created or removed changes the pods
/// directory, a container started or removed changes the links' directory. A full rescan also
/// happens every [`Watch::BACKSTOP`] (a container added to an existing pod on a node without
/// the links changes neither).
pub struct Watch {
    pods_dir: PathBuf,
    containers_dir: PathBuf,
    seen: Option<(Option<SystemTime>, Option<SystemTime>)>,
    last_scan: Option<Instant>,
}

impl Watch {
    pub const BACKSTOP: Duration = Duration::from_secs(30);

    pub fn new(pods_dir: PathBuf, containers_dir: PathBuf) -> Watch {
        Watch { pods_dir, containers_dir, seen: None, last_scan: None }
    }

    /// A new index when something may have changed since the last call, else None.
    pub fn poll(&mut self) -> Option<PodsLog> {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let now = (mtime(&self.pods_dir), mtime(&self.containers_dir));
        let stale = self.last_scan.is_none_or(|t| t.elapsed() >= Self::BACKSTOP);
        if self.seen == Some(now) && !stale {
            return None;
        }
        self.seen = Some(now);
        self.last_scan = Some(Instant::now());
        Some(scan(&self.pods_dir, &self.containers_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7c2f9d3e41b0a5e6f8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "5d6c2a2e-8a6b-4f5e-9a1b-2c3d4e5f6a7b";

    fn id(s: &str) -> ContainerId {
        ContainerId::parse(s).unwrap()
    }

    #[test]
    fn pod_directory_names() {
        assert_eq!(
            parse_pod_dir(&format!("default_web-7d9f8b6c5d-x2x7k_{UID}")),
            Some(("default", "web-7d9f8b6c5d-x2x7k", UID))
        );
        assert_eq!(
            parse_pod_dir("kube-system_kube-apiserver-node1_3a1f7c0e9b2d4c6e8f0a1b2c3d4e5f60"),
            Some(("kube-system", "kube-apiserver-node1", "3a1f7c0e9b2d4c6e8f0a1b2c3d4e5f60"))
        );
        // Dotted pod names are valid (DNS subdomains).
        assert_eq!(parse_pod_dir(&format!("ns_a.b.c_{UID}")), Some(("ns", "a.b.c", UID)));
        for bad in ["", "ns_pod", "ns__uid", "_pod_uid", "ns_pod_uid_x", UID] {
            assert_eq!(parse_pod_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn container_link_names() {
        let link = format!("web-7d9f8b6c5d-x2x7k_default_nginx-{ID}.log");
        assert_eq!(parse_container_link(&link), Some(("web-7d9f8b6c5d-x2x7k", "default", "nginx", id(ID))));
        // Container names contain dashes; the id is what follows the last one.
        let dashed = format!("p_ns_my-side-car-{ID}.log");
        assert_eq!(parse_container_link(&dashed), Some(("p", "ns", "my-side-car", id(ID))));
        for bad in [
            format!("p_ns_c-{ID}"),
            format!("p_ns_c-{}.log", &ID[1..]),
            format!("p_c-{ID}.log"),
            format!("p_ns_c_x-{ID}.log"),
            "p_ns_c.log".to_string(),
        ] {
            assert_eq!(parse_container_link(&bad), None, "{bad}");
        }
    }

    #[test]
    fn lookup_by_id_then_by_pod() {
        let pod_dir = format!("default_web-1_{UID}");
        let single = "kube-system_dns-1_11111111-2222-3333-4444-555555555555";
        let link = format!("web-1_default_app-{ID}.log");
        let target = PathBuf::from(format!("/var/log/pods/{pod_dir}/app/0.log"));
        let index = PodsLog::from_listings(
            [(pod_dir.as_str(), vec!["sidecar", "app"]), (single, vec!["coredns"]), ("junk", vec![])],
            [(link.as_str(), Some(target.as_path())), ("not-a-link", None)],
        );
        assert_eq!((index.pods(), index.containers()), (2, 1));
        // The link names the container and, through its target, the pod UID.
        let by_id = index.lookup(&id(ID), None).unwrap();
        assert_eq!(
            by_id,
            Names {
                namespace: "default".into(),
                pod: "web-1".into(),
                pod_uid: Some(UID.into()),
                container: Some("app".into())
            }
        );
        // Another container of the same pod, without a link: the pod, not which container.
        let other = index.lookup(&id(ID2), Some(UID)).unwrap();
        assert_eq!((other.pod.as_ref(), other.container), ("web-1", None));
        // A single-container pod needs no link.
        let dns = index.lookup(&id(ID2), Some("11111111-2222-3333-4444-555555555555")).unwrap();
        assert_eq!(
            (dns.namespace.as_ref(), dns.pod.as_ref(), dns.container.as_deref()),
            ("kube-system", "dns-1", Some("coredns"))
        );
        // Unknown pod, unknown container.
        assert_eq!(index.lookup(&id(ID2), Some("00000000-0000-0000-0000-000000000000")), None);
        assert_eq!(index.lookup(&id(ID2), None), None);
    }

    #[test]
    fn a_link_whose_target_disagrees_gives_no_uid() {
        let link = format!("web-1_default_app-{ID}.log");
        let target = PathBuf::from(format!("/var/log/pods/other_pod_{UID}/app/0.log"));
        let index = PodsLog::from_listings([], [(link.as_str(), Some(target.as_path()))]);
        assert_eq!(index.lookup(&id(ID), None).unwrap().pod_uid, None);
    }

    #[test]
    fn scan_and_watch_real_directories() {
        let root = tempfile::tempdir().unwrap();
        let (pods, links) = (root.path().join("pods"), root.path().join("containers"));
        let mut watch = Watch::new(pods.clone(), links.clone());
        // Neither directory exists yet: an empty index, not an error.
        assert_eq!(watch.poll(), Some(PodsLog::default()));
        assert_eq!(watch.poll(), None, "nothing changed");
        let pod_dir = pods.join(format!("default_web-1_{UID}"));
        std::fs::create_dir_all(pod_dir.join("app")).unwrap();
        std::fs::write(pod_dir.join("app/0.log"), "").unwrap();
        std::fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink(pod_dir.join("app/0.log"), links.join(format!("web-1_default_app-{ID}.log")))
            .unwrap();
        let index = watch.poll().expect("the directories appeared");
        let names = index.lookup(&id(ID), None).unwrap();
        assert_eq!((names.pod_uid.as_deref(), names.container.as_deref()), (Some(UID), Some("app")));
        assert_eq!(index.lookup(&id(ID2), Some(UID)).unwrap().container.as_deref(), Some("app"));
    }
}
