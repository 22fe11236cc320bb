//! Builds the CO-RE objects from bpf/*.c with clang when it is there, and otherwise takes the
//! committed copies in bpf/prebuilt/ (so `cargo build` works on a machine without clang).
//!
//! The compile is reproducible: run in bpf/ with relative paths, the compilation directory mapped
//! to ".", DWARF stripped (BTF and CO-RE relocations stay). So the committed objects can be compared
//! byte for byte with what the sources build; the test `committed_objects_match_sources` does.
//! `STRATA_BPF_UPDATE_COMMITTED=1 cargo build -p probes-core` refreshes the committed copies.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (object name, source, extra clang arguments)
const OBJECTS: &[(&str, &str, &[&str])] = &[
    // Ring buffer transport, global data, probe_read_{user,kernel}: kernels 5.8 and later.
    ("strata.bpf.o", "strata.bpf.c", &[]),
    // Perf event array transport, configuration in a map, bpf_probe_read: kernels 4.14 and later.
    ("strata_perfbuf.bpf.o", "strata.bpf.c", &["-DSTRATA_PERFBUF"]),
    // Ring buffer, hooked on raw_syscalls with BTF-typed programs (tp_btf): the kernel's own BTF.
    ("strata_raw.bpf.o", "strata.bpf.c", &["-DSTRATA_RAW_SYSCALLS"]),
    // Proves a BTF right for the running kernel before the probes are relocated with it.
    ("btf_check.bpf.o", "btf_check.bpf.c", &[]),
    // The raw_syscalls hooks with programs that return at once: the capture_overhead benchmark's floor.
    ("hooks_floor.bpf.o", "hooks_floor.bpf.c", &[]),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let bpf_dir = manifest.join("bpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for rel in [
        "strata.bpf.c",
        "btf_check.bpf.c",
        "hooks_floor.bpf.c",
        "event.h",
        "variant.h",
        "socket.h",
        "include",
        "prebuilt",
    ] {
        println!("cargo:rerun-if-changed=bpf/{rel}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=STRATA_BPF_UPDATE_COMMITTED");

    let clang = find_tool("CLANG", &["clang-16", "clang"]);
    let strip = find_tool("LLVM_STRIP", &["llvm-strip-16", "llvm-strip"]);
    let origin = match (clang, strip) {
        (Some(clang), Some(strip)) => {
            for (name, source, extra) in OBJECTS {
                let out = out_dir.join(name);
                compile(&clang, &strip, &bpf_dir, source, extra, &out);
                if env::var_os("STRATA_BPF_UPDATE_COMMITTED").is_some() {
                    std::fs::copy(&out, bpf_dir.join("prebuilt").join(name)).expect("update committed object");
                }
            }
            "clang"
        }
        _ => {
            println!(
                "cargo:warning=clang-16 or llvm-strip-16 not found: using the committed BPF objects in probes-core/bpf/prebuilt"
            );
            for (name, _, _) in OBJECTS {
                std::fs::copy(bpf_dir.join("prebuilt").join(name), out_dir.join(name))
                    .unwrap_or_else(|e| panic!("committed object bpf/prebuilt/{name}: {e}"));
            }
            "committed"
        }
    };
    println!("cargo:rustc-env=STRATA_BPF_ORIGIN={origin}");
}

fn find_tool(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let path = env::var_os("PATH")?;
    names.iter().flat_map(|n| env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

fn compile(clang: &Path, strip: &Path, bpf_dir: &Path, source: &str, extra: &[&str], out: &Path) {
    let status = Command::new(clang)
        .current_dir(bpf_dir)
        .args(["-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86"])
        .arg(format!("-fdebug-prefix-map={}=.", bpf_dir.display()))
        .args(["-fdebug-compilation-dir=.", "-Iinclude", "-I.", "-Wall", "-Werror"])
        .args(extra)
        .args(["-c", source, "-o"])
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", clang.display()));
    assert!(status.success(), "{} failed to compile bpf/{source}", clang.display());
    let status = Command::new(strip).arg("-g").arg(out).status().expect("llvm-strip");
    assert!(status.success(), "llvm-strip -g failed on {}", out.display());
}
