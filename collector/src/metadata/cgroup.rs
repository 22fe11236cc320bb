//! Which container a process runs in, read from its `/proc/<pid>/cgroup`: pure parsing, no I/O.
//!
//! Container runtimes name a container's cgroup after its id, each in its own way, and the kubelet
//! puts the containers of a pod under a cgroup named after the pod's UID:
//!
//! | runtime, cgroup driver | the container's cgroup |
//! |---|---|
//! | containerd (CRI), systemd | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` |
//! | any CRI runtime, cgroupfs | `/kubepods/burstable/pod<uid>/<id>` (Guaranteed pods sit directly under `/kubepods`) |
//! | CRI-O, systemd | `.../kubepods-besteffort-pod<uid_>.slice/crio-<id>.scope` (its monitor: `crio-conmon-<id>.scope`) |
//! | Docker | `/system.slice/docker-<id>.scope` (systemd), `/docker/<id>` (cgroupfs) |
//! | Podman | `/machine.slice/libpod-<id>.scope`, `/libpod_parent/libpod-<id>` (monitor: `libpod-conmon-<id>.scope`) |
//!
//! (`<uid_>`: the systemd driver writes the pod UID's dashes as underscores.) A file has one line
//! per hierarchy, `ID:CONTROLLERS:PATH`: on cgroup v1 one per mounted controller set
//! (`4:cpu,cpuacct:/kubepods/...`), on v2 the single line `0::/...`, on a hybrid host both. Nested
//! hierarchies (kind, Docker in Docker: a node that is itself a container) hold several ids; the
//! innermost is the process's own container. A reader inside its own cgroup namespace sees paths
//! relative to its root (`0::/../../besteffort/pod<uid>/<id>`); only the innermost segments matter,
//! so those parse alike.

use std::fmt;

/// The runtime that made a container, from the way it named the cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
}

impl Runtime {
    /// The `container.runtime.name` value (OpenTelemetry semantic conventions).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }
}

/// A pod's quality-of-service class, from the kubepods hierarchy level it sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// A container's id: 64 lowercase hex digits, as every runtime above writes it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(Box<str>);

impl ContainerId {
    /// The id, when `s` is one (64 hex digits; upper case is folded).
    pub fn parse(s: &str) -> Option<ContainerId> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| ContainerId(s.to_ascii_lowercase().into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a process's cgroup says about its container.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub id: ContainerId,
    /// None for the cgroupfs driver's bare ids, which every runtime writes alike.
    pub runtime: Option<Runtime>,
    /// The pod's UID, when the container sits in the kubelet's pod hierarchy: a UUID with dashes,
    /// or 32 hex digits for a static pod (the hash of its manifest).
    pub pod_uid: Option<Box<str>>,
    pub qos: Option<QosClass>,
}

/// The container of a process, from the text of its `/proc/<pid>/cgroup`; None for a process
/// outside any container (or a runtime monitor such as conmon).
///
/// Every line is read: the v2 line first (it is the one hierarchy a v2 or hybrid host always
/// places containers in), then the v1 lines in order. The first line that names a container
/// wins, unless a later one also knows the pod.
pub fn parse_proc_cgroup<'a>(text: &'a str) -> Option<ContainerRef> {
    let path = |l: &'a str| l.splitn(3, ':').nth(2);
    let v2 = text.lines().filter(|l| l.starts_with("0::")).filter_map(path);
    let v1 = text.lines().filter(|l| !l.starts_with("0::")).filter_map(path);
    let mut found: Option<ContainerRef> = None;
    for path in v2.chain(v1) {
        let Some(c) = parse_path(path) else { continue };
        match &found {
            None => found = Some(c),
            Some(f) if f.pod_uid.is_none() && c.pod_uid.is_some() => found = Some(c),
            Some(_) => {}
        }
        if found.as_ref().is_some_and(|f| f.pod_uid.is_some()) {
            break;
        }
    }
    found
}

