//! Where the BTF for CO-RE relocation comes from: the one place that decides. The kernel's own
//! for `core`; for `archived-btf`, a file given with `--btf` or the archive's entry for this
//! kernel, fetched, checked against the running kernel and cached; for `host-compiled`, one
//! generated from the node's kernel headers (clang and pahole), checked and cached (btf-cache).
//! The loader only ever sees the resulting [`BtfSource`]. And `strata btf fetch|generate|compare`,
//! which do the same ahead of time (an init container's job) and compare two BTFs.

use std::path::{Path, PathBuf};

use btf_cache::generate::{GenerateError, Headers, Tools};
use btf_cache::{Cache, KernelId};
use kernel_compat::facts::BtfHint;
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
pub fn archive_hint(facts: &Facts, args: &BtfArgs, always: bool) -> Option<BtfHint> {
    if let Some(file) = &args.btf {
        return Some(match btf_cache::given_file(file, &check_btf) {
            Ok(c) => BtfHint {
                available: true,
                location: Some(c.origin),
                path: Some(c.path.display().to_string()),
                cached: false,
                error: None,
            },
            Err(e) => {
                BtfHint { location: Some(file.display().to_string()), error: Some(e.to_string()), ..Default::default() }
            }
        });
    }
    if !always && (facts.btf.vmlinux.is_supported() || !facts.bpf.syscall.is_supported()) {
        return None;
    }
    let archive = match args.archive() {
        Ok(a) => a,
        Err(e) => return Some(BtfHint { error: Some(e), ..Default::default() }),
    };
    let id = match kernel_id(facts) {
        Ok(id) => id,
        Err(e) => return Some(BtfHint { error: Some(e), ..Default::default() }),
    };
    let location = archive.location(&id.archive_path());
    let cache = Cache::new(&args.cache_dir);
    Some(match btf_cache::fetch_archived(&id, &archive, &cache, &args.limits(), &check_btf) {
        Ok(r) => BtfHint {
            available: true,
            location: Some(r.btf.origin),
            path: Some(r.btf.path.display().to_string()),
            cached: r.from_cache,
            error: None,
        },
        Err(e) => {
            log::debug!("no archived BTF for {id}: {e}");
            BtfHint { location: Some(location), error: Some(e.to_string()), ..Default::default() }
        }
    })
}

/// Looks for a BTF generated from this node's headers: one cached earlier for this release (by an
/// init container, or an earlier run), else one made now from the headers with clang and pahole.
/// `None` when nothing was looked for (the kernel has its own BTF, unless `always`, or BPF is
/// unusable here).
pub fn generated_hint(facts: &Facts, args: &BtfArgs, always: bool) -> Option<BtfHint> {
    if !always && (facts.btf.vmlinux.is_supported() || !facts.bpf.syscall.is_supported()) {
        return None;
    }
    let cache = Cache::new(&args.cache_dir);
    if let Some(hit) = btf_cache::lookup_generated(&cache, &facts.kernel.release, &check_btf) {
        return Some(BtfHint {
            available: true,
            location: Some(hit.origin),
            path: Some(hit.path.display().to_string()),
            cached: true,
            error: None,
        });
    }
    let dir = args.headers.clone().or_else(|| facts.toolchain.kernel_headers.as_ref().map(PathBuf::from));
    // Without headers or tools there is nothing to try; the plan names what is missing.
    let (Some(dir), Some(_), Some(_)) = (dir, &facts.toolchain.clang, &facts.toolchain.pahole) else { return None };
    let hint = |r: Result<btf_cache::Resolved, String>| match r {
        Ok(r) => BtfHint {
            available: true,
            location: Some(r.btf.origin),
            path: Some(r.btf.path.display().to_string()),
            cached: r.from_cache,
            error: None,
        },
        Err(e) => BtfHint { location: Some(dir.display().to_string()), error: Some(e), ..Default::default() },
    };
    Some(hint(generate_for_this_kernel(&dir, &facts.kernel.release, &cache)))
}

