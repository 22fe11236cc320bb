//! Garbage in, no panic out: random bytes through every parser, and `gather` on fake trees full
//! of garbage (the files a broken, hardened or hostile node may present).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use kernel_compat::facts::parse;
use kernel_compat::{gather, plan, report, BuiltTiers, GatherOptions, KernelVersion};
use proptest::prelude::*;

/// A temporary directory removed on drop (no tempfile crate: this is all we need).
struct TempTree(PathBuf);

impl TempTree {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kernel-compat-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempTree(dir)
    }

    fn write(&self, relative: &str, contents: &[u8]) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn options(&self, probe_kernel: bool) -> GatherOptions {
        let root = |name: &str| self.0.join(name);
        GatherOptions {
            required_tracepoints: vec![("syscalls".into(), "sys_enter_read".into()), ("../..".into(), "/etc".into())],
            optional_tracepoints: vec![("sock".into(), "inet_sock_set_state".into())],
            proc_root: root("proc"),
            sys_root: root("sys"),
            etc_root: root("etc"),
            boot_root: root("boot"),
            lib_modules_root: root("lib/modules"),
            usr_src_root: root("usr/src"),
            path_env: Some(root("bin").into_os_string()),
            probe_kernel,
        }
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Bytes that look like gzip: a real gzip stream of `data`, cut at `cut` and with `flip` xored in.
fn gzip_ish(data: &[u8], cut: usize, flip: (usize, u8)) -> Vec<u8> {
    let mut z = gzip(data);
    if !z.is_empty() {
        let i = flip.0 % z.len();
        z[i] ^= flip.1;
        z.truncate(cut % (z.len() + 1));
    }
    z
}

fn text_like() -> impl Strategy<Value = String> {
    // Mostly config/status-shaped lines, with arbitrary unicode mixed in.
    prop::collection::vec(
        prop_oneof![
            "CONFIG_[A-Z_]{1,20}=[ymn\"0-9a-z]{0,5}",
            "# CONFIG_[A-Z_]{1,20} is not set",
            "[A-Z_]{1,12}=\"?[ -~]{0,20}\"?",
            "CapEff:\t[0-9a-fA-Fx ]{0,20}",
            "[a-z]{0,8} \\[[a-z]{0,15}\\] [a-z]{0,8}",
            "[a-z]{1,8} /[ -~]{0,20} (tracefs|debugfs|sysfs) rw 0 0",
            ".{0,40}",
        ],
        0..30,
    )
    .prop_map(|lines| lines.join("\n"))
}

fn exercise_parsers(text: &str, bytes: &[u8]) {
    let _ = parse::parse_kernel_config(text);
    let _ = parse::gunzip_config(bytes);
    let _ = parse::parse_os_release(text);
    let _ = parse::parse_cap_eff(text);
    let _ = parse::parse_lockdown(text);
    let _ = parse::parse_btf_header(bytes);
    let _ = parse::tracefs_candidates(text);
    let _ = parse::parse_sysctl_int::<i32>(text);
    let _ = parse::parse_kernel_bool(text);
    if let Some(v) = KernelVersion::parse(text) {
        let _ = (v.code(), v.to_string());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_survive_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise_parsers(&String::from_utf8_lossy(&bytes), &bytes);
    }

    #[test]
    fn parsers_survive_structured_garbage(text in text_like(), cut in any::<usize>(), flip in (any::<usize>(), any::<u8>())) {
        exercise_parsers(&text, &gzip_ish(text.as_bytes(), cut, flip));
        // A valid gzip of garbage must decompress to exactly that garbage.
        prop_assert_eq!(parse::gunzip_config(&gzip(text.as_bytes())), Some(text.clone()));
    }

    #[test]
    fn btf_header_with_random_lengths(mut header in prop::collection::vec(any::<u8>(), 24..64), version in 0u8..3) {
        header[0..2].copy_from_slice(&parse::BTF_MAGIC.to_ne_bytes());
        header[2] = version;
        let _ = parse::parse_btf_header(&header);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn gather_survives_garbage_trees(
        files in prop::collection::vec((0usize..FAKE_FILES.len(), prop::collection::vec(any::<u8>(), 0..300)), 0..24),
        texts in prop::collection::vec((0usize..FAKE_FILES.len(), text_like()), 0..12),
        config in text_like(),
        cut in any::<usize>(),
        flip in (any::<usize>(), any::<u8>()),
    ) {
        let tree = TempTree::new();
        tree.write("proc/config.gz", &gzip_ish(config.as_bytes(), cut, flip));
        for (i, contents) in &files {
            tree.write(FAKE_FILES[*i], contents);
        }
        for (i, text) in &texts {
            tree.write(FAKE_FILES[*i], text.as_bytes());
        }
        let facts = gather(&tree.options(false));
        let p = plan(&facts, &BuiltTiers::all());
        let _ = report::render_text(&facts, &p);
        let _ = report::render_json(&facts, &p);
    }
}

/// Files `gather` reads, relative to the fake tree.
const FAKE_FILES: &[&str] = &[
    "proc/config.gz",
    "proc/mounts",
    "proc/self/status",
    "proc/sys/kernel/osrelease",
    "proc/sys/kernel/version",
    "proc/sys/kernel/hostname",
    "proc/sys/kernel/perf_event_paranoid",
    "proc/sys/kernel/unprivileged_bpf_disabled",
    "proc/sys/kernel/modules_disabled",
    "etc/os-release",
    "boot/config-garbage",
    "sys/kernel/btf/vmlinux",
    "sys/kernel/security/lockdown",
    "sys/module/module/parameters/sig_enforce",
    "sys/kernel/tracing/events/syscalls/sys_enter_getpid/id",
    "sys/kernel/tracing/events/sched/sched_process_exec/id",
    "sys/kernel/tracing/kprobe_events",
    "bin/clang",
];

#[test]
fn gather_on_an_empty_tree_knows_nothing_but_does_not_fail() {
    let tree = TempTree::new();
    let facts = gather(&tree.options(false));
    assert!(facts.config.source.is_none());
    assert!(facts.btf.vmlinux.is_unsupported());
    assert!(facts.tracing.tracefs.is_none());
    assert!(facts.tracing.tracepoints.iter().all(|t| t.present.is_none()));
    assert_eq!(plan(&facts, &BuiltTiers::all()).tier, kernel_compat::Tier::None);
}

#[test]
fn gather_when_files_are_directories_or_huge_numbers() {
    let tree = TempTree::new();
    for dir in ["proc/self/status", "proc/config.gz", "etc/os-release", "sys/kernel/btf/vmlinux", "proc/mounts"] {
        std::fs::create_dir_all(tree.0.join(dir)).unwrap();
    }
    tree.write("proc/sys/kernel/osrelease", b"../../../etc\n");
    tree.write("proc/sys/kernel/perf_event_paranoid", b"99999999999999999999999\n");
    let facts = gather(&tree.options(false));
    assert_eq!(facts.tracing.perf_event_paranoid, None);
    assert!(facts.toolchain.kernel_headers.is_none());
}

#[test]
fn gather_with_real_syscalls_and_garbage_tracepoint_ids() {
    // The real kernel gets asked, with ids read from a garbage tracefs: errors, not panics.
    for id in ["0", "18446744073709551615", "-1", "zz", ""] {
        let tree = TempTree::new();
        tree.write("proc/mounts", b"tracefs /sys/kernel/tracing tracefs rw 0 0\n");
        tree.write("sys/kernel/tracing/events/syscalls/sys_enter_getpid/id", id.as_bytes());
        let facts = gather(&tree.options(true));
        assert_eq!(facts.tracing.tracefs.as_deref(), Some("/sys/kernel/tracing"));
        assert_eq!(facts.tracing.tracepoints[0].present, Some(false));
        // "../.." / "/etc" must not escape tracefs/events.
        assert_eq!(facts.tracing.tracepoints[1].present, Some(false), "{id}: {:?}", facts.tracing.tracepoints);
    }
}
