//! The plan on fact sets of real kernels (fixtures/facts/*.json). Each test names the tier it
//! expects with every tier built (the decision logic on its own) and with today's build (`core`,
//! `archived-btf` and `perf-event`), and checks that the reasons name the right thing.

use kernel_compat::facts::BtfHint;
use kernel_compat::{plan, report, BtfSource, BuiltTiers, Facts, Fidelity, Plan, SyscallHooks, Tier, Transport};

fn fixture(name: &str) -> Facts {
    let path = format!("{}/fixtures/facts/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn plan_all(name: &str) -> Plan {
    plan(&fixture(name), &BuiltTiers::all())
}

fn plan_current(name: &str) -> Plan {
    plan(&fixture(name), &BuiltTiers::current())
}

/// Asserts that the rejection of `tier` has a reason containing each of `needles`.
#[track_caller]
fn assert_rejected_for(plan: &Plan, tier: Tier, needles: &[&str]) {
    let rejection = plan.rejection(tier).unwrap_or_else(|| panic!("{} not rejected: {plan:#?}", tier.name()));
    for needle in needles {
        assert!(
            rejection.reasons.iter().any(|r| r.contains(needle)),
            "{} rejection lacks {needle:?}: {:#?}",
            tier.name(),
            rejection.reasons
        );
    }
}

#[track_caller]
fn assert_only_better_tiers_rejected(plan: &Plan) {
    let better: Vec<Tier> = Tier::PREFERENCE.iter().copied().take_while(|t| *t != plan.tier).collect();
    let rejected: Vec<Tier> = plan.rejected.iter().map(|r| r.tier).collect();
    assert_eq!(rejected, better, "{plan:#?}");
    assert!(plan.rejected.iter().all(|r| !r.reasons.is_empty()), "{plan:#?}");
}

#[test]
fn centos7_3_10_falls_to_perf_event() {
    let p = plan_all("centos7-3.10.json");
    assert_eq!(p.tier, Tier::PerfEvent);
    assert_eq!(
        (p.transport, p.btf_source, p.fidelity(), p.exit_code()),
        (Transport::PerfEventMmap, BtfSource::None, Fidelity::Degraded, 10)
    );
    assert_rejected_for(&p, Tier::Core, &["older than 4.14", "verifier is too limited", "kernel BTF missing"]);
    assert_rejected_for(
        &p,
        Tier::HostCompiled,
        &["clang not found", "kernel headers for 3.10.0-1160.el7.x86_64 not found"],
    );
    assert_rejected_for(&p, Tier::Kmod, &["kernel headers for 3.10.0-1160.el7.x86_64 not found"]);
    assert_only_better_tiers_rejected(&p);

    let today = plan_current("centos7-3.10.json");
    assert_eq!((today.tier, today.exit_code()), (Tier::PerfEvent, 10));
    assert_rejected_for(&today, Tier::Kmod, &["kernel headers for 3.10.0-1160.el7.x86_64 not found"]);
}

#[test]
fn ubuntu16_04_4_4_uses_the_kernel_module() {
    let p = plan_all("ubuntu16.04-4.4.json");
    assert_eq!((p.tier, p.transport), (Tier::Kmod, Transport::ModuleMmap));
    assert_rejected_for(
        &p,
        Tier::Core,
        &["tracepoint BPF programs unsupported", "kernel 4.7+", "per-CPU array maps unsupported", "older than 4.14"],
    );
    assert_only_better_tiers_rejected(&p);
    let today = plan_current("ubuntu16.04-4.4.json");
    assert_eq!((today.tier, today.exit_code()), (Tier::Kmod, 10));
    assert!(today.notes.iter().any(|n| n.contains("builds strata's kernel module")), "{:#?}", today.notes);
    assert_eq!(today.fallbacks, vec![Tier::PerfEvent]);

    // Without a compiler, the module cannot be built on the node: perf-event, and why.
    let mut facts = fixture("ubuntu16.04-4.4.json");
    facts.toolchain.gcc = None;
    let p = plan(&facts, &BuiltTiers::current());
    assert_eq!(p.tier, Tier::PerfEvent);
    assert_rejected_for(&p, Tier::Kmod, &["gcc not found on PATH", "apt-get install gcc make", "strata kmod build"]);
    // A module built ahead of time (an init container, or `strata kmod build`) needs neither.
    facts.toolchain.kernel_headers = None;
    facts.kmod_built =
        Some(BtfHint { available: true, path: Some("/var/cache/strata/kmod/x.ko".into()), ..Default::default() });
    assert_eq!(plan(&facts, &BuiltTiers::current()).tier, Tier::Kmod);
    // A build that failed says why.
    facts.kmod_built = Some(BtfHint { error: Some("strata_kmod.c:1: error: boom".into()), ..Default::default() });
    let p = plan(&facts, &BuiltTiers::current());
    assert_rejected_for(&p, Tier::Kmod, &["building the module failed: strata_kmod.c:1: error: boom"]);
}

/// The fleet's eBPF kernels without BTF: each runs the CO-RE probes with an archived BTF, over a
/// perf buffer (no ring buffer before 5.8), in today's build as with every tier built.
#[test]
fn fleet_kernels_without_btf_plan_archived_btf_over_a_perf_buffer() {
    for (name, distro_release) in [
        ("amzn2-4.14.json", "amzn 2 4.14.336-257.562.amzn2.x86_64"),
        ("ubuntu18.04-4.15.json", "ubuntu 18.04 4.15.0-213-generic"),
        ("rhel8.1-4.18.json", "rhel 8.1 4.18.0-147.el8.x86_64"),
        ("debian10-4.19.json", "debian 10 4.19.0-27-amd64"),
        ("ubuntu20.04-5.4.json", "ubuntu 20.04 5.4.0-216-generic"),
    ] {
        for p in [plan_all(name), plan_current(name)] {
            assert_eq!(
                (p.tier, p.transport, p.btf_source, p.exit_code()),
                (Tier::ArchivedBtf, Transport::PerfBuffer, BtfSource::Archive, 0),
                "{name}: {p:#?}"
            );
            assert_rejected_for(&p, Tier::Core, &["kernel BTF missing: /sys/kernel/btf/vmlinux not found"]);
            assert_eq!(p.rejected.len(), 1, "{name}: only core is better: {p:#?}");
            assert!(p.notes.iter().any(|n| n.contains("perf buffer")), "{name}: {:#?}", p.notes);
            assert!(
                p.notes.iter().any(|n| n.contains(&format!("needs a BTF archive for {distro_release}"))),
                "{name}: {:#?}",
                p.notes
            );
            // Where it cannot load after all, perf-event takes over.
            assert!(p.fallbacks.contains(&Tier::PerfEvent), "{name}: {p:#?}");
            // A BTF from an archive relocates the per-syscall probes only.
            assert_eq!(p.syscall_hooks, SyscallHooks::PerSyscall, "{name}");
        }
    }
}

#[test]
fn amazon_linux_2_4_14_lacks_inet_sock_set_state_which_is_optional() {
    let p = plan_current("amzn2-4.14.json");
    assert_eq!(p.tier, Tier::ArchivedBtf);
    // 4.14 itself is new enough: the version must not be the complaint.
    assert!(!p.rejection(Tier::Core).unwrap().reasons.iter().any(|r| r.contains("older than 4.14")));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("optional tracepoint sock:inet_sock_set_state missing") && n.contains("4.16")),
        "{:#?}",
        p.notes
    );
}

