//! Where events go: JSON lines for machines, one line of text per event for people.

mod jsonl;
mod records;
mod text;

use std::io::Write;

use strata_event::Event;

pub use jsonl::JsonLines;
pub use records::RecordLines;
pub use text::TextLines;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One readable line per record (or per event with --raw-events).
    Text,
    /// One JSON object per record (docs/records.md), or per event with --raw-events
    /// (docs/events.md).
    Jsonl,
}

/// Turns CLOCK_MONOTONIC event times into wall-clock times, with the offset taken once at start.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    realtime_minus_monotonic_ns: i128,
}

impl WallClock {
    pub fn now() -> WallClock {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mono = probes_core::loader::monotonic_ns() as i128;
        WallClock { realtime_minus_monotonic_ns: real - mono }
    }

    /// A clock recorded elsewhere (a capture file's header).
    pub fn from_offset_ns(realtime_minus_monotonic_ns: i128) -> WallClock {
        WallClock { realtime_minus_monotonic_ns }
    }

    pub fn offset_ns(&self) -> i128 {
        self.realtime_minus_monotonic_ns
    }

    pub fn unix_ns(&self, monotonic_ns: u64) -> i128 {
        monotonic_ns as i128 + self.realtime_minus_monotonic_ns
    }

    pub fn system_time(&self, monotonic_ns: u64) -> std::time::SystemTime {
        let ns = self.unix_ns(monotonic_ns).max(0) as u128;
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64)
    }
}

/// A sink for decoded events.
pub trait EventSink {
    fn write_event(&mut self, ev: &Event) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
    /// The capture tier now feeding this sink (for the agent's own telemetry).
    fn set_tier(&mut self, _tier: &str, _degraded: bool) {}
    /// The source ended: write whatever is still held, then flush.
    fn finish(&mut self) -> std::io::Result<()> {
        self.flush()
    }
}

/// What a run or a replay prints: request/response records (the default), or with `raw_events`
/// the normalized events themselves.
pub fn sink(
    format: OutputFormat,
    raw_events: bool,
    out: Box<dyn Write + Send>,
    clock: WallClock,
) -> Box<dyn EventSink + Send> {
    match (format, raw_events) {
        (OutputFormat::Text, true) => Box::new(TextLines::new(out, clock)),
        (OutputFormat::Jsonl, true) => Box::new(JsonLines::new(out, clock)),
        (format, false) => Box::new(RecordLines::new(Some(format), out, clock, Default::default())),
    }
}
