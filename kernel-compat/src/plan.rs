//! `plan`: which capture tier this node should run, as a pure function of its [`Facts`].
//!
//! Tiers are tried in preference order; each is checked against its minimum requirements and
//! the first one that meets them *and* is part of this build is chosen. Every better tier that
//! was not chosen is listed in [`Plan::rejected`] with reasons an operator can act on (the
//! missing capability, kernel option or file, and the fix).
//!
//! The plan is a prediction: `strata run` still falls back to the next tier by itself if the
//! chosen one fails to load or attach.

use serde::{Deserialize, Serialize};

use crate::facts::Facts;
use crate::probe::Probe;
use crate::version::KernelVersion;

/// A capture tier, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// CO-RE BPF object relocated against the kernel's own BTF.
    Core,
    /// CO-RE BPF object relocated against a BTF fetched from an archive (kernels without BTF).
    ArchivedBtf,
    /// BPF probes compiled on the node with clang against the kernel headers.
    HostCompiled,
    /// Kernel module with tracepoint probes and an mmap'd ring buffer.
    Kmod,
    /// perf_event_open on syscall tracepoints: no BPF at all.
    PerfEvent,
    /// Nothing can capture on this node.
    None,
}

impl Tier {
    /// Every real tier, best first.
    pub const PREFERENCE: [Tier; 5] = [Tier::Core, Tier::ArchivedBtf, Tier::HostCompiled, Tier::Kmod, Tier::PerfEvent];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Core => "core",
            Tier::ArchivedBtf => "archived-btf",
            Tier::HostCompiled => "host-compiled",
            Tier::Kmod => "kmod",
            Tier::PerfEvent => "perf-event",
            Tier::None => "none",
        }
    }

    pub fn fidelity(self) -> Fidelity {
        match self {
            Tier::Core | Tier::ArchivedBtf | Tier::HostCompiled => Fidelity::Full,
            Tier::Kmod | Tier::PerfEvent => Fidelity::Degraded,
            Tier::None => Fidelity::Unsupported,
        }
    }

    /// The CO-RE BPF tiers: one object, relocated with a BTF from one of three places.
    pub fn is_bpf(self) -> bool {
        matches!(self, Tier::Core | Tier::ArchivedBtf | Tier::HostCompiled)
    }

    /// The tier named `name` (as `name()` spells it).
    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::PREFERENCE.into_iter().chain([Tier::None]).find(|t| t.name() == name)
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        Tier::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Tier::PREFERENCE.iter().map(|t| t.name()).collect();
            format!("{s}: not a tier (one of {})", names.join(", "))
        })
    }
}

/// How events travel from the kernel to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// BPF ring buffer (5.8+): one buffer shared by all CPUs, ordered.
    RingBuffer,
    /// BPF perf event array: one buffer per CPU.
    PerfBuffer,
    /// perf_event_open's own mmap'd buffers (perf-event tier).
    PerfEventMmap,
    /// The kernel module's mmap'd ring buffer (kmod tier).
    ModuleMmap,
    None,
}

/// Where the CO-RE probes hook the socket syscalls (the loader's rule, told in advance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SyscallHooks {
    /// Two BTF-typed programs (tp_btf) on raw_syscalls:sys_enter/sys_exit: the ring buffer, the
    /// kernel's own BTF and 5.11+ (bpf_get_current_task_btf).
    RawSyscalls,
    /// Each socket syscall's own tracepoints (syscalls:sys_enter_read, ...).
    PerSyscall,
    /// Not a CO-RE tier.
    #[default]
    None,
}

/// The first kernel the raw_syscalls hooks load on (bpf_get_current_task_btf, 5.11).
pub const RAW_SYSCALL_HOOKS_SINCE: KernelVersion = KernelVersion::new(5, 11, 0);

