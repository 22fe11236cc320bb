//! Reading another process's memory: the payload the tracepoint only points at. The process
//! keeps running, so what is read may already have changed (see `payload_stale`).
//!
//! process_vm_readv (Linux 3.2, and only with CONFIG_CROSS_MEMORY_ATTACH, which minimal kernel
//! configs leave out) is the fast way. Where the kernel answers ENOSYS, the same bytes are read
//! with pread on /proc/PID/mem (reads without ptrace-stopping the process since 2.6.39). Where
//! neither works, nothing is read: the tracker then counts every payload it could not read, so a
//! capture without payloads is never silent (a 4.19 kernel built without
//! CONFIG_CROSS_MEMORY_ATTACH once gave 49 events and 0 records with no loss reported).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// How process memory is read on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// process_vm_readv(2).
    VmReadv,
    /// pread(2) on /proc/PID/mem: process_vm_readv answered ENOSYS.
    ProcMem,
    /// Neither works: payloads are not read (and counted as unreadable).
    Unavailable,
}

impl Access {
    pub fn describe(self) -> &'static str {
        match self {
            Access::VmReadv => "payloads read with process_vm_readv",
            Access::ProcMem => "payloads read from /proc/PID/mem",
            Access::Unavailable => "payloads not readable",
        }
    }
}

/// Reads process memory the way this kernel allows, decided once by trying on this process.
#[derive(Debug)]
pub struct Memory {
    access: Access,
    /// Why the fallback was taken (the errors met), for the log.
    pub why: Option<String>,
}

impl Memory {
    /// Tries process_vm_readv, then /proc/PID/mem, on this process's own memory.
    pub fn probe() -> Memory {
        let probe = *b"strata memory probe";
        let me = std::process::id();
        let addr = probe.as_ptr() as u64;
        match vm_readv(me, addr, probe.len()) {
            Ok(b) if b == probe => return Memory { access: Access::VmReadv, why: None },
            // Only "the kernel has no such call" moves to the fallback: EPERM (a ptrace policy)
            // would refuse /proc/PID/mem as well.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            Err(e) => return Memory { access: Access::VmReadv, why: Some(format!("process_vm_readv of itself: {e}")) },
            Ok(b) => {
                return Memory {
                    access: Access::VmReadv,
                    why: Some(format!("process_vm_readv of itself read {} bytes that differ", b.len())),
                }
            }
        }
        match proc_mem(me, addr, probe.len()) {
            Ok(b) if b == probe => Memory {
                access: Access::ProcMem,
                why: Some("process_vm_readv: ENOSYS, Linux 3.2+ with CONFIG_CROSS_MEMORY_ATTACH".into()),
            },
            other => Memory {
                access: Access::Unavailable,
                why: Some(format!(
                    "process_vm_readv: ENOSYS; /proc/self/mem: {}",
                    match other {
                        Ok(b) => format!("read {} bytes that differ", b.len()),
                        Err(e) => e.to_string(),
                    }
                )),
            },
        }
    }

    /// A reader using `access` as given (tests).
    pub fn with(access: Access) -> Memory {
        Memory { access, why: None }
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// Reads up to `len` bytes at `addr` in `pid`. Returns what could be read (possibly nothing).
    pub fn read(&self, pid: u32, addr: u64, len: usize) -> Vec<u8> {
        if addr == 0 || len == 0 {
            return vec![];
        }
        let got = match self.access {
            Access::VmReadv => vm_readv(pid, addr, len),
            Access::ProcMem => proc_mem(pid, addr, len),
            Access::Unavailable => return vec![],
        };
        got.unwrap_or_default()
    }

    fn read_u64s<const N: usize>(&self, pid: u32, addr: u64) -> Option<[u64; N]> {
        let b = self.read(pid, addr, N * 8);
        if b.len() < N * 8 {
            return None;
        }
        let mut out = [0u64; N];
        for (i, v) in out.iter_mut().enumerate() {
            *v = u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        }
        Some(out)
    }

    /// Gathers up to `budget` bytes from an iovec array of `count` entries (at most `max_iov`).
    pub fn read_iovecs(&self, pid: u32, iov: u64, count: u64, budget: usize, max_iov: usize) -> Gathered {
        let mut out = Gathered { bytes: vec![], complete: true };
        for i in 0..count.min(max_iov as u64) {
            if out.bytes.len() >= budget {
                break;
            }
            let Some([base, len]) = self.read_u64s::<2>(pid, iov + i * 16) else {
                out.complete = false;
                break;
            };
            let want = (len as usize).min(budget - out.bytes.len());
            let got = self.read(pid, base, want);
            let short = got.len() < want;
            out.bytes.extend_from_slice(&got);
            if short {
                out.complete = false;
                break;
            }
        }
        out
    }

    /// The sum of the lengths in an iovec array of `count` entries (at most `max_iov`): what a
    /// send of it can transmit at most.
    pub fn iov_total(&self, pid: u32, iov: u64, count: u64, max_iov: usize) -> Option<u64> {
        let mut total = 0u64;
        for i in 0..count.min(max_iov as u64) {
            let [_, len] = self.read_u64s::<2>(pid, iov + i * 16)?;
            total = total.saturating_add(len);
        }
        Some(total)
    }

    pub fn read_msghdr(&self, pid: u32, addr: u64) -> Option<MsgHdr> {
        let [name, _namelen, iov, iovlen] = self.read_u64s::<4>(pid, addr)?;
        Some(MsgHdr { name, iov, iovlen })
    }

    /// A `struct sockaddr_in`/`sockaddr_in6` in the process; None for other families.
    pub fn read_sockaddr(&self, pid: u32, addr: u64) -> Option<SocketAddr> {
        let b = self.read(pid, addr, 28);
        parse_sockaddr(&b)
    }
}

/// Bytes gathered from several buffers (an iovec array).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gathered {
    pub bytes: Vec<u8>,
    /// False when a buffer (or the array itself) could not be read: the process had exited or
    /// unmapped it, or its memory cannot be read here. True when the budget or the array ran out.
    pub complete: bool,
}

