//! Kernel records (bytes, as `bpf/event.h` lays them out) into normalized [`Event`]s.
//!
//! Pure code: a bad record is an error naming what is wrong, never a panic.

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use bytes::Bytes;

use crate::event::*;
use crate::wire;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than its {kind} header ({need} bytes)")]
    Short { kind: &'static str, got: usize, need: usize },
    #[error("record kind {0} is unknown to this strata build")]
    UnknownKind(u32),
    #[error("data record claims {claimed} payload bytes but carries {present}")]
    PayloadLength { claimed: u32, present: usize },
    #[error("address family {0} is neither AF_INET nor AF_INET6")]
    Family(u16),
    #[error("transport {0} is neither TCP nor UDP")]
    Protocol(u8),
    #[error("syscall number {0} is unknown")]
    Syscall(u32),
    #[error("direction {0} is unknown")]
    Direction(u8),
}

/// Reads a wire struct from the front of `bytes`.
fn read<T: Copy>(bytes: &[u8], kind: &'static str) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short { kind, got: bytes.len(), need: size_of::<T>() });
    }
    // SAFETY: length checked above; the wire structs are repr(C) integers and byte arrays, for
    // which every bit pattern is a valid value, and read_unaligned has no alignment requirement.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one record. The payload is a slice of `record` (no copy): decode records out of one
/// batch buffer and a batch costs one allocation, not one per event.
pub fn decode(record: &Bytes) -> Result<Event, DecodeError> {
    decode_at(record, 0..record.len())
}

/// Decodes the record at `at` (within `buf`), the payload a slice of `buf`: a batch's records are
/// decoded in place, each taking one reference on the batch (its payload's), not a second for itself.
pub(crate) fn decode_at(buf: &Bytes, at: Range<usize>) -> Result<Event, DecodeError> {
    let bytes: &[u8] = &buf[at.clone()];
    let hdr: wire::Header = read(bytes, "common")?;
    let kind = match hdr.kind {
        wire::KIND_OPEN => {
            let ev: wire::OpenEvent = read(bytes, "open")?;
            let syscall = Syscall::from_wire(ev.syscall).ok_or(DecodeError::Syscall(ev.syscall))?;
            EventKind::Open(Open {
                conn: connection(&ev.sock)?,
                syscall,
                in_progress: ev.ret != 0,
                enter_ns: ev.enter_ns,
            })
        }
        wire::KIND_DATA => {
            let ev: wire::DataEvent = read(bytes, "data")?;
            let start = size_of::<wire::DataEvent>();
            let present = bytes.len() - start;
            if present < ev.captured_len as usize {
                return Err(DecodeError::PayloadLength { claimed: ev.captured_len, present });
            }
            let direction = match ev.direction {
                1 => Direction::Egress,
                2 => Direction::Ingress,
                d => return Err(DecodeError::Direction(d)),
            };
            let syscall = Syscall::from_wire(ev.syscall).ok_or(DecodeError::Syscall(ev.syscall))?;
            EventKind::Data(Data {
                conn: connection(&ev.sock)?,
                syscall,
                direction,
                byte_count: ev.byte_count,
                payload: Payload(buf.slice(at.start + start..at.start + start + ev.captured_len as usize)),
                truncated: ev.flags & wire::FLAG_TRUNCATED != 0,
                peer_from_msg: ev.flags & wire::FLAG_PEER_FROM_MSG != 0,
                payload_stale: false,
                tls_skipped: ev.flags & wire::FLAG_TLS_SKIPPED != 0,
                enter_ns: ev.enter_ns,
                exit_ns: ev.hdr.ts_ns,
            })
        }
        wire::KIND_CLOSE => {
            let ev: wire::CloseEvent = read(bytes, "close")?;
            EventKind::Close(Close {
                conn: connection(&ev.sock)?,
                bytes_sent: ev.bytes_sent,
                bytes_received: ev.bytes_received,
                first_seen_ns: ev.first_seen_ns,
            })
        }
        wire::KIND_STATE => {
            let ev: wire::StateEvent = read(bytes, "state")?;
            EventKind::State(TcpState {
                local: endpoint(&ev.sock.local)?,
                remote: endpoint(&ev.sock.remote)?,
                old_state: TcpStateName(ev.old_state),
                new_state: TcpStateName(ev.new_state),
            })
        }
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(Event {
        ts_ns: hdr.ts_ns,
        pid: hdr.tgid,
        tid: hdr.tid,
        comm: Comm::from_bytes(&hdr.comm),
        fd: hdr.fd,
        sock_id: hdr.sock_id,
        kind,
    })
}

fn connection(s: &wire::Socket) -> Result<Connection, DecodeError> {
    let transport = match s.protocol {
        wire::IPPROTO_TCP => Transport::Tcp,
        wire::IPPROTO_UDP => Transport::Udp,
        p => return Err(DecodeError::Protocol(p)),
    };
    let role = match s.role {
        1 => Role::Client,
        2 => Role::Server,
        _ => Role::Unknown,
    };
    Ok(Connection { transport, role, local: endpoint(&s.local)?, remote: endpoint(&s.remote)? })
}

pub fn endpoint(e: &wire::Endpoint) -> Result<SocketAddr, DecodeError> {
    let ip = match e.family {
        wire::AF_INET => IpAddr::V4(Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3])),
        wire::AF_INET6 => IpAddr::V6(Ipv6Addr::from(e.addr)),
        f => return Err(DecodeError::Family(f)),
    };
    Ok(SocketAddr::new(ip, e.port))
}

