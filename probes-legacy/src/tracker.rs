//! Syscall samples (enter and exit, as perf delivers them) into normalized events.
//!
//! The kernel gives only arguments and return values here; everything else is looked up in user
//! space through a [`Host`]: which fds are sockets and where their ends are (/proc), and the
//! payload bytes (process_vm_readv). Those look-ups happen after the fact, so payloads are marked
//! `payload_stale` (possibly changed), and addresses fall back to the syscall's own sockaddr when
//! the socket has already gone.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use strata_event::*;

use crate::memory::{Gathered, MsgHdr};
use crate::procfs::{FdLookup, SocketInfo};

/// What the tracker needs from the system; the live one reads /proc and process memory.
pub trait Host {
    fn fd(&mut self, pid: u32, fd: i32) -> FdLookup;
    fn socket_info(&mut self, pid: u32, fd: i32, inode: u64) -> Option<SocketInfo>;
    /// Up to `len` bytes at `addr`: fewer only when the memory could not be read.
    fn read(&mut self, pid: u32, addr: u64, len: usize) -> Vec<u8>;
    fn read_iovecs(&mut self, pid: u32, iov: u64, count: u64, budget: usize) -> Gathered;
    fn read_msghdr(&mut self, pid: u32, addr: u64) -> Option<MsgHdr>;
    /// The sum of an iovec array's lengths, if the array could be read.
    fn iov_total(&mut self, pid: u32, iov: u64, count: u64) -> Option<u64>;
    fn read_sockaddr(&mut self, pid: u32, addr: u64) -> Option<SocketAddr>;
    fn comm(&mut self, pid: u32) -> String;
    /// Whether the process still exists (its fds can be looked up).
    fn alive(&mut self, pid: u32) -> bool;
}

/// One syscall tracepoint hit.
#[derive(Clone, Debug)]
pub struct Sample {
    pub pid: u32,
    pub tid: u32,
    pub time: u64,
    pub syscall: Syscall,
    pub point: Point,
}

#[derive(Clone, Debug)]
pub enum Point {
    Enter([u64; 6]),
    Exit(i64),
    /// sched_process_exit: handled in time order with the syscalls, so that the last syscalls of
    /// a short-lived process (seen in the same pass as its exit) still find its sockets.
    ProcessExit,
    /// sched_process_exec: the process is another program now (its name changes).
    Exec,
}

struct Pending {
    syscall: Syscall,
    fd: i32,
    args: [u64; 6],
    enter_ns: u64,
    /// Write-like calls: the bytes read at enter; connect: the peer.
    payload: Option<Vec<u8>>,
    /// False when some of the payload's memory could not be read at enter.
    payload_complete: bool,
    peer: Option<SocketAddr>,
    /// sendmmsg: each message's bytes, peer and iovec total, read at enter like other writes.
    messages: Vec<SentMessage>,
}

struct SentMessage {
    payload: Vec<u8>,
    complete: bool,
    peer: Option<SocketAddr>,
    iov_total: Option<u64>,
}

struct SocketEntry {
    inode: u64,
    conn: Connection,
    sent: u64,
    received: u64,
    first_seen: u64,
}

/// Counts by process, reported as loss events of that process.
#[derive(Debug, Default)]
pub struct PerProcess(HashMap<u32, u64>);

impl PerProcess {
    pub fn add(&mut self, pid: u32) {
        *self.0.entry(pid).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The counts since the last call, by pid (in pid order), and zero again.
    pub fn take(&mut self) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = self.0.drain().collect();
        v.sort_unstable();
        v
    }
}

const MAX_PENDING: usize = 65536;
const MAX_MMSG: u64 = 4;
/// `struct mmsghdr` on x86_64: msghdr (56) + msg_len (4), padded to 64.
const MMSGHDR_SIZE: u64 = 64;
const EINPROGRESS: i64 = 115;
const MSG_PEEK: u64 = 2;

pub struct Tracker<H: Host> {
    host: H,
    capture_bytes: usize,
    pending: HashMap<u32, Pending>,
    sockets: HashMap<(u32, i32), SocketEntry>,
    not_inet: HashSet<(u32, i32)>,
    comms: HashMap<u32, Comm>,
    /// Payloads of the current pass read ahead, by (tid, sample time): see [`Tracker::prefetch`].
    prefetched: HashMap<(u32, u64), Gathered>,
    /// Enter samples dropped because the pairing table was full.
    pub pending_overflow: u64,
    /// sendmmsg messages sent whose headers were unreadable (not reported as data); the capture
    /// reports and resets this.
    pub unreadable_messages: u64,
    /// Syscalls on fds that could not be resolved because their process had exited before the
    /// look-up (some may not have been sockets), by process; the capture reports and resets this.
    pub unresolved: PerProcess,
    /// Data events whose payload could not be read (wholly or in part) from the process: it had
    /// exited or unmapped the buffer, or this kernel lets no process memory be read. They go out
    /// with their byte count. By process; the capture reports and resets this.
    pub unreadable_payloads: PerProcess,
}

fn unspecified() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

