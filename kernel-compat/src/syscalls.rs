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

/// Opens (disabled) and closes a system-wide tracepoint event on CPU 0 with raw samples, exactly
/// what the perf-event tier needs; `Err(errno)` when refused.
pub fn perf_event_open_tracepoint(tracepoint_id: u64) -> Result<(), i32> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: tracepoint_id,
        sample_period: 1,
        sample_type: PERF_SAMPLE_RAW,
        flags: 1, // disabled: the probe must not start collecting.
        ..Default::default()
    };
    let (pid, cpu, group_fd): (libc::pid_t, libc::c_int, libc::c_int) = (-1, 0, -1);
    // SAFETY: `attr` is a live #[repr(C)] perf_event_attr whose `size` field matches its size;
    // the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid,
            cpu,
            group_fd,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    // SAFETY: a successful perf_event_open returns a new fd owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(ret as i32) });
    Ok(())
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
