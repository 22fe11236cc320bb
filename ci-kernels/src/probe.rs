//! `/bin/bpf-probe`: a 144-byte static x86-64 ELF that calls `bpf(BPF_MAP_CREATE, NULL, 0)` and exits
//! with the errno: 38 (ENOSYS) on a kernel without `CONFIG_BPF_SYSCALL`, 22 (EINVAL) where bpf()
//! exists. Lets the guest say whether bpf() exists without a C toolchain or libc.

const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// mov eax,321 (bpf); xor edi,edi; xor esi,esi; xor edx,edx; syscall;
/// neg eax; mov edi,eax; mov eax,60 (exit); syscall
const CODE: &[u8] = &[
    0xb8, 0x41, 0x01, 0x00, 0x00, 0x31, 0xff, 0x31, 0xf6, 0x31, 0xd2, 0x0f, 0x05, 0xf7, 0xd8, 0x89, 0xc7, 0xb8, 0x3c,
    0x00, 0x00, 0x00, 0x0f, 0x05,
];

pub fn bpf_probe_elf() -> Vec<u8> {
    let total = (EHDR + PHDR + CODE.len()) as u64;
    let entry = BASE + (EHDR + PHDR) as u64;
    let mut e = Vec::with_capacity(total as usize);
    // ELF header
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, little endian, v1, SysV
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes()); // version
    e.extend_from_slice(&entry.to_le_bytes());
    e.extend_from_slice(&(EHDR as u64).to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&(EHDR as u16).to_le_bytes());
    e.extend_from_slice(&(PHDR as u16).to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    e.extend_from_slice(&0u16.to_le_bytes()); // shnum
    e.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
                                              // Program header: one PT_LOAD of the whole file, R+X.
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // paddr
    e.extend_from_slice(&total.to_le_bytes()); // filesz
    e.extend_from_slice(&total.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    e.extend_from_slice(CODE);
    e
}

/// What the probe's exit status means.
pub fn describe_errno(errno: i32) -> String {
    match errno {
        38 => "bpf() ENOSYS".into(),
        22 => "bpf() present".into(),
        1 => "bpf() EPERM".into(),
        n => format!("bpf() errno {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_is_well_formed() {
        let e = bpf_probe_elf();
        assert_eq!(e.len(), 64 + 56 + CODE.len());
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(u64::from_le_bytes(e[24..32].try_into().unwrap()), 0x400078);
    }

    #[test]
    fn runs_here_and_reports_an_errno() {
        // On the development machine bpf() exists: the probe must exit 22 (EINVAL) or 1 (EPERM when
        // not root). Any other status means the ELF is wrong.
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bpf-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bpf-probe");
        std::fs::write(&p, bpf_probe_elf()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = std::process::Command::new(&p).status().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let code = status.code().unwrap();
        assert!([22, 1, 38].contains(&code), "exit {code}");
        assert!(describe_errno(38).contains("ENOSYS"));
    }
}
