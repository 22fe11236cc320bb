//! Where records and events end up. A sink consumes what the flow hands it, batch by batch; it
//! never owns the pipeline.
//!
//! - [`record_lines`]: request/response records as JSON lines or text (`strata run --output`);
//! - [`event_lines`]: the normalized events themselves (`--raw-events`);
//! - [`capture_file`]: events into a capture file (`strata record`);
//! - the telemetry sinks (Prometheus, OTLP, the terminal table) sit behind
//!   [`crate::telemetry::Telemetry`], which hands converged records to them on its own thread.

pub mod capture_file;
pub mod event_lines;
pub mod record_lines;

use strata_event::Event;

use crate::pipeline::Record;

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LineFormat {
    /// One readable line per record (or event).
    Text,
    /// One JSON object per record (docs/records.md) or event (docs/events.md).
    Jsonl,
}

/// A consumer of normalized events.
pub trait EventSink: Send {
    /// Writes a batch and makes it visible (flushes).
    fn write_batch(&mut self, events: &[Event]) -> std::io::Result<()>;
    /// The source ended: write whatever is still held.
    fn finish(&mut self) -> std::io::Result<()>;
}

/// A consumer of request/response records.
pub trait RecordSink: Send {
    fn write_batch(&mut self, records: &[Record]) -> std::io::Result<()>;
    fn finish(&mut self) -> std::io::Result<()>;
}
