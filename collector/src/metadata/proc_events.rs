//! Process fork and exit events from the kernel's process connector (`CONFIG_PROC_EVENTS`, every
//! kernel since 2.6.15): a netlink socket that tells, as it happens, which process forked which.
//!
//! Records reach the pipeline thread milliseconds after the syscalls, and a short-lived process
//! (a forking server's child, a CronJob's client) may be gone by then, its `/proc` entry with it.
//! Its parent usually is not, and a child starts in its parent's cgroup: with the fork events at
//! hand, such a process is attributed through its nearest living ancestor. Exits make the cache
//! check a pid again at once, so a pid reused by another process is not taken for the old one.
//!
//! The connector needs `CAP_NET_ADMIN` in the initial user namespace and a socket in the initial
//! network namespace (a pod: `hostNetwork: true`). Without them strata logs why once and works
//! without the events: processes are attributed while they live.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// `what` values of `struct proc_event` (linux/cn_proc.h).
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NETLINK_CONNECTOR: i32 = 11;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// `what`, `cpu`, `timestamp_ns` before the union.
const PROC_EVENT_HEAD: usize = 16;

/// One process event, as the pure decoder reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new process (not a thread): `child` was forked by `parent` (both thread-group ids).
    Fork {
        parent: u32,
        child: u32,
    },
    Exec {
        pid: u32,
    },
    /// A process (its thread-group leader) exited.
    Exit {
        pid: u32,
    },
}

/// The process events in one datagram from the connector (netlink messages, each a `cn_msg`
/// carrying a `proc_event`). Threads' forks and exits are left out; so is anything malformed.
pub fn decode(datagram: &[u8], out: &mut Vec<ProcEvent>) {
    let u32_at = |b: &[u8], at: usize| b.get(at..at + 4).map(|s| u32::from_ne_bytes(s.try_into().unwrap()));
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let Some(len) = u32_at(rest, 0).map(|l| l as usize) else { return };
        if len < NLMSG_HDRLEN || len > rest.len() {
            return;
        }
        let msg = &rest[NLMSG_HDRLEN..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        if msg.len() < CN_MSG_LEN || u32_at(msg, 0) != Some(CN_IDX_PROC) || u32_at(msg, 4) != Some(CN_VAL_PROC) {
            continue;
        }
        let ev = &msg[CN_MSG_LEN..];
        let word = |i: usize| u32_at(ev, PROC_EVENT_HEAD + 4 * i);
        match (u32_at(ev, 0), word(0), word(1)) {
            // parent_pid, parent_tgid, child_pid, child_tgid: a new process when the child is its
            // own thread-group leader.
            (Some(PROC_EVENT_FORK), Some(_), Some(parent)) => {
                if let (Some(pid), Some(tgid)) = (word(2), word(3)) {
                    if pid == tgid {
                        out.push(ProcEvent::Fork { parent, child: tgid });
                    }
                }
            }
            // process_pid, process_tgid.
            (Some(PROC_EVENT_EXEC), Some(pid), Some(tgid)) if pid == tgid => out.push(ProcEvent::Exec { pid }),
            (Some(PROC_EVENT_EXIT), Some(pid), Some(tgid)) if pid == tgid => out.push(ProcEvent::Exit { pid }),
            _ => {}
        }
    }
}

/// What the events taught, shared between the listening thread and the resolver: each recent
/// process's parent, and the exits not yet handed to the resolver. Both bounded.
#[derive(Default)]
pub struct ProcLog {
    inner: Mutex<Inner>,
    /// Datagrams the kernel dropped because the socket's buffer was full (ENOBUFS).
    pub overruns: AtomicU64,
    /// Exits and execs not handed on because the resolver had [`MAX_EXITS`] waiting.
    pub exits_dropped: AtomicU64,
    /// The listener runs: forks are being recorded.
    pub running: AtomicBool,
}

#[derive(Default)]
struct Inner {
    parents: HashMap<u32, u32>,
    order: VecDeque<u32>,
    exits: Vec<u32>,
}

/// Forks remembered (about a few seconds' worth on a busy node); the oldest go first.
pub const MAX_FORKS: usize = 65_536;
/// Exits waiting for the resolver; past it they are dropped (the cache's age check still holds).
pub const MAX_EXITS: usize = 65_536;

impl ProcLog {
    pub fn record(&self, events: &[ProcEvent]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for ev in events {
            match *ev {
                ProcEvent::Fork { parent, child } => {
                    if inner.parents.insert(child, parent).is_none() {
                        inner.order.push_back(child);
                    }
                    while inner.order.len() > MAX_FORKS {
                        if let Some(old) = inner.order.pop_front() {
                            inner.parents.remove(&old);
                        }
                    }
                }
                // An exec keeps the cgroup but is a new program: checked again like an exit.
                ProcEvent::Exit { pid } | ProcEvent::Exec { pid } => {
                    if inner.exits.len() < MAX_EXITS {
                        inner.exits.push(pid)
                    } else if self.exits_dropped.fetch_add(1, Relaxed) == 0 {
                        log::warn!(
                            "process events: {MAX_EXITS} exits wait for the resolver; later ones are dropped \
                             (pids are still checked by age)"
                        );
                    }
                }
            }
        }
    }

