//! strata's normalized event schema, the one every capture tier produces and the pipeline
//! consumes, and the decode of the kernel side's records (`probes-core/bpf/event.h`, mirrored in
//! [`wire`]) into it. Pure: no aya, no tokio, no I/O.

pub mod batch;
pub mod decode;
pub mod event;
#[doc(hidden)]
pub mod testkit;
pub mod wire;

pub use batch::RecordBatch;
pub use event::*;