/// Generates (or finds cached) the BTF of the headers in `dir`, which must be this kernel's.
fn generate_for_this_kernel(dir: &Path, release: &str, cache: &Cache) -> Result<btf_cache::Resolved, String> {
    let headers = Headers::open(dir).map_err(|e| e.to_string())?;
    if headers.release != release {
        return Err(GenerateError::OtherRelease {
            dir: dir.display().to_string(),
            found: headers.release,
            wanted: release.into(),
        }
        .to_string());
    }
    let tools = Tools::find().map_err(|e| e.to_string())?;
    let work =
        cache.scratch(".generate-").map_err(|e| format!("a scratch directory in {}: {e}", cache.dir().display()))?;
    let started = std::time::Instant::now();
    let r = btf_cache::generate_cached(&headers, &tools, cache, work.path(), &check_btf).map_err(|e| e.to_string());
    if let Ok(r) = &r {
        if !r.from_cache {
            log::info!(
                "BTF generated from the headers in {} in {:.1} s, cached at {}",
                dir.display(),
                started.elapsed().as_secs_f64(),
                r.btf.path.display()
            );
        }
    }
    r
}

/// The BTF `tier` relocates with on this node, if it has one.
pub fn btf_for(tier: Tier, facts: &Facts) -> Option<BtfSource> {
    let file = |hint: &Option<BtfHint>| {
        hint.as_ref().filter(|h| h.available).and_then(|h| h.path.as_ref()).map(|p| BtfSource::File(PathBuf::from(p)))
    };
    match tier {
        Tier::Core => facts.btf.vmlinux.is_supported().then_some(BtfSource::Kernel),
        Tier::ArchivedBtf => file(&facts.btf_archive_hint),
        Tier::HostCompiled => file(&facts.btf_generated),
        _ => None,
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum BtfCommand {
    /// Fetch this kernel's BTF from the archive, check it against the running kernel and cache
    /// it, so `strata run` finds it there (an init container's job). Exit code 0 when a checked
    /// BTF is cached (or the kernel has its own), 3 when none could be had.
    Fetch(FetchArgs),
    /// Generate a BTF from kernel headers (clang and pahole), check it and write it to FILE; it is
    /// cached too, where `strata run` looks for it. Exit code 0 on success, 3 when it cannot be made.
    Generate(GenerateArgs),
    /// Compare two BTFs as the probes see them: the offset of every field they read, and every
    /// relocated instruction. Exit code 0 when they agree, 1 when they do not.
    Compare(CompareArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The kernel's headers: /lib/modules/R/build, /usr/src/linux-headers-R, or a copy.
    #[arg(long, value_name = "DIR")]
    pub headers: PathBuf,
    /// Where to write the BTF.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The kernel release the headers must be for (default: the running kernel's). The BTF is
    /// checked against the running kernel only when it is for the running kernel.
    #[arg(long, value_name = "RELEASE")]
    pub release: Option<String>,
    /// Where generated BTF is cached (under DIR/btf/generated/RELEASE/).
    #[arg(long, value_name = "DIR", default_value = btf_cache::DEFAULT_ROOT)]
    pub cache_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The BTF taken as right (the kernel's own, say).
    pub expected: PathBuf,
    /// The BTF to compare with it (an archive's, or a generated one).
    pub actual: PathBuf,
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
        BtfCommand::Generate(args) => generate(args),
        BtfCommand::Compare(args) => compare(args),
    }
}

fn fetch(args: &FetchArgs) -> u8 {
    let facts = super::compat::gather_here(&args.btf, false);
    if facts.btf.vmlinux.is_supported() && !args.always {
        println!("this kernel has its own BTF ({}): nothing to fetch", facts.btf.path);
        return crate::exit::OK;
    }
    match archive_hint(&facts, &args.btf, true) {
        Some(BtfHint { available: true, location, path, cached, .. }) => {
            println!(
                "BTF for {} {}: {} (from {})",
                facts.kernel.release,
                if cached { "already cached" } else { "fetched, checked against this kernel and cached" },
                path.unwrap_or_default(),
                location.unwrap_or_default()
            );
            crate::exit::OK
        }
        Some(BtfHint { error, .. }) => {
            log::error!("{}", error.unwrap_or_else(|| "no BTF".into()));
            crate::exit::ENVIRONMENT
        }
        None => {
            log::error!("bpf() is not usable here, so a BTF could not be checked against this kernel");
            crate::exit::ENVIRONMENT
        }
    }
}

fn generate(args: &GenerateArgs) -> u8 {
    let running =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|r| r.trim().to_string()).unwrap_or_default();
    let release = args.release.clone().unwrap_or_else(|| running.clone());
    let fail = |e: String| {
        log::error!("{e}");
        crate::exit::ENVIRONMENT
    };
    let headers = match Headers::open(&args.headers) {
        Ok(h) => h,
        Err(e) => return fail(e.to_string()),
    };
    if headers.release != release {
        return fail(
            GenerateError::OtherRelease {
                dir: args.headers.display().to_string(),
                found: headers.release,
                wanted: release,
            }
            .to_string(),
        );
    }
    let tools = match Tools::find() {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let cache = Cache::new(&args.cache_dir);
    let work = match cache.scratch(".generate-") {
        Ok(w) => w,
        Err(e) => return fail(format!("a scratch directory in {}: {e}", cache.dir().display())),
    };
    // For the running kernel the BTF is proven against it; for another kernel (made on a build
    // host, as an init container would) only what can be checked offline is.
    let for_this_kernel = release == running;
    let check = |path: &Path| -> Result<(), String> {
        if for_this_kernel {
            check_btf(path)
        } else {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            btf_check::check_declares_probe_fields(&bytes).map_err(|e| e.to_string())
        }
    };
    let started = std::time::Instant::now();
    match btf_cache::generate_cached(&headers, &tools, &cache, work.path(), &check) {
        Ok(r) => {
            if let Err(e) = std::fs::copy(&r.btf.path, &args.out) {
                return fail(format!("writing {}: {e}", args.out.display()));
            }
            let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
            println!(
                "BTF for {release} {} in {:.2} s: {} ({size} bytes; cached at {}){}",
                if r.from_cache { "found cached" } else { "generated" },
                started.elapsed().as_secs_f64(),
                args.out.display(),
                r.btf.path.display(),
                if for_this_kernel {
                    ", checked against this kernel"
                } else {
                    ", checked offline (not the running kernel)"
                }
            );
            crate::exit::OK
        }
        Err(e) => fail(e.to_string()),
    }
}

fn compare(args: &CompareArgs) -> u8 {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (a, b) = match (read(&args.expected), read(&args.actual)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            log::error!("{e}");
            return crate::exit::USAGE;
        }
    };
    let (ta, tb) = match (btf_cache::types::Types::parse(&a), btf_cache::types::Types::parse(&b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            log::error!("not BTF: {e}");
            return crate::exit::USAGE;
        }
    };
    let mut agree = true;
    println!("{:<42} {:>10} {:>10}", "field the probes read", "expected", "actual");
    for (strukt, path) in btf_check::RELOCATED_FIELDS {
        let (x, y) = (ta.offset_of(strukt, path), tb.offset_of(strukt, path));
        let show = |o: Option<u32>| o.map(|o| format!("{o:#x}")).unwrap_or_else(|| "missing".into());
        let mark = if x == y && x.is_some() { "" } else { "  <- differs" };
        agree &= x == y && x.is_some();
        println!("{:<42} {:>10} {:>10}{mark}", format!("{strukt}.{path}"), show(x), show(y));
    }
    match btf_check::compare_relocations(&a, &b) {
        Ok(c) if c.differences.is_empty() => {
            println!("relocated instructions: all {} CO-RE relocations of the probes resolve the same", c.relocated)
        }
        Ok(c) => {
            agree = false;
            println!("relocated instructions: {} of the probes' instructions differ:", c.differences.len());
            for d in c.differences.iter().take(20) {
                println!("  {d}");
            }
        }
        Err(e) => {
            agree = false;
            println!("relocation: {e}");
        }
    }
    if agree {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    }
}
