//! ci-kernels: the kernel matrix runner. Boots each manifest kernel under QEMU (TCG) with an
//! initramfs holding a static strata, runs each scenario inside, and prints kernel × scenario →
//! tier, records, pass/fail, seconds. See README.md.

mod apt;
mod cache;
mod cpio;
mod generated;
mod guest;
mod initramfs;
mod judge;
mod kernels;
mod kmod;
mod manifest;
mod overlay;
mod probe;
mod qemu;
mod table;
mod vmlinux;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use judge::{GuestOutcome, JudgeOptions};
use manifest::Manifest;

#[derive(Parser)]
#[command(name = "ci-kernels", about = "Boot the kernel matrix under QEMU and run strata inside")]
struct Cli {
    /// The manifest (default: manifest.toml next to this crate's Cargo.toml).
    #[arg(long, global = true)]
    manifest: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot the selected cells and print the table; exits 1 if any cell fails.
    Run(RunArgs),
    /// Download / build the selected kernels into the cache, boot nothing.
    Fetch(Select),
    /// List kernels and their scenarios.
    List,
}

#[derive(clap::Args)]
struct Select {
    /// Only this kernel (repeatable).
    #[arg(long = "kernel")]
    kernels: Vec<String>,
    /// Only this scenario (repeatable).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    select: Select,
    /// Seconds each guest may take before QEMU is killed.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// A static strata binary to use instead of building one.
    #[arg(long)]
    strata: Option<PathBuf>,
    /// The static busybox to put in the initramfs.
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// Judge by the tier `strata run` reports when this strata has no `compat-check` (transition only).
    #[arg(long)]
    allow_missing_compat_check: bool,
    /// Write the facts each guest's compat-check gathered to DIR/<kernel>--<scenario>.json: real
    /// kernels' facts, the best fixtures for kernel-compat's plan tests.
    #[arg(long, value_name = "DIR")]
    save_facts: Option<PathBuf>,
}

/// Writes the `facts` of a guest's compat report, marked with where they came from.
fn save_facts(dir: &Path, kernel: &str, scenario: &str, r: &guest::GuestResult) -> Result<()> {
    let Some(report) = r.compat() else { return Ok(()) };
    let mut facts = report?.get("facts").cloned().context("compat report without facts")?;
    if let Some(obj) = facts.as_object_mut() {
        obj.insert(
            "source".into(),
            serde_json::Value::String(format!(
                "gathered by `strata compat-check` inside a QEMU guest of the kernel matrix: kernel {kernel} \
                 ({}), scenario {scenario}",
                r.kernel
            )),
        );
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{kernel}--{scenario}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&facts)? + "\n")?;
    println!("  facts saved to {}", path.display());
    Ok(())
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ci-kernels: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<bool> {
    let manifest_path = cli.manifest.unwrap_or_else(|| crate_dir().join("manifest.toml"));
    let manifest_dir = manifest_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let manifest = Manifest::parse(
        &std::fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| manifest_path.display().to_string())?;
    let cache_dir = cache::dir_from(std::env::var_os(cache::ENV));
    match cli.command {
        Cmd::List => {
            for k in &manifest.kernels {
                println!("{:<16} {}", k.name, k.scenarios.join(", "));
            }
            Ok(true)
        }
        Cmd::Fetch(sel) => {
            println!("cache: {} (override with {})", cache_dir.display(), cache::ENV);
            let cells = manifest.select(&sel.kernels, &sel.scenarios)?;
            let mut ok = true;
            for k in unique_kernels(&cells) {
                let t = Instant::now();
                match kernels::prepare(k, &cache_dir, &manifest_dir) {
                    Ok(p) => println!(
                        "{:<16} {} ({}, {:.1} s)\n{:<16} {}",
                        k.name,
                        p.what,
                        if p.cached { "cached" } else { "fetched" },
                        t.elapsed().as_secs_f64(),
                        "",
                        p.image.display()
                    ),
                    Err(e) => {
                        ok = false;
                        println!("{:<16} FAILED: {e:#}", k.name)
                    }
                }
            }
            Ok(ok)
        }
        Cmd::Run(args) => run(&manifest, &manifest_dir, &cache_dir, args),
    }
}

fn unique_kernels<'a>(cells: &[(&'a manifest::Kernel, &'a manifest::Scenario)]) -> Vec<&'a manifest::Kernel> {
    let mut seen = Vec::<&manifest::Kernel>::new();
    for (k, _) in cells {
        if !seen.iter().any(|s| s.name == k.name) {
            seen.push(k);
        }
    }
    seen
}

