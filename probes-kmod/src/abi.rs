//! `/dev/strata`'s ioctls and ring layout, mirrored from `kmod/strata_kmod.h` (the test
//! `tests/abi.rs` compiles that header and compares sizes, offsets and ioctl numbers).

/// The ABI this strata speaks; a module with another is not used (see [`crate::capture`]).
pub const ABI: u32 = 1;

/// `struct strata_kmod_info`: what the module says about its rings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub abi: u32,
    pub ncpus: u32,
    pub ring_bytes: u32,
    pub page_size: u32,
}

/// `struct strata_kmod_start`: what the agent tells the module.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Start {
    pub self_tgid: u32,
    pub capture_bytes: u32,
    pub wakeup_bytes: u32,
    pub _pad: u32,
}

/// `struct strata_kmod_ctl`: a ring's control page. `head` is the module's, `tail` the agent's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ctl {
    pub head: u64,
    pub tail: u64,
    pub lost: [u64; 8],
}

/// `struct strata_kmod_rec`: the header of every record in a ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rec {
    pub len: u32,
    pub pad: u32,
}

/// Offsets of [`Ctl`]'s fields, for the atomic accesses on the mapped page.
pub const CTL_HEAD: usize = 0;
pub const CTL_TAIL: usize = 8;
pub const CTL_LOST: usize = 16;

/// Linux's `_IOC` encoding (asm-generic/ioctl.h, which x86_64 and arm64 use).
const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}
const READ: u32 = 2;
const WRITE: u32 = 1;

pub const IOC_INFO: u32 = ioc(READ, b'S', 1, std::mem::size_of::<Info>());
pub const IOC_START: u32 = ioc(WRITE, b'S', 2, std::mem::size_of::<Start>());
pub const IOC_STOP: u32 = ioc(0, b'S', 3, 0);
