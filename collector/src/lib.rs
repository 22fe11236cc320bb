//! strata's collector: sources → queue → pipeline → sinks.
//!
//! ```text
//! sources/ (CO-RE tiers, perf-event, replay)
//!    │ Event batches
//!    ▼
//! queue (bounded, drops counted)
//!    ▼
//! flow ─► pipeline/ (conntrack, detection, parsers, matching) ─► Record
//!    ▼ metadata/ (container, pod and workload attribution, by pid)
//! sinks/ (record and event lines, capture file) and telemetry/ (convergence, then
//!         Prometheus, OTLP, the terminal table)
//! ```
//!
//! The `strata` binary (src/main.rs, src/cli/) adds the command line, the choice of tier and
//! the threads.

pub mod capture_file;
pub mod clock;
pub mod flow;
pub mod metadata;
pub mod pipeline;
pub mod queue;
pub mod sinks;
pub mod sources;
pub mod telemetry;
