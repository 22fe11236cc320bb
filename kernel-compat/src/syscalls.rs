//! The raw syscalls the probes make: `bpf(2)`, `perf_event_open(2)`, `uname(2)`. Kept to the
//! minimum the probes need (the attr layouts of the oldest kernels we support) so that every
//! `unsafe` block lives here, next to its reasoning.

use std::os::fd::{FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;

/// The `BPF_MAP_CREATE` part of `union bpf_attr` as 3.18 defined it. Later kernels accept a
/// shorter attr and treat the missing tail as zeros, so this layout works from 3.18 to today.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr` up to `prog_flags` (4.12); older kernels accept
/// it as long as the fields they do not know are zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// Creates a map and closes it again; `Err(errno)` when the kernel refuses.
pub fn bpf_map_create(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> Result<(), i32> {
    let attr = MapCreateAttr { map_type, key_size, value_size, max_entries, map_flags: 0 };
    bpf(BPF_MAP_CREATE, &attr).map(drop)
}

/// Loads a program, then closes it. On failure returns the errno and the verifier log (which is
/// how helper probes tell "unknown helper" from other rejections).
pub fn bpf_prog_load(prog_type: u32, insns: &[Insn], kern_version: u32) -> Result<(), (i32, String)> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version,
        prog_flags: 0,
    };
    match bpf(BPF_PROG_LOAD, &attr) {
        Ok(fd) => {
            drop(fd);
            Ok(())
        }
        Err(errno) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err((errno, String::from_utf8_lossy(&log[..end]).into_owned()))
        }
    }
}

fn bpf<A>(cmd: libc::c_long, attr: &A) -> Result<OwnedFd, i32> {
    // SAFETY: `attr` is a live, fully initialized #[repr(C)] struct whose size we pass, so the
    // kernel reads only memory we own. Pointers inside it (instructions, license, log buffer)
    // point into buffers borrowed for the duration of this call; the kernel writes at most
    // `log_size` bytes into the log buffer.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const A, std::mem::size_of::<A>() as u32) };
    if ret < 0 {
        return Err(last_errno());
    }
    // SAFETY: on success bpf() returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER0` (64 bytes, 2.6.31): enough for a
/// tracepoint and accepted by every later kernel.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bitfield; bit 0 = `disabled`.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `perf_event_attr` flag bit: `use_clockid` (4.1), with `clockid` right after `bp_type`.
const FLAG_USE_CLOCKID: u64 = 1 << 25;

/// How a tracepoint probe opens its event: what the perf-event tier adds to the bare open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfOpen {
    /// PERF_FLAG_FD_CLOEXEC (3.14).
    pub cloexec: bool,
    /// Sample times on CLOCK_MONOTONIC (`use_clockid`, 4.1).
    pub clock_monotonic: bool,
}

/// `struct perf_event_attr` up to `clockid` (`PERF_ATTR_SIZE_VER3`, 96 bytes; `clockid` took
/// the padding after `sample_stack_user` in 4.1), for the `use_clockid` probe.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV3 {
    v0: PerfEventAttr,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
}

/// Opens (disabled) and closes a system-wide tracepoint event on CPU 0 with raw samples, exactly
/// what the perf-event tier needs; `Err(errno)` when refused.
pub fn perf_event_open_tracepoint(tracepoint_id: u64) -> Result<(), i32> {
    perf_event_open_tracepoint_with(tracepoint_id, PerfOpen::default())
}

/// The same open with the tier's additions, to tell which of them the kernel refuses.
pub fn perf_event_open_tracepoint_with(tracepoint_id: u64, how: PerfOpen) -> Result<(), i32> {
    let v0 = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: tracepoint_id,
        sample_period: 1,
        sample_type: PERF_SAMPLE_RAW,
        flags: 1, // disabled: the probe must not start collecting.
        ..Default::default()
    };
    let flags = if how.cloexec { PERF_FLAG_FD_CLOEXEC } else { 0 };
    if how.clock_monotonic {
        let attr = PerfEventAttrV3 {
            v0: PerfEventAttr {
                size: std::mem::size_of::<PerfEventAttrV3>() as u32,
                flags: v0.flags | FLAG_USE_CLOCKID,
                ..v0
            },
            clockid: libc::CLOCK_MONOTONIC,
            ..Default::default()
        };
        return perf_event_open(&attr, flags);
    }
    perf_event_open(&v0, flags)
}

