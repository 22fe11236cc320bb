//! The kernel-module tier: where BPF programs cannot attach to syscalls (kernels before 4.14,
//! kernels built without BPF), strata builds its own module (`kmod/` at the repository's top) on
//! the node against the running kernel's headers, loads it, and reads the records it writes in the
//! BPF probes' layout from per-CPU rings mapped from `/dev/strata`.
//!
//! - [`source`]: the module's sources, built into strata, and their hash (the cache key);
//! - [`kbuild`]: `make -C <kernel build> M=<dir> modules`, the built module checked and cached;
//! - [`module`]: loading (finit_module) and unloading (delete_module), with the kernel's reasons;
//! - [`abi`]: the device's ioctls and ring layout, mirrored from `kmod/strata_kmod.h`;
//! - [`ring`]: reading records out of one ring (pure);
//! - [`capture`]: all of it together, as a capture source.

pub mod abi;
pub mod capture;
pub mod device;
pub mod kbuild;
pub mod module;
pub mod ring;
pub mod source;
