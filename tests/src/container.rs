//! A real container for the attribution tests: busybox's httpd started by runc (Debian's `runc`)
//! from a rootfs of busybox-static, in a cgroup laid out as the kubelet lays out a BestEffort pod
//! with the cgroupfs driver (`.../kubepods/besteffort/pod<uid>/<container id>`), under a top-level
//! cgroup this test owns and removes, and a kubelet-style log directory naming the pod.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, require_tool, run_ok};

/// A running container, deleted (with the cgroups made for it) on drop.
pub struct Container {
    /// The container id the cgroup is named after (64 hex digits).
    pub id: String,
    pub pod_uid: String,
    /// httpd's port on 127.0.0.1 (the container shares the host's network namespace).
    pub port: u16,
    /// httpd's pid (the container's init), as the host sees it.
    pub pid: u32,
    runc: PathBuf,
    name: String,
    dir: PathBuf,
    cgroup_top: String,
}

impl Container {
    /// Starts busybox httpd in a new container of the pod `pod_uid`, named `id` in its cgroup.
    /// httpd forks a child per connection: the child answers and exits.
    pub fn busybox_httpd(pod_uid: &str, id: &str) -> Container {
        crate::require_root();
        let runc = require_tool("runc", "runc");
        let busybox = require_tool("busybox", "busybox-static");
        assert!(is_static(&busybox), "{} is dynamically linked: a rootfs needs busybox-static", busybox.display());
        let port = free_port();
        let name = format!("strata-e2e-{}-{port}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("www")).unwrap();
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
        std::fs::write(rootfs.join("www/index.html"), "hello from a container\n").unwrap();
        run_ok(Command::new(&runc).args(["spec", "--bundle"]).arg(&dir));
        let cgroup_top = name.clone();
        let config_path = dir.join("config.json");
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config["process"]["terminal"] = Value::Bool(false);
        config["process"]["args"] =
            serde_json::json!(["/bin/busybox", "httpd", "-f", "-p", format!("127.0.0.1:{port}"), "-h", "/www"]);
        config["root"]["readonly"] = Value::Bool(true);
        // The host's network: curl reaches httpd on loopback, and strata sees both ends.
        let namespaces = config["linux"]["namespaces"].as_array().unwrap().clone();
        config["linux"]["namespaces"] =
            Value::Array(namespaces.into_iter().filter(|n| n["type"] != "network").collect());
        config["linux"]["cgroupsPath"] = Value::from(format!("/{cgroup_top}/kubepods/besteffort/pod{pod_uid}/{id}"));
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let pid_file = dir.join("pid");
        let log = std::fs::File::create(dir.join("runc.log")).unwrap();
        let status = Command::new(&runc)
            .arg("--root")
            .arg(dir.join("state"))
            .args(["run", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&dir)
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .expect("runc run");
        let mut container = Container {
            id: id.to_string(),
            pod_uid: pod_uid.to_string(),
            port,
            pid: 0,
            runc,
            name,
            dir: dir.clone(),
            cgroup_top,
        };
        let runc_log = || std::fs::read_to_string(dir.join("runc.log")).unwrap_or_default();
        assert!(status.success(), "runc run failed ({status}): {}", runc_log());
        container.pid = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "httpd in the container did not listen on {port}: {}", runc_log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", container.pid)).unwrap();
        assert!(cgroup.contains(&format!("/pod{pod_uid}/{id}")), "the container's cgroup: {cgroup}");
        container
    }

    /// The kubelet's log layout for this container under `root`: `root/pods/<ns>_<pod>_<uid>/
    /// <container>/0.log` and the link `root/containers/<pod>_<ns>_<container>-<id>.log` to it.
    pub fn write_pod_logs(&self, root: &Path, namespace: &str, pod: &str, container: &str) {
        let dir = root.join("pods").join(format!("{namespace}_{pod}_{}", self.pod_uid)).join(container);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0.log"), "").unwrap();
        std::fs::create_dir_all(root.join("containers")).unwrap();
        let link = root.join("containers").join(format!("{pod}_{namespace}_{container}-{}.log", self.id));
        std::os::unix::fs::symlink(dir.join("0.log"), link).unwrap();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(self.dir.join("state"))
            .args(["delete", "--force", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // runc removes the container's own cgroup; the levels above it are this test's.
        for mount in cgroup_mounts() {
            remove_tree(&mount.join(&self.cgroup_top));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every mounted cgroup hierarchy (v1 controllers and v2), from /proc/self/mountinfo.
fn cgroup_mounts() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mount_point = pre.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// Removes a cgroup directory tree, deepest first (cgroup directories go with rmdir only).
fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Whether an ELF executable has no interpreter (PT_INTERP), i.e. runs without a dynamic loader.
fn is_static(path: &Path) -> bool {
    let Ok(elf) = std::fs::read(path) else { return false };
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != 3)
    })
}
