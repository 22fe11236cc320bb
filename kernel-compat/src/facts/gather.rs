//! `gather`: reads the files and makes the probes that fill [`Facts`]. All I/O of the crate is
//! here and in `kernel_probes`; every read tolerates missing, unreadable or garbage files.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::kernel_probes;
use super::parse;
use super::*;

/// What to gather and where to look. The roots exist so tests can point the gathering at fake
/// trees; in production they are the host's `/proc`, `/sys`, ... (or the host's, bind-mounted
/// into the agent's container under another prefix).
#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// `(category, name)` of every tracepoint the probes attach to, e.g.
    /// `("syscalls", "sys_enter_read")`. The CLI passes probes-core's list.
    pub required_tracepoints: Vec<(String, String)>,
    /// Tracepoints the probes use where present (capture works without them).
    pub optional_tracepoints: Vec<(String, String)>,
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub etc_root: PathBuf,
    pub boot_root: PathBuf,
    /// Where `<release>/build/include` is looked for (normally `/lib/modules`).
    pub lib_modules_root: PathBuf,
    /// Where `linux-headers-<release>` is looked for (normally `/usr/src`).
    pub usr_src_root: PathBuf,
    /// The `PATH` searched for clang; `None` = this process's `PATH`.
    pub path_env: Option<OsString>,
    /// Make the syscall probes (`bpf()`, `perf_event_open()`, `uname()`). When false the
    /// kernel identity comes from `<proc>/sys/kernel/{osrelease,version}` and the syscall probes
    /// are recorded as unknown: for tests on fake trees, where the real kernel's answers would
    /// not match the tree.
    pub probe_kernel: bool,
}

impl Default for GatherOptions {
    fn default() -> Self {
        GatherOptions {
            required_tracepoints: Vec::new(),
            optional_tracepoints: Vec::new(),
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            etc_root: "/etc".into(),
            boot_root: "/boot".into(),
            lib_modules_root: "/lib/modules".into(),
            usr_src_root: "/usr/src".into(),
            path_env: None,
            probe_kernel: true,
        }
    }
}

impl GatherOptions {
    /// Host roots, probing the kernel, requiring `tracepoints`.
    pub fn with_tracepoints<C: Into<String>, N: Into<String>>(tracepoints: impl IntoIterator<Item = (C, N)>) -> Self {
        GatherOptions {
            required_tracepoints: tracepoints.into_iter().map(|(c, n)| (c.into(), n.into())).collect(),
            ..Default::default()
        }
    }

    /// Maps an absolute path as the kernel reports it (e.g. a mount point from /proc/mounts) into
    /// the configured roots, so a `/sys/...` mount point is looked up under `sys_root`.
    fn rebase(&self, absolute: &str) -> PathBuf {
        for (prefix, root) in [("/sys", &self.sys_root), ("/proc", &self.proc_root)] {
            if let Some(rest) = absolute.strip_prefix(prefix) {
                if rest.is_empty() || rest.starts_with('/') {
                    return root.join(rest.trim_start_matches('/'));
                }
            }
        }
        PathBuf::from(absolute)
    }
}

/// Tracepoints tried, in order, for the perf_event_open probe: present on every kernel with
/// syscall tracepoints (getpid) or at least sched tracepoints.
const PERF_PROBE_TRACEPOINTS: &[(&str, &str)] = &[("syscalls", "sys_enter_getpid"), ("sched", "sched_process_exec")];

/// Gathers the facts of this node. Never panics and never fails: what cannot be read or asked is
/// recorded as unknown, with the reason.
pub fn gather(opts: &GatherOptions) -> Facts {
    let kernel = kernel_identity(opts);
    let config = kernel_config(opts, &kernel.release);
    let tracing = tracing_facts(opts, &config);
    let perf_event = perf_event_facts(opts, tracing.tracefs.as_deref());
    let bpf = if opts.probe_kernel {
        let code = crate::KernelVersion::parse(&kernel.release).map(|v| v.code()).unwrap_or(0);
        kernel_probes::probe_bpf(code)
    } else {
        not_probed_bpf()
    };
    let host = read_text(&opts.proc_root.join("sys/kernel/hostname")).map(|h| h.trim().to_string());
    Facts {
        schema_version: SCHEMA_VERSION,
        source: Some(format!(
            "gathered on {} by kernel-compat {}",
            host.filter(|h| !h.is_empty()).unwrap_or_else(|| "an unnamed host".into()),
            env!("CARGO_PKG_VERSION")
        )),
        distro: read_text(&opts.etc_root.join("os-release")).map(|t| parse::parse_os_release(&t)).unwrap_or_default(),
        btf: btf_facts(opts),
        btf_archive_hint: None,
        btf_generated: None,
        kmod_built: None,
        security: security_facts(opts),
        modules: ModuleFacts {
            modules_disabled: read_text(&opts.proc_root.join("sys/kernel/modules_disabled"))
                .and_then(|t| parse::parse_sysctl_int(&t)),
            sig_enforce: read_text(&opts.sys_root.join("module/module/parameters/sig_enforce"))
                .and_then(|t| parse::parse_kernel_bool(&t)),
        },
        toolchain: Toolchain {
            kernel_headers: find_kernel_headers(opts, &kernel.release),
            clang: find_clang(opts),
            pahole: find_tool(opts, ["pahole".to_string()]),
            gcc: find_tool(opts, ["gcc".to_string()]),
            make: find_tool(opts, ["make".to_string()]),
        },
        kernel,
        config,
        bpf,
        tracing,
        perf_event,
    }
}

