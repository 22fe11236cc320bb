//! The Rust mirror of kmod/strata_kmod.h agrees with what a C compiler makes of the header: every
//! size, offset and ioctl number. Needs a C compiler and the kernel's UAPI headers (Debian:
//! gcc and linux-libc-dev); without them the test fails and says so.

use std::mem::{offset_of, size_of};
use std::process::Command;

use probes_kmod::abi;

#[test]
fn the_rust_mirror_matches_the_c_header() {
    let dir = tempfile::tempdir().unwrap();
    let header = concat!(env!("CARGO_MANIFEST_DIR"), "/../kmod/strata_kmod.h");
    let program = format!(
        r#"#include <stdio.h>
#include <stddef.h>
#include "{header}"
int main(void) {{
    printf("info %zu %zu %zu %zu %zu\n", sizeof(struct strata_kmod_info), offsetof(struct strata_kmod_info, abi),
           offsetof(struct strata_kmod_info, ncpus), offsetof(struct strata_kmod_info, ring_bytes),
           offsetof(struct strata_kmod_info, page_size));
    printf("start %zu %zu %zu %zu\n", sizeof(struct strata_kmod_start), offsetof(struct strata_kmod_start, self_tgid),
           offsetof(struct strata_kmod_start, capture_bytes), offsetof(struct strata_kmod_start, wakeup_bytes));
    printf("ctl %zu %zu %zu %zu\n", sizeof(struct strata_kmod_ctl), offsetof(struct strata_kmod_ctl, head),
           offsetof(struct strata_kmod_ctl, tail), offsetof(struct strata_kmod_ctl, lost));
    printf("rec %zu %zu %zu\n", sizeof(struct strata_kmod_rec), offsetof(struct strata_kmod_rec, len),
           offsetof(struct strata_kmod_rec, pad));
    printf("ioctl %u %u %u\n", (unsigned)STRATA_KMOD_IOC_INFO, (unsigned)STRATA_KMOD_IOC_START,
           (unsigned)STRATA_KMOD_IOC_STOP);
    printf("abi %u\n", STRATA_KMOD_ABI);
    return 0;
}}
"#
    );
    let src = dir.path().join("abi.c");
    std::fs::write(&src, program).unwrap();
    let exe = dir.path().join("abi");
    let cc = Command::new("cc").arg("-o").arg(&exe).arg(&src).output().unwrap_or_else(|e| {
        panic!("this test compiles kmod/strata_kmod.h with cc, which could not run ({e}): apt-get install gcc linux-libc-dev")
    });
    assert!(cc.status.success(), "cc failed: {}", String::from_utf8_lossy(&cc.stderr));
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();

    let expected = format!(
        "info {} {} {} {} {}\nstart {} {} {} {}\nctl {} {} {} {}\nrec {} {} {}\nioctl {} {} {}\nabi {}\n",
        size_of::<abi::Info>(),
        offset_of!(abi::Info, abi),
        offset_of!(abi::Info, ncpus),
        offset_of!(abi::Info, ring_bytes),
        offset_of!(abi::Info, page_size),
        size_of::<abi::Start>(),
        offset_of!(abi::Start, self_tgid),
        offset_of!(abi::Start, capture_bytes),
        offset_of!(abi::Start, wakeup_bytes),
        size_of::<abi::Ctl>(),
        abi::CTL_HEAD,
        abi::CTL_TAIL,
        abi::CTL_LOST,
        size_of::<abi::Rec>(),
        offset_of!(abi::Rec, len),
        offset_of!(abi::Rec, pad),
        abi::IOC_INFO,
        abi::IOC_START,
        abi::IOC_STOP,
        abi::ABI,
    );
    assert_eq!(out, expected);
    assert_eq!(offset_of!(abi::Ctl, head), abi::CTL_HEAD);
    assert_eq!(offset_of!(abi::Ctl, tail), abi::CTL_TAIL);
    assert_eq!(offset_of!(abi::Ctl, lost), abi::CTL_LOST);
}
