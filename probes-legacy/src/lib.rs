//! strata's capture tiers for kernels where eBPF is unusable. Each decodes into
//! `strata_event::Event`, the schema every tier shares.
//!
//! - perf-event: syscall tracepoints through perf_event_open alone ([`capture`]).

pub mod capture;
pub mod format;
pub mod memory;
pub mod perf;
pub mod procfs;
pub mod sockdiag;
pub mod sockets;
pub mod tracker;
