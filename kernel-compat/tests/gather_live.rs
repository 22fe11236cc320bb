//! Gathers facts on this host for real and holds each answer to what the host shows by other
//! means: the files, the kernel config and the kernel version. Nothing here assumes the machine
//! it runs on: a host with kprobes and one without, one with BTF and one without, must all pass.
//! The BPF probes' answers are compared with bpftool's in tests/bpftool_agrees.rs.

use std::path::Path;

use kernel_compat::facts::probe_tracepoint_helper;
use kernel_compat::{gather, plan, report, BtfSource, BuiltTiers, GatherOptions, Tier, Transport};

fn gather_here() -> kernel_compat::Facts {
    let mut opts = GatherOptions::with_tracepoints([
        ("syscalls", "sys_enter_read"),
        ("syscalls", "sys_exit_read"),
        ("syscalls", "sys_enter_close"),
    ]);
    opts.optional_tracepoints = vec![("sock".into(), "inet_sock_set_state".into())];
    gather(&opts)
}

#[test]
fn facts_agree_with_the_host() {
    let facts = gather_here();
    // Kernel identity: what /proc says.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(facts.kernel.release, release.trim());

    // BTF: present exactly when the file is, with its size.
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    assert_eq!(facts.btf.vmlinux.is_supported(), btf.exists(), "{:?}", facts.btf);
    if let Ok(meta) = std::fs::metadata(btf) {
        assert_eq!(facts.btf.size_bytes, Some(meta.len()));
    }

    // kprobes: whatever the host has, the answer follows its config and tracefs.
    match facts.config_enabled("KPROBES") {
        Some(false) => assert!(facts.tracing.kprobes.is_unsupported(), "{:?}", facts.tracing.kprobes),
        Some(true) => assert!(!facts.tracing.kprobes.is_unsupported(), "{:?}", facts.tracing.kprobes),
        None => {}
    }

    // Tracepoints: present exactly when tracefs lists them.
    if let Some(tracefs) = &facts.tracing.tracefs {
        for t in &facts.tracing.tracepoints {
            let listed = Path::new(tracefs).join("events").join(&t.category).join(&t.name).is_dir();
            assert_eq!(t.present, Some(listed), "{t:?}");
        }
        assert!(facts.tracing.tracepoints.iter().any(|t| t.optional && t.category == "sock"));
    }

    // Capabilities: CapEff of this process.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim().to_string();
    assert_eq!(facts.security.capabilities.as_ref().map(|c| c.effective.as_str()), Some(cap_eff.as_str()));

    // The distro: /etc/os-release's ID.
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let id = os.lines().find_map(|l| l.strip_prefix("ID=")).map(|v| v.trim_matches('"').to_string());
    assert_eq!(facts.distro.id, id);
}

/// Where this host can run the CO-RE tier (root, bpf(), BTF, tracefs), the plan says so, and the
/// report shows it; where it cannot, the plan says why instead. Either way the plan is checked.
#[test]
fn the_plan_follows_the_host() {
    let facts = gather_here();
    let p = plan(&facts, &BuiltTiers::current());
    let text = report::render_text(&facts, &p);
    let core_possible = facts.bpf.syscall.is_supported()
        && facts.btf.vmlinux.is_supported()
        && facts.tracing.tracefs.is_some()
        && facts.tracing.tracepoints.iter().all(|t| t.optional || t.present == Some(true));
    if core_possible {
        assert_eq!((p.tier, p.btf_source), (Tier::Core, BtfSource::Kernel), "{p:#?}");
        let ring = facts.bpf.map_ringbuf.is_supported() && facts.bpf.helper_ringbuf_output.is_supported();
        assert_eq!(p.transport, if ring { Transport::RingBuffer } else { Transport::PerfBuffer });
        assert_eq!(p.exit_code(), 0);
        assert!(text.contains("decision: tier core"), "{text}");
    } else {
        assert_ne!(p.tier, Tier::Core);
        assert!(p.rejection(Tier::Core).is_some_and(|r| !r.reasons.is_empty()), "{p:#?}");
    }
}

#[test]
fn helper_probe_tells_absent_helpers_apart() {
    // bpf_skb_store_bytes (9) exists but tracepoint programs may not call it; 100000 is no helper at all.
    for id in [9, 100_000] {
        let probe = probe_tracepoint_helper(id);
        assert!(probe.is_unsupported(), "helper {id}: {probe:?}");
        assert!(probe.reason().contains("func") || probe.reason().contains("helper"), "{probe:?}");
    }
    assert!(probe_tracepoint_helper(35).is_supported());
}

#[test]
fn gathered_facts_round_trip_through_json() {
    let facts = gather_here();
    let json = serde_json::to_string(&facts).unwrap();
    let back: kernel_compat::Facts = serde_json::from_str(&json).unwrap();
    assert_eq!(back, facts);
}

/// The perf-event tier's own requirements (facts.perf_event), held to what the host shows by
/// other means: its kernel version (a kernel at least as new as the one that brought a syscall
/// has it), its config, /proc/filesystems.
#[test]
fn perf_event_requirements_agree_with_the_host() {
    let facts = gather_here();
    let p = &facts.perf_event;
    let version = facts.kernel_version().expect("the host's release has a version");
    let at_least = |major, minor| version >= kernel_compat::KernelVersion::new(major, minor, 0);
    if at_least(5, 3) {
        assert!(p.pidfd_open.is_supported(), "{:?}", p.pidfd_open);
    }
    if at_least(5, 6) {
        assert!(p.pidfd_getfd.is_supported(), "{:?}", p.pidfd_getfd);
    }
    for (probe, option) in [(&p.process_vm_readv, "CROSS_MEMORY_ATTACH"), (&p.sock_diag, "INET_DIAG")] {
        match facts.config_enabled(option) {
            Some(true) => assert!(probe.is_supported(), "CONFIG_{option}: {probe:?}"),
            Some(false) => assert!(probe.is_unsupported(), "CONFIG_{option}: {probe:?}"),
            None => {}
        }
    }
    if p.process_vm_readv.is_unsupported() {
        assert_eq!(p.process_vm_readv.errno(), Some("ENOSYS"));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap();
    assert_eq!(p.tracefs.is_supported(), filesystems.lines().any(|l| l.split_whitespace().last() == Some("tracefs")));
    // /proc/self/mem is readable by its own process on every kernel strata runs on.
    assert!(p.proc_pid_mem.is_supported(), "{:?}", p.proc_pid_mem);
    if facts.tracing.perf_tracepoint.is_supported() && at_least(4, 1) {
        assert!(p.clock_monotonic.is_supported(), "{:?}", p.clock_monotonic);
        assert!(p.fd_cloexec.is_supported(), "{:?}", p.fd_cloexec);
    }
}
