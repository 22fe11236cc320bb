//! Syscall samples (enter and exit, as perf delivers them) into normalized events.
//!
//! The kernel gives only arguments and return values here; everything else is looked up in user
//! space through a [`Host`]: which fds are sockets and where their ends are (/proc), and the
//! payload bytes (process_vm_readv). Those look-ups happen after the fact, so payloads are marked
//! `payload_stale` (possibly changed), and addresses fall back to the syscall's own sockaddr when
//! the socket has already gone.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use probes_core::event::*;

use crate::memory::MsgHdr;
use crate::procfs::SocketInfo;

/// What the tracker needs from the system; the live one reads /proc and process memory.
pub trait Host {
    fn fd_socket(&mut self, pid: u32, fd: i32) -> Option<u64>;
    fn socket_info(&mut self, pid: u32, fd: i32, inode: u64) -> Option<SocketInfo>;
    fn read(&mut self, pid: u32, addr: u64, len: usize) -> Vec<u8>;
    fn read_iovecs(&mut self, pid: u32, iov: u64, count: u64, budget: usize) -> Vec<u8>;
    fn read_msghdr(&mut self, pid: u32, addr: u64) -> Option<MsgHdr>;
    fn read_sockaddr(&mut self, pid: u32, addr: u64) -> Option<SocketAddr>;
    fn comm(&mut self, pid: u32) -> String;
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
}

struct Pending {
    syscall: Syscall,
    fd: i32,
    args: [u64; 6],
    enter_ns: u64,
    /// Write-like calls: the bytes read at enter; connect: the peer.
    payload: Option<Vec<u8>>,
    peer: Option<SocketAddr>,
}

struct SocketEntry {
    inode: u64,
    conn: Connection,
    sent: u64,
    received: u64,
    first_seen: u64,
}

const MAX_PENDING: usize = 65536;
const MAX_MMSG: u64 = 4;
const EINPROGRESS: i64 = 115;