/// Where the BTF for CO-RE relocation comes from. aya skips CO-RE relocation silently without
/// BTF, so a CO-RE tier is only ever planned with a BTF source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BtfSource {
    /// `/sys/kernel/btf/vmlinux`.
    Kernel,
    /// A BTF archive (btf-cache).
    Archive,
    /// Generated on the node from its kernel headers (clang and pahole).
    Generated,
    None,
}

/// How much of strata's data model the tier delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fidelity {
    /// Payloads and connection metadata: every protocol parser works.
    Full,
    /// A reduced capture (kmod, perf-event).
    Degraded,
    /// No capture.
    Unsupported,
}

/// Which tiers this build of strata contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltTiers(Vec<Tier>);

impl BuiltTiers {
    /// What this release ships.
    pub fn current() -> Self {
        BuiltTiers(vec![Tier::Core, Tier::ArchivedBtf, Tier::HostCompiled, Tier::Kmod, Tier::PerfEvent])
    }

    /// Every tier, to evaluate the decision logic on its own.
    pub fn all() -> Self {
        BuiltTiers(Tier::PREFERENCE.to_vec())
    }

    pub fn only(tiers: &[Tier]) -> Self {
        BuiltTiers(tiers.to_vec())
    }

    pub fn contains(&self, tier: Tier) -> bool {
        self.0.contains(&tier)
    }
}

/// Why a better tier was not chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub tier: Tier,
    pub reasons: Vec<String>,
}

/// The decision for this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub tier: Tier,
    pub transport: Transport,
    /// Where a CO-RE tier hooks the syscalls (`strata run --syscall-hooks auto`).
    #[serde(default)]
    pub syscall_hooks: SyscallHooks,
    pub btf_source: BtfSource,
    /// Every tier better than `tier`, with why it was not chosen, best first.
    pub rejected: Vec<Rejection>,
    /// Tiers worse than `tier` that could run here too, best first: where `strata run` goes when
    /// the chosen tier fails to load after all.
    #[serde(default)]
    pub fallbacks: Vec<Tier>,
    /// Things worth knowing that did not decide anything (optional features missing, probes
    /// that could not be run).
    pub notes: Vec<String>,
}

/// The reason given for a tier that would work but is not compiled into this build.
pub const NOT_IN_BUILD: &str = "not available in this build";

impl Plan {
    pub fn fidelity(&self) -> Fidelity {
        self.tier.fidelity()
    }

    /// Exit code of `strata compat-check`:
    ///
    /// | code | meaning |
    /// |---|---|
    /// | 0  | full fidelity (core, archived-btf, host-compiled) |
    /// | 10 | degraded (kmod, perf-event) |
    /// | 11 | unsupported: no tier can capture here |
    ///
    /// 1 and 2 stay free for the CLI's own errors (bad arguments, I/O), which is why the
    /// fidelity codes start at 10.
    pub fn exit_code(&self) -> u8 {
        match self.fidelity() {
            Fidelity::Full => 0,
            Fidelity::Degraded => 10,
            Fidelity::Unsupported => 11,
        }
    }

    /// The rejection of `tier`, if it was rejected.
    pub fn rejection(&self, tier: Tier) -> Option<&Rejection> {
        self.rejected.iter().find(|r| r.tier == tier)
    }
}

/// Chooses the tier for a node. Pure: same facts, same plan.
/// Why `tier` cannot run on this node (empty when it can), whatever the plan chose: for a tier
/// an operator forces.
pub fn blockers(facts: &Facts, tier: Tier) -> Vec<String> {
    Node::new(facts).blockers(tier)
}

