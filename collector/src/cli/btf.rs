//! Where the BTF for CO-RE relocation comes from: the one place that decides. The kernel's own
//! for `core`; for `archived-btf`, a file given with `--btf` or the archive's entry for this
//! kernel, fetched, checked against the running kernel and cached (btf-cache). The loader only
//! ever sees the resulting [`BtfSource`]. And `strata btf fetch`, which does the archive part
//! ahead of time (an init container's job).

use std::path::{Path, PathBuf};

use btf_cache::{Cache, KernelId};
use kernel_compat::facts::BtfArchiveHint;
use kernel_compat::{Facts, Tier};
use probes_core::btf_check;
use probes_core::loader::BtfSource;

use super::args::BtfArgs;

/// Proves a BTF right for this kernel: it declares every field the probes read, and read through
/// it, sockets whose ends are known come out right (probes-core's btf_check).
pub fn check_btf(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    btf_check::check_declares_probe_fields(&bytes).map_err(|e| e.to_string())?;
    btf_check::check_against_kernel(path).map(|_| ()).map_err(|e| e.to_string())
}

/// This node's kernel as the archive names it.
pub fn kernel_id(facts: &Facts) -> Result<KernelId, String> {
    KernelId::new(
        facts.distro.id.as_deref(),
        facts.distro.version_id.as_deref(),
        &facts.kernel.arch,
        &facts.kernel.release,
    )
    .map_err(|e| e.to_string())
}

/// Looks for a usable BTF from elsewhere (`--btf FILE`, else the archive) and says what it found,
/// for the plan. `None` when nothing was looked for: the kernel has its own BTF (unless `always`),
/// or BPF is unusable here anyway.
pub fn archive_hint(facts: &Facts, args: &BtfArgs, always: bool) -> Option<BtfArchiveHint> {
    if let Some(file) = &args.btf {
        return Some(match btf_cache::given_file(file, &check_btf) {
            Ok(c) => BtfArchiveHint {
                available: true,
                location: Some(c.origin),
                path: Some(c.path.display().to_string()),
                cached: false,
                error: None,
            },
            Err(e) => BtfArchiveHint { location: Some(file.display().to_string()), error: Some(e.to_string()), ..Default::default() },
        });
    }
    if !always && (facts.btf.vmlinux.is_supported() || !facts.bpf.syscall.is_supported()) {
        return None;
    }
    let archive = match args.archive() {
        Ok(a) => a,
        Err(e) => return Some(BtfArchiveHint { error: Some(e), ..Default::default() }),
    };
    let id = match kernel_id(facts) {
        Ok(id) => id,
        Err(e) => return Some(BtfArchiveHint { error: Some(e), ..Default::default() }),
    };
    let location = archive.location(&id.archive_path());
    let cache = Cache::new(&args.cache_dir);
    Some(match btf_cache::fetch_archived(&id, &archive, &cache, &args.limits(), &check_btf) {
        Ok(r) => BtfArchiveHint {
            available: true,
            location: Some(r.btf.origin),
            path: Some(r.btf.path.display().to_string()),
            cached: r.from_cache,
            error: None,
        },
        Err(e) => {
            log::debug!("no archived BTF for {id}: {e}");
            BtfArchiveHint { location: Some(location), error: Some(e.to_string()), ..Default::default() }
        }
    })
}

/// The BTF `tier` relocates with on this node, if it has one.
pub fn btf_for(tier: Tier, facts: &Facts) -> Option<BtfSource> {
    match tier {
        Tier::Core => facts.btf.vmlinux.is_supported().then_some(BtfSource::Kernel),
        Tier::ArchivedBtf => facts
            .btf_archive_hint
            .as_ref()
            .filter(|h| h.available)
            .and_then(|h| h.path.as_ref())
            .map(|p| BtfSource::File(PathBuf::from(p))),
        _ => None,
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum BtfCommand {
    /// Fetch this kernel's BTF from the archive, check it against the running kernel and cache
    /// it, so `strata run` finds it there (an init container's job). Exit code 0 when a checked
    /// BTF is cached (or the kernel has its own), 3 when none could be had.
    Fetch(FetchArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub btf: BtfArgs,
    /// Fetch even though the kernel has its own BTF (to test an archive, or fill a shared cache).
    #[arg(long)]
    pub always: bool,
}

/// `strata btf ...`; returns the exit code.
pub fn command(cmd: &BtfCommand) -> u8 {
    match cmd {
        BtfCommand::Fetch(args) => fetch(args),
    }
}

fn fetch(args: &FetchArgs) -> u8 {
    let facts = super::compat::gather_here(&args.btf, false);
    if facts.btf.vmlinux.is_supported() && !args.always {
        println!("this kernel has its own BTF ({}): nothing to fetch", facts.btf.path);
        return crate::exit::OK;
    }
    match archive_hint(&facts, &args.btf, true) {
        Some(BtfArchiveHint { available: true, location, path, cached, .. }) => {
            println!(
                "BTF for {} {}: {} (from {})",
                facts.kernel.release,
                if cached { "already cached" } else { "fetched, checked against this kernel and cached" },
                path.unwrap_or_default(),
                location.unwrap_or_default()
            );
            crate::exit::OK
        }
        Some(BtfArchiveHint { error, .. }) => {
            log::error!("{}", error.unwrap_or_else(|| "no BTF".into()));
            crate::exit::ENVIRONMENT
        }
        None => {
            log::error!("bpf() is not usable here, so a BTF could not be checked against this kernel");
            crate::exit::ENVIRONMENT
        }
    }
}
