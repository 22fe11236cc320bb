//! What one kernel's guests get on top of the shared initramfs: an /etc/os-release naming the
//! distribution, the kernel's BTF archive in the public layout
//! (`/archive/ID/VERSION_ID/x86_64/RELEASE.btf.tar.xz`), whole and (under `/archive-damaged`) cut
//! short as a broken download would be (the BTF is the kernel's own, taken out of its bzImage),
//! and what the CI host made for it: a BTF generated from its headers (`/generated-btf/`) and
//! strata's kernel module built against its build tree (`/kmod-cache/`).
//!
//! The overlay is a second gzipped cpio appended to the shared one (the kernel unpacks
//! concatenated initramfs archives in order), cached by content.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cache::sha256_hex;
use crate::cpio::Cpio;
use crate::manifest::OsRelease;

/// The archive entry's path under an archive root.
pub fn archive_path(os: &OsRelease, release: &str) -> String {
    format!("{}/{}/x86_64/{release}.btf.tar.xz", os.id, os.version_id)
}

/// `RELEASE.btf` in a tar, xz-compressed: how the public archive packs an entry.
pub fn pack_entry(release: &str, btf: &[u8]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(btf.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, format!("{release}.btf"), btf)?;
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&tar.into_inner()?)?;
    Ok(xz.finish()?)
}

/// The overlay's files. Pure. `files` are (path in the guest, bytes): a generated BTF under
/// `/generated-btf/`, the module under `/kmod-cache/`, each laid out as in a strata cache, which
/// the guest copies into its own when its scenario says so.
pub fn overlay_cpio(
    os: Option<&OsRelease>,
    release: &str,
    entry: Option<&[u8]>,
    files: &[(String, Vec<u8>)],
) -> Vec<u8> {
    let mut c = Cpio::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (full, bytes) in files {
        let mut dir = String::new();
        for part in
            full.trim_start_matches('/').split('/').collect::<Vec<_>>().split_last().map(|(_, d)| d).unwrap_or(&[])
        {
            dir = format!("{dir}/{part}");
            if dirs.insert(dir.clone()) {
                c.dir(&dir);
            }
        }
        c.file(full, 0o644, bytes);
    }
    if let Some(os) = os {
        c.dir("/etc");
        c.file("/etc/os-release", 0o644, format!("ID={}\nVERSION_ID=\"{}\"\n", os.id, os.version_id).as_bytes());
    }
    if let (Some(os), Some(entry)) = (os, entry) {
        let path = archive_path(os, release);
        for root in ["/archive", "/archive-damaged"] {
            let mut dir = String::from(root);
            c.dir(&dir);
            for part in path.split('/').take(3) {
                dir = format!("{dir}/{part}");
                c.dir(&dir);
            }
        }
        c.file(&format!("/archive/{path}"), 0o644, entry);
        c.file(&format!("/archive-damaged/{path}"), 0o644, &entry[..entry.len() / 2]);
    }
    c.finish()
}