fn is_write_like(s: Syscall) -> bool {
    matches!(s, Syscall::Write | Syscall::Writev | Syscall::Sendto | Syscall::Sendmsg | Syscall::Sendfile)
}

impl<H: Host> Tracker<H> {
    pub fn new(host: H, capture_bytes: usize) -> Tracker<H> {
        Tracker {
            host,
            capture_bytes,
            pending: HashMap::new(),
            sockets: HashMap::new(),
            not_inet: HashSet::new(),
            comms: HashMap::new(),
            prefetched: HashMap::new(),
            pending_overflow: 0,
            unreadable_messages: 0,
            unresolved: PerProcess::default(),
            unreadable_payloads: PerProcess::default(),
        }
    }

    /// A process exited: forget its fds and pending calls.
    pub fn process_exit(&mut self, pid: u32, tid: u32) {
        self.pending.remove(&tid);
        if pid == tid {
            self.sockets.retain(|(p, _), _| *p != pid);
            self.not_inet.retain(|(p, _)| *p != pid);
            self.comms.remove(&pid);
        }
    }

    pub fn on_sample(&mut self, s: Sample, out: &mut Vec<Event>) {
        // Learn a process's name at its first syscall: by the time it has a connection to report,
        // a short-lived client may be gone.
        if !self.comms.contains_key(&s.pid) && !matches!(s.point, Point::ProcessExit | Point::Exec) {
            let c = Comm::from(self.host.comm(s.pid).as_str());
            self.comms.insert(s.pid, c);
        }
        match s.point {
            Point::Enter(args) => self.on_enter(&s, args, out),
            Point::Exit(ret) => self.on_exit(&s, ret, out),
            Point::ProcessExit => self.process_exit(s.pid, s.tid),
            // The name learnt at the first syscall may be the forking shell's.
            Point::Exec => {
                self.comms.remove(&s.pid);
            }
        }
    }

    fn comm(&mut self, pid: u32) -> Comm {
        if let Some(c) = self.comms.get(&pid) {
            return *c;
        }
        let c = Comm::from(self.host.comm(pid).as_str());
        self.comms.insert(pid, c);
        c
    }

    /// Resolves (pid, fd) to a tracked inet socket, creating the entry on first sight.
    fn socket(&mut self, pid: u32, fd: i32, now: u64) -> Option<&mut SocketEntry> {
        if fd < 0 || self.not_inet.contains(&(pid, fd)) {
            return None;
        }
        // Checked at every syscall's enter: close() is traced, but dup2() onto an open fd is not.
        let found = self.host.fd(pid, fd);
        if let Some(e) = self.sockets.get(&(pid, fd)) {
            match found {
                // A reused fd names another socket now: start over.
                FdLookup::Socket(i) if i != e.inode => {
                    self.sockets.remove(&(pid, fd));
                }
                FdLookup::Other => {
                    self.sockets.remove(&(pid, fd));
                }
                // Closed since (the close is further down the stream): still the socket we know.
                _ => return self.sockets.get_mut(&(pid, fd)),
            }
        }
        if !self.sockets.contains_key(&(pid, fd)) {
            let inode = match found {
                FdLookup::Socket(inode) => inode,
                FdLookup::Other => {
                    self.not_inet.insert((pid, fd));
                    return None;
                }
                // Closed or exited before we looked: it may have been a socket. Not cached, and
                // counted, so that a short-lived client's traffic is never lost silently.
                FdLookup::Absent => {
                    self.unresolved.add(pid);
                    return None;
                }
            };
            let Some(info) = self.host.socket_info(pid, fd, inode) else {
                // A UNIX socket, say; or one gone since, which counts as unresolved.
                if self.host.alive(pid) {
                    self.not_inet.insert((pid, fd));
                } else {
                    self.unresolved.add(pid);
                }
                return None;
            };
            let conn =
                Connection { transport: info.transport, role: Role::Unknown, local: info.local, remote: info.remote };
            self.sockets.insert((pid, fd), SocketEntry { inode, conn, sent: 0, received: 0, first_seen: now });
        }
        self.sockets.get_mut(&(pid, fd))
    }

