//! The kernel's record layout, mirrored from `bpf/event.h`.
//!
//! These structs are never cast from ring-buffer bytes directly (records arrive unaligned and may
//! be short); [`crate::decode`] reads them field by field. They exist so the layout has one Rust
//! spelling that a test compares, offset by offset, with what a C compiler makes of `event.h`.

pub const MAX_CAPTURE: u32 = 8192;
pub const MAX_IOV: u32 = 8;
pub const MAX_MMSG: u32 = 4;
pub const COMM_LEN: usize = 16;

pub const KIND_OPEN: u32 = 1;
pub const KIND_DATA: u32 = 2;
pub const KIND_CLOSE: u32 = 3;
pub const KIND_STATE: u32 = 4;

pub const LOST_SLOTS: u32 = 6;

pub const FLAG_TRUNCATED: u8 = 1;
pub const FLAG_PEER_FROM_MSG: u8 = 2;
pub const FLAG_TLS_SKIPPED: u8 = 4;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// `struct strata_lost_key`: a per-process loss counter's key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LostKey {
    pub tgid: u32,
    pub slot: u32,
}

/// `struct strata_config`: what the loader tells the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub capture_bytes: u32,
    pub self_tgid: u32,
    pub wakeup_bytes: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Endpoint {
    pub family: u16,
    pub port: u16,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Header {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    pub sock_id: u64,
    pub ts_ns: u64,
    pub comm: [u8; COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Socket {
    pub protocol: u8,
    pub role: u8,
    pub _pad0: u16,
    pub local: Endpoint,
    pub remote: Endpoint,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenEvent {
    pub hdr: Header,
    pub sock: Socket,
    pub syscall: u32,
    pub ret: i32,
    pub enter_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DataEvent {
    pub hdr: Header,
    pub sock: Socket,
    pub enter_ns: u64,
    pub byte_count: u64,
    pub captured_len: u32,
    pub syscall: u32,
    pub direction: u8,
    pub flags: u8,
    pub _pad0: u16,
    pub _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloseEvent {
    pub hdr: Header,
    pub sock: Socket,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub first_seen_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StateEvent {
    pub hdr: Header,
    pub sock: Socket,
    pub old_state: i32,
    pub new_state: i32,
}
