//! The benchmark's floor (bpf/hooks_floor.bpf.c) against the real kernel: both do-nothing
//! programs load, run on every syscall while attached, and are gone once dropped. Needs root and a
//! kernel with its own BTF (tp_btf attach points are types of it).

use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::loaded_programs;
use aya::sys::{enable_stats, Stats};

const NAMES: [&str; 2] = ["floor_sys_enter", "floor_sys_exit"];

/// Run counts of the floor's programs now loaded in the kernel, by name.
fn floor_runs() -> Vec<(String, u64)> {
    loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| {
            let name = p.name_as_str()?.to_string();
            NAMES.contains(&name.as_str()).then(|| (name, p.run_count()))
        })
        .collect()
}

#[test]
fn the_floor_runs_on_every_syscall_while_attached_and_not_after() {
    // The reasons to skip: tp_btf programs (5.5) attach to types of the kernel's own BTF.
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("SKIPPED: this kernel has no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)");
        return;
    }
    let release = probes_core::preflight::running_release().expect("the kernel's release");
    if release < (5, 5) {
        eprintln!("SKIPPED: kernel {release:?} predates tp_btf programs (5.5)");
        return;
    }
    // Run counts are kept only while some process holds the statistics on.
    let _stats = enable_stats(Stats::RunTime).expect("BPF_ENABLE_STATS (run as root)");
    let floor = probes_core::hooks_floor::attach().expect("attach the floor's programs");
    for _ in 0..100 {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
    }
    let runs = floor_runs();
    for name in NAMES {
        let count = runs.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
        assert!(count.is_some_and(|c| c >= 100), "{name}: runs {count:?} after 100 syscalls ({runs:?})");
    }
    drop(floor);
    // The kernel frees a released program after an RCU grace period, not at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !floor_runs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(floor_runs(), vec![], "the floor's programs outlived their handle by 10 s");
}
