//! What this node's kernel can do, and which strata capture tier follows from it.
//!
//! The crate is split the way aya-obj/aya and cilium/ebpf's `features` package are:
//!
//! - [`facts`] asks the kernel (syscalls, procfs, sysfs, tracefs) and records the answers in
//!   [`Facts`], a serializable, versioned value. This is the only module that does I/O.
//! - [`plan()`] is a pure function from [`Facts`] (plus which tiers this build contains) to a
//!   [`Plan`]: the capture tier, its transport and BTF source, and why every better tier was
//!   rejected. It is tested on fact sets of real kernels without root or a kernel.
//! - [`report`] renders facts and plan for operators (text) and machines (JSON, see SCHEMA.md).

pub mod facts;
pub mod features;
pub mod plan;
pub mod probe;
pub mod report;
/// The raw calls the probes make; the perf-event tier makes the same ones to choose its ways.
pub mod syscalls;
pub mod version;

pub use facts::{gather, Facts, GatherOptions};
pub use plan::{plan, BtfSource, BuiltTiers, Fidelity, Plan, Rejection, SyscallHooks, Tier, Transport};
pub use probe::Probe;
pub use version::KernelVersion;