    fn on_enter(&mut self, s: &Sample, args: [u64; 6], out: &mut Vec<Event>) {
        let fd = args[0] as i32;
        if peeks(s.syscall, &args) {
            // The bytes stay queued and the next receive returns them: that one is the data.
            return;
        }
        match s.syscall {
            Syscall::Close => {
                self.not_inet.remove(&(s.pid, fd));
                if let Some(e) = self.sockets.remove(&(s.pid, fd)) {
                    let close = EventKind::Close(Close {
                        conn: e.conn,
                        bytes_sent: e.sent,
                        bytes_received: e.received,
                        first_seen_ns: e.first_seen,
                    });
                    out.push(self.event(s, fd, e.inode, close));
                }
                return;
            }
            Syscall::Connect | Syscall::Accept | Syscall::Accept4 => {
                // A fresh socket may have been negative-cached under a reused fd number.
                self.not_inet.remove(&(s.pid, fd));
            }
            _ => {}
        }
        let is_socket = match s.syscall {
            Syscall::Connect | Syscall::Accept | Syscall::Accept4 => true,
            _ => self.socket(s.pid, fd, s.time).is_some(),
        };
        if !is_socket {
            return;
        }
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&s.tid) {
            self.pending_overflow += 1;
            return;
        }
        let cap = self.capture_bytes;
        let sent = |t: &mut Self| {
            let g =
                t.prefetched.remove(&(s.tid, s.time)).unwrap_or_else(|| t.read_payload(s.pid, s.syscall, &args, None));
            (Some(g.bytes), g.complete)
        };
        let ((payload, payload_complete), peer) = match s.syscall {
            Syscall::Write | Syscall::Writev => (sent(self), None),
            Syscall::Sendto => (sent(self), self.host.read_sockaddr(s.pid, args[4])),
            Syscall::Sendmsg => match self.host.read_msghdr(s.pid, args[1]) {
                Some(m) => {
                    let g = self.host.read_iovecs(s.pid, m.iov, m.iovlen, cap);
                    ((Some(g.bytes), g.complete), self.host.read_sockaddr(s.pid, m.name))
                }
                None => ((Some(vec![]), false), None),
            },
            Syscall::Connect => ((None, true), self.host.read_sockaddr(s.pid, args[1])),
            _ => ((None, true), None),
        };
        let messages =
            if s.syscall == Syscall::Sendmmsg { self.sent_messages(s.pid, args[1], args[2]) } else { vec![] };
        self.pending.insert(
            s.tid,
            Pending { syscall: s.syscall, fd, args, enter_ns: s.time, payload, payload_complete, peer, messages },
        );
    }

    /// Reads the messages of a sendmmsg at its enter, while the sender surely still runs (a
    /// short-lived client such as dig may be gone by the time its exit is processed).
    fn sent_messages(&mut self, pid: u32, vec: u64, count: u64) -> Vec<SentMessage> {
        let mut out = vec![];
        for i in 0..count.min(MAX_MMSG) {
            let Some(h) = self.host.read_msghdr(pid, vec + i * MMSGHDR_SIZE) else { break };
            let g = self.host.read_iovecs(pid, h.iov, h.iovlen, self.capture_bytes);
            out.push(SentMessage {
                payload: g.bytes,
                complete: g.complete,
                peer: self.host.read_sockaddr(pid, h.name),
                iov_total: self.host.iov_total(pid, h.iov, h.iovlen),
            });
        }
        out
    }

    fn on_exit(&mut self, s: &Sample, ret: i64, out: &mut Vec<Event>) {
        let Some(p) = self.pending.remove(&s.tid) else { return };
        if p.syscall != s.syscall {
            return;
        }
        match p.syscall {
            Syscall::Accept | Syscall::Accept4 if ret >= 0 => self.opened(s, &p, ret as i32, Role::Server, false, out),
            Syscall::Connect if ret == 0 || ret == -EINPROGRESS => {
                self.opened(s, &p, p.fd, Role::Client, ret != 0, out)
            }
            Syscall::Sendmmsg if ret > 0 => {
                let sent = (ret as u64).min(MAX_MMSG) as usize;
                // Headers read as garbage (the sender reused the memory before we looked): the
                // sizes are unknown, so these are counted as lost rather than reported wrong.
                let unreadable = sent.saturating_sub(p.messages.iter().filter(|m| m.iov_total.is_some()).count());
                self.unreadable_messages += unreadable as u64;
                for (i, m) in p.messages.iter().enumerate().take(sent) {
                    let Some(total) = m.iov_total else { continue };
                    // The kernel wrote each message's sent length at exit; trust it only where it
                    // is possible (the memory may have been reused since).
                    let len = match self.msg_len(s.pid, p.args[1], i as u64) {
                        Some(w) if w <= total => w,
                        _ => total,
                    };
                    let mut payload = m.payload.clone();
                    payload.truncate(len as usize);
                    let unreadable = !m.complete && payload.len() < (len as usize).min(self.capture_bytes);
                    self.data(s, &p, len, payload, m.peer, unreadable, out);
                }
            }
            Syscall::Recvmmsg if ret > 0 => {
                let received = (ret as u64).min(MAX_MMSG);
                let mut reported = 0;
                for i in 0..received {
                    let m = p.args[1] + i * MMSGHDR_SIZE;
                    let Some(len) = self.msg_len(s.pid, p.args[1], i) else { break };
                    let Some(h) = self.host.read_msghdr(s.pid, m) else { break };
                    let want = self.capture_bytes.min(len as usize);
                    let g = self.host.read_iovecs(s.pid, h.iov, h.iovlen, want);
                    let unreadable = !g.complete && g.bytes.len() < want;
                    let peer = self.host.read_sockaddr(s.pid, h.name);
                    self.data(s, &p, len, g.bytes, peer, unreadable, out);
                    reported += 1;
                }
                // Headers read as garbage (the receiver moved on or exited): sizes unknown,
                // counted rather than reported wrong.
                self.unreadable_messages += received - reported;
            }
            Syscall::Sendfile if ret > 0 => self.data(s, &p, ret as u64, vec![], None, false, out),
            _ if ret > 0 => {
                let n = ret as u64;
                let cap = self.capture_bytes.min(n as usize);
                let (payload, complete, peer) = if is_write_like(p.syscall) {
                    let mut b = p.payload.clone().unwrap_or_default();
                    b.truncate(cap);
                    (b, p.payload_complete, p.peer)
                } else {
                    let received = |t: &mut Self| {
                        t.prefetched
                            .remove(&(s.tid, s.time))
                            .unwrap_or_else(|| t.read_payload(s.pid, p.syscall, &p.args, Some(n)))
                    };
                    match p.syscall {
                        Syscall::Read | Syscall::Readv => {
                            let g = received(self);
                            (g.bytes, g.complete, None)
                        }
                        Syscall::Recvfrom => {
                            let g = received(self);
                            (g.bytes, g.complete, self.host.read_sockaddr(s.pid, p.args[4]))
                        }
                        Syscall::Recvmsg => match self.host.read_msghdr(s.pid, p.args[1]) {
                            Some(m) => {
                                let g = self.host.read_iovecs(s.pid, m.iov, m.iovlen, cap);
                                (g.bytes, g.complete, self.host.read_sockaddr(s.pid, m.name))
                            }
                            None => (vec![], false, None),
                        },
                        _ => (vec![], true, None),
                    }
                };
                // Short of what the syscall moved (up to the cap) because memory could not be
                // read: counted, so that payloads never go missing silently. A plain buffer
                // read short is always that; an iovec array may also end early by design.
                let unreadable = !complete && payload.len() < cap;
                self.data(s, &p, n, payload, peer, unreadable, out);
            }
            _ => {}
        }
    }

    /// The payload of a plain read or write: a buffer (`read`, `write`, `recvfrom`, `sendto`:
    /// args 1 and 2) or an iovec array (`readv`, `writev`). `moved` is what a read-like call
    /// returned (its bytes are the payload); a write's payload is read at enter, before its
    /// size is known.
    fn read_payload(&mut self, pid: u32, syscall: Syscall, args: &[u64; 6], moved: Option<u64>) -> Gathered {
        let cap = self.capture_bytes;
        let budget = match moved {
            Some(n) => cap.min(n as usize),
            None => cap,
        };
        match syscall {
            Syscall::Readv | Syscall::Writev => self.host.read_iovecs(pid, args[1], args[2], budget),
            _ => {
                let want = if moved.is_some() { budget } else { budget.min(args[2] as usize) };
                let bytes = self.host.read(pid, args[1], want);
                Gathered { complete: bytes.len() >= want, bytes }
            }
        }
    }

    /// Reads the payloads of one pass's plain reads and writes on what may be sockets before
    /// any sample of the pass is handled: resolving a new socket (a sock_diag dump where the
    /// kernel has no pidfd_getfd, the /proc tables where it has neither) takes far longer than a
    /// read, and every microsecond of it is one more in which a process can reuse its buffer
    /// (nginx parses requests in place) or exit. The samples are then handled in order, as ever,
    /// taking the payloads read here.
    ///
    /// `samples` are the pass's samples not yet handled, in time order; payloads already read
    /// ahead are not read again. [`Tracker::end_pass`] forgets what was read and not taken.
    pub fn prefetch(&mut self, samples: &[Sample]) {
        let mut enters: HashMap<u32, (Syscall, [u64; 6])> = HashMap::new();
        for s in samples {
            if self.prefetched.contains_key(&(s.tid, s.time)) {
                if let Point::Enter(args) = s.point {
                    enters.insert(s.tid, (s.syscall, args));
                }
                continue;
            }
            let (args, moved) = match s.point {
                Point::Enter(args) => {
                    enters.insert(s.tid, (s.syscall, args));
                    if !matches!(s.syscall, Syscall::Write | Syscall::Writev | Syscall::Sendto) {
                        continue;
                    }
                    (args, None)
                }
                Point::Exit(ret)
                    if ret > 0 && matches!(s.syscall, Syscall::Read | Syscall::Readv | Syscall::Recvfrom) =>
                {
                    let args = match enters.get(&s.tid) {
                        Some((syscall, args)) if *syscall == s.syscall => *args,
                        Some(_) => continue,
                        None => match self.pending.get(&s.tid) {
                            Some(p) if p.syscall == s.syscall => p.args,
                            _ => continue,
                        },
                    };
                    if peeks(s.syscall, &args) {
                        continue;
                    }
                    (args, Some(ret as u64))
                }
                _ => continue,
            };
            if self.may_be_socket(s.pid, args[0] as i32) {
                let g = self.read_payload(s.pid, s.syscall, &args, moved);
                self.prefetched.insert((s.tid, s.time), g);
            }
        }
    }

    /// The pass is over: payloads read ahead and not taken (their syscall was not on a socket
    /// after all) are dropped.
    pub fn end_pass(&mut self) {
        self.prefetched.clear();
    }

    /// Known as a socket, or not known as anything else.
    fn may_be_socket(&mut self, pid: u32, fd: i32) -> bool {
        if fd < 0 || self.not_inet.contains(&(pid, fd)) {
            return false;
        }
        self.sockets.contains_key(&(pid, fd)) || self.host.fd(pid, fd) != FdLookup::Other
    }

    /// `msg_len` of the `i`th `struct mmsghdr`: a 56-byte msghdr, then the u32 length.
    fn msg_len(&mut self, pid: u32, vec: u64, i: u64) -> Option<u64> {
        let b = self.host.read(pid, vec + i * MMSGHDR_SIZE + 56, 4);
        Some(u32::from_ne_bytes(b.as_slice().try_into().ok()?) as u64)
    }

    fn opened(&mut self, s: &Sample, p: &Pending, fd: i32, role: Role, in_progress: bool, out: &mut Vec<Event>) {
        self.not_inet.remove(&(s.pid, fd));
        self.sockets.remove(&(s.pid, fd));
        let entry = match self.socket(s.pid, fd, s.time) {
            Some(e) => e,
            None => {
                // Gone before we looked (a short connection): keep what the syscall itself said.
                let inode = match self.host.fd(s.pid, fd) {
                    FdLookup::Socket(i) => i,
                    _ => 0,
                };
                let remote = match p.syscall {
                    Syscall::Connect => p.peer,
                    _ => self.host.read_sockaddr(s.pid, p.args[1]),
                };
                let Some(remote) = remote else { return };
                self.not_inet.remove(&(s.pid, fd));
                let conn = Connection { transport: Transport::Tcp, role, local: unspecified(), remote };
                self.sockets.insert((s.pid, fd), SocketEntry { inode, conn, sent: 0, received: 0, first_seen: s.time });
                self.sockets.get_mut(&(s.pid, fd)).unwrap()
            }
        };
        entry.conn.role = role;
        let (conn, inode) = (entry.conn, entry.inode);
        let open = EventKind::Open(Open { conn, syscall: p.syscall, in_progress, enter_ns: p.enter_ns });
        out.push(self.event(s, fd, inode, open));
    }

    /// The entry of a socket whose syscall's enter just resolved it: no second /proc look-up on
    /// the hot path (the enter already checked the fd still names that socket).
    fn known_socket(&mut self, pid: u32, fd: i32, now: u64) -> Option<&mut SocketEntry> {
        if self.sockets.contains_key(&(pid, fd)) {
            return self.sockets.get_mut(&(pid, fd));
        }
        self.socket(pid, fd, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        s: &Sample,
        p: &Pending,
        byte_count: u64,
        payload: Vec<u8>,
        peer: Option<SocketAddr>,
        unreadable: bool,
        out: &mut Vec<Event>,
    ) {
        if self.known_socket(s.pid, p.fd, s.time).is_none() {
            return;
        }
        if unreadable {
            self.unreadable_payloads.add(s.pid);
        }
        let entry = self.sockets.get_mut(&(s.pid, p.fd)).expect("known above");
        let direction = if is_write_like(p.syscall) || p.syscall == Syscall::Sendmmsg {
            entry.sent += byte_count;
            Direction::Egress
        } else {
            entry.received += byte_count;
            Direction::Ingress
        };
        let mut conn = entry.conn;
        // The syscall's own address matters only on an unconnected socket: a connected one sends to
        // and receives from its peer alone, and the address read late may be stale.
        let peer = peer.filter(|_| conn.remote.ip().is_unspecified());
        if let Some(peer) = peer {
            conn.remote = peer;
        }
        let inode = entry.inode;
        let data = EventKind::Data(Data {
            conn,
            syscall: p.syscall,
            direction,
            byte_count,
            truncated: (payload.len() as u64) < byte_count,
            payload: Payload::from(payload),
            peer_from_msg: peer.is_some(),
            payload_stale: true,
            tls_skipped: false,
            enter_ns: p.enter_ns,
            exit_ns: s.time,
        });
        out.push(self.event(s, p.fd, inode, data));
    }

    /// An event of the sample's process and thread, at the sample's time.
    fn event(&mut self, s: &Sample, fd: i32, sock_id: u64, kind: EventKind) -> Event {
        Event { ts_ns: s.time, pid: s.pid, tid: s.tid, comm: self.comm(s.pid), fd, sock_id, kind }
    }
}