pub fn plan(facts: &Facts, built: &BuiltTiers) -> Plan {
    let node = Node::new(facts);
    let mut rejected = Vec::new();
    let mut chosen = Tier::None;
    for tier in Tier::PREFERENCE {
        let mut reasons = node.blockers(tier);
        if reasons.is_empty() {
            if built.contains(tier) {
                chosen = tier;
                break;
            }
            reasons.push(NOT_IN_BUILD.to_string());
            if tier == Tier::ArchivedBtf {
                reasons.push(node.archive_need());
            }
        }
        rejected.push(Rejection { tier, reasons });
    }
    let fallbacks = Tier::PREFERENCE
        .into_iter()
        .filter(|t| *t > chosen && built.contains(*t) && node.blockers(*t).is_empty())
        .collect();
    let transport = node.transport(chosen);
    let syscall_hooks = match chosen {
        Tier::Core
            if transport == Transport::RingBuffer && node.version.is_some_and(|v| v >= RAW_SYSCALL_HOOKS_SINCE) =>
        {
            SyscallHooks::RawSyscalls
        }
        t if t.is_bpf() => SyscallHooks::PerSyscall,
        _ => SyscallHooks::None,
    };
    Plan {
        tier: chosen,
        fallbacks,
        transport,
        syscall_hooks,
        btf_source: match chosen {
            Tier::Core => BtfSource::Kernel,
            Tier::ArchivedBtf => BtfSource::Archive,
            Tier::HostCompiled => BtfSource::Generated,
            _ => BtfSource::None,
        },
        rejected,
        notes: node.notes(chosen),
    }
}

/// Distros whose kernels BTF archives (btfhub) cover.
const ARCHIVED_DISTROS: &[&str] =
    &["ubuntu", "debian", "centos", "rhel", "amzn", "fedora", "ol", "rocky", "almalinux", "sles", "opensuse-leap"];

/// When the tracepoints that are not syscall tracepoints arrived, so a "missing" reads as
/// "too old" rather than "broken".
const TRACEPOINT_HISTORY: &[(&str, &str)] =
    &[("sock:inet_sock_set_state", "arrived in 4.16; 4.15 has tcp:tcp_set_state, older kernels neither")];

/// Facts plus what is derived from them once.
struct Node<'a> {
    f: &'a Facts,
    version: Option<KernelVersion>,
    /// (mode, where it was read)
    lockdown: Option<(String, String)>,
}

impl<'a> Node<'a> {
    fn new(f: &'a Facts) -> Self {
        let lockdown = match &f.security.lockdown {
            Some(mode) => Some((mode.clone(), "/sys/kernel/security/lockdown".to_string())),
            None if f.config_option("LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") == Some("y") => {
                Some(("confidentiality".into(), "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY=y".into()))
            }
            None if f.config_option("LOCK_DOWN_KERNEL_FORCE_INTEGRITY") == Some("y") => {
                Some(("integrity".into(), "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y".into()))
            }
            None => None,
        };
        Node { f, version: f.kernel_version(), lockdown }
    }

    fn has_cap(&self, name: &str) -> Option<bool> {
        self.f.security.capabilities.as_ref().map(|c| c.has(name))
    }

    fn release(&self) -> &str {
        if self.f.kernel.release.is_empty() {
            "<unknown release>"
        } else {
            &self.f.kernel.release
        }
    }

    /// "CONFIG_X is not set" / "CONFIG_X=y" / "" (no config), for explanations.
    fn config_says(&self, name: &str) -> String {
        match self.f.config_option(name) {
            Some("n") => format!("CONFIG_{name} is not set"),
            Some(v) => format!("CONFIG_{name}={v}"),
            None if self.f.config.source.is_some() => format!("CONFIG_{name} is not set"),
            None => String::new(),
        }
    }

    fn with_config(&self, text: String, name: &str) -> String {
        match self.config_says(name) {
            s if s.is_empty() => text,
            s => format!("{text} ({s})"),
        }
    }