/// The bytes of a wire struct, for tests and for tools that synthesize records.
pub fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is one of the padding-explicit repr(C) wire structs; reading its bytes is sound.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_record(payload: &[u8], byte_count: u64, flags: u8) -> Bytes {
        Bytes::from(crate::testkit::data_record(payload, byte_count, flags))
    }

    #[test]
    fn decodes_a_data_record() {
        let rec = data_record(b"GET / HTTP/1.1\r\n", 16, 0);
        let ev = decode(&rec).unwrap();
        assert_eq!(ev.pid, 42);
        assert_eq!(ev.comm, "curl");
        let EventKind::Data(d) = ev.kind else { panic!("not data: {ev:?}") };
        assert_eq!(d.conn.remote, "127.0.0.1:80".parse().unwrap());
        assert_eq!(d.conn.role, Role::Client);
        assert_eq!(d.direction, Direction::Egress);
        assert_eq!(&*d.payload, b"GET / HTTP/1.1\r\n");
        assert!(!d.truncated);
        assert_eq!((d.enter_ns, d.exit_ns), (1_000, 2_000));
    }

    #[test]
    fn truncated_flag_and_true_byte_count_survive() {
        let rec = data_record(&[b'x'; 8], 1 << 20, wire::FLAG_TRUNCATED);
        let EventKind::Data(d) = decode(&rec).unwrap().kind else { panic!() };
        assert!(d.truncated);
        assert_eq!(d.byte_count, 1 << 20);
        assert_eq!(d.payload.0.len(), 8);
    }

    #[test]
    fn every_prefix_of_a_record_is_an_error_not_a_panic() {
        let rec = data_record(b"hello", 5, 0);
        for n in 0..rec.len() {
            assert!(decode(&rec.slice(..n)).is_err(), "prefix of {n} bytes decoded");
        }
        assert!(decode(&rec).is_ok());
    }

    #[test]
    fn garbage_fields_are_named() {
        let mut rec = data_record(b"", 0, 0).to_vec();
        rec[0] = 99;
        assert_eq!(decode(&Bytes::from(rec)), Err(DecodeError::UnknownKind(99)));
        let mut ev = wire::OpenEvent::default();
        ev.hdr.kind = wire::KIND_OPEN;
        ev.sock.protocol = wire::IPPROTO_TCP;
        ev.sock.local.family = 1; // AF_UNIX
        ev.syscall = 12;
        assert_eq!(decode(&Bytes::from(as_bytes(&ev))), Err(DecodeError::Family(1)));
    }
}