/// The shared initramfs with this kernel's overlay appended, built once per content.
pub fn initrd_with_overlay(
    base: &Path,
    image: &Path,
    os: Option<&OsRelease>,
    release: &str,
    with_archive: bool,
    generated_cache: Option<&Path>,
    kmod_cache: Option<&Path>,
) -> Result<PathBuf> {
    let entry = if with_archive && os.is_some() {
        let bz = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
        let btf = crate::vmlinux::extract_btf(&bz).with_context(|| format!("the BTF of {}", image.display()))?;
        Some(pack_entry(release, &btf)?)
    } else {
        None
    };
    let mut files = Vec::new();
    if let Some(root) = generated_cache {
        files.extend(
            files_under(root, &root.join("btf/generated"))?
                .into_iter()
                .map(|(p, b)| (format!("/generated-btf/{p}"), b)),
        );
    }
    if let Some(root) = kmod_cache {
        // Only this release's module (the host's cache holds every kernel's).
        let module = files_under(root, &root.join("kmod").join(release))?;
        files.extend(damaged_module(&module));
        files.extend(module.into_iter().map(|(p, b)| (format!("/kmod-cache/{p}"), b)));
    }
    let overlay = overlay_cpio(os, release, entry.as_deref(), &files);
    let base_bytes = std::fs::read(base)?;
    let key = sha256_hex(&[b"overlay-v1", &base_bytes, &overlay]);
    let out = base.with_file_name(format!("{}.cpio.gz", &key[..16]));
    if out.exists() {
        return Ok(out);
    }
    // A second gzip member after the first: the kernel unpacks one archive after the other.
    let mut gz = flate2::write::GzEncoder::new(base_bytes, flate2::Compression::default());
    gz.write_all(&overlay)?;
    let combined = gz.finish()?;
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, combined)?;
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// The module files of a strata cache (relative paths) as `/kmod-damaged/` files: each `.ko` with
/// its ELF magic overwritten (the rest, its vermagic included, intact), its `.sha256` record
/// rewritten to match, so strata's cache takes it and only the kernel can refuse it. Pure.
pub fn damaged_module(files: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (path, bytes) in files.iter().filter(|(p, _)| p.ends_with(".ko")) {
        let mut cut = bytes.clone();
        cut.iter_mut().take(4).for_each(|b| *b = 0);
        let cut = &cut[..];
        let sha: String = {
            use sha2::Digest;
            sha2::Sha256::digest(cut).iter().map(|b| format!("{b:02x}")).collect()
        };
        out.push((format!("/kmod-damaged/{path}"), cut.to_vec()));
        out.push((
            format!("/kmod-damaged/{path}.sha256"),
            format!("{sha}  damaged by the kernel matrix\n").into_bytes(),
        ));
    }
    out
}

/// Every file under `dir`, as (path relative to `base`, bytes), sorted.
fn files_under(base: &Path, dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
                out.push((rel, std::fs::read(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_carries_os_release_and_both_archives() {
        let os = OsRelease { id: "debian".into(), version_id: "12".into() };
        let entry = pack_entry("6.1.0-9-amd64", b"BTF BYTES").unwrap();
        let generated = vec![("/generated-btf/btf/generated/6.1.0-9-amd64/abc.btf".to_string(), b"GEN".to_vec())];
        let c = overlay_cpio(Some(&os), "6.1.0-9-amd64", Some(&entry), &generated);
        let s = String::from_utf8_lossy(&c);
        assert!(s.contains("etc/os-release\0") && s.contains("ID=debian\nVERSION_ID=\"12\"\n"));
        assert!(s.contains("archive/debian/12/x86_64/6.1.0-9-amd64.btf.tar.xz\0"));
        assert!(s.contains("archive-damaged/debian/12/x86_64/6.1.0-9-amd64.btf.tar.xz\0"));
        assert_eq!(archive_path(&os, "r"), "debian/12/x86_64/r.btf.tar.xz");
        assert!(s.contains("generated-btf/btf/generated/6.1.0-9-amd64/abc.btf\0"));
        assert!(s.contains("generated-btf/btf/generated/6.1.0-9-amd64\0"), "its directories too");
    }

    #[test]
    fn the_damaged_module_loses_its_elf_magic_under_a_matching_record() {
        let files = vec![
            ("kmod/5.10/abc/strata.ko".to_string(), b"0123456789".to_vec()),
            ("kmod/5.10/abc/strata.ko.sha256".to_string(), b"whatever  built\n".to_vec()),
        ];
        let d = damaged_module(&files);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], ("/kmod-damaged/kmod/5.10/abc/strata.ko".to_string(), [&[0u8; 4][..], b"456789"].concat()));
        let record = String::from_utf8(d[1].1.clone()).unwrap();
        assert_eq!(d[1].0, "/kmod-damaged/kmod/5.10/abc/strata.ko.sha256");
        // sha256 of four NULs and "456789"
        assert!(record.starts_with("c2a183792a600a7ce7b6ca72718fc04b93e246cc5b54121c83d3260d917617c9  "), "{record}");
    }
}