/// strata's module for kernel `k`: against its Debian headers and kbuild packages, or its own
/// build tree.
fn build_module(
    strata: &Path,
    k: &manifest::Kernel,
    p: &kernels::Prepared,
    cache_dir: &Path,
) -> Result<kmod::BuiltModule> {
    let release = p.release.as_deref().context("the kernel's release is not known before boot")?;
    match (&k.deb, &p.build_tree) {
        (Some(deb), _) => {
            let tree = kernels::kbuild_tree(deb, cache_dir)?;
            let vars = std::fs::read_to_string(tree.dir.join(".kernelvariables")).unwrap_or_default();
            kmod::prepare(strata, &tree.dir, release, kernels::named_compiler(&vars).as_deref(), cache_dir)
        }
        (None, Some(tree)) => kmod::prepare(strata, tree, release, None, cache_dir),
        (None, None) => bail!("no build tree for {}", k.name),
    }
}

/// Builds the static strata from the workspace this crate sits in.
fn build_strata() -> Result<PathBuf> {
    let workspace = crate_dir().join("..").canonicalize()?;
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let triple = "x86_64-unknown-linux-gnu";
    eprintln!("ci-kernels: building static strata ({triple}, crt-static) in {}", workspace.display());
    // An explicit --target keeps these RUSTFLAGS off host artifacts (build scripts, proc macros).
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", triple, "-p", "collector"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(&workspace)
        .status()
        .context("running cargo")?;
    if !st.success() {
        bail!("building the static strata failed ({st})");
    }
    Ok(target_dir.join(triple).join("release").join("strata"))
}

