//! `Facts`: what this node's kernel can do, gathered by asking it.
//!
//! The types here are plain data (serde, versioned by [`SCHEMA_VERSION`]); the gathering lives in
//! [`gather`](gather()) and its helpers: [`parse`] (pure parsers of the files read) and
//! `kernel_probes` (the `bpf()` and `perf_event_open()` probes).

mod gather;
mod kernel_probes;
pub mod parse;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use gather::{gather, GatherOptions};

/// Probes whether tracepoint programs may call BPF helper `id` (`enum bpf_func_id`) on the
/// running kernel. Exposed for diagnostics and the tests that compare with bpftool.
pub fn probe_tracepoint_helper(id: i32) -> Probe {
    kernel_probes::probe_helper(&kernel_probes::probe_tracepoint_prog(), id)
}

use crate::probe::Probe;
use crate::version::KernelVersion;

/// Version of the [`Facts`] layout. Bump it when a field changes meaning or is removed; adding a
/// field with a default does not need a bump.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything the plan needs to know about a node. Every section defaults, so fact files written
/// by hand (or by an older agent) may leave out what they do not know: a missing probe reads as
/// `Unknown`, never as supported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub schema_version: u32,
    /// Where these facts come from: "gathered on <host> by kernel-compat <version>", or for
    /// hand-written fixtures the public sources of each value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub kernel: KernelIdentity,
    pub distro: Distro,
    pub config: KernelConfig,
    pub bpf: BpfFeatures,
    pub btf: BtfFacts,
    /// Whether a BTF archive (the public layout) has a usable entry for this kernel, as found by
    /// fetching and checking it (strata does this when the kernel has no BTF of its own).
    /// `None` = not looked up; the plan then assumes known distros are covered.
    pub btf_archive_hint: Option<BtfHint>,
    /// Whether a BTF generated from this node's kernel headers is at hand (made now, or cached by
    /// an earlier run or an init container), as the collector found it. `None` = not looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btf_generated: Option<BtfHint>,
    /// Whether strata's kernel module, built for this kernel, is at hand (built now from the
    /// node's headers, or cached by an earlier run or an init container), as the collector found
    /// it. The same shape as the BTF hints. `None` = not looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kmod_built: Option<BtfHint>,
    pub tracing: TracingFacts,
    /// What the perf-event tier uses besides perf events on tracepoints.
    pub perf_event: PerfEventFacts,
    pub security: SecurityFacts,
    pub modules: ModuleFacts,
    pub toolchain: Toolchain,
}

impl Facts {
    /// The kernel version parsed from the release string, if it has the usual `a.b.c` form.
    pub fn kernel_version(&self) -> Option<KernelVersion> {
        KernelVersion::parse(&self.kernel.release)
    }

    /// Value of a kernel config option as read from the config file: `"y"`, `"m"`, `"n"` (from
    /// `# CONFIG_X is not set`) or a string/number. `name` is given without the `CONFIG_` prefix.
    /// `None` when the option is absent or no config was readable.
    pub fn config_option(&self, name: &str) -> Option<&str> {
        self.config.options.get(name).map(String::as_str)
    }

    /// `Some(true)` for `=y`/`=m`, `Some(false)` for "is not set" or when a config was read and
    /// the option is absent from it, `None` when no config was readable.
    pub fn config_enabled(&self, name: &str) -> Option<bool> {
        match self.config_option(name) {
            Some(v) => Some(v == "y" || v == "m"),
            None if self.config.source.is_some() => Some(false),
            None => None,
        }
    }
}

/// `uname(2)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelIdentity {
    /// `uname -r`, e.g. `5.15.0-91-generic`.
    pub release: String,
    /// `uname -v`, e.g. `#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023`.
    pub version: String,
    /// `uname -m`, e.g. `x86_64`.
    pub arch: String,
}

/// From `/etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Distro {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

/// The kernel config options that matter to strata (see [`parse::RELEVANT_CONFIG_OPTIONS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelConfig {
    /// The file the config was read from (`/proc/config.gz`, `/boot/config-<release>`); `None`
    /// when neither was readable, in which case `options` is empty and means nothing.
    pub source: Option<String>,
    /// Option name without the `CONFIG_` prefix -> value (`"y"`, `"m"`, `"n"`, or the raw value).
    pub options: BTreeMap<String, String>,
}

/// One probe per BPF feature strata may use. See [`crate::features::FEATURES`] for the kernel
/// version that introduced each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BpfFeatures {
    /// `bpf(BPF_MAP_CREATE)` of a one-element array map: `ENOSYS` = kernel built without
    /// `CONFIG_BPF_SYSCALL`, `EPERM` = denied to this process.
    pub syscall: Probe,
    pub prog_tracepoint: Probe,
    pub prog_raw_tracepoint: Probe,
    pub prog_kprobe: Probe,
    pub prog_perf_event: Probe,
    pub map_hash: Probe,
    pub map_percpu_array: Probe,
    pub map_perf_event_array: Probe,
    pub map_ringbuf: Probe,
    /// Helpers, as seen by a tracepoint program.
    pub helper_probe_read: Probe,
    pub helper_probe_read_user: Probe,
    pub helper_probe_read_user_str: Probe,
    pub helper_get_current_task: Probe,
    pub helper_ringbuf_output: Probe,
}