/// The perf-event tier's own requirements: the kernel is asked only with `probe_kernel`.
fn perf_event_facts(opts: &GatherOptions, tracefs: Option<&str>) -> PerfEventFacts {
    let filesystems = kernel_probes::tracefs_in(read_text(&opts.proc_root.join("filesystems")).as_deref());
    if !opts.probe_kernel {
        let p = Probe::unknown("kernel probes disabled");
        return PerfEventFacts {
            tracefs: filesystems,
            clock_monotonic: p.clone(),
            fd_cloexec: p.clone(),
            process_vm_readv: p.clone(),
            proc_pid_mem: p.clone(),
            pidfd_open: p.clone(),
            pidfd_getfd: p.clone(),
            sock_diag: p,
        };
    }
    let tracepoint = tracefs.map(|m| opts.rebase(m)).and_then(|local| {
        PERF_PROBE_TRACEPOINTS.iter().find_map(|(category, name)| {
            let id = read_text(&local.join("events").join(category).join(name).join("id"))
                .and_then(|t| parse::parse_sysctl_int::<u64>(&t))?;
            Some((format!("{category}:{name}"), id))
        })
    });
    kernel_probes::probe_perf_event(tracepoint.as_ref().map(|(n, id)| (n.as_str(), *id)), filesystems)
}

/// Reads a small text file; `None` when missing or unreadable. Lossy UTF-8: one bad byte must
/// not hide the rest of a sysctl or os-release.
fn read_text(path: &Path) -> Option<String> {
    // sysfs/procfs files are small; the cap protects against a fake tree pointing at something huge.
    const MAX: usize = 4 << 20;
    let bytes = fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned())
}

fn kernel_identity(opts: &GatherOptions) -> KernelIdentity {
    if opts.probe_kernel {
        if let Some((release, version, arch)) = crate::syscalls::uname() {
            return KernelIdentity { release, version, arch };
        }
    }
    let read = |name: &str| read_text(&opts.proc_root.join("sys/kernel").join(name)).map(|t| t.trim().to_string());
    KernelIdentity {
        release: read("osrelease").unwrap_or_default(),
        version: read("version").unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
    }
}

/// `name` if it is usable as one path component (no separators, not `.` or `..`): releases and
/// tracepoint names come from the kernel or the caller and are joined onto our roots, so they
/// must not be able to point anywhere else.
fn as_path_component(name: &str) -> Option<&str> {
    let ok = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    ok.then_some(name)
}

fn kernel_config(opts: &GatherOptions, release: &str) -> KernelConfig {
    let proc_config = opts.proc_root.join("config.gz");
    if let Some(text) = fs::read(&proc_config).ok().and_then(|b| parse::gunzip_config(&b)) {
        return KernelConfig {
            source: Some(proc_config.display().to_string()),
            options: parse::parse_kernel_config(&text),
        };
    }
    if let Some(release) = as_path_component(release) {
        let boot_config = opts.boot_root.join(format!("config-{release}"));
        if let Some(text) = read_text(&boot_config) {
            return KernelConfig {
                source: Some(boot_config.display().to_string()),
                options: parse::parse_kernel_config(&text),
            };
        }
    }
    KernelConfig::default()
}

fn btf_facts(opts: &GatherOptions) -> BtfFacts {
    let path = opts.sys_root.join("kernel/btf/vmlinux");
    let display = path.display().to_string();
    match fs::read(&path) {
        Ok(blob) => BtfFacts {
            vmlinux: match parse::parse_btf_header(&blob) {
                Ok(_) => Probe::Supported,
                Err(why) => Probe::unsupported(format!("{display} is not valid BTF: {why}")),
            },
            size_bytes: Some(blob.len() as u64),
            path: display,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            BtfFacts { vmlinux: Probe::unsupported(format!("{display} not found")), size_bytes: None, path: display }
        }
        Err(e) => {
            BtfFacts { vmlinux: Probe::unknown(format!("cannot read {display}: {e}")), size_bytes: None, path: display }
        }
    }
}