    fn blockers(&self, tier: Tier) -> Vec<String> {
        match tier {
            Tier::Core => {
                let mut r = self.bpf_blockers();
                if !self.f.btf.vmlinux.is_supported() {
                    r.push(
                        self.with_config(
                            format!("kernel BTF missing: {}", self.f.btf.vmlinux.reason()),
                            "DEBUG_INFO_BTF",
                        ),
                    );
                }
                r
            }
            Tier::ArchivedBtf => {
                let mut r = self.bpf_blockers();
                r.extend(self.own_btf());
                if let Some(missing) = self.archive_missing() {
                    r.push(missing);
                }
                r
            }
            Tier::HostCompiled => {
                let mut r = self.bpf_blockers();
                r.extend(self.own_btf());
                r.extend(self.generation_problems());
                r
            }
            Tier::Kmod => self.kmod_blockers(),
            Tier::PerfEvent => self.perf_event_blockers(),
            Tier::None => Vec::new(),
        }
    }

    /// A BTF from elsewhere is for kernels without their own: where the kernel has one, the
    /// core tier uses it (a failure there would fail the same way with another BTF).
    fn own_btf(&self) -> Option<String> {
        self.f.btf.vmlinux.is_supported().then(|| "the kernel has its own BTF, which the core tier uses".to_string())
    }

    /// Requirements shared by the three BPF tiers.
    fn bpf_blockers(&self) -> Vec<String> {
        let f = self.f;
        let mut r = Vec::new();
        let bpf_usable = f.bpf.syscall.is_supported();
        if !bpf_usable {
            r.push(self.bpf_syscall_problem());
        }
        if let Some(v) = self.version {
            if v < KernelVersion::new(4, 14, 0) {
                r.push(format!(
                    "kernel {v} is older than 4.14: bpf_probe_read exists since 4.1, but this verifier is too limited for \
                     strata's probes (variable-size reads need ARG_CONST_SIZE_OR_ZERO, 4.14); use the kmod or perf-event tier"
                ));
            }
        }
        if bpf_usable {
            if f.bpf.prog_tracepoint.is_unsupported() {
                r.push(self.with_config(
                    format!(
                        "tracepoint BPF programs unsupported ({}); they need kernel 4.7+",
                        f.bpf.prog_tracepoint.reason()
                    ),
                    "BPF_EVENTS",
                ));
            }
            if f.bpf.helper_probe_read_user.is_unsupported() && f.bpf.helper_probe_read.is_unsupported() {
                r.push(
                    "no helper reads user and kernel memory: neither bpf_probe_read_user (5.5) nor bpf_probe_read (4.1) \
                     is available to tracepoint programs"
                        .into(),
                );
            }
            for (probe, what, since) in
                [(&f.bpf.map_hash, "hash maps", "3.19"), (&f.bpf.map_percpu_array, "per-CPU array maps", "4.6")]
            {
                if probe.is_unsupported() {
                    r.push(format!("{what} unsupported ({}); they need kernel {since}+", probe.reason()));
                }
            }
            if f.bpf.map_perf_event_array.is_unsupported() && f.bpf.map_ringbuf.is_unsupported() {
                r.push(
                    "no event transport: neither perf event array maps (4.3) nor ring buffer maps (5.8) are supported"
                        .into(),
                );
            }
        }
        if let Some((mode, origin)) = &self.lockdown {
            if mode == "confidentiality" {
                r.push(format!(
                    "kernel lockdown=confidentiality ({origin}) forbids reading kernel memory from BPF (bpf_probe_read): \
                     boot without lockdown=confidentiality (kernel command line, Secure Boot policy) or use the perf-event tier"
                ));
            }
        }
        r.extend(self.tracepoint_problems(|_| true));
        r
    }