/// The container a cgroup path names: its innermost container segment, and the pod above it.
pub fn parse_path(path: &str) -> Option<ContainerRef> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != "..").collect();
    let (at, id, runtime) = segments.iter().enumerate().rev().find_map(|(i, s)| {
        let parent = i.checked_sub(1).map(|p| segments[p]);
        container_segment(s, parent).map(|(id, rt)| (i, id, rt))
    })?;
    let above = &segments[..at];
    let (pod_uid, qos) = match above.iter().rposition(|s| pod_segment(s).is_some()) {
        Some(p) => (pod_segment(above[p]), Some(qos_of(&above[..=p]))),
        None => (None, None),
    };
    Some(ContainerRef { id, runtime, pod_uid, qos })
}

/// A segment that names a container: `<prefix>-<id>.scope` (systemd), `libpod-<id>` or a bare id
/// (cgroupfs). Runtime monitors (`crio-conmon-`, `libpod-conmon-`) are not containers.
fn container_segment(segment: &str, parent: Option<&str>) -> Option<(ContainerId, Option<Runtime>)> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    if name.starts_with("crio-conmon-") || name.starts_with("libpod-conmon-") {
        return None;
    }
    const PREFIXES: [(&str, Runtime); 5] = [
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
        ("nerdctl-", Runtime::Containerd),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = name.strip_prefix(prefix).and_then(ContainerId::parse) {
            return Some((id, Some(runtime)));
        }
    }
    let id = ContainerId::parse(name)?;
    let runtime = match parent {
        Some("docker") => Some(Runtime::Docker),
        Some("libpod_parent") => Some(Runtime::Podman),
        _ => None,
    };
    Some((id, runtime))
}

/// The pod UID a segment names: `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_>.slice`
/// (systemd, dashes written as underscores).
fn pod_segment(segment: &str) -> Option<Box<str>> {
    let raw = match segment.strip_suffix(".slice") {
        Some(unit) => unit.rsplit_once("-pod")?.1,
        None => segment.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-").to_ascii_lowercase();
    let is_uuid = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let is_static = uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit());
    (is_uuid || is_static).then(|| uid.into())
}

