//! The host-compiled tier's BTF, made the way a node's init container makes it: on this host,
//! where clang, pahole and the kernel's Debian headers packages are, `strata btf generate` turns
//! the headers into a BTF. Then `strata btf compare` holds it against the kernel's own BTF (taken
//! out of its bzImage): every field the probes read must sit at the same offset, every relocated
//! instruction must come out the same. That comparison is the test that generated BTF is right.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::kernels;
use crate::manifest::DebSource;

pub struct Generated {
    /// A strata cache root holding the BTF at `btf/generated/RELEASE/KEY.btf` (and its record).
    pub cache_root: PathBuf,
    /// `strata btf generate`'s and `strata btf compare`'s output.
    pub report: String,
    /// The generated BTF agrees with the kernel's own.
    pub agrees: bool,
    pub secs: f64,
}

fn run(cmd: &mut Command) -> Result<(bool, String)> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

pub fn prepare(strata: &Path, deb: &DebSource, image: &Path, cache_dir: &Path) -> Result<Generated> {
    let headers = kernels::headers(deb, cache_dir)?;
    let root = cache_dir.join("generated-btf").join(&headers.release);
    std::fs::create_dir_all(&root)?;
    let kernel_btf = root.join("kernel.btf");
    let bz = std::fs::read(image)?;
    std::fs::write(&kernel_btf, crate::vmlinux::extract_btf(&bz)?)?;
    let out = root.join("generated.btf");
    let started = Instant::now();
    let (ok, mut report) = run(Command::new(strata)
        .args(["btf", "generate", "--release", &headers.release, "--headers"])
        .arg(&headers.dir)
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(&root))?;
    let secs = started.elapsed().as_secs_f64();
    if !ok {
        bail!("strata btf generate failed on {}: {report}", headers.dir.display());
    }
    let (agrees, compare) = run(Command::new(strata).args(["btf", "compare"]).arg(&kernel_btf).arg(&out))?;
    report.push_str(&compare);
    Ok(Generated { cache_root: root, report, agrees, secs })
}