    fn bpf_syscall_problem(&self) -> String {
        let f = self.f;
        match (&f.bpf.syscall, f.bpf.syscall.errno()) {
            (_, Some("ENOSYS")) => self.with_config(
                "bpf() is not available (ENOSYS): the kernel is built without the bpf() syscall; use a kernel with \
                 CONFIG_BPF_SYSCALL=y"
                    .to_string(),
                "BPF_SYSCALL",
            ),
            (_, Some(errno @ ("EPERM" | "EACCES"))) => {
                let sysctl = match f.security.unprivileged_bpf_disabled {
                    Some(n) => format!("unprivileged_bpf_disabled={n}"),
                    None => "unprivileged_bpf_disabled unknown".to_string(),
                };
                let privileged = self.has_cap("CAP_SYS_ADMIN") == Some(true) || self.has_cap("CAP_BPF") == Some(true);
                if privileged {
                    format!(
                        "bpf() returned {errno} although the agent has CAP_BPF/CAP_SYS_ADMIN: a seccomp profile or LSM \
                         denies it (container runtimes' default seccomp profile blocks bpf(): use seccompProfile Unconfined), \
                         or on kernels before 5.11 RLIMIT_MEMLOCK is too low (raise it: ulimit -l unlimited)"
                    )
                } else {
                    format!(
                        "bpf() returned {errno}: {sysctl} and the agent lacks CAP_BPF/CAP_SYS_ADMIN: run privileged \
                         (or grant CAP_BPF and CAP_PERFMON on 5.8+, CAP_SYS_ADMIN before)"
                    )
                }
            }
            (Probe::Unknown { reason }, _) => format!("bpf() could not be probed: {reason}"),
            (p, _) => format!("bpf() is not usable: {}", p.reason()),
        }
    }

    /// Problems with tracefs and the required tracepoints matching `wanted`.
    fn tracepoint_problems(&self, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let tracing = &self.f.tracing;
        let Some(tracefs) = &tracing.tracefs else {
            return vec![
                "tracefs is not mounted: mount it (mount -t tracefs tracefs /sys/kernel/tracing) or mount the host's \
                 /sys/kernel/tracing into the agent's container"
                    .into(),
            ];
        };
        let missing: Vec<String> = tracing
            .tracepoints
            .iter()
            .filter(|t| !t.optional && wanted(&t.category) && t.present == Some(false))
            .map(|t| format!("{}:{}", t.category, t.name))
            .collect();
        if missing.is_empty() {
            return Vec::new();
        }
        let syscalls_missing = missing.iter().any(|m| m.starts_with("syscalls:"));
        let mut text = format!("tracepoints missing from {tracefs}/events: {}", missing.join(", "));
        for (tracepoint, history) in TRACEPOINT_HISTORY {
            if missing.iter().any(|m| m == tracepoint) {
                text = format!("{text} ({tracepoint} {history})");
            }
        }
        vec![if syscalls_missing { self.with_config(text, "FTRACE_SYSCALLS") } else { text }]
    }

    fn distro_and_release(&self) -> String {
        let d = &self.f.distro;
        let distro = match (&d.id, &d.version_id) {
            (Some(id), Some(v)) => format!("{id} {v}"),
            (Some(id), None) => id.clone(),
            _ => "an unknown distro".into(),
        };
        format!("{distro} {}", self.release())
    }

    /// The archive requirement, said the same way whether it blocks or not.
    fn archive_need(&self) -> String {
        match &self.f.btf_archive_hint {
            Some(h) if h.available => {
                let from = h.location.as_ref().map(|l| format!(" from {l}")).unwrap_or_default();
                let at = match (&h.path, h.cached) {
                    (Some(p), true) => format!(" (cached at {p})"),
                    (Some(p), false) => format!(" (fetched, checked against this kernel, cached at {p})"),
                    (None, _) => String::new(),
                };
                format!("uses the BTF for {}{from}{at}", self.distro_and_release())
            }
            _ => format!("needs a BTF archive for {}", self.distro_and_release()),
        }
    }

