//! strata's capture core: the normalized event schema every tier produces, the CO-RE BPF probes
//! (bpf/) and their loader.

pub mod codec;
pub mod decode;
pub mod event;
pub mod loader;
pub mod preflight;
pub mod wire;

pub use event::Event;
