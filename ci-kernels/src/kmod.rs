//! strata's kernel module for a matrix kernel, built on this host the way a node builds it: `strata
//! kmod build` against the kernel's build tree (a Debian kernel's `linux-headers-RELEASE` and
//! `linux-kbuild` packages, or the BPF-less kernel's own tree), into a strata cache the guest gets
//! a copy of. The cache is keyed by release and module source, so a warm run builds nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

pub struct BuiltModule {
    /// A strata cache root holding the module at `kmod/RELEASE/HASH/strata.ko` (and its record).
    pub cache_root: PathBuf,
    /// `strata kmod build`'s output.
    pub report: String,
    pub secs: f64,
}

/// Builds (or finds cached) the module for `release` against `tree`. `compiler`: the compiler
/// the tree's Makefile names; where this host lacks it (Debian 11's gcc-10 on a Debian 12 host),
/// the host's gcc builds it, as `strata kmod build --cc` allows.
pub fn prepare(
    strata: &Path,
    tree: &Path,
    release: &str,
    compiler: Option<&str>,
    cache_dir: &Path,
) -> Result<BuiltModule> {
    let root = cache_dir.join("kmod-cache");
    std::fs::create_dir_all(&root)?;
    let mut cmd = Command::new(strata);
    cmd.args(["kmod", "build", "--release", release, "--headers"]).arg(tree).arg("--cache-dir").arg(&root);
    if let Some(cc) = compiler.filter(|cc| !on_path(cc)) {
        println!("  (the tree names {cc}, which this host lacks: building with gcc)");
        cmd.args(["--cc", "gcc"]);
    }
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("strata kmod build against {} failed: {report}", tree.display());
    }
    Ok(BuiltModule { cache_root: root, report, secs: started.elapsed().as_secs_f64() })
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}