#[test]
fn an_archive_that_failed_names_its_fault_and_the_plan_moves_on() {
    let mut f = fixture("debian10-4.19.json");
    f.btf_archive_hint = Some(kernel_compat::facts::BtfHint {
        available: false,
        location: Some("http://127.0.0.1:8081/debian/10/x86_64/4.19.0-27-amd64.btf.tar.xz".into()),
        error: Some("not a complete xz-compressed tar archive: the download is truncated or corrupt".into()),
        ..Default::default()
    });
    let p = plan(&f, &BuiltTiers::current());
    assert_eq!(p.tier, Tier::PerfEvent);
    assert_rejected_for(&p, Tier::ArchivedBtf, &["truncated or corrupt"]);
    // Only archived-btf's reasons name the archive; core's name its own BTF.
    assert!(!p.rejection(Tier::Core).unwrap().reasons.iter().any(|r| r.contains("xz")));

    f.btf_archive_hint = Some(kernel_compat::facts::BtfHint {
        available: true,
        location: Some("http://127.0.0.1:8081/debian/10/x86_64/4.19.0-27-amd64.btf.tar.xz".into()),
        path: Some("/var/cache/strata/btf/archive/debian/10/x86_64/4.19.0-27-amd64.btf".into()),
        cached: true,
        ..Default::default()
    });
    let p = plan(&f, &BuiltTiers::current());
    assert_eq!(p.tier, Tier::ArchivedBtf);
    assert!(p.notes.iter().any(|n| n.contains("cached at /var/cache/strata/btf/archive/debian/10")), "{:#?}", p.notes);
}

