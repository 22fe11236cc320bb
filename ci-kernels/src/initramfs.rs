//! The guest's initramfs: busybox (static), strata (static), the bpf() probe and /init, as a gzipped
//! newc cpio. Cached by the hash of everything in it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cache::sha256_hex;
use crate::cpio::Cpio;
use crate::guest::{APPLETS, INIT_SCRIPT};
use crate::probe::bpf_probe_elf;

/// An ELF with no PT_INTERP program header (needs no dynamic loader). Pure.
pub fn is_static_elf(b: &[u8]) -> bool {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= b.len() && u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) != 3
        // PT_INTERP
    })
}

pub fn cpio_bytes(busybox: &[u8], strata: &[u8]) -> Vec<u8> {
    let mut c = Cpio::new();
    for d in ["/bin", "/dev", "/proc", "/sys", "/tmp", "/www"] {
        c.dir(d);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    c.char_dev("/dev/console", 0o600, 5, 1);
    c.char_dev("/dev/null", 0o666, 1, 3);
    c.file("/bin/busybox", 0o755, busybox);
    for a in APPLETS {
        c.symlink(&format!("/bin/{a}"), "busybox");
    }
    c.file("/bin/strata", 0o755, strata);
    c.file("/bin/bpf-probe", 0o755, &bpf_probe_elf());
    c.file("/init", 0o755, INIT_SCRIPT.as_bytes());
    c.finish()
}

/// Builds (or reuses) the gzipped initramfs in `cache_dir/initramfs/`.
pub fn build(busybox: &Path, strata: &Path, cache_dir: &Path) -> Result<(PathBuf, bool)> {
    let bb = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    if !is_static_elf(&bb) {
        bail!("{} is not a static binary: apt-get install busybox-static", busybox.display());
    }
    let st = std::fs::read(strata).with_context(|| format!("reading {}", strata.display()))?;
    if !is_static_elf(&st) {
        bail!(
            "{} is not static: build it with RUSTFLAGS=\"-C target-feature=+crt-static\" and --target x86_64-unknown-linux-gnu",
            strata.display()
        );
    }
    let key = sha256_hex(&[
        b"initramfs-v1",
        &bb,
        &st,
        INIT_SCRIPT.as_bytes(),
        &bpf_probe_elf(),
        APPLETS.join(" ").as_bytes(),
    ]);
    let dir = cache_dir.join("initramfs");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{}.cpio.gz", &key[..16]));
    if out.exists() {
        return Ok((out, true));
    }
    let raw = cpio_bytes(&bb, &st);
    let tmp = out.with_extension("tmp");
    let mut gz = Command::new("gzip")
        .args(["-n", "-6", "-c"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&tmp)?)
        .spawn()
        .context("running gzip")?;
    gz.stdin.take().unwrap().write_all(&raw)?;
    if !gz.wait()?.success() {
        bail!("gzip failed");
    }
    std::fs::rename(&tmp, &out)?;
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_detection() {
        assert!(is_static_elf(&bpf_probe_elf()));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        // A dynamically linked program on this machine has PT_INTERP.
        if let Ok(sh) = std::fs::read("/usr/bin/env") {
            assert!(!is_static_elf(&sh));
        }
    }

    #[test]
    fn archive_has_init_busybox_links_and_console() {
        let b = cpio_bytes(b"BB", b"STRATA");
        let s = String::from_utf8_lossy(&b);
        for name in ["init\0", "bin/busybox\0", "bin/httpd\0", "bin/strata\0", "bin/bpf-probe\0", "dev/console\0"] {
            assert!(s.contains(name), "{name}");
        }
    }
}
