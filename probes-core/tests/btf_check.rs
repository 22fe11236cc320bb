//! The BTF checks against the real kernel: the kernel's own BTF passes; the same BTF with one
//! field the probes read moved (another kernel's layout) or gone (another version) fails, and
//! says which field. Needs root and a kernel with BTF (to have a right BTF to start from).

use std::path::{Path, PathBuf};

use btf_cache::edit::{shift_member, unname_member};
use probes_core::btf_check::{check_against_kernel, check_declares_probe_fields, BtfCheckError};

const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

fn kernel_btf() -> Option<Vec<u8>> {
    if !Path::new(KERNEL_BTF).exists() {
        // The one reason to skip: this kernel has no BTF to derive right and wrong ones from.
        eprintln!("SKIPPED: this kernel has no {KERNEL_BTF} (CONFIG_DEBUG_INFO_BTF)");
        return None;
    }
    Some(std::fs::read(KERNEL_BTF).expect("reading the kernel's BTF (run as root)"))
}

fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-btf-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_kernels_own_btf_passes_both_checks() {
    let Some(btf) = kernel_btf() else { return };
    check_declares_probe_fields(&btf).expect("the kernel's BTF declares every field the probes read");
    let report = check_against_kernel(Path::new(KERNEL_BTF)).expect("the kernel's BTF matches the kernel");
    println!("checked against the kernel; IPv6 too: {}", report.ipv6_checked);
}

#[test]
fn a_btf_with_another_layout_reads_wrong_values_and_is_refused() {
    let Some(btf) = kernel_btf() else { return };
    // Another build's sock_common, with skc_family eight bytes later: offline it still declares
    // everything, so only asking the kernel can tell.
    let other = shift_member(&btf, "sock_common", "skc_family", 8).unwrap();
    check_declares_probe_fields(&other).expect("a moved field is still declared");
    let path = write_temp("moved-skc_family.btf", &other);
    match check_against_kernel(&path) {
        // Read at the wrong offset the family is no longer AF_INET, so the fd is not taken for a
        // TCP socket at all, or its family reads wrong.
        Err(BtfCheckError::Mismatch(m)) => {
            assert!(m.contains("not recognized") || m.contains("address family"), "names what went wrong: {m}")
        }
        other => panic!("a BTF with skc_num moved must be refused as a mismatch, got {other:?}"),
    }
    // The socket's inode number through another inode layout.
    let other = shift_member(&btf, "inode", "i_ino", 8).unwrap();
    match check_against_kernel(&write_temp("moved-i_ino.btf", &other)) {
        Err(BtfCheckError::Mismatch(_)) | Err(BtfCheckError::MissingFields(_)) => {}
        other => panic!("a BTF with i_ino moved must be refused, got {other:?}"),
    }
}

#[test]
fn a_btf_without_a_field_the_probes_read_is_refused_offline_and_by_the_kernel() {
    let Some(btf) = kernel_btf() else { return };
    let other = unname_member(&btf, "socket", "sk").unwrap();
    match check_declares_probe_fields(&other) {
        Err(BtfCheckError::MissingFields(m)) => assert!(m.contains("exit_read"), "names the programs: {m}"),
        other => panic!("expected MissingFields, got {other:?}"),
    }
    match check_against_kernel(&write_temp("no-socket-sk.btf", &other)) {
        Err(BtfCheckError::MissingFields(_)) => {}
        other => panic!("the kernel must refuse the check program relocated against it, got {other:?}"),
    }
}

#[test]
fn garbage_is_not_btf() {
    assert!(matches!(check_declares_probe_fields(b"<html>not found</html>"), Err(BtfCheckError::Unparseable(_))));
    let path = write_temp("garbage.btf", b"<html>not found</html>");
    assert!(matches!(check_against_kernel(&path), Err(BtfCheckError::Unparseable(_))));
}

#[test]
fn relocations_compare_equal_for_the_same_btf_and_differ_where_a_field_moved() {
    use probes_core::btf_check::compare_relocations;
    let Some(btf) = kernel_btf() else { return };
    let same = compare_relocations(&btf, &btf).unwrap();
    assert!(same.relocated > 100, "the probes relocate many field accesses: {}", same.relocated);
    assert!(same.differences.is_empty(), "{:?}", same.differences);
    let moved = shift_member(&btf, "sock_common", "skc_family", 8).unwrap();
    let diff = compare_relocations(&btf, &moved).unwrap();
    assert!(!diff.differences.is_empty());
    assert!(diff.differences.iter().all(|d| d.contains("strata")), "{:?}", diff.differences);
}