#[test]
fn modern_kernels_with_btf_run_core_on_the_ring_buffer() {
    for name in ["debian11-5.10.json", "ubuntu22.04-5.15.json", "debian12-6.1.json", "dev-6.18-no-kprobes.json"] {
        for p in [plan_all(name), plan_current(name)] {
            assert_eq!(
                (p.tier, p.transport, p.btf_source),
                (Tier::Core, Transport::RingBuffer, BtfSource::Kernel),
                "{name}"
            );
            assert!(p.rejected.is_empty(), "{name}: {p:#?}");
            assert_eq!(p.exit_code(), 0);
            // bpf_get_current_task_btf (5.11) decides the hooks.
            let hooks =
                if name.starts_with("debian11-5.10") { SyscallHooks::PerSyscall } else { SyscallHooks::RawSyscalls };
            assert_eq!(p.syscall_hooks, hooks, "{name}");
        }
    }
}

#[test]
fn a_kernel_without_kprobes_still_runs_core() {
    let p = plan_current("dev-6.18-no-kprobes.json");
    assert_eq!(p.tier, Tier::Core);
    assert!(
        p.notes.iter().any(|n| n.contains("kprobes unavailable") && n.contains("CONFIG_KPROBES")),
        "{:#?}",
        p.notes
    );
}

#[test]
fn lockdown_confidentiality_rejects_bpf_and_modules() {
    let p = plan_all("lockdown-confidentiality.json");
    assert_eq!((p.tier, p.exit_code()), (Tier::PerfEvent, 10));
    let lockdown = "kernel lockdown=confidentiality (/sys/kernel/security/lockdown) forbids reading kernel memory from BPF (bpf_probe_read)";
    for tier in [Tier::Core, Tier::ArchivedBtf, Tier::HostCompiled] {
        assert_rejected_for(&p, tier, &[lockdown]);
    }
    assert_rejected_for(&p, Tier::Kmod, &["lockdown=confidentiality", "refuses unsigned modules"]);
}

#[test]
fn bpf_denied_to_an_unprivileged_container() {
    let p = plan_all("bpf-eperm-unprivileged.json");
    assert_eq!((p.tier, p.exit_code()), (Tier::None, 11));
    assert_rejected_for(
        &p,
        Tier::Core,
        &["bpf() returned EPERM: unprivileged_bpf_disabled=2 and the agent lacks CAP_BPF/CAP_SYS_ADMIN: run privileged"],
    );
    // The features behind a refused bpf() are unknown, not missing: no reason may claim them absent.
    assert!(!p.rejection(Tier::Core).unwrap().reasons.iter().any(|r| r.contains("unsupported")), "{p:#?}");
    assert_rejected_for(&p, Tier::Kmod, &["lacks CAP_SYS_MODULE"]);
    assert_rejected_for(&p, Tier::PerfEvent, &["EACCES", "perf_event_paranoid=4", "CAP_PERFMON"]);
}

#[test]
fn gpu_node_with_tracefs_unmounted_and_modules_off() {
    let p = plan_all("ubuntu24.04-6.18-gpu-node.json");
    assert_eq!(p.tier, Tier::None);
    for tier in [Tier::Core, Tier::PerfEvent] {
        assert_rejected_for(&p, tier, &["tracefs is not mounted", "mount -t tracefs tracefs /sys/kernel/tracing"]);
    }
    // BTF is there: core is held back by tracefs alone.
    assert_eq!(p.rejection(Tier::Core).unwrap().reasons.len(), 1, "{p:#?}");
    assert_rejected_for(
        &p,
        Tier::Kmod,
        &[
            "module loading disabled (modules_disabled=1)",
            "CONFIG_MODULE_SIG_FORCE=y",
            "lockdown=integrity (CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y)",
        ],
    );
    assert_rejected_for(
        &p,
        Tier::HostCompiled,
        &["clang not found", "kernel headers for 6.18.44-fc-v657-gpu not found"],
    );

    // Mounting tracefs (what worked on that node) is all core needs.
    let mut mounted = fixture("ubuntu24.04-6.18-gpu-node.json");
    mounted.tracing.tracefs = Some("/sys/kernel/tracing".into());
    for tp in &mut mounted.tracing.tracepoints {
        tp.present = Some(true);
    }
    assert_eq!(plan(&mounted, &BuiltTiers::current()).tier, Tier::Core);
}