fn vm_readv(pid: u32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    // SAFETY: `local` describes our own buffer of `len` bytes; the remote side is checked by the kernel.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// pread on /proc/PID/mem. Opened per read (three syscalls where process_vm_readv takes one):
/// a kept file would have to be dropped at the process's exit and at its exec (a new address
/// space), and this way is taken only on kernels without CONFIG_CROSS_MEMORY_ATTACH, which are
/// already the slowest tier's. A per-pid cache is the next step if such nodes turn out common.
fn proc_mem(pid: u32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let path = std::ffi::CString::new(format!("/proc/{pid}/mem")).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated path; the fd returned is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let offset = i64::try_from(addr).map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
    let mut buf = vec![0u8; len];
    // SAFETY: buf holds len writable bytes; the offset is the address in the process.
    let n = unsafe { libc::pread64(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, offset) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `struct msghdr` (x86_64): name, namelen, iov, iovlen, control, controllen, flags.
pub struct MsgHdr {
    pub name: u64,
    pub iov: u64,
    pub iovlen: u64,
}

pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family as i32 {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of reading read the same bytes, and say when they could not.
    #[test]
    fn reads_its_own_memory_and_iovecs_both_ways() {
        // What the probe finds is what the kernel answers a process_vm_readv of our own memory.
        let byte = [7u8];
        let mut into = [0u8];
        let local = libc::iovec { iov_base: into.as_mut_ptr().cast(), iov_len: 1 };
        let remote = libc::iovec { iov_base: byte.as_ptr() as *mut _, iov_len: 1 };
        // SAFETY: both iovecs point at live one-byte buffers.
        let works = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) } == 1;
        let want = if works { Access::VmReadv } else { Access::ProcMem };
        assert_eq!(Memory::probe().access(), want, "process_vm_readv of our own memory works: {works}");
        for m in [Memory::with(Access::VmReadv), Memory::with(Access::ProcMem)] {
            let pid = std::process::id();
            let a = b"hello ".to_vec();
            let b = b"world".to_vec();
            assert_eq!(m.read(pid, a.as_ptr() as u64, a.len()), a, "{m:?}");
            let iov: [u64; 4] = [a.as_ptr() as u64, a.len() as u64, b.as_ptr() as u64, b.len() as u64];
            let whole = m.read_iovecs(pid, iov.as_ptr() as u64, 2, 100, 8);
            assert_eq!(whole, Gathered { bytes: b"hello world".to_vec(), complete: true });
            let cut = m.read_iovecs(pid, iov.as_ptr() as u64, 2, 8, 8);
            assert_eq!(cut, Gathered { bytes: b"hello wo".to_vec(), complete: true }, "a budget is not a failure");
            assert_eq!(m.iov_total(pid, iov.as_ptr() as u64, 2, 8), Some(11));
            assert_eq!(m.read(pid, 0, 10), Vec::<u8>::new());
            // An unmapped address reads as nothing, not a crash, and an iovec there is incomplete.
            assert!(m.read(pid, 8, 16).is_empty());
            let bad: [u64; 2] = [8, 16];
            assert!(!m.read_iovecs(pid, bad.as_ptr() as u64, 1, 100, 8).complete);
            assert!(!m.read_iovecs(pid, 8, 1, 100, 8).complete);
            // A process that does not exist reads as nothing.
            assert!(m.read(u32::MAX - 1, a.as_ptr() as u64, a.len()).is_empty());
        }
        let none = Memory::with(Access::Unavailable);
        let x = *b"x";
        assert!(none.read(std::process::id(), x.as_ptr() as u64, 1).is_empty());
    }

    #[test]
    fn sockaddrs() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&53u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(parse_sockaddr(&v4), Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(parse_sockaddr(&[1, 0, 0]), None);
        assert_eq!(parse_sockaddr(&[]), None);
    }
}
