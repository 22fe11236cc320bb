//! Reading another process's memory with process_vm_readv: the payload the tracepoint only points
//! at. The process keeps running, so what is read may already have changed (see `payload_stale`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Reads up to `len` bytes at `addr` in `pid`. Returns what could be read (possibly nothing).
pub fn read(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    if addr == 0 || len == 0 {
        return vec![];
    }
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    // SAFETY: `local` describes our own buffer of `len` bytes; the remote side is checked by the kernel.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    buf.truncate(n.max(0) as usize);
    buf
}

fn read_u64s<const N: usize>(pid: u32, addr: u64) -> Option<[u64; N]> {
    let b = read(pid, addr, N * 8);
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
pub fn read_iovecs(pid: u32, iov: u64, count: u64, budget: usize, max_iov: usize) -> Vec<u8> {
    let mut out = vec![];
    for i in 0..count.min(max_iov as u64) {
        if out.len() >= budget {
            break;
        }
        let Some([base, len]) = read_u64s::<2>(pid, iov + i * 16) else { break };
        let want = (len as usize).min(budget - out.len());
        let got = read(pid, base, want);
        let short = got.len() < want;
        out.extend_from_slice(&got);
        if short {
            break;
        }
    }
    out
}

/// The sum of the lengths in an iovec array of `count` entries (at most `max_iov`): what a send
/// of it can transmit at most.
pub fn iov_total(pid: u32, iov: u64, count: u64, max_iov: usize) -> Option<u64> {
    let mut total = 0u64;
    for i in 0..count.min(max_iov as u64) {
        let [_, len] = read_u64s::<2>(pid, iov + i * 16)?;
        total = total.saturating_add(len);
    }
    Some(total)
}

/// `struct msghdr` (x86_64): name, namelen, iov, iovlen, control, controllen, flags.
pub struct MsgHdr {
    pub name: u64,
    pub iov: u64,
    pub iovlen: u64,
}

pub fn read_msghdr(pid: u32, addr: u64) -> Option<MsgHdr> {
    let [name, _namelen, iov, iovlen] = read_u64s::<4>(pid, addr)?;
    Some(MsgHdr { name, iov, iovlen })
}

/// A `struct sockaddr_in`/`sockaddr_in6` in the process; None for other families.
pub fn read_sockaddr(pid: u32, addr: u64) -> Option<SocketAddr> {
    let b = read(pid, addr, 28);
    parse_sockaddr(&b)
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

    #[test]
    fn reads_its_own_memory_and_iovecs() {
        let pid = std::process::id();
        let a = b"hello ".to_vec();
        let b = b"world".to_vec();
        assert_eq!(read(pid, a.as_ptr() as u64, a.len()), a);
        let iov: [u64; 4] = [a.as_ptr() as u64, a.len() as u64, b.as_ptr() as u64, b.len() as u64];
        assert_eq!(read_iovecs(pid, iov.as_ptr() as u64, 2, 100, 8), b"hello world");
        assert_eq!(read_iovecs(pid, iov.as_ptr() as u64, 2, 8, 8), b"hello wo");
        assert_eq!(read(pid, 0, 10), Vec::<u8>::new());
        // An unmapped address reads as nothing, not a crash.
        assert!(read(pid, 8, 16).is_empty());
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
