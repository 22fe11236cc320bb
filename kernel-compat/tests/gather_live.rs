//! Gathers facts on this machine for real and checks what is known to be true of it: the
//! development VM and CI run as root on a 6.18 kernel with BTF, BPF and tracefs, and without
//! kprobes or loadable modules (DESIGN.md, "Kernels that can be had here").

use kernel_compat::facts::probe_tracepoint_helper;
use kernel_compat::{gather, plan, report, BtfSource, BuiltTiers, GatherOptions, Tier, Transport};

fn gather_here() -> kernel_compat::Facts {
    gather(&GatherOptions::with_tracepoints([
        ("syscalls", "sys_enter_read"),
        ("syscalls", "sys_exit_read"),
        ("syscalls", "sys_enter_close"),
        ("sock", "inet_sock_set_state"),
    ]))
}

#[test]
fn this_machine_can_run_core() {
    let facts = gather_here();
    let b = &facts.bpf;
    for (what, probe) in [
        ("bpf()", &b.syscall),
        ("tracepoint programs", &b.prog_tracepoint),
        ("raw tracepoint programs", &b.prog_raw_tracepoint),
        ("hash maps", &b.map_hash),
        ("per-CPU arrays", &b.map_percpu_array),
        ("perf event arrays", &b.map_perf_event_array),
        ("ring buffers", &b.map_ringbuf),
        ("bpf_probe_read_user", &b.helper_probe_read_user),
        ("bpf_probe_read_user_str", &b.helper_probe_read_user_str),
        ("bpf_get_current_task", &b.helper_get_current_task),
        ("bpf_ringbuf_output", &b.helper_ringbuf_output),
        ("kernel BTF", &facts.btf.vmlinux),
        ("perf_event_open of a tracepoint", &facts.tracing.perf_tracepoint),
    ] {
        assert!(probe.is_supported(), "{what} should be supported here: {probe:?}");
    }
    assert!(facts.btf.size_bytes.unwrap() > 1 << 20, "{:?}", facts.btf);
    assert!(facts.tracing.kprobes.is_unsupported(), "this kernel has no CONFIG_KPROBES: {:?}", facts.tracing.kprobes);
    assert!(facts.tracing.tracefs.is_some());
    assert!(facts.tracing.tracepoints.iter().all(|t| t.present == Some(true)), "{:?}", facts.tracing.tracepoints);
    assert!(facts.kernel_version().unwrap() >= kernel_compat::KernelVersion::new(5, 8, 0));
    assert!(facts.config.source.is_some(), "kernel config should be readable here");
    assert_eq!(facts.config_enabled("KPROBES"), Some(false));
    let caps = facts.security.capabilities.as_ref().expect("CapEff readable");
    assert!(caps.has("CAP_BPF") && caps.has("CAP_SYS_ADMIN"), "{caps:?}");
    assert!(facts.distro.id.is_some());

    let p = plan(&facts, &BuiltTiers::current());
    assert_eq!((p.tier, p.transport, p.btf_source), (Tier::Core, Transport::RingBuffer, BtfSource::Kernel), "{p:#?}");
    assert_eq!(p.exit_code(), 0);
    let text = report::render_text(&facts, &p);
    assert!(text.contains("✓ ring buffer map") && text.contains("✗ kprobes"), "{text}");
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
