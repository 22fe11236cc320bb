//! The kernel module's side of the command line: finding (or building) the module built for this
//! kernel, for the plan and the kmod tier, and `strata kmod build`, which builds it ahead of time
//! (an init container's job, or a node image's).

use std::path::PathBuf;
use std::time::Duration;

use kernel_compat::facts::BtfHint;
use kernel_compat::{Facts, Tier};
use probes_kmod::kbuild::{self, BuildRequest};

use super::args::BtfArgs;

/// How long a build may take: a module is one file, but a cold node's first kbuild run is slow.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Looks for the module built for this kernel from these sources: cached earlier (by an init
/// container, `strata kmod build` or an earlier run), else built now from the node's headers.
/// `None` when nothing was looked for: the node does not load modules, or lacks what building
/// needs (the plan names what).
pub fn module_hint(facts: &Facts, args: &BtfArgs) -> Option<BtfHint> {
    let release = &facts.kernel.release;
    if let Some(hit) = kbuild::cached(&args.cache_dir, release) {
        return Some(available(hit, true));
    }
    let kdir = args.headers.clone().or_else(|| kbuild::find_kernel_build(release))?;
    if facts.toolchain.gcc.is_none() || facts.toolchain.make.is_none() {
        return None;
    }
    let started = std::time::Instant::now();
    log::info!("building strata's kernel module against {} (once per kernel)", kdir.display());
    let req = BuildRequest {
        release,
        kernel_build: Some(&kdir),
        cache_root: &args.cache_dir,
        timeout: BUILD_TIMEOUT,
        cc: None,
    };
    Some(match kbuild::build(&req) {
        Ok(built) => {
            log::info!(
                "built the module in {:.1} s, cached at {}",
                started.elapsed().as_secs_f64(),
                built.path.display()
            );
            available(built, false)
        }
        Err(e) => {
            BtfHint { location: Some(kdir.display().to_string()), error: Some(e.to_string()), ..Default::default() }
        }
    })
}

fn available(c: btf_cache::cache::Cached, cached: bool) -> BtfHint {
    BtfHint { available: true, location: Some(c.origin), path: Some(c.path.display().to_string()), cached, error: None }
}

/// The module the kmod tier loads on this node, if it has one.
pub fn module_for(tier: Tier, facts: &Facts) -> Option<PathBuf> {
    (tier == Tier::Kmod)
        .then(|| facts.kmod_built.as_ref().filter(|h| h.available).and_then(|h| h.path.as_ref()).map(PathBuf::from))
        .flatten()
}

#[derive(Debug, clap::Subcommand)]
pub enum KmodCommand {
    /// Build strata's kernel module against a kernel's headers (kbuild: gcc and make) and cache
    /// it where `strata run` looks for it. Exit code 0 when it is built (or was cached), 3 when
    /// it cannot be.
    Build(KmodBuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct KmodBuildArgs {
    /// The kernel's build tree: /lib/modules/R/build, /usr/src/linux-headers-R, or a copy
    /// (default: the running kernel's, from the usual places).
    #[arg(long, value_name = "DIR")]
    pub headers: Option<PathBuf>,
    /// The kernel release to build for (default: the running kernel's). The module must say it
    /// is for this release, or it is refused.
    #[arg(long, value_name = "RELEASE")]
    pub release: Option<String>,
    /// The C compiler, when not the one the kernel's Makefile names (e.g. `gcc` where the
    /// distribution's `gcc-10` is not installed).
    #[arg(long, value_name = "CC")]
    pub cc: Option<String>,
    /// Where the module is cached (under DIR/kmod/RELEASE/).
    #[arg(long, value_name = "DIR", default_value = btf_cache::DEFAULT_ROOT)]
    pub cache_dir: PathBuf,
}

/// Runs `strata kmod ...`; returns the exit code.
pub fn command(cmd: &KmodCommand) -> u8 {
    match cmd {
        KmodCommand::Build(args) => build(args),
    }
}

fn build(args: &KmodBuildArgs) -> u8 {
    let release = match &args.release {
        Some(r) => r.clone(),
        None => match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            Ok(r) => r.trim().to_string(),
            Err(e) => {
                log::error!("reading the running kernel's release: {e}");
                return 3;
            }
        },
    };
    let req = BuildRequest {
        release: &release,
        kernel_build: args.headers.as_deref(),
        cache_root: &args.cache_dir,
        timeout: BUILD_TIMEOUT,
        cc: args.cc.as_deref(),
    };
    let started = std::time::Instant::now();
    match kbuild::build(&req) {
        Ok(built) => {
            println!("{}", built.path.display());
            log::info!("module for {release} ready in {:.1} s ({})", started.elapsed().as_secs_f64(), built.origin);
            0
        }
        Err(e) => {
            log::error!("{e}");
            3
        }
    }
}