    /// The process that forked `pid`, if the fork was seen recently.
    pub fn parent(&self, pid: u32) -> Option<u32> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).parents.get(&pid).copied()
    }

    /// Processes that exited or exec'd since the last call.
    pub fn take_exits(&self, into: &mut Vec<u32>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        into.append(&mut inner.exits);
    }
}

/// Subscribes to the connector and records its events in `log` from a thread of its own. An
/// error says why the events cannot be had (the caller logs it and goes on without them).
pub fn start(log: Arc<ProcLog>) -> std::io::Result<()> {
    let fd = subscribe()?;
    log.running.store(true, Relaxed);
    std::thread::Builder::new().name("strata-procev".into()).spawn(move || listen(fd, &log))?;
    Ok(())
}

fn subscribe() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let last = std::io::Error::last_os_error;
    // SAFETY: plain socket(2); the descriptor is owned below.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, NETLINK_CONNECTOR) };
    if raw < 0 {
        return Err(last());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // A roomy buffer rides out fork storms; FORCE passes the system limit (CAP_NET_ADMIN).
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt with a valid int option value.
    unsafe {
        let p = (&size as *const libc::c_int).cast();
        let n = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, n) != 0 {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, n);
        }
    }
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = CN_IDX_PROC;
    // SAFETY: bind with a properly sized sockaddr_nl.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(last());
    }
    // nlmsghdr + cn_msg + the operation.
    let len = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut msg = Vec::with_capacity(len);
    msg.extend((len as u32).to_ne_bytes());
    msg.extend((libc::NLMSG_DONE as u16).to_ne_bytes());
    msg.extend(0u16.to_ne_bytes()); // flags
    msg.extend(0u32.to_ne_bytes()); // seq
    msg.extend(std::process::id().to_ne_bytes()); // port id
    msg.extend(CN_IDX_PROC.to_ne_bytes());
    msg.extend(CN_VAL_PROC.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes()); // seq
    msg.extend(0u32.to_ne_bytes()); // ack
    msg.extend(4u16.to_ne_bytes()); // len
    msg.extend(0u16.to_ne_bytes()); // flags
    msg.extend(PROC_CN_MCAST_LISTEN.to_ne_bytes());
    // SAFETY: send(2) of an initialized buffer.
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(last());
    }
    // The subscription's permission check happens on the kernel's side without a reply; a
    // process without CAP_NET_ADMIN just receives nothing. Check the capability here instead.
    if !has_net_admin() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "CAP_NET_ADMIN is missing (the process connector requires it)",
        ));
    }
    if !in_the_initial_network_namespace() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "not in the node's network namespace (the process connector speaks only there; in a pod: hostNetwork: true)",
        ));
    }
    Ok(fd)
}

/// Whether this process has CAP_NET_ADMIN in its effective set (from /proc/self/status).
fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| kernel_compat::facts::parse::parse_cap_eff(&t))
        .is_some_and(|caps| caps.has("CAP_NET_ADMIN"))
}

/// The connector multicasts in the initial network namespace only: a socket in another (a pod
/// without `hostNetwork`) subscribes without error and hears nothing. With host PIDs, pid 1 is
/// the node's init, in the initial namespace; without them the question cannot be answered here
/// and the subscription is tried.
fn in_the_initial_network_namespace() -> bool {
    match (std::fs::read_link("/proc/self/ns/net"), std::fs::read_link("/proc/1/ns/net")) {
        (Ok(mine), Ok(init)) => mine == init,
        _ => true,
    }
}