impl BpfFeatures {
    /// `syscall` as given and every other feature `rest`: for when bpf() itself decides all.
    pub fn uniform(syscall: Probe, rest: Probe) -> Self {
        BpfFeatures {
            syscall,
            prog_tracepoint: rest.clone(),
            prog_raw_tracepoint: rest.clone(),
            prog_kprobe: rest.clone(),
            prog_perf_event: rest.clone(),
            map_hash: rest.clone(),
            map_percpu_array: rest.clone(),
            map_perf_event_array: rest.clone(),
            map_ringbuf: rest.clone(),
            helper_probe_read: rest.clone(),
            helper_probe_read_user: rest.clone(),
            helper_probe_read_user_str: rest.clone(),
            helper_get_current_task: rest.clone(),
            helper_ringbuf_output: rest,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BtfFacts {
    /// `Supported` when the file exists and its header is a valid BTF header whose sections fit.
    pub vmlinux: Probe,
    /// The path looked at (normally `/sys/kernel/btf/vmlinux`).
    pub path: String,
    pub size_bytes: Option<u64>,
}

/// A BTF from somewhere other than the kernel (an archive, or generated from headers), as found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BtfHint {
    /// A BTF for this kernel was had (fetched, generated, or found cached) and passed its checks.
    pub available: bool,
    /// Where it came from (archive URL or path, or the headers it was generated from), when known.
    pub location: Option<String>,
    /// Where the checked BTF is on this node (the cache), when available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// It came from the cache: no download.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// What was wrong when not available: not found, a timeout, a corrupt archive, a BTF of
    /// another kernel, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracingFacts {
    /// Where tracefs is mounted (`/sys/kernel/tracing` or `/sys/kernel/debug/tracing`); `None`
    /// when it is not mounted (or not visible in this mount namespace).
    pub tracefs: Option<String>,
    /// The tracepoints the probes need, each with whether tracefs lists it (`None` = could not
    /// look: tracefs not mounted).
    pub tracepoints: Vec<TracepointFact>,
    /// kprobe attachment (`CONFIG_KPROBES`): optional extras only, tracepoints come first.
    pub kprobes: Probe,
    /// `perf_event_open(PERF_TYPE_TRACEPOINT)` system-wide on CPU 0 with raw samples: what the
    /// perf-event tier does.
    pub perf_tracepoint: Probe,
    /// `/proc/sys/kernel/perf_event_paranoid`.
    pub perf_event_paranoid: Option<i32>,
}

/// What the perf-event tier uses besides perf events on tracepoints, each asked of the kernel by
/// calling it (ENOSYS: the kernel predates it). [`crate::features::PERF_EVENT_REQUIREMENTS`]
/// gives the kernel version that brought each and what the tier does without it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerfEventFacts {
    /// tracefs in `/proc/filesystems` (4.1; before, the tracing directory of debugfs).
    pub tracefs: Probe,
    /// perf_event_open of a tracepoint with `use_clockid` and CLOCK_MONOTONIC (4.1).
    pub clock_monotonic: Probe,
    /// perf_event_open with PERF_FLAG_FD_CLOEXEC (3.14).
    pub fd_cloexec: Probe,
    /// process_vm_readv of the agent's own memory (3.2, CONFIG_CROSS_MEMORY_ATTACH).
    pub process_vm_readv: Probe,
    /// pread of `/proc/self/mem` (readable without ptrace-stopping the process since 2.6.39).
    pub proc_pid_mem: Probe,
    /// pidfd_open of the agent itself (5.3).
    pub pidfd_open: Probe,
    /// pidfd_getfd (5.6): EBADF for a bad pidfd means present.
    pub pidfd_getfd: Probe,
    /// NETLINK_SOCK_DIAG dumps of TCP and UDP sockets (3.3; CONFIG_INET_DIAG,
    /// CONFIG_INET_TCP_DIAG, CONFIG_INET_UDP_DIAG).
    pub sock_diag: Probe,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracepointFact {
    pub category: String,
    pub name: String,
    pub present: Option<bool>,
    /// Used where present; its absence is a note, not a blocker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityFacts {
    /// Effective capabilities of the gathering process (`CapEff` in `/proc/self/status`).
    pub capabilities: Option<Capabilities>,
    /// The active word of `/sys/kernel/security/lockdown` (`none`, `integrity`,
    /// `confidentiality`); `None` when the file is absent or unreadable.
    pub lockdown: Option<String>,
    /// `/proc/sys/kernel/unprivileged_bpf_disabled` (0, 1 or 2).
    pub unprivileged_bpf_disabled: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// The raw `CapEff` hex mask, kept so bits newer than our name table are not lost.
    pub effective: String,
    /// Names of the set bits, e.g. `CAP_SYS_ADMIN`.
    pub names: Vec<String>,
}

impl Capabilities {
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleFacts {
    /// `/proc/sys/kernel/modules_disabled` (1 = loading switched off until reboot).
    pub modules_disabled: Option<u32>,
    /// `/sys/module/module/parameters/sig_enforce` (`module.sig_enforce=1` on the command line).
    pub sig_enforce: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Toolchain {
    /// Kernel headers for the running release (`/lib/modules/<release>/build`,
    /// `/usr/src/linux-headers-<release>` or `/usr/src/kernels/<release>`).
    pub kernel_headers: Option<String>,
    /// A clang found on `PATH` (`clang`, `clang-<N>`).
    pub clang: Option<String>,
    /// pahole (dwarves) on `PATH`: turns the compiler's DWARF into BTF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pahole: Option<String>,
    /// gcc and make on `PATH`: what kbuild builds the kernel module with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
}