/// A receive with MSG_PEEK (recvfrom's and recvmmsg's flags are the fourth argument, recvmsg's
/// the third) looks at queued bytes without taking them.
fn peeks(syscall: Syscall, args: &[u64; 6]) -> bool {
    let flags = match syscall {
        Syscall::Recvfrom | Syscall::Recvmmsg => args[3],
        Syscall::Recvmsg => args[2],
        _ => return false,
    };
    flags & MSG_PEEK != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client seen through the perf tier's eyes: its fd table may already be empty (the client
    /// closed the socket or exited), and its memory readable or not.
    struct LateHost {
        memory_readable: bool,
    }

    const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01query";
    const MSG: u64 = 0x1000;
    const IOV: u64 = 0x2000;
    const BUF: u64 = 0x3000;
    const SERVER: &str = "127.0.0.1:5353";

    impl Host for LateHost {
        fn fd(&mut self, _: u32, _: i32) -> FdLookup {
            FdLookup::Absent
        }
        fn socket_info(&mut self, _: u32, _: i32, _: u64) -> Option<SocketInfo> {
            None
        }
        fn read(&mut self, _: u32, addr: u64, len: usize) -> Vec<u8> {
            match (self.memory_readable, addr) {
                (true, BUF) => QUERY[..len.min(QUERY.len())].to_vec(),
                // msg_len of the first mmsghdr, written by the kernel.
                (true, a) if a == MSG + 56 => (QUERY.len() as u32).to_ne_bytes().to_vec(),
                _ => vec![],
            }
        }
        fn read_iovecs(&mut self, pid: u32, iov: u64, _: u64, budget: usize) -> Gathered {
            let bytes = if iov == IOV { self.read(pid, BUF, budget) } else { vec![] };
            Gathered { complete: self.memory_readable || budget == 0, bytes }
        }
        fn read_msghdr(&mut self, _: u32, addr: u64) -> Option<MsgHdr> {
            (self.memory_readable && addr == MSG).then_some(MsgHdr { name: 0, iov: IOV, iovlen: 1 })
        }
        fn iov_total(&mut self, _: u32, iov: u64, _: u64) -> Option<u64> {
            (self.memory_readable && iov == IOV).then_some(QUERY.len() as u64)
        }
        fn read_sockaddr(&mut self, _: u32, addr: u64) -> Option<SocketAddr> {
            (self.memory_readable && addr == 0x4000).then(|| SERVER.parse().unwrap())
        }
        fn comm(&mut self, _: u32) -> String {
            "dig".into()
        }
        fn alive(&mut self, _: u32) -> bool {
            self.memory_readable
        }
    }

    /// dig's calls on its query socket, as strace shows them.
    fn dig_samples() -> Vec<Sample> {
        let sample = |time, syscall, point| Sample { pid: 10, tid: 11, time, syscall, point };
        let fd = [14, 0, 0, 0, 0, 0];
        vec![
            sample(1, Syscall::Connect, Point::Enter([14, 0x4000, 16, 0, 0, 0])),
            sample(2, Syscall::Connect, Point::Exit(0)),
            sample(3, Syscall::Sendmmsg, Point::Enter([14, MSG, 1, 0, 0, 0])),
            sample(4, Syscall::Sendmmsg, Point::Exit(1)),
            sample(5, Syscall::Recvmsg, Point::Enter(fd)),
            sample(6, Syscall::Recvmsg, Point::Exit(60)),
            sample(7, Syscall::Close, Point::Enter(fd)),
        ]
    }

    fn run(host: LateHost) -> (Tracker<LateHost>, Vec<Event>) {
        let mut t = Tracker::new(host, 4096);
        let mut out = vec![];
        for s in dig_samples() {
            t.on_sample(s, &mut out);
        }
        (t, out)
    }

    #[test]
    fn a_socket_closed_before_the_look_up_keeps_what_the_syscalls_said() {
        let (t, out) = run(LateHost { memory_readable: true });
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(matches!(&out[0].kind, EventKind::Open(o) if o.conn.remote.to_string() == SERVER));
        let EventKind::Data(q) = &out[1].kind else { panic!("{:?}", out[1]) };
        assert_eq!((q.direction, q.byte_count, &*q.payload), (Direction::Egress, QUERY.len() as u64, QUERY));
        assert_eq!(q.conn.remote.to_string(), SERVER);
        let EventKind::Data(a) = &out[2].kind else { panic!("{:?}", out[2]) };
        assert_eq!((a.direction, a.byte_count), (Direction::Ingress, 60));
        assert!(
            matches!(&out[3].kind, EventKind::Close(c) if c.bytes_sent == QUERY.len() as u64 && c.bytes_received == 60)
        );
        assert_eq!((t.unresolved.total(), t.unreadable_messages), (1, 0), "only the look-up at connect failed");
        // The answer's msghdr pointer (0 in these samples) could not be read: counted.
        assert_eq!(t.unreadable_payloads.total(), 1);
    }

    #[test]
    fn a_receive_with_msg_peek_is_not_data() {
        let mut t = Tracker::new(LateHost { memory_readable: true }, 4096);
        let mut out = vec![];
        let mut samples = dig_samples();
        // dig peeks at the answer (recvmsg with MSG_PEEK), then takes it.
        let peek = |time, point| Sample { pid: 10, tid: 11, time, syscall: Syscall::Recvmsg, point };
        samples.splice(4..4, [peek(5, Point::Enter([14, MSG, MSG_PEEK, 0, 0, 0])), peek(5, Point::Exit(60))]);
        for s in samples {
            t.on_sample(s, &mut out);
        }
        let received: Vec<u64> = out
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Data(d) if d.direction == Direction::Ingress => Some(d.byte_count),
                _ => None,
            })
            .collect();
        assert_eq!(received, [60], "one answer, counted once: {out:?}");
        assert!(matches!(&out.last().unwrap().kind, EventKind::Close(c) if c.bytes_received == 60));
        assert!(peeks(Syscall::Recvfrom, &[3, 0, 10, MSG_PEEK, 0, 0]));
        assert!(!peeks(Syscall::Recvfrom, &[3, 0, 10, 0, 0, 0]));
        assert!(!peeks(Syscall::Read, &[3, 0, MSG_PEEK, MSG_PEEK, 0, 0]));
    }

    /// A process whose socket is known and whose memory can or cannot be read: what cannot be
    /// read goes out with its byte count and is counted, never dropped silently (a 4.19 kernel
    /// without CONFIG_CROSS_MEMORY_ATTACH gave 49 events, 0 records and no loss).
    struct MemoryHost {
        readable: bool,
    }

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    impl Host for MemoryHost {
        fn fd(&mut self, _: u32, fd: i32) -> FdLookup {
            if fd == 5 {
                FdLookup::Socket(99)
            } else {
                FdLookup::Other
            }
        }
        fn socket_info(&mut self, _: u32, _: i32, _: u64) -> Option<SocketInfo> {
            Some(SocketInfo {
                transport: Transport::Tcp,
                local: "127.0.0.1:40000".parse().unwrap(),
                remote: SERVER.parse().unwrap(),
            })
        }
        fn read(&mut self, _: u32, addr: u64, len: usize) -> Vec<u8> {
            match (self.readable, addr) {
                (true, BUF) => REQUEST[..len.min(REQUEST.len())].to_vec(),
                // Half of a buffer, then an unmapped page.
                (true, 0x5000) => REQUEST[..len.min(4)].to_vec(),
                _ => vec![],
            }
        }
        fn read_iovecs(&mut self, pid: u32, iov: u64, _: u64, budget: usize) -> Gathered {
            let bytes = if iov == IOV { self.read(pid, BUF, budget) } else { vec![] };
            Gathered { complete: self.readable && iov == IOV, bytes }
        }
        fn read_msghdr(&mut self, _: u32, _: u64) -> Option<MsgHdr> {
            self.readable.then_some(MsgHdr { name: 0, iov: IOV, iovlen: 1 })
        }
        fn iov_total(&mut self, _: u32, _: u64, _: u64) -> Option<u64> {
            self.readable.then_some(REQUEST.len() as u64)
        }
        fn read_sockaddr(&mut self, _: u32, _: u64) -> Option<SocketAddr> {
            None
        }
        fn comm(&mut self, _: u32) -> String {
            "curl".into()
        }
        fn alive(&mut self, _: u32) -> bool {
            true
        }
    }

    fn exchange(readable: bool) -> (Tracker<MemoryHost>, Vec<Event>) {
        let n = REQUEST.len() as i64;
        let sample = |time, syscall, point| Sample { pid: 10, tid: 10, time, syscall, point };
        let mut t = Tracker::new(MemoryHost { readable }, 4096);
        let mut out = vec![];
        for s in [
            sample(1, Syscall::Write, Point::Enter([5, BUF, n as u64, 0, 0, 0])),
            sample(2, Syscall::Write, Point::Exit(n)),
            sample(3, Syscall::Writev, Point::Enter([5, IOV, 1, 0, 0, 0])),
            sample(4, Syscall::Writev, Point::Exit(n)),
            sample(5, Syscall::Read, Point::Enter([5, BUF, 4096, 0, 0, 0])),
            sample(6, Syscall::Read, Point::Exit(n)),
            sample(7, Syscall::Recvmsg, Point::Enter([5, MSG, 0, 0, 0, 0])),
            sample(8, Syscall::Recvmsg, Point::Exit(n)),
            // Sendfile never carries a payload: nothing to count.
            sample(9, Syscall::Sendfile, Point::Enter([5, 3, 0, 100, 0, 0])),
            sample(10, Syscall::Sendfile, Point::Exit(100)),
            // A file: not a socket, nothing to count.
            sample(11, Syscall::Read, Point::Enter([6, BUF, 4096, 0, 0, 0])),
            sample(12, Syscall::Read, Point::Exit(n)),
        ] {
            t.on_sample(s, &mut out);
        }
        (t, out)
    }

    #[test]
    fn payloads_that_cannot_be_read_are_counted_and_keep_their_byte_counts() {
        let (t, out) = exchange(true);
        let data: Vec<&Data> =
            out.iter().filter_map(|e| if let EventKind::Data(d) = &e.kind { Some(d) } else { None }).collect();
        assert_eq!(data.len(), 5);
        for d in &data[..4] {
            assert_eq!(&*d.payload, REQUEST);
            assert!(!d.truncated);
        }
        assert_eq!(t.unreadable_payloads.total(), 0);

        let (t, out) = exchange(false);
        let data: Vec<&Data> =
            out.iter().filter_map(|e| if let EventKind::Data(d) = &e.kind { Some(d) } else { None }).collect();
        assert_eq!(data.len(), 5, "every syscall still gives its event");
        for d in &data[..4] {
            assert!(d.payload.is_empty() && d.truncated);
            assert_eq!(d.byte_count, REQUEST.len() as u64);
        }
        assert_eq!(data[4].byte_count, 100);
        assert_eq!(t.unreadable_payloads.total(), 4, "write, writev, read, recvmsg");
    }

    /// A process that reuses its buffers while a new socket is being resolved (slowly, as on a
    /// kernel without pidfd_getfd): what it had sent and received must be read before that.
    struct ReusingHost {
        resolved: bool,
    }

    impl Host for ReusingHost {
        fn fd(&mut self, _: u32, fd: i32) -> FdLookup {
            if fd == 5 {
                FdLookup::Socket(99)
            } else {
                FdLookup::Other
            }
        }
        fn socket_info(&mut self, pid: u32, fd: i32, inode: u64) -> Option<SocketInfo> {
            self.resolved = true;
            MemoryHost { readable: true }.socket_info(pid, fd, inode)
        }
        fn read(&mut self, _: u32, addr: u64, len: usize) -> Vec<u8> {
            let now = if self.resolved { &b"\x10\x7f\x00\x00reused by now.................."[..] } else { REQUEST };
            if addr == BUF {
                now[..len.min(now.len())].to_vec()
            } else {
                vec![]
            }
        }
        fn read_iovecs(&mut self, _: u32, _: u64, _: u64, _: usize) -> Gathered {
            Gathered::default()
        }
        fn read_msghdr(&mut self, _: u32, _: u64) -> Option<MsgHdr> {
            None
        }
        fn iov_total(&mut self, _: u32, _: u64, _: u64) -> Option<u64> {
            None
        }
        fn read_sockaddr(&mut self, _: u32, _: u64) -> Option<SocketAddr> {
            None
        }
        fn comm(&mut self, _: u32) -> String {
            "nginx".into()
        }
        fn alive(&mut self, _: u32) -> bool {
            true
        }
    }

    #[test]
    fn payloads_of_a_pass_are_read_before_its_sockets_are_resolved() {
        let n = REQUEST.len() as i64;
        let sample = |time, syscall, point| Sample { pid: 10, tid: 10, time, syscall, point };
        let pass = vec![
            sample(1, Syscall::Read, Point::Enter([5, BUF, 4096, 0, 0, 0])),
            sample(2, Syscall::Read, Point::Exit(n)),
            sample(3, Syscall::Write, Point::Enter([5, BUF, n as u64, 0, 0, 0])),
            sample(4, Syscall::Write, Point::Exit(n)),
        ];
        let payloads = |prefetch: bool| {
            let mut t = Tracker::new(ReusingHost { resolved: false }, 4096);
            let mut out = vec![];
            if prefetch {
                t.prefetch(&pass);
            }
            for s in pass.clone() {
                t.on_sample(s, &mut out);
            }
            let data: Vec<Vec<u8>> = out
                .iter()
                .filter_map(|e| if let EventKind::Data(d) = &e.kind { Some(d.payload.to_vec()) } else { None })
                .collect();
            assert_eq!(data.len(), 2);
            data
        };
        assert!(payloads(false).iter().all(|p| p != REQUEST), "read after the look-up: reused");
        assert!(payloads(true).iter().all(|p| p == REQUEST), "read ahead of it: as sent and received");
    }

    #[test]
    fn a_buffer_read_in_part_is_counted() {
        let sample = |time, syscall, point| Sample { pid: 10, tid: 10, time, syscall, point };
        let mut t = Tracker::new(MemoryHost { readable: true }, 4096);
        let mut out = vec![];
        t.on_sample(sample(1, Syscall::Read, Point::Enter([5, 0x5000, 4096, 0, 0, 0])), &mut out);
        t.on_sample(sample(2, Syscall::Read, Point::Exit(10)), &mut out);
        let EventKind::Data(d) = &out[0].kind else { panic!("{out:?}") };
        assert_eq!((d.payload.len(), d.byte_count), (4, 10));
        assert_eq!(t.unreadable_payloads.total(), 1);
        // Past the capture cap, a short payload is no loss: only the cap was read.
        let mut t = Tracker::new(MemoryHost { readable: true }, 4);
        let mut out = vec![];
        t.on_sample(sample(1, Syscall::Read, Point::Enter([5, 0x5000, 4096, 0, 0, 0])), &mut out);
        t.on_sample(sample(2, Syscall::Read, Point::Exit(10)), &mut out);
        assert_eq!(t.unreadable_payloads.total(), 0);
    }

    #[test]
    fn a_client_gone_before_its_samples_are_read_is_counted_not_dropped() {
        let (mut t, out) = run(LateHost { memory_readable: false });
        assert!(out.is_empty(), "nothing is known of it: {out:?}");
        // connect, sendmmsg and recvmsg each found nothing at fd 14.
        assert_eq!(t.unresolved.total(), 3);
        assert_eq!(t.unresolved.take(), vec![(10, 3)], "counted against dig's pid");
    }
}