fn run(manifest: &Manifest, manifest_dir: &Path, cache_dir: &Path, args: RunArgs) -> Result<bool> {
    let total = Instant::now();
    println!("cache: {} (override with {})", cache_dir.display(), cache::ENV);
    std::fs::create_dir_all(cache_dir).with_context(|| format!("creating the cache {}", cache_dir.display()))?;
    let cells = manifest.select(&args.select.kernels, &args.select.scenarios)?;

    let t = Instant::now();
    let strata = match &args.strata {
        Some(p) => p.clone(),
        None => build_strata()?,
    };
    let (initrd, cached) = initramfs::build(&args.busybox, &strata, cache_dir)?;
    println!(
        "initramfs: {} ({}; strata {}) [{:.1} s]",
        initrd.display(),
        if cached { "cached" } else { "built" },
        strata.display(),
        t.elapsed().as_secs_f64()
    );

    // Each kernel's image, and the initramfs its guests boot: the shared one, plus (Debian
    // kernels) an overlay with os-release and the kernel's BTF archive.
    let mut images: BTreeMap<String, Result<(PathBuf, PathBuf), String>> = BTreeMap::new();
    // Per kernel: why the BTF generated from its headers is not right, if it is not (a failed
    // generation fails only the cells that need it).
    let mut generated_fault: BTreeMap<String, String> = BTreeMap::new();
    // Per kernel: why strata's module could not be built for it (fails only the cells that need it).
    let mut kmod_fault: BTreeMap<String, String> = BTreeMap::new();
    for k in unique_kernels(&cells) {
        let t = Instant::now();
        let wants = |f: fn(&manifest::Scenario) -> bool| cells.iter().any(|(ck, s)| ck.name == k.name && f(s));
        let r = kernels::prepare(k, cache_dir, manifest_dir).and_then(|p| {
            let generated = match (&k.deb, wants(|s| s.generated_btf)) {
                (Some(deb), true) => match generated::prepare(&strata, deb, &p.image, cache_dir) {
                    Ok(g) => {
                        println!(
                            "kernel {}: BTF generated from its headers in {:.2} s; against its own BTF:",
                            k.name, g.secs
                        );
                        for line in g.report.lines() {
                            println!("  {line}");
                        }
                        if !g.agrees {
                            generated_fault.insert(
                                k.name.clone(),
                                "the BTF generated from the headers differs from the kernel's own".into(),
                            );
                        }
                        Some(g.cache_root)
                    }
                    Err(e) => {
                        println!("kernel {}: generating its BTF from its headers failed: {e:#}", k.name);
                        generated_fault.insert(k.name.clone(), format!("generating the BTF failed: {e:#}"));
                        None
                    }
                },
                _ => None,
            };
            let module = if wants(|s| s.kmod || s.kmod_damaged) {
                match build_module(&strata, k, &p, cache_dir) {
                    Ok(m) => {
                        println!("kernel {}: strata's module built against its tree in {:.1} s:", k.name, m.secs);
                        for line in m.report.lines() {
                            println!("  {line}");
                        }
                        Some(m.cache_root)
                    }
                    Err(e) => {
                        println!("kernel {}: building strata's module failed: {e:#}", k.name);
                        kmod_fault.insert(k.name.clone(), format!("building the module failed: {e:#}"));
                        None
                    }
                }
            } else {
                None
            };
            let initrd = match &p.release {
                Some(release) if k.os_release.is_some() || module.is_some() => overlay::initrd_with_overlay(
                    &initrd,
                    &p.image,
                    k.os_release.as_ref(),
                    release,
                    wants(|s| s.archive.is_some()),
                    generated.as_deref(),
                    module.as_deref(),
                )?,
                _ => initrd.clone(),
            };
            Ok((p, initrd))
        });
        match &r {
            Ok((p, _)) => println!(
                "kernel {}: {} ({}) [{:.1} s]",
                k.name,
                p.what,
                if p.cached { "cached" } else { "fetched/built" },
                t.elapsed().as_secs_f64()
            ),
            Err(e) => println!("kernel {}: FAILED: {e:#}", k.name),
        }
        images.insert(
            k.name.clone(),
            r.map(|(p, initrd)| (p.image, initrd)).map_err(|e| format!("kernel not available: {e:#}")),
        );
    }

    let logs = cache_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let opts = JudgeOptions { allow_missing_compat_check: args.allow_missing_compat_check };
    let mut rows = Vec::new();
    for (k, s) in &cells {
        let t = Instant::now();
        let serial_log = logs.join(format!("{}--{}.serial.log", k.name, s.name));
        let outcome = match &images[&k.name] {
            Err(e) => GuestOutcome::NoResult(e.clone()),
            Ok((image, initrd)) => {
                println!("boot {} / {} ...", k.name, s.name);
                let boot = qemu::Boot {
                    kernel: image,
                    initrd,
                    append: guest::cmdline(s, k.append.as_deref()),
                    // Load/unload cycles take a few seconds each under TCG on top of the usual run.
                    timeout: Duration::from_secs(args.timeout + 8 * u64::from(s.cycles)),
                    serial_log: serial_log.clone(),
                };
                qemu::boot(&boot).unwrap_or_else(|e| GuestOutcome::NoResult(format!("{e:#}")))
            }
        };
        let mut verdict = judge::judge(s, &outcome, opts);
        if let (true, Some(fault)) = (s.generated_btf, generated_fault.get(&k.name)) {
            verdict.pass = false;
            verdict.reasons.push(fault.clone());
        }
        if let (true, Some(fault)) = (s.kmod, kmod_fault.get(&k.name)) {
            verdict.pass = false;
            verdict.reasons.push(fault.clone());
        }
        let secs = t.elapsed().as_secs_f64();
        if let (Some(dir), GuestOutcome::Reported(r)) = (&args.save_facts, &outcome) {
            save_facts(dir, &k.name, &s.name, r)?;
        }
        if let GuestOutcome::Reported(r) = &outcome {
            println!(
                "  {} / {}: kernel {}, btf {}, {}, compat-check {}, run tier {:?}, {} records, {} events [{secs:.1} s]",
                k.name,
                s.name,
                r.kernel,
                r.btf,
                probe::describe_errno(r.bpf_errno),
                r.compat_check,
                r.run_tier,
                r.records,
                r.events
            );
        }
        if !verdict.pass {
            println!("  FAIL: {}", verdict.reasons.join("; "));
            if serial_log.exists() {
                println!("  --- last 40 lines of {} ---", serial_log.display());
                println!("{}", qemu::tail(&serial_log, 40));
                println!("  ---");
            }
        }
        rows.push(table::Row { kernel: k.name.clone(), scenario: s.name.clone(), verdict, secs });
    }
    println!();
    print!("{}", table::render(&rows, std::io::stdout().is_terminal()));
    println!("total {:.1} s; serial logs in {}", total.elapsed().as_secs_f64(), logs.display());
    Ok(rows.iter().all(|r| r.verdict.pass))
}