fn tracing_facts(opts: &GatherOptions, config: &KernelConfig) -> TracingFacts {
    let mounts = read_text(&opts.proc_root.join("mounts")).unwrap_or_default();
    // The mount point as the kernel names it, and where we read it through the roots. A mount
    // point must contain `events/` to count: an empty debugfs/tracing directory is not tracefs.
    let tracefs = parse::tracefs_candidates(&mounts)
        .into_iter()
        .map(|m| {
            let local = opts.rebase(&m);
            (m, local)
        })
        .find(|(_, local)| local.join("events").is_dir());

    let required = opts.required_tracepoints.iter().map(|t| (t, false));
    let optional = opts.optional_tracepoints.iter().map(|t| (t, true));
    let tracepoints = required
        .chain(optional)
        .map(|((category, name), optional)| TracepointFact {
            category: category.clone(),
            name: name.clone(),
            optional,
            present: tracefs.as_ref().map(|(_, local)| match (as_path_component(category), as_path_component(name)) {
                (Some(category), Some(name)) => local.join("events").join(category).join(name).is_dir(),
                _ => false,
            }),
        })
        .collect();

    let kprobes = kprobes_probe(opts, config, tracefs.as_ref().map(|(_, l)| l.as_path()));
    let perf_tracepoint = match &tracefs {
        None => Probe::unknown("tracefs is not mounted: no tracepoint id to open"),
        Some(_) if !opts.probe_kernel => Probe::unknown("kernel probes disabled"),
        Some((_, local)) => perf_tracepoint_probe(local),
    };
    TracingFacts {
        tracefs: tracefs.map(|(m, _)| m),
        tracepoints,
        kprobes,
        perf_tracepoint,
        perf_event_paranoid: read_text(&opts.proc_root.join("sys/kernel/perf_event_paranoid"))
            .and_then(|t| parse::parse_sysctl_int(&t)),
    }
}

fn perf_tracepoint_probe(tracefs: &Path) -> Probe {
    for (category, name) in PERF_PROBE_TRACEPOINTS {
        let id_file = tracefs.join("events").join(category).join(name).join("id");
        if let Some(id) = read_text(&id_file).and_then(|t| parse::parse_sysctl_int::<u64>(&t)) {
            return kernel_probes::probe_perf_tracepoint(&format!("{category}:{name}"), id);
        }
    }
    Probe::unknown("neither syscalls:sys_enter_getpid nor sched:sched_process_exec has a readable id in tracefs")
}

/// kprobes are present when the kernel says so in any of the places it can: the config, the
/// debugfs kprobes directory, or tracefs's `kprobe_events`.
fn kprobes_probe(opts: &GatherOptions, config: &KernelConfig, tracefs: Option<&Path>) -> Probe {
    let debugfs_kprobes = opts.sys_root.join("kernel/debug/kprobes");
    if debugfs_kprobes.is_dir() {
        return Probe::Supported;
    }
    if let Some(tracefs) = tracefs {
        if tracefs.join("kprobe_events").exists() {
            return Probe::Supported;
        }
    }
    match config.options.get("KPROBES").map(String::as_str) {
        Some("y") => Probe::Supported,
        Some(_) => Probe::unsupported("CONFIG_KPROBES is not set"),
        None if tracefs.is_some() => {
            Probe::unsupported("tracefs has no kprobe_events (kernel built without CONFIG_KPROBES)")
        }
        None => Probe::unknown("no kernel config, tracefs or debugfs to tell whether kprobes exist"),
    }
}

fn security_facts(opts: &GatherOptions) -> SecurityFacts {
    SecurityFacts {
        capabilities: read_text(&opts.proc_root.join("self/status")).and_then(|t| parse::parse_cap_eff(&t)),
        lockdown: read_text(&opts.sys_root.join("kernel/security/lockdown")).and_then(|t| parse::parse_lockdown(&t)),
        unprivileged_bpf_disabled: read_text(&opts.proc_root.join("sys/kernel/unprivileged_bpf_disabled"))
            .and_then(|t| parse::parse_sysctl_int(&t)),
    }
}

/// The running release's headers: `/lib/modules/R/build` (where the headers package links it), else
/// `/usr/src/linux-headers-R` (Debian and Ubuntu) or `/usr/src/kernels/R` (RHEL, Fedora, Amazon
/// Linux). A directory counts when it holds `include/`.
fn find_kernel_headers(opts: &GatherOptions, release: &str) -> Option<String> {
    let release = as_path_component(release)?;
    [
        opts.lib_modules_root.join(release).join("build"),
        opts.usr_src_root.join(format!("linux-headers-{release}")),
        opts.usr_src_root.join("kernels").join(release),
    ]
    .into_iter()
    .find(|p| p.join("include").is_dir())
    .map(|p| p.display().to_string())
}

fn find_tool(opts: &GatherOptions, names: impl IntoIterator<Item = String>) -> Option<String> {
    let path = opts.path_env.clone().or_else(|| std::env::var_os("PATH"))?;
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(&name);
            if is_executable(&candidate) {
                return Some(candidate.display().to_string());
            }
        }
    }
    None
}

/// Newest versioned clang first: distros install `clang-<N>` without a plain `clang`.
fn find_clang(opts: &GatherOptions) -> Option<String> {
    find_tool(opts, std::iter::once("clang".to_string()).chain((10..=30).rev().map(|v| format!("clang-{v}"))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn not_probed_bpf() -> BpfFeatures {
    let p = Probe::unknown("kernel probes disabled");
    BpfFeatures::uniform(p.clone(), p)
}