pub struct Tracker<H: Host> {
    host: H,
    capture_bytes: usize,
    pending: HashMap<u32, Pending>,
    sockets: HashMap<(u32, i32), SocketEntry>,
    not_inet: HashSet<(u32, i32)>,
    comms: HashMap<u32, String>,
    /// Enter samples dropped because the pairing table was full.
    pub pending_overflow: u64,
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
            pending_overflow: 0,
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
        if !self.comms.contains_key(&s.pid) && !matches!(s.point, Point::ProcessExit) {
            let c = self.host.comm(s.pid);
            self.comms.insert(s.pid, c);
        }
        match s.point {
            Point::Enter(args) => self.on_enter(&s, args, out),
            Point::Exit(ret) => self.on_exit(&s, ret, out),
            Point::ProcessExit => self.process_exit(s.pid, s.tid),
        }
    }

    fn comm(&mut self, pid: u32) -> String {
        if let Some(c) = self.comms.get(&pid) {
            return c.clone();
        }
        let c = self.host.comm(pid);
        self.comms.insert(pid, c.clone());
        c
    }

    /// Resolves (pid, fd) to a tracked inet socket, creating the entry on first sight.
    fn socket(&mut self, pid: u32, fd: i32, now: u64) -> Option<&mut SocketEntry> {
        if fd < 0 || self.not_inet.contains(&(pid, fd)) {
            return None;
        }
        // Checked at every syscall's enter: close() is traced, but dup2() onto an open fd is not.
        let inode = self.host.fd_socket(pid, fd);
        if let Some(e) = self.sockets.get(&(pid, fd)) {
            // A reused fd names another socket now: start over.
            if inode.is_some_and(|i| i != e.inode) {
                self.sockets.remove(&(pid, fd));
            }
        }
        if !self.sockets.contains_key(&(pid, fd)) {
            let Some(inode) = inode else {
                self.not_inet.insert((pid, fd));
                return None;
            };
            let info = self.host.socket_info(pid, fd, inode)?;
            let conn =
                Connection { transport: info.transport, role: Role::Unknown, local: info.local, remote: info.remote };
            self.sockets.insert((pid, fd), SocketEntry { inode, conn, sent: 0, received: 0, first_seen: now });
        }
        self.sockets.get_mut(&(pid, fd))
    }

    fn on_enter(&mut self, s: &Sample, args: [u64; 6], out: &mut Vec<Event>) {
        let fd = args[0] as i32;
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
        let (payload, peer) = match s.syscall {
            Syscall::Write => (Some(self.host.read(s.pid, args[1], (args[2] as usize).min(cap))), None),
            Syscall::Writev => (Some(self.host.read_iovecs(s.pid, args[1], args[2], cap)), None),
            Syscall::Sendto => (
                Some(self.host.read(s.pid, args[1], (args[2] as usize).min(cap))),
                self.host.read_sockaddr(s.pid, args[4]),
            ),
            Syscall::Sendmsg => match self.host.read_msghdr(s.pid, args[1]) {
                Some(m) => {
                    (Some(self.host.read_iovecs(s.pid, m.iov, m.iovlen, cap)), self.host.read_sockaddr(s.pid, m.name))
                }
                None => (Some(vec![]), None),
            },
            Syscall::Connect => (None, self.host.read_sockaddr(s.pid, args[1])),
            _ => (None, None),
        };
        self.pending.insert(s.tid, Pending { syscall: s.syscall, fd, args, enter_ns: s.time, payload, peer });
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
            Syscall::Recvmmsg | Syscall::Sendmmsg if ret > 0 => {
                for i in 0..(ret as u64).min(MAX_MMSG) {
                    // struct mmsghdr: a 56-byte msghdr, then the u32 msg_len (padded to 64).
                    let m = p.args[1] + i * 64;
                    let len_bytes = self.host.read(s.pid, m + 56, 4);
                    let Ok(len) = <[u8; 4]>::try_from(len_bytes.as_slice()) else { break };
                    let len = u32::from_ne_bytes(len) as u64;
                    let Some(h) = self.host.read_msghdr(s.pid, m) else { break };
                    let payload = self.host.read_iovecs(s.pid, h.iov, h.iovlen, self.capture_bytes.min(len as usize));
                    let peer = self.host.read_sockaddr(s.pid, h.name);
                    self.data(s, &p, len, payload, peer, out);
                }
            }
            Syscall::Sendfile if ret > 0 => self.data(s, &p, ret as u64, vec![], None, out),
            _ if ret > 0 => {
                let n = ret as u64;
                let cap = self.capture_bytes.min(n as usize);
                let (payload, peer) = if is_write_like(p.syscall) {
                    let mut b = p.payload.clone().unwrap_or_default();
                    b.truncate(cap);
                    (b, p.peer)
                } else {
                    match p.syscall {
                        Syscall::Read => (self.host.read(s.pid, p.args[1], cap), None),
                        Syscall::Readv => (self.host.read_iovecs(s.pid, p.args[1], p.args[2], cap), None),
                        Syscall::Recvfrom => {
                            (self.host.read(s.pid, p.args[1], cap), self.host.read_sockaddr(s.pid, p.args[4]))
                        }
                        Syscall::Recvmsg => match self.host.read_msghdr(s.pid, p.args[1]) {
                            Some(m) => (
                                self.host.read_iovecs(s.pid, m.iov, m.iovlen, cap),
                                self.host.read_sockaddr(s.pid, m.name),
                            ),
                            None => (vec![], None),
                        },
                        _ => (vec![], None),
                    }
                };
                self.data(s, &p, n, payload, peer, out);
            }
            _ => {}
        }
    }

    fn opened(&mut self, s: &Sample, p: &Pending, fd: i32, role: Role, in_progress: bool, out: &mut Vec<Event>) {
        self.not_inet.remove(&(s.pid, fd));
        self.sockets.remove(&(s.pid, fd));
        let entry = match self.socket(s.pid, fd, s.time) {
            Some(e) => e,
            None => {
                // Gone before we looked (a short connection): keep what the syscall itself said.
                let inode = self.host.fd_socket(s.pid, fd).unwrap_or(0);
                let remote = match p.syscall {
                    Syscall::Connect => p.peer,
                    _ => self.host.read_sockaddr(s.pid, p.args[1]),
                };
                let Some(remote) = remote else { return };
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

    fn data(
        &mut self,
        s: &Sample,
        p: &Pending,
        byte_count: u64,
        payload: Vec<u8>,
        peer: Option<SocketAddr>,
        out: &mut Vec<Event>,
    ) {
        let Some(entry) = self.known_socket(s.pid, p.fd, s.time) else { return };
        let direction = if is_write_like(p.syscall) || p.syscall == Syscall::Sendmmsg {
            entry.sent += byte_count;
            Direction::Egress
        } else {
            entry.received += byte_count;
            Direction::Ingress
        };
        let mut conn = entry.conn;
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
            payload: Payload(payload),
            peer_from_msg: peer.is_some(),
            payload_stale: true,
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
