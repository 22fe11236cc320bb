//! Where a socket's ends are, asked of the kernel over NETLINK_SOCK_DIAG (Linux 3.3; the
//! inet_diag, tcp_diag and udp_diag modules, which the kernel loads on the first request).
//!
//! This is how the perf-event tier resolves sockets where pidfd_getfd (5.6) is missing: the fleet
//! kernels without BTF (4.14 to 5.4) all lack it. A dump walks the same hash tables as
//! /proc/PID/net/tcp but skips the text formatting: on the development machine (262 144 TCP hash
//! buckets) a TCP dump takes about 0.2 ms where /proc/self/net/tcp takes 4.6 ms and the four
//! tables 9 ms, long enough for a short-lived client to exit before its socket is known.
//!
//! A netlink socket answers for the network namespace it was created in: sockets of processes in
//! other namespaces (pods) are asked through a netlink socket made there (setns on the calling
//! thread, then back), one per namespace, kept.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use strata_event::Transport;

use crate::procfs::SocketInfo;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, `struct inet_diag_sockid` (48).
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, sockid (48), expires, rqueue, wqueue,
/// uid, inode.
const MSG_LEN: usize = 72;

/// An inet socket kind: the address family and the transport, which select one dump (and one
/// /proc/net table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kind {
    pub ipv6: bool,
    pub transport: Transport,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind { ipv6: false, transport: Transport::Tcp },
        Kind { ipv6: true, transport: Transport::Tcp },
        Kind { ipv6: false, transport: Transport::Udp },
        Kind { ipv6: true, transport: Transport::Udp },
    ];

    /// The /proc/PID/net table listing this kind.
    pub fn table(self) -> &'static str {
        match (self.transport, self.ipv6) {
            (Transport::Tcp, false) => "tcp",
            (Transport::Tcp, true) => "tcp6",
            (Transport::Udp, false) => "udp",
            (Transport::Udp, true) => "udp6",
        }
    }

    /// What the kernel calls the protocol of such a socket (the `system.sockprotoname` extended
    /// attribute of a socket's inode): `Some(kinds)` to look in, `Some([])` for a socket that is
    /// no TCP or UDP socket (UNIX, netlink, ...), None for a name this code does not know.
    pub fn from_proto_name(name: &str) -> Option<Vec<Kind>> {
        let tcp = Transport::Tcp;
        let udp = Transport::Udp;
        Some(match name {
            "TCP" => vec![Kind { ipv6: false, transport: tcp }],
            "TCPv6" => vec![Kind { ipv6: true, transport: tcp }],
            "UDP" => vec![Kind { ipv6: false, transport: udp }],
            "UDPv6" => vec![Kind { ipv6: true, transport: udp }],
            n if ["UNIX", "NETLINK", "PACKET"].iter().any(|p| n.starts_with(p)) => vec![],
            _ => return None,
        })
    }

    fn family(self) -> u8 {
        if self.ipv6 {
            libc::AF_INET6 as u8
        } else {
            libc::AF_INET as u8
        }
    }

    fn protocol(self) -> u8 {
        match self.transport {
            Transport::Tcp => libc::IPPROTO_TCP as u8,
            Transport::Udp => libc::IPPROTO_UDP as u8,
        }
    }
}

/// States whose sockets no fd holds: TIME_WAIT (6) and NEW_SYN_RECV (12) minisockets, which a
/// busy server has by the thousand and which could only slow a dump down.
const FDLESS_STATES: u32 = (1 << 6) | (1 << 12);

/// The dump request for every socket of `kind` that an fd can hold (any state but the fd-less ones).
pub fn dump_request(kind: Kind, seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + REQ_LEN) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[kind.family(), kind.protocol(), 0, 0]);
    b.extend_from_slice(&(!FDLESS_STATES).to_ne_bytes());
    b.resize(len as usize, 0);
    b
}

/// One socket of a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    pub inode: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// What one received datagram of a dump held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub sockets: Vec<DiagSocket>,
    /// NLMSG_DONE was seen: the dump is over.
    pub done: bool,
    /// The kernel answered the request with an error (a positive errno).
    pub error: Option<i32>,
}

