//! `strata btf generate` on bad input: headers for another release, a half-installed headers
//! directory, headers the compiler fails on. Each must end in exit code 3 with a message that
//! says what is wrong (the compiler's own first error, for the last), with nothing cached.
//!
//! These headers trees are made here, small and broken on purpose; that real headers give a BTF
//! that agrees with the kernel's own, field by field, is what the kernel matrix checks for every
//! Debian kernel it boots (with Debian's own headers packages).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_e2e::require_tool;

fn running_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-btf-generate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tree(root: &Path, files: &[(&str, &str)]) {
    for (p, text) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// A headers tree that opens, for `release`, whose linux/sched.h holds `sched`.
fn headers(name: &str, release: &str, sched: &str) -> PathBuf {
    let root = scratch(name);
    tree(
        &root,
        &[
            ("include/generated/utsrelease.h", &format!("#define UTS_RELEASE \"{release}\"\n")),
            ("include/generated/autoconf.h", "#define CONFIG_NET 1\n"),
            ("include/linux/kconfig.h", "/* empty */\n"),
            ("include/linux/sched.h", sched),
            ("include/net/sock.h", "/* empty */\n"),
        ],
    );
    root
}

fn generate(headers: &Path, cache: &Path) -> Output {
    require_tool("clang-16", "clang-16");
    require_tool("pahole", "dwarves");
    Command::new(strata_e2e::strata_bin())
        .args(["btf", "generate", "--headers"])
        .arg(headers)
        .arg("--out")
        .arg(cache.join("out.btf"))
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .expect("run strata")
}

#[track_caller]
fn assert_refused(out: &Output, cache: &Path, says: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for s in says {
        assert!(stderr.contains(s), "says {s:?}: {stderr}");
    }
    let left: Vec<_> = walk(cache);
    assert!(left.is_empty(), "nothing cached or written: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn headers_for_another_release_are_refused() {
    let h = headers("other", "1.2.3-another-kernel", "/* empty */\n");
    let cache = scratch("other-cache");
    let out = generate(&h, &cache);
    assert_refused(&out, &cache, &["are for kernel 1.2.3-another-kernel", &format!("not {}", running_release())]);
}

#[test]
fn a_half_installed_headers_directory_says_what_is_missing() {
    // Debian's architecture package without the -common package it includes.
    let root = scratch("half");
    tree(
        &root,
        &[
            ("Makefile", "include /usr/src/linux-headers-9.9.9-9-common/Makefile\n"),
            ("include/generated/utsrelease.h", &format!("#define UTS_RELEASE \"{}\"\n", running_release())),
            ("include/generated/autoconf.h", ""),
        ],
    );
    let cache = scratch("half-cache");
    assert_refused(&generate(&root, &cache), &cache, &["half-installed", "linux-headers-9.9.9-9-common"]);
}

#[test]
fn a_compiler_error_is_reported_with_the_compilers_first_error() {
    let h = headers("broken", &running_release(), "#error \"this header is broken on purpose\"\n");
    let cache = scratch("broken-cache");
    let out = generate(&h, &cache);
    assert_refused(&out, &cache, &["the compiler failed", "error", "this header is broken on purpose"]);
}
