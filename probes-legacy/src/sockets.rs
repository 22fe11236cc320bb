//! What a socket fd of another process is: its transport and its two ends.
//!
//! The best way the kernel offers, tried in turn, each decided by asking the kernel (ENOSYS is
//! "this kernel does not have it", and it is not asked again):
//!
//! 1. pidfd_open (5.3) + pidfd_getfd (5.6): a duplicate of the fd, asked with getsockname and
//!    getpeername. Constant time.
//! 2. sock_diag (3.3, [`crate::sockdiag`]): one netlink dump of the socket's kind, in the
//!    process's network namespace. About 0.2 ms on a node with large hash tables.
//! 3. /proc/PID/net/{tcp,tcp6,udp,udp6}: always there, but formatted text of every socket of the
//!    namespace, several milliseconds on such a node.
//!
//! The socket's kind (TCP or UDP, IPv4 or IPv6, or no inet socket at all) comes from the
//! `system.sockprotoname` attribute of its inode where the kernel has it, so that 2 and 3 look at
//! one table, and UNIX sockets at none. The connected sockets a walk of 2 or 3 meets are kept
//! (their ends never change): both ends of a connection, looked up one after the other, cost one.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use crate::procfs::{socket_info_via_pidfd, Procfs, SocketInfo};
use crate::sockdiag::{netns_of, Kind, SockDiag};

/// How sockets are resolved on this kernel (the best way that works).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Pidfd,
    SockDiag,
    ProcTables,
}

pub struct Sockets {
    procfs: Procfs,
    /// pidfd_open and pidfd_getfd work (false once either answered ENOSYS: `pidfd_missing` says).
    pidfd: bool,
    pidfd_missing: Option<String>,
    diag: Option<SockDiag>,
    diag_missing: Option<String>,
    /// Connected sockets by (network namespace, inode), from the dumps and tables read.
    connected: HashMap<(u64, u64), SocketInfo>,
    /// Dumps and tables read (each a walk of a namespace's sockets of one kind).
    pub dumps: u64,
}