/// Parses the netlink messages of one datagram; messages of another sequence are skipped.
/// Garbage ends the parse, it does not panic.
pub fn parse_chunk(buf: &[u8], seq: u32) -> Chunk {
    let mut out = Chunk::default();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        let len = u32_at(off) as usize;
        let typ = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        let msg_seq = u32_at(off + 8);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let body = &buf[off + NLMSG_HDRLEN..off + len];
        if msg_seq == seq {
            match typ {
                NLMSG_DONE => out.done = true,
                NLMSG_ERROR => {
                    let errno = body.get(0..4).map(|b| i32::from_ne_bytes(b.try_into().unwrap())).unwrap_or(-1);
                    out.error = Some(errno.checked_neg().unwrap_or(libc::EINVAL));
                    out.done = true;
                }
                SOCK_DIAG_BY_FAMILY => out.sockets.extend(parse_msg(body)),
                _ => {}
            }
        }
        off += (len + 3) & !3;
    }
    out
}

fn parse_msg(m: &[u8]) -> Option<DiagSocket> {
    if m.len() < MSG_LEN {
        return None;
    }
    let family = m[0] as i32;
    let port = |o: usize| u16::from_be_bytes([m[o], m[o + 1]]);
    let (sport, dport) = (port(4), port(6));
    let word = |o: usize| -> [u8; 4] { m[o..o + 4].try_into().unwrap() };
    let interface = u32::from_ne_bytes(word(40));
    let addr = |o: usize, p: u16| -> Option<SocketAddr> {
        match family {
            libc::AF_INET => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(word(o))), p)),
            libc::AF_INET6 => {
                let ip: [u8; 16] = m[o..o + 16].try_into().unwrap();
                let ip = Ipv6Addr::from(ip);
                // getsockname names the interface of a link-local address only.
                let scope = if ip.segments()[0] & 0xffc0 == 0xfe80 { interface } else { 0 };
                Some(SocketAddr::V6(SocketAddrV6::new(ip, p, 0, scope)))
            }
            _ => None,
        }
    };
    Some(DiagSocket { inode: u32::from_ne_bytes(word(68)), local: addr(8, sport)?, remote: addr(24, dport)? })
}

/// NETLINK_SOCK_DIAG sockets, one per network namespace asked about.
pub struct SockDiag {
    own_netns: u64,
    /// Each namespace's socket and when it was last asked.
    sockets: HashMap<u64, (OwnedFd, Instant)>,
    seq: u32,
    buf: Vec<u8>,
    /// Kinds the kernel refused to dump (udp_diag missing, say): asked of /proc/PID/net instead.
    refused: Vec<Kind>,
}

/// Network namespaces whose netlink socket is kept; beyond, all but this process's are dropped.
const MAX_NAMESPACES: usize = 256;
/// A socket holds its namespace alive: one not asked for this long (a deleted pod's, most
/// likely) is closed when another namespace is opened.
const NAMESPACE_IDLE: Duration = Duration::from_secs(60);

impl SockDiag {
    /// Opens the netlink socket of this process's namespace and dumps TCP over IPv4 once: Err
    /// where the kernel has no sock_diag (or refuses it).
    pub fn open() -> io::Result<SockDiag> {
        let own_netns = netns_of("self").ok_or_else(|| io::Error::other("/proc/self/ns/net is not readable"))?;
        let mut d = SockDiag { own_netns, sockets: HashMap::new(), seq: 0, buf: vec![0u8; 64 * 1024], refused: vec![] };
        d.sockets.insert(own_netns, (netlink_socket()?, Instant::now()));
        d.dump(own_netns, Kind::ALL[0], |_| {})?;
        Ok(d)
    }

    /// Whether the kernel refused to dump `kind` (so /proc/PID/net has to answer for it).
    pub fn refuses(&self, kind: Kind) -> bool {
        self.refused.contains(&kind)
    }

    /// The kinds the kernel refused, for the log.
    pub fn refused(&self) -> &[Kind] {
        &self.refused
    }