fn perf_event_open<A>(attr: &A, flags: libc::c_ulong) -> Result<(), i32> {
    let (pid, cpu, group_fd): (libc::pid_t, libc::c_int, libc::c_int) = (-1, 0, -1);
    // SAFETY: `attr` is a live #[repr(C)] perf_event_attr whose `size` field matches its size;
    // the kernel only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_perf_event_open, attr as *const A, pid, cpu, group_fd, flags) };
    if ret < 0 {
        return Err(last_errno());
    }
    // SAFETY: a successful perf_event_open returns a new fd owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(ret as i32) });
    Ok(())
}

/// `process_vm_readv` of this process's own memory (3.2, CONFIG_CROSS_MEMORY_ATTACH).
pub fn process_vm_readv_self() -> Result<(), i32> {
    let probe = *b"strata";
    let mut buf = [0u8; 6];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: probe.as_ptr() as *mut libc::c_void, iov_len: probe.len() };
    // SAFETY: both iovecs describe live buffers of this process of the lengths given.
    let n = unsafe { libc::process_vm_readv(std::process::id() as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(last_errno());
    }
    if buf != probe {
        return Err(libc::EIO);
    }
    Ok(())
}

/// `pidfd_open` of this process (5.3); the pidfd is closed again.
pub fn pidfd_open_self() -> Result<(), i32> {
    // SAFETY: a raw syscall with plain integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id() as libc::c_int, 0) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a fresh fd nobody else owns.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

/// `pidfd_getfd` (5.6) with pidfd -1: a kernel that has it answers EBADF, one without ENOSYS.
pub fn pidfd_getfd_bad_pidfd() -> i32 {
    // SAFETY: a raw syscall with plain integer arguments, bound to fail.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1 as libc::c_int, 0 as libc::c_int, 0 as libc::c_uint) };
    if ret >= 0 {
        // SAFETY: a kernel that returned an fd for pidfd -1 gave us one nobody else owns.
        drop(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        return 0;
    }
    last_errno()
}

/// One NETLINK_SOCK_DIAG dump (3.3) of the sockets of `family` and `protocol` in this network
/// namespace, read to its end: `Ok(sockets)`, or `Err(errno)` from socket(2) or the kernel's
/// answer (ENOENT: no diag module for that protocol).
pub fn sock_diag_dump(family: u8, protocol: u8) -> Result<usize, i32> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
    // SAFETY: setsockopt with a valid timeval of its size.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    // nlmsghdr (16) + inet_diag_req_v2 (56): SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP,
    // every state.
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&20u16.to_ne_bytes());
    req[6..8].copy_from_slice(&0x301u16.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = family;
    req[17] = protocol;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: sending our own buffer of its length.
    if unsafe { libc::send(raw, req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(last_errno());
    }
    let mut buf = vec![0u8; 32 * 1024];
    let mut sockets = 0;
    loop {
        // SAFETY: receiving into our own buffer of its length.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return Err(if n < 0 { last_errno() } else { libc::EIO });
        }
        let mut off = 0;
        let n = n as usize;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let typ = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if len < 16 || off + len > n {
                return Err(libc::EIO);
            }
            match typ {
                // NLMSG_DONE
                3 => return Ok(sockets),
                // NLMSG_ERROR: a negative errno follows the header.
                2 => {
                    let e =
                        buf.get(off + 16..off + 20).map(|b| i32::from_ne_bytes(b.try_into().unwrap())).unwrap_or(-1);
                    return Err(e.checked_neg().filter(|e| *e > 0).unwrap_or(libc::EIO));
                }
                _ => sockets += 1,
            }
            off += (len + 3) & !3;
        }
    }
}

/// `uname(2)`: (release, version, machine).
pub fn uname() -> Option<(String, String, String)> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((field(&uts.release), field(&uts.version), field(&uts.machine)))
}

/// The system page size (the smallest ring buffer the kernel accepts).
pub fn page_size() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u32
    } else {
        4096
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}
