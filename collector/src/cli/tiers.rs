//! Which tiers `strata run` tries, in which order, and with what: the compat plan's tier and its
//! fallbacks (or the one tier `--tier` names), each CO-RE tier with its BTF and transport.
//! Detection predicts, loading decides: [`start_first`] falls to the next candidate by itself
//! when one fails to load, and logs why.

use std::path::PathBuf;

use kernel_compat::{Facts, Plan, Tier, Transport};
use probes_core::loader::BtfSource;
use probes_core::objects::Buffer;

use collector::sources::{CaptureSettings, LiveSource, SourceError, Started};

use super::args::{CaptureArgs, TierChoice, TransportChoice};
use super::btf::btf_for;
use super::kmod::module_for;

/// A tier to try, with everything it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub tier: Tier,
    pub btf: Option<BtfSource>,
    pub buffer: Buffer,
    /// The kernel module the kmod tier loads.
    pub module: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error("no capture tier can run on this node:\n{0}\n(see `strata compat-check`)")]
    NoTier(String),
    #[error("--tier {tier} cannot run here: {why}")]
    Forced { tier: Tier, why: String },
}

/// The buffer a CO-RE tier uses: as forced, else the ring buffer where the kernel has it (the
/// plan's transport for a CO-RE tier; the same rule for a forced one the plan did not choose).
fn buffer(choice: TransportChoice, facts: &Facts, plan: &Plan) -> Buffer {
    match choice {
        TransportChoice::RingBuffer => Buffer::RingBuffer,
        TransportChoice::PerfBuffer => Buffer::PerfBuffer,
        TransportChoice::Auto => match plan.transport {
            Transport::RingBuffer => Buffer::RingBuffer,
            Transport::PerfBuffer => Buffer::PerfBuffer,
            _ if facts.bpf.map_ringbuf.is_supported() && facts.bpf.helper_ringbuf_output.is_supported() => {
                Buffer::RingBuffer
            }
            _ => Buffer::PerfBuffer,
        },
    }
}

/// The candidates, best first.
pub fn candidates(args: &CaptureArgs, facts: &Facts, plan: &Plan) -> Result<Vec<Candidate>, ChoiceError> {
    let buffer = buffer(args.transport, facts, plan);
    let with_btf = |tier: Tier| Candidate { tier, btf: btf_for(tier, facts), buffer, module: module_for(tier, facts) };
    match args.tier {
        TierChoice::Forced(tier) => {
            let c = with_btf(tier);
            if tier.is_bpf() && c.btf.is_none() {
                let hint = if tier == Tier::HostCompiled { &facts.btf_generated } else { &facts.btf_archive_hint };
                let why = match (tier, hint) {
                    (Tier::Core, _) => format!("the kernel has no BTF ({})", facts.btf.vmlinux.reason()),
                    (_, Some(h)) => h.error.clone().unwrap_or_else(|| "no BTF was found for it".into()),
                    (Tier::HostCompiled, None) => {
                        "no kernel headers, clang or pahole here to generate a BTF with (see `strata compat-check`)"
                            .into()
                    }
                    (_, None) => "no BTF was looked for".into(),
                };
                return Err(ChoiceError::Forced { tier, why });
            }
            if tier == Tier::Kmod && c.module.is_none() {
                let blockers = kernel_compat::plan::blockers(facts, tier);
                let why = if blockers.is_empty() {
                    "no module was built for this kernel".into()
                } else {
                    blockers.join("; ")
                };
                return Err(ChoiceError::Forced { tier, why });
            }
            Ok(vec![c])
        }
        TierChoice::Auto => {
            if plan.tier == Tier::None {
                let rejected: Vec<String> =
                    plan.rejected.iter().map(|r| format!("{}: {}", r.tier.name(), r.reasons.join("; "))).collect();
                return Err(ChoiceError::NoTier(rejected.join("\n")));
            }
            Ok(std::iter::once(plan.tier).chain(plan.fallbacks.iter().copied()).map(with_btf).collect())
        }
    }
}

/// Starts the first candidate that loads. Must run inside a tokio runtime (the sources register
/// their buffers with it).
pub fn start_first(candidates: &[Candidate], settings: &CaptureSettings) -> Result<(Tier, Started), SourceError> {
    let mut last = None;
    for (i, c) in candidates.iter().enumerate() {
        match LiveSource::start(c.tier, settings, c.btf.as_ref(), c.buffer, c.module.as_deref()) {
            Ok(started) => return Ok((c.tier, started)),
            // A tier that fails to load (a verifier that refuses a program, say) hands over to
            // the next one instead of failing the agent.
            Err(e) if e.is_environment() && i + 1 < candidates.len() => {
                log::warn!("tier {} failed to start, falling back to {}: {e}", c.tier, candidates[i + 1].tier);
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(SourceError::NotBuilt(Tier::None)))
}
