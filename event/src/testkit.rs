//! Records in the kernel's wire layout, for the decode's tests and benchmark: one builder, so they
//! all describe the same call.

use crate::decode::as_bytes;
use crate::wire;

/// An IPv4 endpoint as the probes write it.
pub fn v4(a: [u8; 4], port: u16) -> wire::Endpoint {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&a);
    wire::Endpoint { family: wire::AF_INET, port, addr }
}

/// A data record: curl (pid 42, fd 5) sent `payload` of a `byte_count`-byte write to
/// 127.0.0.1:80, entering at 1 000 ns and leaving at 2 000 ns.
pub fn data_record(payload: &[u8], byte_count: u64, flags: u8) -> Vec<u8> {
    let mut ev = wire::DataEvent::default();
    ev.hdr.kind = wire::KIND_DATA;
    ev.hdr.tgid = 42;
    ev.hdr.tid = 43;
    ev.hdr.fd = 5;
    ev.hdr.sock_id = 777;
    ev.hdr.ts_ns = 2_000;
    ev.hdr.comm[..4].copy_from_slice(b"curl");
    ev.sock = wire::Socket {
        protocol: wire::IPPROTO_TCP,
        role: 1,
        _pad0: 0,
        local: v4([127, 0, 0, 1], 40000),
        remote: v4([127, 0, 0, 1], 80),
    };
    ev.enter_ns = 1_000;
    ev.byte_count = byte_count;
    ev.captured_len = payload.len() as u32;
    ev.syscall = 2;
    ev.direction = 1;
    ev.flags = flags;
    let mut bytes = as_bytes(&ev);
    bytes.extend_from_slice(payload);
    bytes
}
