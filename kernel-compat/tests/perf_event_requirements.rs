//! The perf-event tier's own requirements (facts.perf_event): each with the kernel version that
//! brought it and the fallback the tier uses without it, in the plan's notes, the text report and
//! the JSON report. Pure: fact sets written here, no kernel asked.

use kernel_compat::features::{NO_FALLBACK, PERF_EVENT_REQUIREMENTS};
use kernel_compat::{plan, report, BuiltTiers, Facts, Probe, Tier};

fn enosys(call: &str) -> Probe {
    Probe::Unsupported { errno: Some("ENOSYS".into()), reason: format!("{call} failed with ENOSYS") }
}

/// A 4.19 node as the kernel matrix met it (issue 17): no BTF, no BPF tier, and without what
/// 4.19 lacks (pidfd_open 5.3, pidfd_getfd 5.6) and what its config left out
/// (CONFIG_CROSS_MEMORY_ATTACH).
fn old_node() -> Facts {
    let path = format!("{}/fixtures/facts/debian10-4.19.json", env!("CARGO_MANIFEST_DIR"));
    let mut f: Facts = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f.perf_event.tracefs = Probe::Supported;
    f.perf_event.clock_monotonic = Probe::Supported;
    f.perf_event.fd_cloexec = Probe::Supported;
    f.perf_event.proc_pid_mem = Probe::Supported;
    f.perf_event.sock_diag = Probe::Supported;
    f.perf_event.process_vm_readv = enosys("process_vm_readv");
    f.perf_event.pidfd_open = enosys("pidfd_open");
    f.perf_event.pidfd_getfd = enosys("pidfd_getfd");
    f
}

#[test]
fn every_requirement_has_a_version_a_fallback_and_a_fact() {
    let facts = serde_json::to_value(Facts::default()).unwrap();
    for r in PERF_EVENT_REQUIREMENTS {
        let field = r.key.strip_prefix("perf_event.").unwrap_or_else(|| panic!("{}", r.key));
        assert!(facts["perf_event"].get(field).is_some(), "{} is no field of facts.perf_event", r.key);
        assert!(!r.fallback.is_empty() && !r.description.is_empty(), "{}", r.key);
    }
    let since = |key: &str| PERF_EVENT_REQUIREMENTS.iter().find(|r| r.key == key).unwrap().since.to_string();
    assert_eq!(since("perf_event.pidfd_open"), "5.3");
    assert_eq!(since("perf_event.pidfd_getfd"), "5.6");
    assert_eq!(since("perf_event.process_vm_readv"), "3.2");
    assert_eq!(since("perf_event.sock_diag"), "3.3");
    assert_eq!(since("perf_event.clock_monotonic"), "4.1");
    // Facts saved before these existed read as unknown, never as supported.
    let old: Facts = serde_json::from_str(r#"{"schema_version": 1}"#).unwrap();
    assert!(matches!(old.perf_event.pidfd_getfd, Probe::Unknown { .. }));
}

#[test]
fn missing_requirements_with_a_fallback_are_notes_not_blockers() {
    let facts = old_node();
    let p = plan(&facts, &BuiltTiers::only(&[Tier::PerfEvent]));
    assert_eq!(p.tier, Tier::PerfEvent, "{p:#?}");
    let notes = p.notes.join("\n");
    assert!(notes.contains("no pidfd_getfd (Linux 5.6+): sockets resolved with sock_diag dumps"), "{notes}");
    assert!(notes.contains("no pidfd_open (Linux 5.3+)"), "{notes}");
    assert!(
        notes.contains(
            "no process_vm_readv (CONFIG_CROSS_MEMORY_ATTACH) (Linux 3.2+): payloads read from /proc/PID/mem"
        ),
        "{notes}"
    );
    assert!(!notes.contains("sock_diag dumps (CONFIG_INET_DIAG"), "sock_diag is there: {notes}");
}

#[test]
fn without_monotonic_sample_times_the_tier_cannot_run() {
    let mut facts = old_node();
    facts.perf_event.clock_monotonic =
        Probe::Unsupported { errno: Some("EINVAL".into()), reason: "perf_event_open ... failed with EINVAL".into() };
    let p = plan(&facts, &BuiltTiers::only(&[Tier::PerfEvent]));
    assert_eq!(p.tier, Tier::None, "{p:#?}");
    let r = p.rejection(Tier::PerfEvent).unwrap();
    assert!(r.reasons.iter().any(|r| r.contains("CLOCK_MONOTONIC") && r.contains("4.1")), "{r:#?}");
    let fallback = PERF_EVENT_REQUIREMENTS.iter().find(|r| r.key == "perf_event.clock_monotonic").unwrap().fallback;
    assert_eq!(fallback, NO_FALLBACK);
}

#[test]
fn the_reports_list_each_requirement_with_its_version_and_fallback() {
    let facts = old_node();
    let p = plan(&facts, &BuiltTiers::only(&[Tier::PerfEvent]));
    let text = report::render_text(&facts, &p);
    assert!(text.contains("perf-event tier's own needs"), "{text}");
    let line = |needle: &str| {
        let i = text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {text}"));
        (text.lines().nth(i).unwrap().to_string(), text.lines().nth(i + 1).unwrap().to_string())
    };
    let (getfd, instead) = line("pidfd_getfd   ");
    assert!(getfd.contains('✗') && getfd.contains("5.6") && getfd.contains("ENOSYS"), "{getfd}");
    assert!(
        instead.contains("in use instead: sockets resolved with sock_diag dumps, else from /proc/PID/net"),
        "{instead}"
    );
    let (diag, without) = line("sock_diag dumps (CONFIG_INET_DIAG");
    assert!(diag.contains('✓') && diag.contains("3.3"), "{diag}");
    assert!(without.contains("without it: where pidfd_getfd is missing too: /proc/PID/net"), "{without}");

    let json = report::render_json(&facts, &p);
    let reqs = json["perf_event_requirements"].as_array().unwrap();
    assert_eq!(reqs.len(), PERF_EVENT_REQUIREMENTS.len());
    let getfd = reqs.iter().find(|r| r["key"] == "perf_event.pidfd_getfd").unwrap();
    assert_eq!(getfd["since"], "5.6");
    assert_eq!(getfd["probe"]["status"], "unsupported");
    assert_eq!(getfd["probe"]["errno"], "ENOSYS");
    assert_eq!(getfd["fallback_in_use"], true);
    assert!(getfd["fallback"].as_str().unwrap().contains("sock_diag"));
    let diag = reqs.iter().find(|r| r["key"] == "perf_event.sock_diag").unwrap();
    assert_eq!(diag["fallback_in_use"], false);
    assert_eq!(json["facts"]["perf_event"]["process_vm_readv"]["errno"], "ENOSYS");
}
