//! Where records and events end up. A sink consumes what it is handed, batch by batch; it never
//! owns the pipeline.
//!
//! - [`record_lines`]: request/response records as JSON lines or text (`strata run --output`);
//! - [`event_lines`]: the normalized events themselves (`--raw-events`);
//! - [`capture_file`]: events into a capture file (`strata record`);
//! - [`prometheus`], [`otlp`], [`table`]: the telemetry sinks, fed converged records by
//!   [`crate::telemetry::Telemetry`] on its own thread.
//!
//! The flow ([`crate::flow`]) hands over events ([`EventSink`]) or records ([`RecordSink`]).

pub mod capture_file;
pub mod event_lines;
pub mod otlp;
pub mod prometheus;
pub mod record_lines;
pub mod table;

pub use crate::flow::{EventSink, RecordSink};

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LineFormat {
    /// One readable line per record (or event).
    Text,
    /// One JSON object per record (docs/records.md) or event (docs/events.md).
    Jsonl,
}
