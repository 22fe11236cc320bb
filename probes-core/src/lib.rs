//! strata's CO-RE BPF probes (bpf/), their loader, and the checks that hold them to the kernels
//! they claim (object_check) and a BTF to the running kernel (btf_check). Events are decoded into
//! strata-event's schema.

pub mod btf_check;
pub mod hooks_floor;
pub mod loader;
pub mod object_check;
pub mod objects;
pub mod perf_buffer;
pub mod preflight;