#[test]
fn kernel_without_the_bpf_syscall() {
    // The tinyconfig stand-in of DESIGN.md: bpf() returns ENOSYS.
    let mut f = fixture("centos7-3.10.json");
    f.config.options.insert("BPF_SYSCALL".into(), "n".into());
    f.bpf.syscall =
        kernel_compat::Probe::Unsupported { errno: Some("ENOSYS".into()), reason: "bpf() failed with ENOSYS".into() };
    let p = plan(&f, &BuiltTiers::all());
    assert_rejected_for(&p, Tier::Core, &["bpf() is not available (ENOSYS)", "CONFIG_BPF_SYSCALL is not set"]);
    assert_eq!(p.tier, Tier::PerfEvent);
}

#[test]
fn archived_btf_only_for_distros_archives_cover() {
    let mut f = fixture("rhel8.1-4.18.json");
    f.distro.id = Some("myos".into());
    let p = plan(&f, &BuiltTiers::all());
    assert_ne!(p.tier, Tier::ArchivedBtf);
    assert_rejected_for(&p, Tier::ArchivedBtf, &["needs a BTF archive for myos 8.1 4.18.0-147.el8.x86_64"]);

    f.btf_archive_hint = Some(kernel_compat::facts::BtfHint { available: true, ..Default::default() });
    assert_eq!(plan(&f, &BuiltTiers::all()).tier, Tier::ArchivedBtf);
}

#[test]
fn every_fixture_names_its_source_and_round_trips() {
    let dir = format!("{}/fixtures/facts", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let facts = fixture(path.file_name().unwrap().to_str().unwrap());
        assert_eq!(facts.schema_version, 1, "{path:?}");
        assert!(facts.source.as_deref().is_some_and(|s| s.len() > 40), "{path:?} must say where its values come from");
        let again: Facts = serde_json::from_value(serde_json::to_value(&facts).unwrap()).unwrap();
        assert_eq!(again, facts, "{path:?}");
        // Plans are pure: the same facts give the same plan.
        assert_eq!(plan(&facts, &BuiltTiers::all()), plan(&facts, &BuiltTiers::all()));
        count += 1;
    }
    assert!(count >= 12, "only {count} fixtures");
}

#[test]
fn reports_show_features_decision_and_reasons() {
    let facts = fixture("amzn2-4.14.json");
    let p = plan(&facts, &BuiltTiers::current());
    let text = report::render_text(&facts, &p);
    assert!(text.contains("✓ bpf() syscall"), "{text}");
    assert!(text.contains("✗ ring buffer map") && text.contains("5.8"), "{text}");
    assert!(text.contains("decision: tier archived-btf (fidelity full, exit code 0)"), "{text}");
    assert!(text.contains("core rejected:") && text.contains("kernel BTF missing"), "{text}");
    assert!(text.contains("if it fails to load: perf-event"), "{text}");

    let json = report::render_json(&facts, &p);
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["tier"], "archived-btf");
    assert_eq!(json["transport"], "perf-buffer");
    assert_eq!(json["btf_source"], "archive");
    assert_eq!(json["fidelity"], "full");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["fallbacks"][0], "perf-event");
    assert_eq!(json["rejected"][0]["tier"], "core");
    assert!(json["rejected"][0]["reasons"][0].is_string());
    assert_eq!(json["facts"]["kernel"]["release"], "4.14.336-257.562.amzn2.x86_64");
    assert_eq!(json["features"][0]["key"], "bpf.syscall");
    assert_eq!(json["features"][0]["probe"]["status"], "supported");

    let core = plan(&fixture("debian12-6.1.json"), &BuiltTiers::current());
    let json = report::render_json(&fixture("debian12-6.1.json"), &core);
    assert_eq!(
        (json["tier"].as_str(), json["transport"].as_str(), json["btf_source"].as_str()),
        (Some("core"), Some("ring-buffer"), Some("kernel"))
    );
}

