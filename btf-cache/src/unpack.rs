//! From an archive entry (`RELEASE.btf.tar.xz`) to the BTF it holds, and the first sanity check
//! of any BTF: its header.

use std::io::Read;

/// Largest BTF accepted after decompression (a vmlinux BTF is 3-10 MiB).
pub const MAX_BTF_BYTES: u64 = 128 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnpackError {
    #[error("not a complete xz-compressed tar archive ({0}): the download is truncated or corrupt")]
    Corrupt(String),
    #[error("the archive holds no {wanted} (it holds: {found})")]
    NoBtf { wanted: String, found: String },
    #[error("its BTF is larger than {MAX_BTF_BYTES} bytes")]
    TooLarge,
}

/// The BTF inside an xz-compressed tar: the member named `RELEASE.btf`, or else the only `*.btf`.
pub fn btf_from_tar_xz(bytes: &[u8], release: &str) -> Result<Vec<u8>, UnpackError> {
    let wanted = format!("{release}.btf");
    let corrupt = |e: std::io::Error| UnpackError::Corrupt(e.to_string());
    let mut archive = tar::Archive::new(xz2::read::XzDecoder::new(bytes));
    let mut names = Vec::new();
    let mut only_btf: Option<Vec<u8>> = None;
    let mut btf_members = 0;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(corrupt)?.into_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        names.push(path.display().to_string());
        if !name.ends_with(".btf") {
            continue;
        }
        btf_members += 1;
        let mut data = Vec::new();
        (&mut entry).take(MAX_BTF_BYTES + 1).read_to_end(&mut data).map_err(corrupt)?;
        if data.len() as u64 > MAX_BTF_BYTES {
            return Err(UnpackError::TooLarge);
        }
        if name == wanted {
            return Ok(data);
        }
        only_btf = Some(data);
    }
    match only_btf {
        Some(data) if btf_members == 1 => Ok(data),
        _ => Err(UnpackError::NoBtf {
            wanted,
            found: if names.is_empty() { "nothing".into() } else { names.join(", ") },
        }),
    }
}

/// What a BTF header says, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfHeader {
    pub type_len: u32,
    pub str_len: u32,
}

/// Checks the BTF header (magic 0xeB9F, version 1, sections inside the file): tells garbage and
/// truncated files from BTF before anything parses them further.
pub fn check_header(btf: &[u8]) -> Result<BtfHeader, String> {
    if btf.len() < 24 {
        return Err(format!("{} bytes is too short for a BTF header", btf.len()));
    }
    let u16_at = |o: usize| u16::from_le_bytes([btf[o], btf[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([btf[o], btf[o + 1], btf[o + 2], btf[o + 3]]);
    if u16_at(0) != 0xeb9f {
        return Err(format!("bad magic {:#06x} (BTF starts with 0xeb9f, little-endian)", u16_at(0)));
    }
    if btf[2] != 1 {
        return Err(format!("BTF version {} (only 1 exists)", btf[2]));
    }
    let hdr_len = u32_at(4) as u64;
    let (type_off, type_len, str_off, str_len) = (u32_at(8) as u64, u32_at(12), u32_at(16) as u64, u32_at(20));
    let end = |off: u64, len: u32| hdr_len + off + len as u64;
    let size = btf.len() as u64;
    if hdr_len < 24 || end(type_off, type_len) > size || end(str_off, str_len) > size {
        return Err(format!(
            "sections end past the file (header {hdr_len} bytes, types end at {}, strings at {}, file {size} bytes): truncated",
            end(type_off, type_len),
            end(str_off, str_len)
        ));
    }
    if type_len == 0 || str_len == 0 {
        return Err("no types or no strings".into());
    }
    Ok(BtfHeader { type_len, str_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tar_xz(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, *data).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        std::io::Write::write_all(&mut xz, &tar).unwrap();
        xz.finish().unwrap()
    }

    #[test]
    fn finds_the_release_member_or_the_only_btf() {
        let a = tar_xz(&[("./5.4.0-1.btf", b"five"), ("README", b"x")]);
        assert_eq!(btf_from_tar_xz(&a, "5.4.0-1").unwrap(), b"five");
        assert_eq!(btf_from_tar_xz(&a, "another").unwrap(), b"five");
        let two = tar_xz(&[("a.btf", b"a"), ("b.btf", b"b")]);
        assert_eq!(btf_from_tar_xz(&two, "b").unwrap(), b"b");
        assert!(matches!(btf_from_tar_xz(&two, "c"), Err(UnpackError::NoBtf { .. })));
    }

    #[test]
    fn truncated_and_garbage_archives_are_corrupt() {
        let a = tar_xz(&[("k.btf", &[7u8; 4096])]);
        assert!(matches!(btf_from_tar_xz(&a[..a.len() / 2], "k"), Err(UnpackError::Corrupt(_))));
        assert!(matches!(btf_from_tar_xz(b"<html>404</html>", "k"), Err(UnpackError::Corrupt(_))));
    }

    #[test]
    fn header_checks_tell_garbage_and_truncation() {
        assert!(check_header(b"hello, world, this is not btf").unwrap_err().contains("bad magic"));
        let mut h = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 16, 0, 0, 0, 4, 0, 0, 0];
        h.extend_from_slice(&[0u8; 20]);
        assert!(check_header(&h).is_ok());
        assert!(check_header(&h[..30]).unwrap_err().contains("truncated"));
    }
}