    /// `Some(reason)` when no archive can be expected to have this kernel's BTF.
    fn archive_missing(&self) -> Option<String> {
        match &self.f.btf_archive_hint {
            Some(h) if h.available => None,
            Some(h) => Some(match &h.error {
                Some(e) => format!("{}, and none usable was found: {e}", self.archive_need()),
                None => format!("{}: the archive has no entry for it", self.archive_need()),
            }),
            None => {
                let known = self.f.distro.id.as_deref().is_some_and(|id| ARCHIVED_DISTROS.contains(&id));
                (!known).then(|| {
                    format!(
                        "{}: BTF archives only cover known distros ({}); generate one with pahole and ship it",
                        self.archive_need(),
                        ARCHIVED_DISTROS.join(", ")
                    )
                })
            }
        }
    }

    /// What keeps a BTF from being generated here: nothing when one is at hand (generated now or
    /// cached earlier); the compiler's own error when generating failed; else each missing piece
    /// of the toolchain, with how to get it on this distribution.
    fn generation_problems(&self) -> Vec<String> {
        let t = &self.f.toolchain;
        match &self.f.btf_generated {
            Some(h) if h.available => return vec![],
            Some(h) if h.error.is_some() => {
                return vec![format!(
                    "generating BTF from the kernel headers failed: {}",
                    h.error.as_deref().unwrap_or("")
                )]
            }
            _ => {}
        }
        let mut r = Vec::new();
        if t.kernel_headers.is_none() {
            r.push(self.headers_missing());
        }
        if t.clang.is_none() {
            r.push(format!(
                "clang not found on PATH (looked for clang, clang-10 .. clang-30): {}",
                self.install_hint("clang", "clang", "clang", "clang")
            ));
        }
        if t.pahole.is_none() {
            r.push(format!(
                "pahole not found on PATH (it turns the compiler's DWARF into BTF): {}",
                self.install_hint("dwarves", "dwarves", "dwarves", "dwarves")
            ));
        }
        r
    }

    /// `<how to install>` on this node's distribution: the package names for apt, dnf/yum and
    /// zypper families.
    fn install_hint(&self, apt: &str, dnf: &str, zypper: &str, other: &str) -> String {
        let release = self.release();
        let fill = |pkg: &str| pkg.replace("{release}", release);
        match self.f.distro.id.as_deref() {
            Some("debian" | "ubuntu") => format!("apt-get install {}", fill(apt)),
            Some("amzn") if self.f.distro.version_id.as_deref() == Some("2") => format!("yum install {}", fill(dnf)),
            Some("rhel" | "centos" | "fedora" | "amzn" | "ol" | "rocky" | "almalinux") => {
                format!("dnf install {}", fill(dnf))
            }
            Some("sles" | "opensuse-leap" | "opensuse-tumbleweed") => format!("zypper install {}", fill(zypper)),
            _ => format!("install {} in the agent image", fill(other)),
        }
    }

    fn headers_missing(&self) -> String {
        let rel = self.release();
        format!(
            "kernel headers for {rel} not found (/lib/modules/{rel}/build, /usr/src/linux-headers-{rel}, \
             /usr/src/kernels/{rel}): {}, and mount /lib/modules and /usr/src into the agent's container",
            self.install_hint(
                "linux-headers-{release}",
                "kernel-devel-{release}",
                "kernel-default-devel",
                "the distribution's headers package for this kernel"
            )
        )
    }

