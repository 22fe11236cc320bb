//! `strata compat-check`: what this node's kernel can do, which tier strata runs, and why.
//! The decision is kernel-compat's pure `plan`; this module gathers facts (kernel-compat's probes,
//! plus a look for an archived BTF where the kernel has none) and prints.

use std::path::PathBuf;

use kernel_compat::{gather, plan, report, BuiltTiers, Facts, GatherOptions};

use super::args::BtfArgs;

#[derive(Debug, clap::Args)]
pub struct CompatArgs {
    /// Print the versioned JSON report (schema: kernel-compat/SCHEMA.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the gathered facts to FILE, to evaluate elsewhere with --facts.
    #[arg(long, value_name = "FILE")]
    pub save_facts: Option<PathBuf>,
    /// Evaluate facts saved on another node (by --save-facts) instead of this node's.
    #[arg(long, value_name = "FILE", conflicts_with = "save_facts")]
    pub facts: Option<PathBuf>,
    #[command(flatten)]
    pub btf: BtfArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error("reading facts from {0}: {1}")]
    ReadFacts(PathBuf, String),
    #[error("writing facts to {0}: {1}")]
    WriteFacts(PathBuf, String),
}

/// The tiers this build of strata contains.
pub fn built_tiers() -> BuiltTiers {
    BuiltTiers::current()
}

/// A tracepoint as (category, name).
type Tracepoint = (String, String);

/// Every tracepoint some built tier needs, without repeats; and those the CO-RE tiers use where
/// present.
pub fn tracepoints() -> (Vec<Tracepoint>, Vec<Tracepoint>) {
    let mut required: Vec<Tracepoint> =
        probes_core::objects::required_tracepoints().map(|(c, n)| (c.to_string(), n.to_string())).collect();
    for tp in probes_legacy::capture::required_tracepoints() {
        if !required.contains(&tp) {
            required.push(tp);
        }
    }
    let optional = probes_core::objects::PROBES
        .iter()
        .filter(|p| p.optional)
        .map(|p| (p.category.to_string(), p.tracepoint.to_string()))
        .collect();
    (required, optional)
}

/// This node's facts, gathered by asking the kernel; with `look_for_btf`, a BTF from `--btf` or
/// the archive is looked for where the kernel has none (see [`super::btf::archive_hint`]).
pub fn gather_here(btf: &BtfArgs, look_for_btf: bool) -> Facts {
    // Ask under the conditions `strata run` loads in: tracefs mounted, and (kernels before 5.11
    // charge BPF memory to it) RLIMIT_MEMLOCK lifted, or a probe that needs a map fails with
    // EPERM and a working feature reads as unknown (seen on Debian 5.10: ringbuf_output).
    let _ = probes_core::preflight::ensure_tracefs();
    probes_core::preflight::raise_memlock_rlimit();
    let (required, optional) = tracepoints();
    let mut opts = GatherOptions::with_tracepoints(required);
    opts.optional_tracepoints = optional;
    let mut facts = gather(&opts);
    if look_for_btf {
        facts.btf_archive_hint = super::btf::archive_hint(&facts, btf, false);
        // Headers are only worth compiling where the archive had nothing.
        if !facts.btf_archive_hint.as_ref().is_some_and(|h| h.available) {
            facts.btf_generated = super::btf::generated_hint(&facts, btf, false);
        }
        // The module is only worth building where no BPF tier can run.
        if !plan(&facts, &built_tiers()).tier.is_bpf() {
            facts.kmod_built = super::kmod::module_hint(&facts, btf);
        }
    }
    facts
}

/// Runs the command; returns the exit code (0 full fidelity, 10 degraded, 11 unsupported).
pub fn run(args: &CompatArgs) -> Result<u8, CompatError> {
    let facts = match &args.facts {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| CompatError::ReadFacts(path.clone(), e.to_string()))?;
            serde_json::from_str::<Facts>(&text).map_err(|e| CompatError::ReadFacts(path.clone(), e.to_string()))?
        }
        None => gather_here(&args.btf, true),
    };
    if let Some(path) = &args.save_facts {
        let text = serde_json::to_string_pretty(&facts).expect("facts serialize");
        std::fs::write(path, text + "\n").map_err(|e| CompatError::WriteFacts(path.clone(), e.to_string()))?;
    }
    let p = plan(&facts, &built_tiers());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report::render_json(&facts, &p)).expect("report serializes"));
    } else {
        print!("{}", report::render_text(&facts, &p));
    }
    Ok(p.exit_code())
}
