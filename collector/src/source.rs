//! Where events come from: one interface over every capture tier.

use probes_core::loader::{Capture, CaptureConfig, CaptureError};
use strata_event::Event;
use probes_legacy::capture::{PerfConfig, PerfError, PerfEventCapture};

/// A running live capture of one tier.
pub enum LiveSource {
    // Boxed: the aya handle is large, and a source is made once per run.
    Core(Box<Capture>),
    PerfEvent(PerfEventCapture),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Core(#[from] CaptureError),
    #[error(transparent)]
    PerfEvent(#[from] PerfError),
}

impl SourceError {
    /// True when the node cannot run the tier (as opposed to a bad argument).
    pub fn is_environment(&self) -> bool {
        match self {
            SourceError::Core(e) => e.is_environment(),
            SourceError::PerfEvent(e) => e.is_environment(),
        }
    }
}

impl LiveSource {
    pub fn start_core(cfg: &CaptureConfig) -> Result<LiveSource, SourceError> {
        Ok(LiveSource::Core(Box::new(Capture::start(cfg)?)))
    }

    pub fn start_perf_event(cfg: &PerfConfig) -> Result<LiveSource, SourceError> {
        Ok(LiveSource::PerfEvent(PerfEventCapture::start(cfg)?))
    }

    pub async fn next_batch(&mut self, out: &mut Vec<Event>, max: usize) -> std::io::Result<()> {
        match self {
            LiveSource::Core(c) => c.next_batch(out, max).await,
            LiveSource::PerfEvent(p) => p.next_batch(out, max).await,
        }
    }

    /// Loss events since the last call (the perf-event tier reports its losses inline instead).
    pub fn take_losses(&mut self, now_ns: u64) -> Vec<Event> {
        match self {
            LiveSource::Core(c) => c.take_losses(now_ns),
            LiveSource::PerfEvent(_) => vec![],
        }
    }

    pub fn detach(&mut self) {
        match self {
            LiveSource::Core(c) => c.detach(),
            LiveSource::PerfEvent(p) => p.detach(),
        }
    }

    pub fn drain(&mut self, out: &mut Vec<Event>) {
        match self {
            LiveSource::Core(c) => c.drain(out),
            LiveSource::PerfEvent(p) => p.drain(out),
        }
    }
}