    fn kmod_blockers(&self) -> Vec<String> {
        let f = self.f;
        let mut r = Vec::new();
        if f.config_option("MODULES") == Some("n")
            || (f.config.source.is_some() && f.config_option("MODULES").is_none())
        {
            r.push("kernel built without loadable modules (CONFIG_MODULES is not set)".into());
        } else if f.modules.modules_disabled == Some(1) {
            r.push(
                "module loading disabled (modules_disabled=1): it stays off until reboot; boot without \
                 kernel.modules_disabled=1"
                    .into(),
            );
        }
        if self.has_cap("CAP_SYS_MODULE") == Some(false) {
            r.push("the agent lacks CAP_SYS_MODULE: run privileged (or grant CAP_SYS_MODULE)".into());
        }
        if let Some((mode, origin)) = &self.lockdown {
            if mode == "integrity" || mode == "confidentiality" {
                r.push(format!(
                    "kernel lockdown={mode} ({origin}) refuses unsigned modules: strata's module is unsigned"
                ));
            }
        }
        let forced = if f.config_option("MODULE_SIG_FORCE") == Some("y") {
            Some("CONFIG_MODULE_SIG_FORCE=y")
        } else if f.modules.sig_enforce == Some(true) {
            Some("module.sig_enforce=1")
        } else {
            None
        };
        if let Some(why) = forced {
            r.push(format!(
                "module signatures are enforced ({why}): strata's module is unsigned; sign it with a key the kernel trusts"
            ));
        }
        if f.kernel.arch != "x86_64" && !f.kernel.arch.is_empty() {
            r.push(format!("strata's module is written for x86_64, this kernel is {}", f.kernel.arch));
        }
        if f.config_option("FTRACE_SYSCALLS") == Some("n") {
            r.push(
                "the module hooks the raw syscall tracepoints, which are missing (CONFIG_FTRACE_SYSCALLS is not set)"
                    .into(),
            );
        }
        r.extend(self.module_problems());
        r
    }

    /// What keeps the module from being at hand: nothing when it is (built now or cached
    /// earlier); the compiler's own error when building failed; else each missing piece: the
    /// kernel's headers (its kbuild tree), gcc and make.
    fn module_problems(&self) -> Vec<String> {
        let t = &self.f.toolchain;
        match &self.f.kmod_built {
            Some(h) if h.available => return vec![],
            Some(h) if h.error.is_some() => {
                return vec![format!("building the module failed: {}", h.error.as_deref().unwrap_or(""))]
            }
            _ => {}
        }
        let mut r = Vec::new();
        if t.kernel_headers.is_none() {
            r.push(format!("{} (the module is built on the node against them)", self.headers_missing()));
        }
        if t.gcc.is_none() || t.make.is_none() {
            let missing: Vec<&str> =
                [("gcc", &t.gcc), ("make", &t.make)].iter().filter(|(_, p)| p.is_none()).map(|(n, _)| *n).collect();
            r.push(format!(
                "{} not found on PATH (kbuild builds the module with them): {}, or build it ahead of time with `strata kmod build` where they are",
                missing.join(" and "),
                self.install_hint("gcc make", "gcc make", "gcc make", "gcc and make")
            ));
        }
        r
    }

    fn perf_event_blockers(&self) -> Vec<String> {
        let f = self.f;
        let mut r = Vec::new();
        if f.config_option("PERF_EVENTS") == Some("n") {
            r.push("kernel built without perf events (CONFIG_PERF_EVENTS is not set)".into());
        }
        match (&f.tracing.perf_tracepoint, f.tracing.perf_tracepoint.errno()) {
            (Probe::Supported, _) | (Probe::Unknown { .. }, _) => {}
            (_, Some(errno @ ("EACCES" | "EPERM"))) => {
                let paranoid = match f.tracing.perf_event_paranoid {
                    Some(p) => format!("perf_event_paranoid={p}"),
                    None => "perf_event_paranoid unknown".into(),
                };
                r.push(format!(
                    "perf_event_open of a tracepoint returned {errno}: {paranoid} and the agent lacks \
                     CAP_PERFMON/CAP_SYS_ADMIN: run privileged (system-wide raw tracepoint samples need CAP_PERFMON on \
                     5.8+, CAP_SYS_ADMIN before, or kernel.perf_event_paranoid=-1)"
                ));
            }
            (p, _) => r.push(format!("perf_event_open of a tracepoint failed: {}", p.reason())),
        }
        if f.config_option("FTRACE_SYSCALLS") == Some("n") {
            r.push("syscall tracepoints are missing (CONFIG_FTRACE_SYSCALLS is not set)".into());
        }
        r.extend(self.tracepoint_problems(|category| category == "syscalls"));
        if f.perf_event.clock_monotonic.is_unsupported() {
            r.push(format!(
                "perf_event_open refuses CLOCK_MONOTONIC sample times (use_clockid, Linux 4.1+): {}",
                f.perf_event.clock_monotonic.reason()
            ));
        }
        r
    }