impl Sockets {
    /// Asks the kernel which ways work, on this process.
    pub fn probe(procfs: Procfs) -> Sockets {
        let pidfd_missing = probe_pidfd().err();
        let (diag, diag_missing) = match SockDiag::open() {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Sockets {
            procfs,
            pidfd: pidfd_missing.is_none(),
            pidfd_missing,
            diag,
            diag_missing,
            connected: HashMap::new(),
            dumps: 0,
        }
    }

    /// Only the /proc tables (tests, and the fake trees they use).
    pub fn tables_only(procfs: Procfs) -> Sockets {
        Sockets {
            procfs,
            pidfd: false,
            pidfd_missing: Some("not used".into()),
            diag: None,
            diag_missing: Some("not used".into()),
            connected: HashMap::new(),
            dumps: 0,
        }
    }

    /// The best way in use.
    pub fn method(&self) -> Method {
        if self.pidfd {
            Method::Pidfd
        } else if self.diag.is_some() {
            Method::SockDiag
        } else {
            Method::ProcTables
        }
    }

    /// One line for the log: how sockets are resolved, and why not better.
    pub fn describe(&self) -> String {
        let pidfd = || self.pidfd_missing.clone().unwrap_or_default();
        match self.method() {
            Method::Pidfd => "sockets resolved with pidfd_getfd".into(),
            Method::SockDiag => format!("sockets resolved with sock_diag dumps ({})", pidfd()),
            Method::ProcTables => format!(
                "sockets resolved from /proc/PID/net tables ({}; sock_diag: {})",
                pidfd(),
                self.diag_missing.clone().unwrap_or_default()
            ),
        }
    }

    /// `fd` of `pid`, which named socket `inode` a moment ago. None when it is no TCP or UDP
    /// socket, or it has gone.
    pub fn info(&mut self, pid: u32, fd: i32, inode: u64) -> Option<SocketInfo> {
        if self.pidfd {
            match socket_info_via_pidfd(pid, fd, inode) {
                Ok(Some(info)) => return Some(info),
                // A reused fd, or not an inet socket; the slower ways would say the same.
                Ok(None) => return None,
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    self.pidfd = false;
                    self.pidfd_missing = Some(format!("pidfd_open/pidfd_getfd: {}", why(e, "5.6")));
                    log::info!("perf-event: {}", self.describe());
                }
                // The process exited, or denied (ptrace policy): the other ways may still know.
                Err(_) => {}
            }
        }
        // Both ends of a connection are often looked up one after the other (a client's
        // connect, then the server's accept, then the worker the server hands it to): one dump
        // answers for all of them.
        let netns = netns_of(&pid.to_string())?;
        if let Some(info) = self.connected.get(&(netns, inode)) {
            return Some(info.clone());
        }
        let kinds = match self.procfs.proto_name(pid, fd) {
            Some(name) => Kind::from_proto_name(&name).unwrap_or_else(|| Kind::ALL.to_vec()),
            None => Kind::ALL.to_vec(),
        };
        for kind in kinds {
            let mut found = None;
            let mut seen: Vec<(u64, SocketInfo)> = vec![];
            let mut visit = |ino: u64, local: SocketAddr, remote: SocketAddr| {
                let info = SocketInfo { transport: kind.transport, local, remote };
                if ino == inode {
                    found = Some(info.clone());
                }
                // A connected socket's ends never change: keep them. Others (listening, not
                // yet connected, unconnected UDP) are asked again.
                if ino != 0 && remote.port() != 0 {
                    seen.push((ino, info));
                }
            };
            let dumped = match self.diag.as_mut() {
                Some(d) if !d.refuses(kind) => {
                    self.dumps += 1;
                    match d.sockets(pid, netns, kind, |s| visit(s.inode as u64, s.local, s.remote)) {
                        Ok(()) => true,
                        Err(e) => {
                            if d.refuses(kind) {
                                log::info!(
                                    "perf-event: sock_diag cannot dump {} sockets ({e}): /proc/PID/net/{} instead",
                                    kind.table(),
                                    kind.table()
                                );
                            }
                            false
                        }
                    }
                }
                _ => false,
            };
            if !dumped {
                self.dumps += 1;
                for row in self.procfs.table(pid, kind).unwrap_or_default() {
                    visit(row.inode, row.local, row.remote);
                }
            }
            if self.connected.len() + seen.len() > MAX_CONNECTED {
                self.connected.clear();
            }
            self.connected.extend(seen.into_iter().map(|(ino, info)| ((netns, ino), info)));
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

/// Connected sockets remembered from dumps and tables; beyond, all are forgotten at once.
const MAX_CONNECTED: usize = 65536;

/// pidfd_open of this process, then pidfd_getfd with a bad pidfd: EBADF means it exists.
fn probe_pidfd() -> Result<(), String> {
    // The same calls compat-check makes (kernel_compat::syscalls), so the two cannot disagree.
    use kernel_compat::syscalls::{pidfd_getfd_bad_pidfd, pidfd_open_self};
    let errno = io::Error::from_raw_os_error;
    pidfd_open_self().map_err(|e| format!("pidfd_open: {}", why(errno(e), "5.3")))?;
    match pidfd_getfd_bad_pidfd() {
        0 | libc::EBADF => Ok(()),
        e => Err(format!("pidfd_getfd: {}", why(errno(e), "5.6"))),
    }
}

/// ENOSYS said as such, with the release that brought the call; other errors as they are.
fn why(e: io::Error, since: &str) -> String {
    if e.raw_os_error() == Some(libc::ENOSYS) {
        format!("ENOSYS, Linux {since}+")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use strata_event::Transport;

    /// Every way finds the same ends for the same sockets, and knows a UNIX socket is none.
    #[test]
    fn every_way_agrees() {
        // The probe takes pidfd_getfd exactly where the kernel has it (5.6): asked directly here.
        let probed = Sockets::probe(Procfs::default());
        // SAFETY: pidfd_open of ourselves; the fd is closed below.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) } as i32;
        // SAFETY: pidfd_getfd of our own stdin (fd 0, or EBADF: either proves the call exists).
        let got = (pidfd >= 0).then(|| unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) } as i32);
        let has_getfd =
            got.is_some_and(|fd| fd >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS));
        for fd in [Some(pidfd), got].into_iter().flatten().filter(|&fd| fd >= 0) {
            // SAFETY: fds this test opened.
            unsafe { libc::close(fd) };
        }
        assert_eq!(probed.method() == Method::Pidfd, has_getfd, "pidfd_getfd here: {has_getfd}; {}", probed.describe());
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect("127.0.0.1:9").unwrap();
        let (unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let inode = |fd: i32| Procfs::default().fd_socket(pid, fd).unwrap();

        let mut without_pidfd = Sockets::probe(Procfs::default());
        without_pidfd.pidfd = false;
        assert_eq!(without_pidfd.method(), Method::SockDiag);
        let mut ways = [Sockets::probe(Procfs::default()), without_pidfd, Sockets::tables_only(Procfs::default())];
        for s in &mut ways {
            let c = s.info(pid, client.as_raw_fd(), inode(client.as_raw_fd())).expect("tcp");
            assert_eq!(
                (c.transport, c.local, c.remote),
                (Transport::Tcp, client.local_addr().unwrap(), listener.local_addr().unwrap())
            );
            let l = s.info(pid, listener.as_raw_fd(), inode(listener.as_raw_fd())).expect("listener");
            assert_eq!(l.local, listener.local_addr().unwrap());
            let u = s.info(pid, udp.as_raw_fd(), inode(udp.as_raw_fd())).expect("udp");
            assert_eq!(
                (u.transport, u.local, u.remote),
                (Transport::Udp, udp.local_addr().unwrap(), udp.peer_addr().unwrap())
            );
            assert_eq!(s.info(pid, unix.as_raw_fd(), inode(unix.as_raw_fd())), None, "{:?}", s.method());
        }
        // pidfd_getfd sees when an fd no longer names the socket asked about (the other ways
        // answer for the inode, which is the socket asked about).
        assert_eq!(ways[0].info(pid, client.as_raw_fd(), inode(udp.as_raw_fd())), None);
    }

    /// One walk of the sockets answers for both ends of a connection.
    #[test]
    fn both_ends_of_a_connection_cost_one_walk() {
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let inode = |fd: i32| Procfs::default().fd_socket(pid, fd).unwrap();
        let mut without_pidfd = Sockets::probe(Procfs::default());
        without_pidfd.pidfd = false;
        for mut s in [without_pidfd, Sockets::tables_only(Procfs::default())] {
            let c = s.info(pid, client.as_raw_fd(), inode(client.as_raw_fd())).unwrap();
            assert_eq!(s.dumps, 1, "{:?}", s.method());
            let v = s.info(pid, server.as_raw_fd(), inode(server.as_raw_fd())).unwrap();
            assert_eq!(s.dumps, 1, "{:?}: the server's end came with the client's", s.method());
            assert_eq!((v.local, v.remote), (c.remote, c.local));
            // A listening socket is asked again each time.
            s.info(pid, listener.as_raw_fd(), inode(listener.as_raw_fd())).unwrap();
            s.info(pid, listener.as_raw_fd(), inode(listener.as_raw_fd())).unwrap();
            assert_eq!(s.dumps, 3, "{:?}", s.method());
        }
    }
}
