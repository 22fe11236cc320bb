//! Sockets seen from /proc: which inode an fd names, and where that socket's ends are.
//!
//! /proc/PID/net/* is read rather than /proc/net/* so that a process in another network namespace
//! (a pod) is looked up in its own tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use strata_event::Transport;

use crate::sockdiag::Kind;

/// The inode of `socket:[N]`, the target of a socket's /proc/PID/fd/FD link.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// What an fd number of a process names at the time of the look-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdLookup {
    Socket(u64),
    /// A file, pipe, eventfd, ...: not a socket.
    Other,
    /// No such fd (closed since) or no such process (exited since).
    Absent,
}

/// One row of /proc/net/{tcp,tcp6,udp,udp6}.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// Parses a table; rows that do not parse are skipped (the header, garbage).
pub fn parse_table(text: &str) -> Vec<SocketRow> {
    text.lines().filter_map(parse_row).collect()
}

/// Whether a /proc/<pid>/stat line describes a process that is exiting or has exited: state Z
/// (zombie) or X (dead), or PF_EXITING in the flags (set as do_exit begins, before the fds go).
pub fn stat_says_exiting(stat: &str) -> bool {
    const PF_EXITING: u64 = 0x4;
    // The name in parentheses may hold spaces and parentheses: fields follow the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else { return false };
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().unwrap_or("");
    // After state: ppid, pgrp, session, tty_nr, tpgid, then flags.
    let flags = fields.nth(5).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0
}

fn parse_row(line: &str) -> Option<SocketRow> {
    let mut cols = line.split_whitespace();
    let _slot = cols.next()?.strip_suffix(':')?;
    let local = parse_endpoint(cols.next()?)?;
    let remote = parse_endpoint(cols.next()?)?;
    let state = u8::from_str_radix(cols.next()?, 16).ok()?;
    // tx:rx queue, tr:when, retrnsmt, uid, timeout, inode
    let inode = cols.nth(5)?.parse().ok()?;
    Some(SocketRow { local, remote, state, inode })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6), each 32-bit word in host byte order.
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// What a socket inode is, found in the tables of a process's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Looks sockets up under a /proc root (a parameter so tests can use a fake tree).
#[derive(Clone, Debug)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs { root: PathBuf::from("/proc") }
    }
}

impl Procfs {
    pub fn at(root: impl AsRef<Path>) -> Procfs {
        Procfs { root: root.as_ref().to_path_buf() }
    }

    /// What `fd` of `pid` names now.
    pub fn fd(&self, pid: u32, fd: i32) -> FdLookup {
        match std::fs::read_link(self.root.join(pid.to_string()).join("fd").join(fd.to_string())) {
            Ok(link) => match link.to_str().and_then(socket_inode) {
                Some(inode) => FdLookup::Socket(inode),
                None => FdLookup::Other,
            },
            Err(_) => FdLookup::Absent,
        }
    }

    /// The socket inode behind `fd` of `pid`, or None for anything that is not a socket.
    pub fn fd_socket(&self, pid: u32, fd: i32) -> Option<u64> {
        match self.fd(pid, fd) {
            FdLookup::Socket(inode) => Some(inode),
            _ => None,
        }
    }

    /// Whether `pid` still runs with its fds in place (not gone, not exiting, not a zombie).
    pub fn alive(&self, pid: u32) -> bool {
        match std::fs::read_to_string(self.root.join(pid.to_string()).join("stat")) {
            Ok(stat) => !stat_says_exiting(&stat),
            Err(_) => false,
        }
    }

    /// Finds `inode` in the TCP and UDP tables of `pid`'s network namespace. None when it is not an
    /// inet socket (a UNIX socket, say) or has already gone.
    pub fn socket_info(&self, pid: u32, inode: u64) -> Option<SocketInfo> {
        self.socket_info_in(pid, inode, &Kind::ALL)
    }

    /// Finds `inode` in the tables of these kinds only (read in the order given).
    pub fn socket_info_in(&self, pid: u32, inode: u64, kinds: &[Kind]) -> Option<SocketInfo> {
        for kind in kinds {
            let Some(rows) = self.table(pid, *kind) else { continue };
            if let Some(row) = rows.into_iter().find(|r| r.inode == inode) {
                return Some(SocketInfo { transport: kind.transport, local: row.local, remote: row.remote });
            }
        }
        None
    }

    /// The table of `kind` sockets of `pid`'s network namespace, None when it cannot be read.
    pub fn table(&self, pid: u32, kind: Kind) -> Option<Vec<SocketRow>> {
        let text = std::fs::read_to_string(self.root.join(pid.to_string()).join("net").join(kind.table())).ok()?;
        Some(parse_table(&text))
    }