    fn transport(&self, tier: Tier) -> Transport {
        let bpf = &self.f.bpf;
        match tier {
            t if t.is_bpf() => {
                if bpf.map_ringbuf.is_supported() && bpf.helper_ringbuf_output.is_supported() {
                    Transport::RingBuffer
                } else {
                    Transport::PerfBuffer
                }
            }
            Tier::Kmod => Transport::ModuleMmap,
            Tier::PerfEvent => Transport::PerfEventMmap,
            _ => Transport::None,
        }
    }

    fn notes(&self, chosen: Tier) -> Vec<String> {
        let f = self.f;
        let mut notes = Vec::new();
        if !f.tracing.kprobes.is_supported() {
            notes.push(format!(
                "kprobes unavailable ({}): optional kprobe extras stay off; capture uses tracepoints",
                f.tracing.kprobes.reason()
            ));
        }
        if chosen.is_bpf() {
            if self.transport(chosen) == Transport::PerfBuffer {
                notes.push("no BPF ring buffer (needs 5.8): events use the per-CPU perf buffer".into());
            }
            for feature in crate::features::FEATURES.iter().filter(|ft| ft.key.starts_with("bpf.")) {
                if let Probe::Unknown { reason } = (feature.probe)(f) {
                    notes.push(format!("{} could not be probed ({reason}): loading will tell", feature.description));
                }
            }
            if self.version.is_none() {
                notes.push(format!(
                    "kernel release {:?} has no a.b.c version: version checks skipped",
                    f.kernel.release
                ));
            }
        }
        if chosen == Tier::ArchivedBtf {
            notes.push(self.archive_need());
        }
        if chosen == Tier::PerfEvent {
            for r in crate::features::PERF_EVENT_REQUIREMENTS {
                if (r.probe)(f).is_unsupported() && r.fallback != crate::features::NO_FALLBACK {
                    notes.push(format!("perf-event: no {} (Linux {}+): {}", r.description, r.since, r.fallback));
                }
            }
        }
        if chosen == Tier::Kmod {
            notes.push(match &self.f.kmod_built {
                Some(h) if h.available => format!(
                    "loads strata's kernel module{}{}; unloaded when strata stops",
                    h.location.as_ref().map(|l| format!(" ({l})")).unwrap_or_default(),
                    h.path.as_ref().map(|p| format!(", cached at {p}")).unwrap_or_default()
                ),
                _ => "builds strata's kernel module against the kernel headers when it starts (gcc, make)".into(),
            });
        }
        if chosen == Tier::HostCompiled {
            notes.push(match &self.f.btf_generated {
                Some(h) if h.available => format!(
                    "uses the BTF generated from the kernel headers{}{}",
                    h.location.as_ref().map(|l| format!(" ({l})")).unwrap_or_default(),
                    h.path.as_ref().map(|p| format!(", cached at {p}")).unwrap_or_default()
                ),
                _ => "generates a BTF from the kernel headers when it starts (clang and pahole)".into(),
            });
        }
        if chosen.is_bpf() {
            for t in f.tracing.tracepoints.iter().filter(|t| t.optional && t.present == Some(false)) {
                let history = TRACEPOINT_HISTORY
                    .iter()
                    .find(|(name, _)| *name == format!("{}:{}", t.category, t.name))
                    .map(|(_, h)| format!(" ({h})"))
                    .unwrap_or_default();
                notes.push(format!(
                    "optional tracepoint {}:{} missing{history}: its records (TCP state changes) are left out",
                    t.category, t.name
                ));
            }
        }
        notes
    }
}