    /// Every socket of kind `kind` in network namespace `netns` (the namespace of `pid`), each
    /// handed to `each`. Err when the namespace or the dump could not be had.
    pub fn sockets(&mut self, pid: u32, netns: u64, kind: Kind, each: impl FnMut(&DiagSocket)) -> io::Result<()> {
        let now = Instant::now();
        if let Some((_, used)) = self.sockets.get_mut(&netns) {
            *used = now;
        } else {
            let own = self.own_netns;
            self.sockets.retain(|&ns, (_, used)| ns == own || now.duration_since(*used) < NAMESPACE_IDLE);
            if self.sockets.len() >= MAX_NAMESPACES {
                self.sockets.retain(|&ns, _| ns == own);
            }
            let s = netlink_socket_in(pid)?;
            self.sockets.insert(netns, (s, now));
        }
        self.dump(netns, kind, each).inspect_err(|e| {
            if e.raw_os_error().is_some_and(|n| n == libc::ENOENT || n == libc::EOPNOTSUPP) {
                // No diag module for this protocol (or family): stop asking.
                self.refused.push(kind);
            }
        })
    }

    /// Finds socket `inode` of kind `kind` in the namespace of `pid` (one dump).
    pub fn find(&mut self, pid: u32, kind: Kind, inode: u64) -> io::Result<Option<SocketInfo>> {
        let netns = netns_of(&pid.to_string())
            .ok_or_else(|| io::Error::other(format!("/proc/{pid}/ns/net is not readable")))?;
        let mut found = None;
        self.sockets(pid, netns, kind, |s| {
            if s.inode as u64 == inode {
                found = Some(SocketInfo { transport: kind.transport, local: s.local, remote: s.remote });
            }
        })?;
        Ok(found)
    }

    /// Runs one dump to its end, handing each socket to `each`.
    fn dump(&mut self, netns: u64, kind: Kind, mut each: impl FnMut(&DiagSocket)) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let fd = self.sockets[&netns].0.as_raw_fd();
        let req = dump_request(kind, seq);
        // SAFETY: sending our own buffer on a netlink socket we own (to the kernel: no address).
        let n = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: receiving into our own buffer of its length.
            let n = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::other("sock_diag dump ended without NLMSG_DONE"));
            }
            let chunk = parse_chunk(&self.buf[..n as usize], seq);
            if let Some(errno) = chunk.error {
                return Err(io::Error::from_raw_os_error(errno));
            }
            // Always read to the end: what is left in the socket would answer the next request.
            chunk.sockets.iter().for_each(&mut each);
            if chunk.done {
                return Ok(());
            }
        }
    }
}

/// The inode of a process's network namespace (`self` or a pid).
pub fn netns_of(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A dump is read to its end by the same thread at once: a timeout only guards against a
    // kernel that never answers.
    let tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: setsockopt with a valid timeval of its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(fd)
}

