//! A compact binary encoding of [`Event`]s, for capture files (`strata record` / `strata replay`).
//!
//! Little-endian, length-prefixed records, every enum as one byte with a fixed number. Pure code:
//! a bad record is an error naming where and what, never a panic. Version changes of this layout
//! bump [`CODEC_VERSION`], which the file header carries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use strata_event::*;

pub const CODEC_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad record at byte {offset}: {what}")]
pub struct CodecError {
    pub offset: usize,
    pub what: String,
}

/// Appends one record (u32 length, then the body) to `out`.
pub fn encode(ev: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut w = Writer(out);
    let kind = match &ev.kind {
        EventKind::Open(_) => 1,
        EventKind::Data(_) => 2,
        EventKind::Close(_) => 3,
        EventKind::State(_) => 4,
        EventKind::Loss(_) => 5,
    };
    w.u8(kind);
    w.u64(ev.ts_ns);
    w.u32(ev.pid);
    w.u32(ev.tid);
    w.u32(ev.fd as u32);
    w.u64(ev.sock_id);
    w.bytes16(ev.comm.as_bytes());
    match &ev.kind {
        EventKind::Open(o) => {
            w.conn(&o.conn);
            w.u8(syscall_code(o.syscall));
            w.u8(o.in_progress as u8);
            w.u64(o.enter_ns);
        }
        EventKind::Data(d) => {
            w.conn(&d.conn);
            w.u8(syscall_code(d.syscall));
            w.u8(match d.direction {
                Direction::Egress => 1,
                Direction::Ingress => 2,
            });
            w.u64(d.byte_count);
            w.u8(d.truncated as u8
                | (d.peer_from_msg as u8) << 1
                | (d.payload_stale as u8) << 2
                | (d.tls_skipped as u8) << 3);
            w.u64(d.enter_ns);
            w.u64(d.exit_ns);
            w.u32(d.payload.len() as u32);
            w.0.extend_from_slice(&d.payload);
        }
        EventKind::Close(c) => {
            w.conn(&c.conn);
            w.u64(c.bytes_sent);
            w.u64(c.bytes_received);
            w.u64(c.first_seen_ns);
        }
        EventKind::State(s) => {
            w.addr(&s.local);
            w.addr(&s.remote);
            w.u32(s.old_state.0 as u32);
            w.u32(s.new_state.0 as u32);
        }
        EventKind::Loss(l) => {
            let code = LOSS_SOURCES.iter().position(|s| *s == l.source).expect("every source has a code");
            w.u8(code as u8);
            w.u64(l.count);
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Decodes the record at the front of `buf`. Ok(None) when `buf` holds no whole record yet (more
/// bytes may come); Ok(Some((event, bytes used))) otherwise.
pub fn decode(buf: &[u8], base_offset: usize) -> Result<Option<(Event, usize)>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
    if len > MAX_RECORD {
        return Err(CodecError { offset: base_offset, what: format!("record length {len} is implausible") });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let mut r = Reader { buf: &buf[4..4 + len], pos: 0, base: base_offset + 4 };
    let ev = r.event()?;
    if r.pos != len {
        return Err(r.err(format!("{} bytes left over in the record", len - r.pos)));
    }
    Ok(Some((ev, 4 + len)))
}

/// Larger than any record strata makes (payloads are capped at 8 KiB).
const MAX_RECORD: usize = 1 << 20;

/// Loss sources by their code in the file: append only, never reorder.
const LOSS_SOURCES: [LossSource; 14] = [
    LossSource::KernelOpen,
    LossSource::KernelData,
    LossSource::KernelClose,
    LossSource::KernelState,
    LossSource::KernelPending,
    LossSource::Undecodable,
    LossSource::PerfRing,
    LossSource::PerfPending,
    LossSource::PerfUnreadable,
    LossSource::PerfUnresolved,
    LossSource::KernelMmsg,
    LossSource::KernelPerfBuffer,
    LossSource::AgentQueue,
    LossSource::PerfPayloadUnreadable,
];

fn syscall_code(s: Syscall) -> u8 {
    (1..=15u32).find(|n| Syscall::from_wire(*n) == Some(s)).expect("every syscall has a wire number") as u8
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes16(&mut self, b: &[u8]) {
        let b = &b[..b.len().min(u16::MAX as usize)];
        self.0.extend_from_slice(&(b.len() as u16).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    fn addr(&mut self, a: &SocketAddr) {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.0.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.0.extend_from_slice(&ip.octets());
            }
        }
        self.0.extend_from_slice(&a.port().to_le_bytes());
    }
    fn conn(&mut self, c: &Connection) {
        self.u8(match c.transport {
            Transport::Tcp => 1,
            Transport::Udp => 2,
        });
        self.u8(match c.role {
            Role::Unknown => 0,
            Role::Client => 1,
            Role::Server => 2,
        });
        self.addr(&c.local);
        self.addr(&c.remote);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, what: impl Into<String>) -> CodecError {
        CodecError { offset: self.base + self.pos, what: what.into() }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let b = self.buf.get(self.pos..self.pos + n).ok_or_else(|| self.err(format!("needs {n} more bytes")))?;
        self.pos += n;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn flag(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.err(format!("flag {v} is neither 0 nor 1"))),
        }
    }
    fn addr(&mut self) -> Result<SocketAddr, CodecError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(self.take(4)?).unwrap())),
            6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).unwrap())),
            f => return Err(self.err(format!("address family {f}"))),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    fn conn(&mut self) -> Result<Connection, CodecError> {
        let transport = match self.u8()? {
            1 => Transport::Tcp,
            2 => Transport::Udp,
            t => return Err(self.err(format!("transport {t}"))),
        };
        let role = match self.u8()? {
            0 => Role::Unknown,
            1 => Role::Client,
            2 => Role::Server,
            r => return Err(self.err(format!("role {r}"))),
        };
        Ok(Connection { transport, role, local: self.addr()?, remote: self.addr()? })
    }
    fn syscall(&mut self) -> Result<Syscall, CodecError> {
        let n = self.u8()?;
        Syscall::from_wire(n as u32).ok_or_else(|| self.err(format!("syscall {n}")))
    }
    fn event(&mut self) -> Result<Event, CodecError> {
        let kind = self.u8()?;
        let ts_ns = self.u64()?;
        let pid = self.u32()?;
        let tid = self.u32()?;
        let fd = self.u32()? as i32;
        let sock_id = self.u64()?;
        let comm_len = self.u16()? as usize;
        let comm = Comm::from_bytes(self.take(comm_len)?);
        let kind = match kind {
            1 => EventKind::Open(Open {
                conn: self.conn()?,
                syscall: self.syscall()?,
                in_progress: self.flag()?,
                enter_ns: self.u64()?,
            }),
            2 => {
                let conn = self.conn()?;
                let syscall = self.syscall()?;
                let direction = match self.u8()? {
                    1 => Direction::Egress,
                    2 => Direction::Ingress,
                    d => return Err(self.err(format!("direction {d}"))),
                };
                let byte_count = self.u64()?;
                let flags = self.u8()?;
                if flags > 15 {
                    return Err(self.err(format!("data flags {flags:#x}")));
                }
                let enter_ns = self.u64()?;
                let exit_ns = self.u64()?;
                let n = self.u32()? as usize;
                let payload = Payload::from(self.take(n)?);
                EventKind::Data(Data {
                    conn,
                    syscall,
                    direction,
                    byte_count,
                    payload,
                    truncated: flags & 1 != 0,
                    peer_from_msg: flags & 2 != 0,
                    payload_stale: flags & 4 != 0,
                    tls_skipped: flags & 8 != 0,
                    enter_ns,
                    exit_ns,
                })
            }
            3 => EventKind::Close(Close {
                conn: self.conn()?,
                bytes_sent: self.u64()?,
                bytes_received: self.u64()?,
                first_seen_ns: self.u64()?,
            }),
            4 => EventKind::State(TcpState {
                local: self.addr()?,
                remote: self.addr()?,
                old_state: TcpStateName(self.u32()? as i32),
                new_state: TcpStateName(self.u32()? as i32),
            }),
            5 => {
                let code = self.u8()?;
                let source = *LOSS_SOURCES.get(code as usize).ok_or_else(|| self.err(format!("loss source {code}")))?;
                EventKind::Loss(Loss { source, count: self.u64()? })
            }
            k => return Err(self.err(format!("event kind {k}"))),
        };
        Ok(Event { ts_ns, pid, tid, comm, fd, sock_id, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Event> {
        let conn = Connection {
            transport: Transport::Tcp,
            role: Role::Client,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "[::1]:80".parse().unwrap(),
        };
        let base = |kind| Event { ts_ns: 7, pid: 1, tid: 2, comm: "curl".into(), fd: -1, sock_id: 9, kind };
        vec![
            base(EventKind::Open(Open { conn, syscall: Syscall::Connect, in_progress: true, enter_ns: 3 })),
            base(EventKind::Data(Data {
                conn,
                syscall: Syscall::Writev,
                direction: Direction::Egress,
                byte_count: 1 << 40,
                payload: Payload::from((0..=255).collect::<Vec<u8>>()),
                truncated: true,
                peer_from_msg: false,
                payload_stale: true,
                tls_skipped: true,
                enter_ns: 5,
                exit_ns: 6,
            })),
            base(EventKind::Close(Close { conn, bytes_sent: 1, bytes_received: 2, first_seen_ns: 3 })),
            base(EventKind::State(TcpState {
                local: conn.local,
                remote: conn.remote,
                old_state: TcpStateName(2),
                new_state: TcpStateName(1),
            })),
            Event::loss(8, LossSource::PerfPending, 42),
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let mut buf = vec![];
        for ev in samples() {
            encode(&ev, &mut buf);
        }
        let mut pos = 0;
        let mut back = vec![];
        while let Some((ev, n)) = decode(&buf[pos..], pos).unwrap() {
            back.push(ev);
            pos += n;
        }
        assert_eq!(back, samples());
        assert_eq!(pos, buf.len());
    }

    #[test]
    fn a_partial_record_waits_and_garbage_is_an_error() {
        let mut buf = vec![];
        encode(&samples()[1], &mut buf);
        for n in 0..buf.len() {
            assert_eq!(decode(&buf[..n], 0), Ok(None), "prefix of {n}");
        }
        let mut bad = buf.clone();
        bad[4] = 99; // the kind byte
        assert!(decode(&bad, 0).unwrap_err().what.contains("event kind 99"));
        assert!(decode(&[0xff, 0xff, 0xff, 0x7f], 0).is_err());
        // A length that cuts a record short inside: an error, not a panic.
        let mut short = buf.clone();
        let len = u32::from_le_bytes(short[..4].try_into().unwrap()) - 10;
        short[..4].copy_from_slice(&len.to_le_bytes());
        assert!(decode(&short, 0).is_err());
    }
}
