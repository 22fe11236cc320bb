//! Where events come from: one interface over every capture tier, plus the replay of a capture
//! file. Every source yields the same [`Event`]s; nothing downstream knows which made them.
//!
//! - the CO-RE tiers (core, archived-btf, host-compiled) are one source, probes-core's
//!   [`Capture`], given the BTF the plan chose and the buffer the kernel has;
//! - kmod is probes-kmod's [`KmodCapture`], given the module built for this kernel;
//! - perf-event is probes-legacy's [`PerfEventCapture`];
//! - [`replay`] reads a capture file.

pub mod replay;

use kernel_compat::Tier;
use probes_core::loader::{BtfSource, Capture, CaptureConfig, CaptureError, HooksChoice};
use probes_core::objects::Buffer;
use probes_kmod::capture::{KmodCapture, KmodConfig, KmodError};
use probes_legacy::capture::{PerfConfig, PerfError, PerfEventCapture};
use strata_event::Event;

/// How to capture, whatever the tier.
#[derive(Clone, Debug)]
pub struct CaptureSettings {
    /// Payload bytes captured per syscall.
    pub capture_bytes: u32,
    /// Kernel buffer bytes (the BPF ring buffer, or shared out across per-CPU perf buffers).
    pub ring_bytes: u32,
    /// The perf-event tier's own settings (its reader thread and wake-ups).
    pub perf: PerfConfig,
    /// CO-RE tiers: also capture TCP state changes (events no record needs).
    pub tcp_states: bool,
    /// CO-RE tiers: where the probes hook the syscalls.
    pub hooks: HooksChoice,
}

/// A running live capture of one tier.
pub enum LiveSource {
    // Boxed: the aya handle is large, and a source is made once per run.
    Bpf(Box<Capture>),
    Kmod(KmodCapture),
    PerfEvent(PerfEventCapture),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Bpf(#[from] CaptureError),
    #[error(transparent)]
    Kmod(#[from] KmodError),
    #[error(transparent)]
    PerfEvent(#[from] PerfError),
    #[error("tier {0} is not part of this build")]
    NotBuilt(Tier),
}

impl SourceError {
    /// True when the node cannot run the tier (as opposed to a bad argument).
    pub fn is_environment(&self) -> bool {
        match self {
            SourceError::Bpf(e) => e.is_environment(),
            SourceError::Kmod(e) => e.is_environment(),
            SourceError::PerfEvent(e) => e.is_environment(),
            SourceError::NotBuilt(_) => true,
        }
    }
}

/// What a started source says about itself, for the log and the agent's telemetry.
pub struct Started {
    pub source: LiveSource,
    pub description: String,
}

impl LiveSource {
    /// Starts `tier`; CO-RE tiers relocate with `btf` and use `buffer`; kmod loads `module`.
    pub fn start(
        tier: Tier,
        settings: &CaptureSettings,
        btf: Option<&BtfSource>,
        buffer: Buffer,
        module: Option<&std::path::Path>,
    ) -> Result<Started, SourceError> {
        match tier {
            t if t.is_bpf() => {
                // The plan never offers a CO-RE tier without a BTF: aya would skip relocation.
                let btf = btf.cloned().ok_or(SourceError::NotBuilt(t))?;
                let cfg = CaptureConfig {
                    capture_bytes: settings.capture_bytes,
                    ring_bytes: settings.ring_bytes,
                    btf: btf.clone(),
                    buffer,
                    tcp_states: settings.tcp_states,
                    hooks: settings.hooks,
                };
                let capture = Capture::start(&cfg)?;
                let skipped = capture.skipped.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>();
                let description = format!(
                    "CO-RE probes relocated with the {}, on {}, {} of {} KiB, objects from {}{}",
                    btf.describe(),
                    capture.hooks.name(),
                    buffer.name(),
                    cfg.ring_bytes / 1024,
                    probes_core::objects::OBJECT_ORIGIN,
                    if skipped.is_empty() { String::new() } else { format!(", without {}", skipped.join(", ")) }
                );
                Ok(Started { source: LiveSource::Bpf(Box::new(capture)), description })
            }
            Tier::Kmod => {
                let module = module.ok_or(SourceError::NotBuilt(Tier::Kmod))?;
                let cfg = KmodConfig {
                    module: module.to_path_buf(),
                    capture_bytes: settings.capture_bytes,
                    ring_bytes: settings.ring_bytes,
                };
                let capture = KmodCapture::start(&cfg)?;
                Ok(Started { source: LiveSource::Kmod(capture), description: KmodCapture::describe(&cfg) })
            }
            Tier::PerfEvent => {
                let cfg = PerfConfig { capture_bytes: settings.capture_bytes, ..settings.perf.clone() };
                let capture = PerfEventCapture::start(&cfg)?;
                let description = format!(
                    "perf_event_open on syscall tracepoints, no BPF; {} pages per CPU ring; {}",
                    cfg.ring_pages, capture.access
                );
                Ok(Started { source: LiveSource::PerfEvent(capture), description })
            }
            other => Err(SourceError::NotBuilt(other)),
        }
    }

    pub async fn next_batch(&mut self, out: &mut Vec<Event>, max: usize) -> std::io::Result<()> {
        match self {
            LiveSource::Bpf(c) => c.next_batch(out, max).await,
            LiveSource::Kmod(k) => k.next_batch(out, max).await,
            LiveSource::PerfEvent(p) => p.next_batch(out, max).await,
        }
    }

    /// Loss events since the last call (the perf-event tier reports its losses inline instead).
    pub fn take_losses(&mut self, now_ns: u64) -> Vec<Event> {
        match self {
            LiveSource::Bpf(c) => c.take_losses(now_ns),
            LiveSource::Kmod(k) => k.take_losses(now_ns),
            LiveSource::PerfEvent(_) => vec![],
        }
    }

    pub fn detach(&mut self) {
        match self {
            LiveSource::Bpf(c) => c.detach(),
            LiveSource::Kmod(k) => k.detach(),
            LiveSource::PerfEvent(p) => p.detach(),
        }
    }

    pub fn drain(&mut self, out: &mut Vec<Event>) {
        match self {
            LiveSource::Bpf(c) => c.drain(out),
            LiveSource::Kmod(k) => k.drain(out),
            LiveSource::PerfEvent(p) => p.drain(out),
        }
    }
}
