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

/// The feature with `key`, if any.
pub fn feature(key: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.key == key)
}
