//! The kernel features strata probes, each with the kernel version that introduced it. The
//! version is for people reading the report ("needs 5.8"): decisions use the probe results,
//! because distro kernels backport features (RHEL 8's 4.18 has BTF) and hardened kernels leave
//! them out.

use crate::facts::Facts;
use crate::probe::Probe;
use crate::version::KernelVersion;

pub struct Feature {
    /// Stable key, also the field name under `facts.bpf` / `facts.btf` / `facts.tracing`.
    pub key: &'static str,
    pub description: &'static str,
    /// The upstream release that introduced it.
    pub since: KernelVersion,
    pub probe: fn(&Facts) -> &Probe,
}

const fn v(major: u32, minor: u32) -> KernelVersion {
    KernelVersion::new(major, minor, 0)
}

pub const FEATURES: &[Feature] = &[
    Feature { key: "bpf.syscall", description: "bpf() syscall", since: v(3, 18), probe: |f| &f.bpf.syscall },
    Feature { key: "bpf.map_hash", description: "hash map", since: v(3, 19), probe: |f| &f.bpf.map_hash },
    Feature {
        key: "bpf.map_perf_event_array",
        description: "perf event array map (perf buffer)",
        since: v(4, 3),
        probe: |f| &f.bpf.map_perf_event_array,
    },
    Feature {
        key: "bpf.map_percpu_array",
        description: "per-CPU array map",
        since: v(4, 6),
        probe: |f| &f.bpf.map_percpu_array,
    },
    Feature { key: "bpf.map_ringbuf", description: "ring buffer map", since: v(5, 8), probe: |f| &f.bpf.map_ringbuf },
    Feature { key: "bpf.prog_kprobe", description: "kprobe programs", since: v(4, 1), probe: |f| &f.bpf.prog_kprobe },
    Feature {
        key: "bpf.prog_tracepoint",
        description: "tracepoint programs",
        since: v(4, 7),
        probe: |f| &f.bpf.prog_tracepoint,
    },
    Feature {
        key: "bpf.prog_perf_event",
        description: "perf_event programs",
        since: v(4, 9),
        probe: |f| &f.bpf.prog_perf_event,
    },
    Feature {
        key: "bpf.prog_raw_tracepoint",
        description: "raw tracepoint programs",
        since: v(4, 17),
        probe: |f| &f.bpf.prog_raw_tracepoint,
    },
    Feature {
        key: "bpf.helper_probe_read",
        description: "bpf_probe_read helper",
        since: v(4, 1),
        probe: |f| &f.bpf.helper_probe_read,
    },
    Feature {
        key: "bpf.helper_get_current_task",
        description: "bpf_get_current_task helper",
        since: v(4, 8),
        probe: |f| &f.bpf.helper_get_current_task,
    },
    Feature {
        key: "bpf.helper_probe_read_user",
        description: "bpf_probe_read_user helper",
        since: v(5, 5),
        probe: |f| &f.bpf.helper_probe_read_user,
    },
    Feature {
        key: "bpf.helper_probe_read_user_str",
        description: "bpf_probe_read_user_str helper",
        since: v(5, 5),
        probe: |f| &f.bpf.helper_probe_read_user_str,
    },
    Feature {
        key: "bpf.helper_ringbuf_output",
        description: "bpf_ringbuf_output helper",
        since: v(5, 8),
        probe: |f| &f.bpf.helper_ringbuf_output,
    },
    Feature {
        key: "btf.vmlinux",
        description: "kernel BTF at /sys/kernel/btf/vmlinux",
        since: v(5, 4),
        probe: |f| &f.btf.vmlinux,
    },
    Feature {
        key: "tracing.perf_tracepoint",
        description: "perf_event_open of a tracepoint",
        since: v(2, 6),
        probe: |f| &f.tracing.perf_tracepoint,
    },
    Feature {
        key: "tracing.kprobes",
        description: "kprobes (CONFIG_KPROBES)",
        since: v(2, 6),
        probe: |f| &f.tracing.kprobes,
    },
];

/// What the perf-event tier itself needs besides perf events on the syscall tracepoints (those are
/// in [`FEATURES`] and the plan's requirements), each with the kernel version that brought it and
/// what the tier does on a kernel without it. The tier asks the kernel the same questions when it
/// starts, and logs the fallbacks it takes.
pub struct Requirement {
    /// Stable key, also the field name under `facts.perf_event`.
    pub key: &'static str,
    pub description: &'static str,
    /// The upstream release that introduced it.
    pub since: KernelVersion,
    pub probe: fn(&Facts) -> &Probe,
    /// What the tier does where the probe says no.
    pub fallback: &'static str,
}

/// The fallback text of requirements the tier cannot do without.
pub const NO_FALLBACK: &str = "none: the perf-event tier cannot start";

pub const PERF_EVENT_REQUIREMENTS: &[Requirement] = &[
    Requirement {
        key: "perf_event.tracefs",
        description: "tracefs",
        since: v(4, 1),
        probe: |f| &f.perf_event.tracefs,
        fallback: "the tracing directory of debugfs (/sys/kernel/debug/tracing), where debugfs is mounted",
    },
    Requirement {
        key: "perf_event.clock_monotonic",
        description: "CLOCK_MONOTONIC sample times (use_clockid)",
        since: v(4, 1),
        probe: |f| &f.perf_event.clock_monotonic,
        fallback: NO_FALLBACK,
    },
    Requirement {
        key: "perf_event.fd_cloexec",
        description: "PERF_FLAG_FD_CLOEXEC",
        since: v(3, 14),
        probe: |f| &f.perf_event.fd_cloexec,
        fallback: "opened without it, then fcntl(FD_CLOEXEC)",
    },
    Requirement {
        key: "perf_event.process_vm_readv",
        description: "process_vm_readv (CONFIG_CROSS_MEMORY_ATTACH)",
        since: v(3, 2),
        probe: |f| &f.perf_event.process_vm_readv,
        fallback: "payloads read from /proc/PID/mem",
    },
    Requirement {
        key: "perf_event.proc_pid_mem",
        description: "reads of /proc/PID/mem",
        since: KernelVersion::new(2, 6, 39),
        probe: |f| &f.perf_event.proc_pid_mem,
        fallback: "without process_vm_readv too: no payloads; data events keep their byte counts and each is \
                   counted as perf_payload_unreadable loss",
    },
    Requirement {
        key: "perf_event.pidfd_open",
        description: "pidfd_open",
        since: v(5, 3),
        probe: |f| &f.perf_event.pidfd_open,
        fallback: "sockets resolved with sock_diag dumps, else from /proc/PID/net",
    },
    Requirement {
        key: "perf_event.pidfd_getfd",
        description: "pidfd_getfd",
        since: v(5, 6),
        probe: |f| &f.perf_event.pidfd_getfd,
        fallback: "sockets resolved with sock_diag dumps, else from /proc/PID/net",
    },
    Requirement {
        key: "perf_event.sock_diag",
        description: "sock_diag dumps (CONFIG_INET_DIAG, tcp_diag, udp_diag)",
        since: v(3, 3),
        probe: |f| &f.perf_event.sock_diag,
        fallback: "where pidfd_getfd is missing too: /proc/PID/net/{tcp,tcp6,udp,udp6}, whose cost grows with the \
                   node's socket tables (milliseconds per new socket on large nodes: short-lived clients are \
                   then more often counted as perf_unresolved)",
    },
];

/// The feature with `key`, if any.
pub fn feature(key: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.key == key)
}
