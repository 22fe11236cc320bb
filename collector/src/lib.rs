//! strata's collector: the pipeline every capture tier feeds, capture files, and outputs. The
//! `strata` binary (src/main.rs) adds the CLI and the live sources.

pub mod capture_file;
pub mod output;
pub mod pipeline;
pub mod telemetry;