fn listen(fd: std::os::fd::OwnedFd, log: &ProcLog) {
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; 64 << 10];
    let mut events = Vec::new();
    loop {
        // SAFETY: recv(2) into a buffer of the given length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS) => {
                    // Said at the first overrun and then at each power of two, not per datagram.
                    let n = log.overruns.fetch_add(1, Relaxed) + 1;
                    if n.is_power_of_two() {
                        log::warn!(
                            "process events: the kernel dropped events {n} times (socket buffer full); \
                             a short-lived process may be attributed to itself rather than its container"
                        );
                    }
                    continue;
                }
                Some(libc::EINTR) => continue,
                _ => {
                    log::warn!(
                        "process events stopped: {e}; short-lived processes are attributed only while they live"
                    );
                    log.running.store(false, Relaxed);
                    return;
                }
            }
        }
        events.clear();
        decode(&buf[..n as usize], &mut events);
        if !events.is_empty() {
            log.record(&events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram as the kernel sends it: nlmsghdr, cn_msg, proc_event.
    fn datagram(what: u32, words: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend(what.to_ne_bytes());
        ev.extend(1u32.to_ne_bytes()); // cpu
        ev.extend(123_456_789u64.to_ne_bytes());
        for w in words {
            ev.extend(w.to_ne_bytes());
        }
        let mut cn = Vec::new();
        cn.extend(CN_IDX_PROC.to_ne_bytes());
        cn.extend(CN_VAL_PROC.to_ne_bytes());
        cn.extend(7u32.to_ne_bytes());
        cn.extend(0u32.to_ne_bytes());
        cn.extend((ev.len() as u16).to_ne_bytes());
        cn.extend(0u16.to_ne_bytes());
        cn.extend(ev);
        let mut nl = Vec::new();
        nl.extend(((NLMSG_HDRLEN + cn.len()) as u32).to_ne_bytes());
        nl.extend((libc::NLMSG_DONE as u16).to_ne_bytes());
        nl.extend(0u16.to_ne_bytes());
        nl.extend(7u32.to_ne_bytes());
        nl.extend(0u32.to_ne_bytes());
        nl.extend(cn);
        while nl.len() % 4 != 0 {
            nl.push(0);
        }
        nl
    }

    fn decoded(bytes: &[u8]) -> Vec<ProcEvent> {
        let mut out = vec![];
        decode(bytes, &mut out);
        out
    }

    #[test]
    fn forks_execs_and_exits_of_processes() {
        assert_eq!(
            decoded(&datagram(PROC_EVENT_FORK, &[100, 100, 200, 200])),
            [ProcEvent::Fork { parent: 100, child: 200 }]
        );
        assert_eq!(decoded(&datagram(PROC_EVENT_EXEC, &[200, 200])), [ProcEvent::Exec { pid: 200 }]);
        // Exit: pid, tgid, exit code, signal, and (5.x+) the parent's pid and tgid.
        assert_eq!(decoded(&datagram(PROC_EVENT_EXIT, &[200, 200, 0, 17, 100, 100])), [ProcEvent::Exit { pid: 200 }]);
        assert_eq!(decoded(&datagram(PROC_EVENT_EXIT, &[200, 200, 0, 17])), [ProcEvent::Exit { pid: 200 }]);
    }

    #[test]
    fn threads_are_left_out() {
        // A thread: the child is not its group's leader; its exit is not the process's.
        assert!(decoded(&datagram(PROC_EVENT_FORK, &[100, 100, 201, 100])).is_empty());
        assert!(decoded(&datagram(PROC_EVENT_EXIT, &[201, 100, 0, 0])).is_empty());
        // A process forked by one of another process's threads: the parent is the group.
        assert_eq!(
            decoded(&datagram(PROC_EVENT_FORK, &[101, 100, 300, 300])),
            [ProcEvent::Fork { parent: 100, child: 300 }]
        );
        // Other kinds (uid change, comm change) and the subscription's acknowledgement.
        assert!(decoded(&datagram(0x4, &[1, 1, 0, 0])).is_empty());
        assert!(decoded(&datagram(0x200, &[1, 1, 0, 0])).is_empty());
        assert!(decoded(&datagram(0, &[0])).is_empty());
    }

    #[test]
    fn several_messages_and_damage() {
        let mut two = datagram(PROC_EVENT_FORK, &[1, 1, 2, 2]);
        two.extend(datagram(PROC_EVENT_EXIT, &[2, 2, 0, 0]));
        assert_eq!(decoded(&two), [ProcEvent::Fork { parent: 1, child: 2 }, ProcEvent::Exit { pid: 2 }]);
        let whole = datagram(PROC_EVENT_FORK, &[1, 1, 2, 2]);
        for cut in 0..whole.len() {
            // Any prefix decodes to nothing or to the event, never panics.
            let d = decoded(&whole[..cut]);
            assert!(d.is_empty(), "cut at {cut}: {d:?}");
        }
        let mut foreign = whole.clone();
        foreign[NLMSG_HDRLEN] = 9; // another connector index
        assert!(decoded(&foreign).is_empty());
        let mut huge = whole;
        huge[0] = 0xff; // a length past the datagram
        assert!(decoded(&huge).is_empty());
    }

    #[test]
    fn the_log_is_bounded_and_hands_exits_over_once() {
        let log = ProcLog::default();
        let forks: Vec<ProcEvent> =
            (0..MAX_FORKS as u32 + 10).map(|c| ProcEvent::Fork { parent: 1, child: c + 2 }).collect();
        log.record(&forks);
        assert_eq!(log.parent(2), None, "the oldest went first");
        assert_eq!(log.parent(MAX_FORKS as u32 + 11), Some(1));
        log.record(&[ProcEvent::Exit { pid: 5 }, ProcEvent::Exit { pid: 6 }]);
        let mut exits = vec![];
        log.take_exits(&mut exits);
        assert_eq!(exits, [5, 6]);
        exits.clear();
        log.take_exits(&mut exits);
        assert!(exits.is_empty());
    }
}