/// A netlink socket in the network namespace of `pid`: this thread enters it, makes the socket,
/// and comes back (a socket stays in the namespace it was made in).
fn netlink_socket_in(pid: u32) -> io::Result<OwnedFd> {
    let open = |path: String| -> io::Result<OwnedFd> {
        let c = std::ffi::CString::new(path).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated path; the fd is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // This thread's own namespace, to come back to.
    let me = std::process::id();
    // SAFETY: gettid has no preconditions.
    let thread = unsafe { libc::syscall(libc::SYS_gettid) };
    let home = open(format!("/proc/{me}/task/{thread}/ns/net"))?;
    let target = open(format!("/proc/{pid}/ns/net"))?;
    // SAFETY: setns on this thread with namespace fds we own.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let made = netlink_socket();
    // SAFETY: as above, back home.
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        // Stuck in another namespace, every later socket would be made there: refuse loudly.
        let e = io::Error::last_os_error();
        panic!("the perf reader could not return to its network namespace: {e}");
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn msg(family: u8, sport: u16, dport: u16, src: &[u8], dst: &[u8], inode: u32, seq: u32) -> Vec<u8> {
        let mut body = vec![0u8; MSG_LEN];
        body[0] = family;
        body[4..6].copy_from_slice(&sport.to_be_bytes());
        body[6..8].copy_from_slice(&dport.to_be_bytes());
        body[8..8 + src.len()].copy_from_slice(src);
        body[24..24 + dst.len()].copy_from_slice(dst);
        body[68..72].copy_from_slice(&inode.to_ne_bytes());
        let mut m = vec![];
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn done(typ: u16, seq: u32, errno: i32) -> Vec<u8> {
        let mut m = vec![];
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&typ.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-errno).to_ne_bytes());
        m
    }

    #[test]
    fn parses_sockets_and_the_end_of_a_dump() {
        let mut buf = msg(libc::AF_INET as u8, 40000, 8080, &[127, 0, 0, 1], &[127, 0, 0, 2], 777, 9);
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0x80;
        ll[15] = 5;
        let mut m6 = msg(libc::AF_INET6 as u8, 53, 0, &v6, &ll, 778, 9);
        m6[NLMSG_HDRLEN + 40..NLMSG_HDRLEN + 44].copy_from_slice(&3u32.to_ne_bytes());
        buf.extend(m6);
        // Another request's leftovers are skipped.
        buf.extend(msg(libc::AF_INET as u8, 1, 2, &[1, 1, 1, 1], &[2, 2, 2, 2], 779, 8));
        buf.extend(done(NLMSG_DONE, 9, 0));
        let c = parse_chunk(&buf, 9);
        assert!(c.done);
        assert_eq!(c.error, None);
        assert_eq!(c.sockets.len(), 2);
        assert_eq!(c.sockets[0].local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(c.sockets[0].remote, "127.0.0.2:8080".parse().unwrap());
        assert_eq!(c.sockets[0].inode, 777);
        assert_eq!(c.sockets[1].local, "[::1]:53".parse().unwrap());
        assert_eq!(c.sockets[1].remote, "[fe80::5%3]:0".parse().unwrap(), "link-local names its interface");
    }

    #[test]
    fn errors_and_garbage() {
        let c = parse_chunk(&done(NLMSG_ERROR, 4, libc::ENOENT), 4);
        assert_eq!((c.error, c.done), (Some(libc::ENOENT), true));
        assert_eq!(parse_chunk(&[], 1), Chunk::default());
        assert_eq!(parse_chunk(&[0xff; 15], 1), Chunk::default());
        let mut short = msg(libc::AF_INET as u8, 1, 2, &[1, 1, 1, 1], &[2, 2, 2, 2], 5, 1);
        short.truncate(40);
        assert_eq!(parse_chunk(&short, 1), Chunk::default());
        // A length field pointing past the buffer ends the parse.
        let mut lying = done(NLMSG_DONE, 1, 0);
        lying[0..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert_eq!(parse_chunk(&lying, 1), Chunk::default());
    }

    #[test]
    fn requests_are_laid_out_as_the_kernel_reads_them() {
        let r = dump_request(Kind { ipv6: true, transport: Transport::Udp }, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!((r[16], r[17]), (libc::AF_INET6 as u8, libc::IPPROTO_UDP as u8));
        assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), !((1 << 6) | (1 << 12)));
    }

    #[test]
    fn protocol_names() {
        assert_eq!(Kind::from_proto_name("TCPv6"), Some(vec![Kind { ipv6: true, transport: Transport::Tcp }]));
        assert_eq!(Kind::from_proto_name("UNIX-STREAM"), Some(vec![]));
        assert_eq!(Kind::from_proto_name("NETLINK"), Some(vec![]));
        assert_eq!(Kind::from_proto_name("SCTP"), None);
        for k in Kind::ALL {
            assert!(["tcp", "tcp6", "udp", "udp6"].contains(&k.table()));
        }
    }

    /// The live kernel: sockets of this process are found in its own namespace, as
    /// getsockname/getpeername name them.
    #[test]
    fn finds_live_sockets_of_this_process() {
        let mut d = SockDiag::open().expect("sock_diag works on the development kernel");
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let inode = crate::procfs::Procfs::default().fd_socket(pid, client.as_raw_fd()).unwrap();
        let tcp4 = Kind { ipv6: false, transport: Transport::Tcp };
        let info = d.find(pid, tcp4, inode).unwrap().expect("found");
        assert_eq!(info.local, client.local_addr().unwrap());
        assert_eq!(info.remote, listener.local_addr().unwrap());
        assert_eq!(d.find(pid, Kind { ipv6: true, transport: Transport::Tcp }, inode).unwrap(), None);

        let udp = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let inode = crate::procfs::Procfs::default().fd_socket(pid, udp.as_raw_fd()).unwrap();
        let info = d.find(pid, Kind { ipv6: true, transport: Transport::Udp }, inode).unwrap().expect("found");
        assert_eq!(info.transport, Transport::Udp);
        assert_eq!(info.local, udp.local_addr().unwrap());
        assert!(info.remote.ip().is_unspecified());
    }
}
