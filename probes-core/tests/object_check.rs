//! Every committed BPF object, read statically, against the oldest kernel it claims: no kernel
//! older than 5.10 boots where strata is built, so this is how the perf-buffer object's 4.14 claim
//! is held (the end-to-end tests and the kernel matrix prove the same objects on the kernels that
//! do boot). The table of arrivals lives in src/object_check.rs.

use probes_core::object_check::{analyze, oldest_kernel, violations, MAX_INSNS_OLD};
use probes_core::objects::{ALL_CAPTURE_OBJECTS, CAPTURE_OBJECTS, RAW_SYSCALLS_CAPTURE};

#[test]
fn every_program_of_every_object_loads_on_the_oldest_kernel_its_object_claims() {
    let mut problems = Vec::new();
    for object in ALL_CAPTURE_OBJECTS {
        let report = analyze(object.bytes).unwrap_or_else(|e| panic!("{}: {e}", object.file));
        for v in violations(&report, object.oldest_kernel) {
            problems.push(format!("{}: {v}", object.file));
        }
        let largest = report.programs.iter().max_by_key(|p| p.instructions).unwrap();
        println!(
            "{} (claims {}.{}, needs {:?}): {} programs, largest {} with {} instructions (limit before 5.2: {MAX_INSNS_OLD})",
            object.file,
            object.oldest_kernel.0,
            object.oldest_kernel.1,
            oldest_kernel(&report),
            report.programs.len(),
            largest.name,
            largest.instructions
        );
    }
    assert!(problems.is_empty(), "programs a claimed kernel would refuse:\n{}", problems.join("\n"));
}

#[test]
fn the_perf_buffer_object_is_what_old_kernels_need_and_the_ring_buffer_object_is_not() {
    let [ring, perf] = CAPTURE_OBJECTS;
    let ring = analyze(ring.bytes).unwrap();
    let perf = analyze(perf.bytes).unwrap();
    // The checker must be able to fail: the ring-buffer object is refused by a 4.14 kernel for its
    // ring buffer, its global data and its probe_read_user, each named.
    let refused = violations(&ring, (4, 14)).join("\n");
    for needle in ["BPF_MAP_TYPE_RINGBUF", "global data", "bpf_probe_read_user", "bpf_ringbuf_output"] {
        assert!(refused.contains(needle), "a 4.14 kernel refuses the ring-buffer object for {needle}:\n{refused}");
    }
    assert_eq!(oldest_kernel(&ring), (5, 8));
    assert_eq!(oldest_kernel(&perf), (4, 14));
    // The raw-syscalls object: tp_btf (5.5) and the BTF task pointer (5.11), each named.
    let raw = analyze(RAW_SYSCALLS_CAPTURE.bytes).unwrap();
    assert_eq!(oldest_kernel(&raw), (5, 11));
    let refused = violations(&raw, (5, 4)).join("\n");
    for needle in ["BTF-typed raw tracepoints", "bpf_get_current_task_btf"] {
        assert!(refused.contains(needle), "a 5.4 kernel refuses the raw-syscalls object for {needle}:\n{refused}");
    }
    // Below 4.14 the syscall tracepoints refuse BPF programs.
    assert!(violations(&perf, (4, 13)).iter().any(|v| v.contains("syscall tracepoints")));
}

#[test]
fn objects_hold_the_programs_the_loader_attaches() {
    for object in ALL_CAPTURE_OBJECTS {
        let report = analyze(object.bytes).unwrap();
        for probe in object.probes() {
            let found = report.programs.iter().find(|p| p.name == probe.program);
            let section = match probe.category {
                "raw_syscalls" => format!("tp_btf/{}", probe.tracepoint),
                category => format!("tracepoint/{category}/{}", probe.tracepoint),
            };
            match found {
                Some(p) => assert_eq!(p.section, section, "{}: {}", object.file, probe.program),
                None => assert!(probe.optional, "{} lacks the required program {}", object.file, probe.program),
            }
        }
        // Nothing loaded twice over: every program of the object is one the loader attaches.
        for p in &report.programs {
            assert!(
                object.probes().iter().any(|probe| probe.program == p.name),
                "{} holds {}, which the loader never attaches",
                object.file,
                p.name
            );
        }
    }
}
