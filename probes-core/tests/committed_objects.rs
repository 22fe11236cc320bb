//! The committed objects in bpf/prebuilt/ (used where clang is absent) must be exactly what the
//! sources build. Refresh them with `STRATA_BPF_UPDATE_COMMITTED=1 cargo build -p probes-core`.

use std::path::Path;

use probes_core::objects::{
    BTF_CHECK_OBJECT, HOOKS_FLOOR_OBJECT, OBJECT_ORIGIN, PERFBUF_OBJECT, RAW_SYSCALLS_OBJECT, RINGBUF_OBJECT,
};

#[test]
fn committed_objects_match_sources() {
    assert_eq!(
        OBJECT_ORIGIN, "clang",
        "this build used the committed BPF objects because clang-16/llvm-strip-16 were not found, so it cannot \
         check them against the sources: install clang-16 and llvm-16 (Debian packages) and rebuild"
    );
    let prebuilt = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf/prebuilt");
    for (name, built) in [
        ("strata.bpf.o", RINGBUF_OBJECT),
        ("strata_perfbuf.bpf.o", PERFBUF_OBJECT),
        ("strata_raw.bpf.o", RAW_SYSCALLS_OBJECT),
        ("btf_check.bpf.o", BTF_CHECK_OBJECT),
        ("hooks_floor.bpf.o", HOOKS_FLOOR_OBJECT),
    ] {
        let committed = std::fs::read(prebuilt.join(name)).unwrap_or_else(|e| panic!("bpf/prebuilt/{name}: {e}"));
        assert!(
            committed == built,
            "bpf/prebuilt/{name} differs from what its source in bpf/ builds: run \
             `STRATA_BPF_UPDATE_COMMITTED=1 cargo build -p probes-core` and commit the result"
        );
    }
}