/// Facts gathered inside the kernel matrix's QEMU guests (`ci-kernels run --save-facts`): real
/// kernels, not hand-written ones. Each must plan to the tier the matrix expects of it.
#[test]
fn facts_gathered_in_matrix_guests_plan_as_the_matrix_expects() {
    let dir = format!("{}/fixtures/facts/matrix", env!("CARGO_MANIFEST_DIR"));
    let mut seen = vec![];
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let facts: Facts =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = plan(&facts, &BuiltTiers::current());
        if name.starts_with("debian-") {
            assert_eq!(
                (p.tier, p.transport, p.btf_source),
                (Tier::Core, Transport::RingBuffer, BtfSource::Kernel),
                "{name}"
            );
            // As the matrix's native-btf-per-syscall (5.10) and native-btf cells expect.
            let hooks = if name.contains("5.10") { SyscallHooks::PerSyscall } else { SyscallHooks::RawSyscalls };
            assert_eq!(p.syscall_hooks, hooks, "{name}");
        } else if name.starts_with("bpf-less") {
            assert_eq!(p.tier, Tier::PerfEvent, "{name}");
            assert_rejected_for(&p, Tier::Core, &["ENOSYS"]);
        } else {
            panic!("{name}: no expectation for this kernel: add one");
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen.len(), 4, "one file per matrix kernel: {seen:?}");
}

/// Kernels with eBPF, no BTF and no archive entry: the host-compiled tier, when the node can make
/// a BTF from its headers, or has one made earlier (an init container's).
#[test]
fn host_compiled_where_no_archive_serves_the_kernel() {
    use kernel_compat::facts::BtfHint;
    let mut f = fixture("ubuntu20.04-5.4.json");
    f.btf_archive_hint = Some(BtfHint { error: Some("BTF archive …: not found".into()), ..Default::default() });
    // Nothing to build it with: each missing piece named, with how to get it on Ubuntu.
    let p = plan(&f, &BuiltTiers::all());
    assert_ne!(p.tier, Tier::HostCompiled);
    assert_rejected_for(
        &p,
        Tier::HostCompiled,
        &[
            "kernel headers for 5.4.0-216-generic not found",
            "apt-get install linux-headers-5.4.0-216-generic",
            "clang not found on PATH",
            "apt-get install clang",
            "pahole not found on PATH",
            "apt-get install dwarves",
        ],
    );
    // The toolchain present: chosen, with a generated BTF.
    f.toolchain.kernel_headers = Some("/lib/modules/5.4.0-216-generic/build".into());
    f.toolchain.clang = Some("/usr/bin/clang".into());
    f.toolchain.pahole = Some("/usr/bin/pahole".into());
    let p = plan(&f, &BuiltTiers::all());
    assert_eq!((p.tier, p.transport, p.btf_source), (Tier::HostCompiled, Transport::PerfBuffer, BtfSource::Generated));
    // Generating failed: the compiler's own error is the reason, and the plan moves on.
    f.btf_generated = Some(BtfHint {
        error: Some("the compiler failed: sched.h:3:10: fatal error: 'asm/current.h' file not found".into()),
        ..Default::default()
    });
    let p = plan(&f, &BuiltTiers::all());
    assert_ne!(p.tier, Tier::HostCompiled);
    assert_rejected_for(
        &p,
        Tier::HostCompiled,
        &["generating BTF from the kernel headers failed", "'asm/current.h' file not found"],
    );
    // A BTF generated earlier is enough without any toolchain (the guest of an init container).
    f.toolchain = Default::default();
    f.btf_generated = Some(BtfHint {
        available: true,
        path: Some("/var/cache/strata/btf/generated/5.4.0-216-generic/0123456789abcdef.btf".into()),
        cached: true,
        ..Default::default()
    });
    let p = plan(&f, &BuiltTiers::all());
    assert_eq!(p.tier, Tier::HostCompiled);
    assert!(
        p.notes.iter().any(|n| n.contains("generated from the kernel headers") && n.contains("cached at")),
        "{:#?}",
        p.notes
    );
    // RHEL names its own packages.
    let mut rhel = fixture("rhel8.1-4.18.json");
    rhel.btf_archive_hint = Some(BtfHint { error: Some("not found".into()), ..Default::default() });
    let p = plan(&rhel, &BuiltTiers::all());
    assert_rejected_for(
        &p,
        Tier::HostCompiled,
        &["dnf install kernel-devel-4.18.0-147.el8.x86_64", "dnf install dwarves"],
    );
}