    /// What the kernel calls the protocol of the socket behind `fd` of `pid` (`TCP`, `UDPv6`,
    /// `UNIX-STREAM`, ...: the `system.sockprotoname` attribute of the socket's inode), when it
    /// says.
    pub fn proto_name(&self, pid: u32, fd: i32) -> Option<String> {
        let path = self.root.join(pid.to_string()).join("fd").join(fd.to_string());
        let path = std::ffi::CString::new(path.into_os_string().into_encoded_bytes()).ok()?;
        let mut buf = [0u8; 64];
        // SAFETY: NUL-terminated strings and a buffer of the length given.
        let n = unsafe {
            libc::getxattr(path.as_ptr(), c"system.sockprotoname".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        if n <= 0 {
            return None;
        }
        let name = &buf[..n as usize];
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8(name.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exiting_and_zombie_processes_are_told_apart_from_running_ones() {
        let running = "4242 (dig) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 3 0 99 1 1 1";
        let exiting = "4242 (dig) R 1 4242 4242 0 -1 4194564 120 0 0 0 1 0 0 0 20 0 3 0 99 1 1 1";
        let zombie = "4242 (a) b) c) Z 1 4242 4242 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 3 0 99 1 1 1";
        assert!(!stat_says_exiting(running));
        assert!(stat_says_exiting(exiting));
        assert!(stat_says_exiting(zombie));
        assert!(!stat_says_exiting("garbage"));
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(!stat_says_exiting(&me));
        assert!(Procfs::default().alive(std::process::id()));
        assert!(!Procfs::default().alive(u32::MAX - 1));
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 20 4 30 10 -1\n";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";

    #[test]
    fn parses_ipv4_rows() {
        let rows = parse_table(TCP);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(rows[0].state, 0x0a);
        assert_eq!(rows[1].remote, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(rows[1].local.port(), 40000);
        assert_eq!(rows[1].inode, 23456);
    }

    #[test]
    fn parses_ipv6_rows() {
        let rows = parse_table(TCP6);
        assert_eq!(rows[0].local, "[::1]:8080".parse().unwrap());
        assert_eq!(rows[0].inode, 777);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/etc/passwd"), None);
    }

    #[test]
    fn garbage_rows_are_skipped() {
        assert!(parse_table("x\n0: zz:zz 1 2\n\u{0}\u{1}").is_empty());
        assert!(parse_table("   0: 0100007F:1F90 00000000:0000 0A").is_empty());
    }

    #[test]
    fn looks_up_a_fake_tree() {
        let root = std::env::temp_dir().join(format!("strata-procfs-{}", std::process::id()));
        std::fs::create_dir_all(root.join("42/net")).unwrap();
        std::fs::create_dir_all(root.join("42/fd")).unwrap();
        std::fs::write(root.join("42/net/tcp"), TCP).unwrap();
        std::os::unix::fs::symlink("socket:[23456]", root.join("42/fd/5")).unwrap();
        let p = Procfs::at(&root);
        assert_eq!(p.fd_socket(42, 5), Some(23456));
        assert_eq!(p.fd_socket(42, 6), None);
        let info = p.socket_info(42, 23456).unwrap();
        assert_eq!(info.transport, Transport::Tcp);
        assert_eq!(info.remote.port(), 8080);
        assert_eq!(p.socket_info(42, 1), None);
        std::fs::remove_dir_all(root).unwrap();
    }
}

/// Asks the socket itself, through a duplicate of the process's fd (pidfd_open, Linux 5.3, and
/// pidfd_getfd, 5.6): constant time, where the /proc tables cost time in proportion to every
/// socket of the namespace (TIME_WAIT ones included). Err with the error of pidfd_open or
/// pidfd_getfd (ENOSYS where the kernel lacks them); Ok(None) when the fd no longer names
/// `inode` or is no TCP/UDP socket.
pub fn socket_info_via_pidfd(pid: u32, fd: i32, inode: u64) -> std::io::Result<Option<SocketInfo>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: raw syscalls whose results are checked; returned fds are owned and closed on drop.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let sock = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(sock as i32);
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(sock.as_raw_fd(), &mut st) != 0 || st.st_ino != inode {
            return Ok(None);
        }
        let mut typ: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut typ as *mut libc::c_int).cast(),
            &mut len,
        ) != 0
        {
            return Ok(None);
        }
        let transport = match typ {
            libc::SOCK_STREAM => Transport::Tcp,
            libc::SOCK_DGRAM => Transport::Udp,
            _ => return Ok(None),
        };
        let name = |f: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int| {
            let mut ss: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if f(sock.as_raw_fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len) != 0 {
                return None;
            }
            let bytes = std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len as usize);
            crate::memory::parse_sockaddr(bytes)
        };
        let Some(local) = name(libc::getsockname) else { return Ok(None) };
        // An unconnected UDP socket has no peer: ENOTCONN reads as the unspecified address.
        let remote = name(libc::getpeername).unwrap_or_else(|| {
            SocketAddr::new(
                if local.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() },
                0,
            )
        });
        Ok(Some(SocketInfo { transport, local, remote }))
    }
}

#[cfg(test)]
mod pidfd_tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn asks_a_live_socket_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let pid = std::process::id();
        let inode = Procfs::default().fd_socket(pid, client.as_raw_fd()).unwrap();
        let info = socket_info_via_pidfd(pid, client.as_raw_fd(), inode).unwrap().expect("pidfd_getfd works on 5.6+");
        assert_eq!(info.transport, Transport::Tcp);
        assert_eq!(info.local, client.local_addr().unwrap());
        assert_eq!(info.remote, listener.local_addr().unwrap());
        // The wrong inode is refused (the fd was reused meanwhile).
        assert_eq!(socket_info_via_pidfd(pid, client.as_raw_fd(), inode + 1).unwrap(), None);
        // The same answer from the tables, and the protocol from the socket's inode.
        assert_eq!(Procfs::default().socket_info(pid, inode), Some(info));
        assert_eq!(Procfs::default().proto_name(pid, client.as_raw_fd()).as_deref(), Some("TCP"));
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(Procfs::default().proto_name(pid, file.as_raw_fd()), None, "a file is no socket");
    }
}
