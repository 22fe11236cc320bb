//! The normalized event schema: what every capture tier produces and the pipeline consumes.
//!
//! Nothing after the source knows which tier made an event. Times are CLOCK_MONOTONIC
//! nanoseconds (what `bpf_ktime_get_ns` returns); the output layer turns them into wall time.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;

use bytes::Bytes;
use serde::{Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When the record was made (syscall exit for data), CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Process id (thread group id) and thread id.
    pub pid: u32,
    pub tid: u32,
    /// The task's command name (at most 15 bytes, as the kernel keeps it).
    pub comm: Comm,
    /// The socket's file descriptor in that process (-1 where the kernel did not say).
    pub fd: i32,
    /// The socket's inode number: with pid and fd it tells a reused fd from the previous socket.
    pub sock_id: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// A loss report: `count` records of `source` were lost; not tied to a process.
    pub fn loss(ts_ns: u64, source: LossSource, count: u64) -> Event {
        Event {
            ts_ns,
            pid: 0,
            tid: 0,
            comm: Comm::default(),
            fd: -1,
            sock_id: 0,
            kind: EventKind::Loss(Loss { source, count }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// accept/connect completed.
    Open(Open),
    /// Bytes moved through a socket syscall.
    Data(Data),
    /// close() of a socket seen before, with totals counted in the kernel.
    Close(Close),
    /// A TCP state change. Often happens in softirq: pid/comm are whoever ran, not the owner.
    State(TcpState),
    /// Records the capture could not deliver. Never silent: every lost record is counted here.
    Loss(Loss),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Seen first mid-stream: the connection was opened before capture started.
    Unknown,
    Client,
    Server,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The process sent the bytes.
    Egress,
    /// The process received the bytes.
    Ingress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Syscall {
    Read,
    Write,
    Readv,
    Writev,
    Recvfrom,
    Sendto,
    Recvmsg,
    Sendmsg,
    Recvmmsg,
    Sendmmsg,
    Sendfile,
    Connect,
    Accept,
    Accept4,
    Close,
}

impl Syscall {
    pub fn from_wire(n: u32) -> Option<Syscall> {
        use Syscall::*;
        Some(match n {
            1 => Read,
            2 => Write,
            3 => Readv,
            4 => Writev,
            5 => Recvfrom,
            6 => Sendto,
            7 => Recvmsg,
            8 => Sendmsg,
            9 => Recvmmsg,
            10 => Sendmmsg,
            11 => Sendfile,
            12 => Connect,
            13 => Accept,
            14 => Accept4,
            15 => Close,
            _ => return None,
        })
    }
}

/// A socket's transport, role and both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub transport: Transport,
    pub role: Role,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Open {
    #[serde(flatten)]
    pub conn: Connection,
    pub syscall: Syscall,
    /// A non-blocking connect returned EINPROGRESS: the handshake had not finished.
    pub in_progress: bool,
    pub enter_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Data {
    #[serde(flatten)]
    pub conn: Connection,
    pub syscall: Syscall,
    pub direction: Direction,
    /// Bytes the syscall really moved.
    pub byte_count: u64,
    /// The captured prefix of those bytes (at most the capture cap).
    pub payload: Payload,
    /// Fewer bytes were captured than moved (cap reached, sendfile, or an unreadable buffer).
    pub truncated: bool,
    /// The remote address came from the syscall's own sockaddr (unconnected UDP).
    pub peer_from_msg: bool,
    /// The payload was read from the process after the syscall, not during it (perf-event tier):
    /// the process may have changed the buffer meanwhile.
    pub payload_stale: bool,
    /// Not copied, only counted: the connection began with a TLS handshake, which no parser can
    /// read past (CO-RE tiers).
    pub tls_skipped: bool,
    pub enter_ns: u64,
    pub exit_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Close {
    #[serde(flatten)]
    pub conn: Connection,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// When the kernel side first saw this socket (open, or first data).
    pub first_seen_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TcpState {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub old_state: TcpStateName,
    pub new_state: TcpStateName,
}

/// TCP states as numbered in the kernel's include/net/tcp_states.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpStateName(pub i32);

impl TcpStateName {
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "ESTABLISHED",
            2 => "SYN_SENT",
            3 => "SYN_RECV",
            4 => "FIN_WAIT1",
            5 => "FIN_WAIT2",
            6 => "TIME_WAIT",
            7 => "CLOSE",
            8 => "CLOSE_WAIT",
            9 => "LAST_ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW_SYN_RECV",
            _ => "UNKNOWN",
        }
    }
}

impl Serialize for TcpStateName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// Where the records were lost.
    pub source: LossSource,
    /// How many records, since the previous loss event of this source.
    pub count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossSource {
    /// The kernel could not put an open record into a full buffer.
    KernelOpen,
    /// The kernel could not put a data record into a full buffer.
    KernelData,
    KernelClose,
    KernelState,
    /// The kernel's enter/exit pairing map was full: a syscall went untraced.
    KernelPending,
    /// Messages of one sendmmsg/recvmmsg beyond the first four (or whose headers could not be
    /// read): not recorded, counted here.
    KernelMmsg,
    /// The kernel dropped records from a full per-CPU perf buffer (perf-buffer transport) beyond
    /// those the programs counted by kind.
    KernelPerfBuffer,
    /// A record arrived that could not be decoded (see the log for why).
    Undecodable,
    /// The perf ring of a CPU overran (perf-event tier): samples were dropped by the kernel.
    PerfRing,
    /// Syscall enters dropped because the user-space pairing table was full (perf-event tier).
    PerfPending,
    /// Messages of a sendmmsg whose headers could not be read from the sender in time, so their
    /// sizes are unknown (perf-event tier: the sender had moved on or exited).
    PerfUnreadable,
    /// Syscalls whose fd could not be resolved because the process had exited before strata looked
    /// (perf-event tier; some may not have been sockets).
    PerfUnresolved,
    /// Data events whose payload could not be read (wholly or in part) from the process: it had
    /// exited or unmapped the buffer, or the kernel lets strata read no process memory (perf-event
    /// tier). The events still carry their byte counts.
    PerfPayloadUnreadable,
    /// Events the agent read but could not hand to its pipeline: the queue between them was full.
    AgentQueue,
}

impl LossSource {
    /// The kernel-side `lost` map slots, in their `enum strata_lost_slot` order.
    pub const KERNEL_SLOTS: [LossSource; 6] = [
        LossSource::KernelOpen,
        LossSource::KernelData,
        LossSource::KernelClose,
        LossSource::KernelState,
        LossSource::KernelPending,
        LossSource::KernelMmsg,
    ];

    /// The name records and metrics carry (`kernel_data`, `perf_ring`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LossSource::KernelOpen => "kernel_open",
            LossSource::KernelData => "kernel_data",
            LossSource::KernelClose => "kernel_close",
            LossSource::KernelState => "kernel_state",
            LossSource::KernelPending => "kernel_pending",
            LossSource::KernelMmsg => "kernel_mmsg",
            LossSource::KernelPerfBuffer => "kernel_perf_buffer",
            LossSource::Undecodable => "undecodable",
            LossSource::PerfRing => "perf_ring",
            LossSource::PerfPending => "perf_pending",
            LossSource::PerfUnreadable => "perf_unreadable",
            LossSource::PerfUnresolved => "perf_unresolved",
            LossSource::PerfPayloadUnreadable => "perf_payload_unreadable",
            LossSource::AgentQueue => "agent_queue",
        }
    }

    /// Records the kernel made but could not put into a full buffer.
    pub fn is_buffer_full(self) -> bool {
        matches!(
            self,
            LossSource::KernelOpen | LossSource::KernelData | LossSource::KernelClose | LossSource::KernelState
        )
    }
}

/// A task's command name, kept inline as the kernel does (16 bytes): no allocation per event.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// The name up to its first NUL (at most 16 bytes); bytes that are not UTF-8 become U+FFFD
    /// when shown, never an error.
    pub fn from_bytes(raw: &[u8]) -> Comm {
        let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len()).min(16)];
        let mut bytes = [0u8; 16];
        bytes[..raw.len()].copy_from_slice(raw);
        Comm { bytes, len: raw.len() as u8 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name as text (lossy).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Comm {
        // Cut at a character boundary so the name stays valid UTF-8.
        let mut end = s.len().min(16);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Comm::from_bytes(&s.as_bytes()[..end])
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Serialize for Comm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

/// Captured bytes: a slice of the batch they arrived in (shared, reference-counted), so decoding
/// copies nothing per event. In JSON they read as text with everything that is not printable
/// ASCII escaped (`\r`, `\n`, `\t`, `\\`, `\xNN`): lossless, and a request line stays readable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Payload(pub Bytes);

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload(Bytes::from(v))
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Payload {
        Payload(Bytes::copy_from_slice(v))
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Payload {
    pub fn escaped(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for &b in &self.0 {
            match b {
                b'\\' => out.push_str("\\\\"),
                b'\r' => out.push_str("\\r"),
                b'\n' => out.push_str("\\n"),
                b'\t' => out.push_str("\\t"),
                0x20..=0x7e => out.push(b as char),
                _ => {
                    use fmt::Write;
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
        out
    }

    /// The inverse of [`Payload::escaped`].
    pub fn unescape(s: &str) -> Option<Payload> {
        let mut out = Vec::with_capacity(s.len());
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            match *b.get(i + 1)? {
                b'\\' => out.push(b'\\'),
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                _ => return None,
            }
            i += 2;
        }
        Some(Payload::from(out))
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.escaped())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.escaped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_escaping_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain(b"GET / HTTP/1.1\r\n".iter().copied()).collect();
        let p = Payload::from(all.clone());
        let text = p.escaped();
        assert!(text.ends_with("GET / HTTP/1.1\\r\\n"));
        assert_eq!(Payload::unescape(&text), Some(Payload::from(all)));
    }

    #[test]
    fn loss_sources_are_named_as_serialized() {
        use LossSource::*;
        for s in [
            KernelOpen,
            KernelData,
            KernelClose,
            KernelState,
            KernelPending,
            KernelMmsg,
            KernelPerfBuffer,
            Undecodable,
            PerfRing,
            PerfPending,
            PerfUnreadable,
            PerfUnresolved,
            PerfPayloadUnreadable,
            AgentQueue,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }

    #[test]
    fn comm_is_cut_like_the_kernel_cuts_it() {
        assert_eq!(Comm::from_bytes(b"curl\0\0junk"), "curl");
        assert_eq!(Comm::from("a-very-long-process-name").as_bytes().len(), 16);
        // Not cut inside a character.
        assert_eq!(Comm::from("aaaaaaaaaaaaaaa\u{e9}").as_str(), "aaaaaaaaaaaaaaa");
        assert_eq!(serde_json::to_string(&Comm::from("nginx")).unwrap(), "\"nginx\"");
    }

    #[test]
    fn payload_unescape_rejects_broken_escapes() {
        assert_eq!(Payload::unescape("\\x4"), None);
        assert_eq!(Payload::unescape("\\q"), None);
        assert_eq!(Payload::unescape("tail\\"), None);
    }
}