/// The QoS class from the segments down to the pod's: a `burstable` or `besteffort` level, else
/// Guaranteed (those pods sit directly under kubepods).
fn qos_of(segments: &[&str]) -> QosClass {
    let pod = segments.last().copied().unwrap_or("");
    let level = segments.len().checked_sub(2).map(|i| segments[i]).unwrap_or("");
    let says = |word: &str| {
        level == word
            || level.ends_with(&format!("-{word}.slice"))
            || (pod.ends_with(".slice") && pod.contains(&format!("-{word}-pod")))
    };
    if says("burstable") {
        QosClass::Burstable
    } else if says("besteffort") {
        QosClass::BestEffort
    } else {
        QosClass::Guaranteed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7c2f9d3e41b0a5e6f8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "5d6c2a2e-8a6b-4f5e-9a1b-2c3d4e5f6a7b";
    const UID_: &str = "5d6c2a2e_8a6b_4f5e_9a1b_2c3d4e5f6a7b";

    /// (id, runtime, pod UID, QoS), as the tests compare them.
    type Parsed = Option<(String, Option<&'static str>, Option<String>, Option<QosClass>)>;

    fn parsed(text: &str) -> Parsed {
        parse_proc_cgroup(text)
            .map(|c| (c.id.to_string(), c.runtime.map(Runtime::name), c.pod_uid.map(|u| u.to_string()), c.qos))
    }

    fn want(id: &str, runtime: Option<&'static str>, uid: Option<&str>, qos: Option<QosClass>) -> Parsed {
        Some((id.to_string(), runtime, uid.map(str::to_string), qos))
    }

    #[test]
    fn containerd_systemd_driver_cgroup_v2() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(parsed(&text), want(ID, Some("containerd"), Some(UID), Some(QosClass::Burstable)));
    }

    #[test]
    fn containerd_systemd_driver_guaranteed_and_besteffort() {
        let guaranteed = format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parsed(&guaranteed), want(ID, Some("containerd"), Some(UID), Some(QosClass::Guaranteed)));
        let best = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parsed(&best), want(ID, Some("containerd"), Some(UID), Some(QosClass::BestEffort)));
    }

    #[test]
    fn cgroupfs_driver_v1_with_several_controllers() {
        // A cgroup v1 node with the cgroupfs driver (any CRI runtime; also GKE's COS, k3s).
        let text = format!(
            "12:hugetlb:/kubepods/burstable/pod{UID}/{ID}\n\
             11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n\
             10:net_cls,net_prio:/kubepods/burstable/pod{UID}/{ID}\n\
             9:memory:/kubepods/burstable/pod{UID}/{ID}\n\
             4:devices:/kubepods/burstable/pod{UID}/{ID}\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n\
             0::/\n"
        );
        assert_eq!(parsed(&text), want(ID, None, Some(UID), Some(QosClass::Burstable)));
        let guaranteed = format!("3:memory:/kubepods/pod{UID}/{ID}\n");
        assert_eq!(parsed(&guaranteed), want(ID, None, Some(UID), Some(QosClass::Guaranteed)));
        let best = format!("3:pids:/kubepods/besteffort/pod{UID}/{ID}\n");
        assert_eq!(parsed(&best), want(ID, None, Some(UID), Some(QosClass::BestEffort)));
    }

    #[test]
    fn crio_and_its_monitor() {
        let text =
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope\n");
        assert_eq!(parsed(&text), want(ID, Some("cri-o"), Some(UID), Some(QosClass::Burstable)));
        // conmon, CRI-O's monitor process, is in the pod but in no container.
        let conmon = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope\n"
        );
        assert_eq!(parsed(&conmon), None);
        // OpenShift on cgroup v1: a line per controller, the systemd driver's names.
        let v1 = format!(
            "11:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope\n\
             1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope\n"
        );
        assert_eq!(parsed(&v1), want(ID, Some("cri-o"), Some(UID), Some(QosClass::Burstable)));
    }

    #[test]
    fn docker_outside_kubernetes() {
        assert_eq!(parsed(&format!("0::/system.slice/docker-{ID}.scope\n")), want(ID, Some("docker"), None, None));
        let v1 = format!(
            "13:misc:/\n12:cpuset:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(parsed(&v1), want(ID, Some("docker"), None, None));
    }

    #[test]
    fn docker_in_docker_is_the_innermost() {
        let text = format!("0::/docker/{ID2}/docker/{ID}\n");
        assert_eq!(parsed(&text), want(ID, Some("docker"), None, None));
    }

    #[test]
    fn dockershim_kubernetes_cgroupfs() {
        // Kubernetes before 1.24 with Docker: the cgroupfs driver's layout.
        let text =
            format!("10:memory:/kubepods/besteffort/pod{UID}/{ID}\n2:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{ID}\n");
        assert_eq!(parsed(&text), want(ID, None, Some(UID), Some(QosClass::BestEffort)));
        // ... and the systemd driver's.
        let systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope\n"
        );
        assert_eq!(parsed(&systemd), want(ID, Some("docker"), Some(UID), Some(QosClass::BestEffort)));
    }

    #[test]
    fn podman_rootful_rootless_and_monitor() {
        assert_eq!(parsed(&format!("0::/machine.slice/libpod-{ID}.scope\n")), want(ID, Some("podman"), None, None));
        // Rootless, with the container's own sub-cgroup.
        let rootless =
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n");
        assert_eq!(parsed(&rootless), want(ID, Some("podman"), None, None));
        // cgroupfs manager.
        assert_eq!(parsed(&format!("0::/libpod_parent/libpod-{ID}\n")), want(ID, Some("podman"), None, None));
        assert_eq!(parsed(&format!("5:memory:/libpod_parent/{ID}\n")), want(ID, Some("podman"), None, None));
        assert_eq!(parsed(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n")), None);
    }

    #[test]
    fn kind_node_nested_in_docker() {
        // A kind node is a Docker container; its kubelet's pods nest inside it (host's view).
        let text = format!(
            "0::/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(parsed(&text), want(ID, Some("containerd"), Some(UID), Some(QosClass::BestEffort)));
        // The same pod seen from inside the node's own cgroup namespace.
        let inside = format!(
            "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(parsed(&inside), want(ID, Some("containerd"), Some(UID), Some(QosClass::BestEffort)));
        // The node's own processes (kubelet, containerd): only the node container.
        let node = format!("0::/system.slice/docker-{ID2}.scope/system.slice/containerd.service\n");
        assert_eq!(parsed(&node), want(ID2, Some("docker"), None, None));
    }

    #[test]
    fn a_test_prefix_above_kubepods() {
        // strata's end-to-end test puts its container under a cgroup of its own.
        let text = format!("7:pids:/strata-e2e-123/kubepods/besteffort/pod{UID}/{ID}\n0::/strata-e2e-123/kubepods/besteffort/pod{UID}/{ID}\n");
        assert_eq!(parsed(&text), want(ID, None, Some(UID), Some(QosClass::BestEffort)));
    }

    #[test]
    fn relative_paths_from_inside_a_cgroup_namespace() {
        // The agent itself in a pod with a private cgroup namespace reads other pods' paths
        // relative to its own cgroup.
        let text = format!("0::/../../besteffort/pod{UID}/{ID}\n");
        assert_eq!(parsed(&text), want(ID, None, Some(UID), Some(QosClass::BestEffort)));
        let systemd = format!(
            "0::/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(parsed(&systemd), want(ID, Some("containerd"), Some(UID), Some(QosClass::BestEffort)));
        assert_eq!(parsed("0::/\n"), None);
    }

    #[test]
    fn static_pods_have_hash_uids() {
        let hash = "3a1f7c0e9b2d4c6e8f0a1b2c3d4e5f60";
        let text = format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(parsed(&text), want(ID, Some("containerd"), Some(hash), Some(QosClass::Burstable)));
        let cgroupfs = format!("0::/kubepods/burstable/pod{hash}/{ID}\n");
        assert_eq!(parsed(&cgroupfs), want(ID, None, Some(hash), Some(QosClass::Burstable)));
    }

    #[test]
    fn pod_sandbox_and_hybrid_hosts() {
        // The pause container is a container of the pod like any other.
        let text = format!("0::/kubepods/besteffort/pod{UID}/{ID2}\n");
        assert_eq!(parsed(&text), want(ID2, None, Some(UID), Some(QosClass::BestEffort)));
        // Hybrid: v2 line at the root, v1 lines in the pod; the v1 lines decide.
        let hybrid = format!(
            "9:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n4:memory:/kubepods/burstable/pod{UID}/{ID}\n0::/\n"
        );
        assert_eq!(parsed(&hybrid), want(ID, None, Some(UID), Some(QosClass::Burstable)));
    }

    #[test]
    fn lines_that_know_the_pod_win() {
        // A v2 line that names the container without its pod, a v1 line with both.
        let text = format!("0::/docker/{ID}\n4:memory:/kubepods/burstable/pod{UID}/{ID}\n");
        assert_eq!(parsed(&text), want(ID, None, Some(UID), Some(QosClass::Burstable)));
    }

    #[test]
    fn processes_outside_containers() {
        for text in [
            "0::/init.scope\n",
            "0::/system.slice/nginx.service\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "12:memory:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-c1.scope\n0::/user.slice/user-0.slice/session-c1.scope\n",
            "4:memory:/process_api/583aac014ba1881bee1b234ec7be6b1e\n0::/\n",
            // The kubelet's pod slices hold only containers; a pod cgroup alone is no container.
            &format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice\n"),
            "0::/machine.slice/machine-qemu\\x2d1\\x2dvm.scope\n",
            "",
            "garbage\n::\n0:\n",
        ] {
            assert_eq!(parsed(text), None, "{text:?}");
        }
    }

    #[test]
    fn ids_are_exactly_64_hex_digits() {
        assert_eq!(parsed(&format!("0::/docker/{}\n", &ID[..63])), None);
        assert_eq!(parsed(&format!("0::/docker/{ID}0\n")), None);
        assert_eq!(parsed(&format!("0::/docker/{}\n", ID.replace('c', "g"))), None);
        // Upper case is folded (ids are written lower case).
        assert_eq!(parsed(&format!("0::/docker/{}\n", ID.to_uppercase())), want(ID, Some("docker"), None, None));
        // Not a pod UID: the container keeps no pod.
        assert_eq!(parsed(&format!("0::/kubepods/burstable/podnot-a-uid/{ID}\n")), want(ID, None, None, None));
    }
}
