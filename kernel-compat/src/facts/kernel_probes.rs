//! Feature probes that ask the kernel by doing the thing: create a map of the type, load a
//! minimal program of the type, load a program calling the helper, open the perf event. Modelled
//! on cilium/ebpf's `features` package and libbpf's `libbpf_probe_bpf_*`.

use super::{BpfFeatures, PerfEventFacts};
use crate::probe::{errno_name, Probe};
use crate::syscalls::{self, Insn};

// enum bpf_map_type
const MAP_ARRAY: u32 = 2;
const MAP_HASH: u32 = 1;
const MAP_PERF_EVENT_ARRAY: u32 = 4;
const MAP_PERCPU_ARRAY: u32 = 6;
const MAP_RINGBUF: u32 = 27;

// enum bpf_prog_type
const PROG_KPROBE: u32 = 2;
const PROG_TRACEPOINT: u32 = 5;
const PROG_PERF_EVENT: u32 = 7;
const PROG_RAW_TRACEPOINT: u32 = 17;

// enum bpf_func_id
const HELPER_PROBE_READ: i32 = 4;
const HELPER_GET_CURRENT_TASK: i32 = 35;
const HELPER_PROBE_READ_USER: i32 = 112;
const HELPER_PROBE_READ_USER_STR: i32 = 114;
const HELPER_RINGBUF_OUTPUT: i32 = 130;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}
const MOV64_IMM: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV64_REG: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const ADD64_IMM: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `r0 = 0; exit`: the smallest program every verifier accepts.
const RETURN_ZERO: [Insn; 2] = [insn(MOV64_IMM, 0, 0, 0, 0), insn(EXIT, 0, 0, 0, 0)];

/// Runs every BPF probe. `kernel_code` is `LINUX_VERSION_CODE` of the running kernel, which
/// kprobe programs had to carry before 5.0.
pub fn probe_bpf(kernel_code: u32) -> BpfFeatures {
    let syscall = probe_bpf_syscall();
    // Once bpf() itself is refused, every other answer would be that same refusal: record the
    // features as unknown (not unsupported) so nobody reads "EPERM" as "the kernel lacks it".
    let blocked = match &syscall {
        Probe::Supported => None,
        Probe::Unsupported { errno: Some(e), .. } if e == "ENOSYS" => Some(Probe::Unsupported {
            errno: Some("ENOSYS".into()),
            reason: "bpf() is not implemented (ENOSYS)".into(),
        }),
        other => Some(Probe::unknown(format!("not probed: {}", other.reason()))),
    };
    if let Some(answer) = blocked {
        return BpfFeatures::uniform(syscall, answer);
    }

    let prog_tracepoint = probe_prog_type(PROG_TRACEPOINT, 0);
    let helper = |id| probe_helper(&prog_tracepoint, id);
    BpfFeatures {
        prog_raw_tracepoint: probe_prog_type(PROG_RAW_TRACEPOINT, 0),
        prog_kprobe: probe_prog_type(PROG_KPROBE, kernel_code),
        prog_perf_event: probe_prog_type(PROG_PERF_EVENT, 0),
        map_hash: probe_map(MAP_HASH, 4, 4, 1),
        map_percpu_array: probe_map(MAP_PERCPU_ARRAY, 4, 4, 1),
        map_perf_event_array: probe_map(MAP_PERF_EVENT_ARRAY, 4, 4, 1),
        // A ring buffer has no key or value; its size must be a power-of-2 multiple of the page size.
        map_ringbuf: probe_map(MAP_RINGBUF, 0, 0, syscalls::page_size()),
        helper_probe_read: helper(HELPER_PROBE_READ),
        helper_probe_read_user: helper(HELPER_PROBE_READ_USER),
        helper_probe_read_user_str: helper(HELPER_PROBE_READ_USER_STR),
        helper_get_current_task: helper(HELPER_GET_CURRENT_TASK),
        helper_ringbuf_output: helper(HELPER_RINGBUF_OUTPUT),
        prog_tracepoint,
        syscall,
    }
}

/// Whether minimal tracepoint programs load.
pub fn probe_tracepoint_prog() -> Probe {
    probe_prog_type(PROG_TRACEPOINT, 0)
}

fn probe_bpf_syscall() -> Probe {
    match syscalls::bpf_map_create(MAP_ARRAY, 4, 4, 1) {
        Ok(()) => Probe::Supported,
        Err(errno) => Probe::from_errno(errno, "bpf(BPF_MAP_CREATE) of a 1-entry array map"),
    }
}

fn probe_map(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> Probe {
    match syscalls::bpf_map_create(map_type, key_size, value_size, max_entries) {
        Ok(()) => Probe::Supported,
        // An unknown map type is EINVAL; E2BIG / ENOTSUPP are other "no"s. EPERM is possible
        // on kernels < 5.11 when RLIMIT_MEMLOCK is exhausted: it stays an "unsupported" with its
        // errno so the report shows it.
        Err(errno) => Probe::from_errno(errno, &format!("bpf(BPF_MAP_CREATE) of map type {map_type}")),
    }
}

fn probe_prog_type(prog_type: u32, kern_version: u32) -> Probe {
    match syscalls::bpf_prog_load(prog_type, &RETURN_ZERO, kern_version) {
        Ok(()) => Probe::Supported,
        Err((errno, log)) => {
            let what = format!("bpf(BPF_PROG_LOAD) of program type {prog_type}");
            match first_line(&log) {
                Some(line) => Probe::Unsupported {
                    errno: Some(errno_name(errno)),
                    reason: format!("{what} failed with {}: verifier: {line}", errno_name(errno)),
                },
                None => Probe::from_errno(errno, &what),
            }
        }
    }
}

/// Loads a tracepoint program calling helper `id`. The probe_read family gets valid arguments
/// (8 bytes into the stack from address 0) so a supporting kernel loads it outright; for the
/// others, as in libbpf, only a verifier message naming the helper as unknown or forbidden
/// means "absent": any other rejection (argument types) proves the verifier knows the helper.
pub fn probe_helper(prog_tracepoint: &Probe, id: i32) -> Probe {
    if !prog_tracepoint.is_supported() {
        return Probe::unknown(format!("tracepoint programs cannot be loaded ({})", prog_tracepoint.reason()));
    }
    let mut insns = Vec::with_capacity(8);
    if matches!(id, HELPER_PROBE_READ | HELPER_PROBE_READ_USER | HELPER_PROBE_READ_USER_STR) {
        insns.extend([
            insn(MOV64_REG, 1, 10, 0, 0), // r1 = fp
            insn(ADD64_IMM, 1, 0, 0, -8), // r1 -= 8 (dst on the stack)
            insn(MOV64_IMM, 2, 0, 0, 8),  // r2 = 8 (size)
            insn(MOV64_IMM, 3, 0, 0, 0),  // r3 = NULL (src)
        ]);
    }
    insns.push(insn(CALL, 0, 0, 0, id));
    insns.extend(RETURN_ZERO);
    match syscalls::bpf_prog_load(PROG_TRACEPOINT, &insns, 0) {
        Ok(()) => Probe::Supported,
        Err((errno, log)) => {
            let unknown_helper = ["invalid func ", "unknown func ", "program of this type cannot use helper "]
                .iter()
                .any(|needle| log.contains(needle));
            if unknown_helper {
                Probe::Unsupported {
                    errno: Some(errno_name(errno)),
                    reason: format!("verifier: {}", first_line_containing(&log, "func").unwrap_or("unknown helper")),
                }
            } else if errno == libc::EPERM || (errno == libc::EACCES && log.is_empty()) {
                Probe::unknown(format!("loading the helper probe was refused with {}", errno_name(errno)))
            } else {
                // The verifier knows the helper and objected to something else.
                Probe::Supported
            }
        }
    }
}

fn first_line(log: &str) -> Option<&str> {
    log.lines().map(str::trim).find(|l| !l.is_empty())
}

fn first_line_containing<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log.lines().map(str::trim).find(|l| l.contains(needle))
}

/// `perf_event_open` of a tracepoint, given its id read from tracefs.
pub fn probe_perf_tracepoint(tracepoint: &str, id: u64) -> Probe {
    match syscalls::perf_event_open_tracepoint(id) {
        Ok(()) => Probe::Supported,
        Err(errno) => {
            Probe::from_errno(errno, &format!("perf_event_open of tracepoint {tracepoint} (system-wide, raw samples)"))
        }
    }
}

/// What the perf-event tier uses besides the bare tracepoint open, each asked by calling it.
/// `tracepoint` is one tracepoint's name and id (None: tracefs not mounted, nothing to open);
/// `tracefs` the answer /proc/filesystems gave.
pub fn probe_perf_event(tracepoint: Option<(&str, u64)>, tracefs: Probe) -> PerfEventFacts {
    let open_with = |what: &str, how: syscalls::PerfOpen| match tracepoint {
        None => Probe::unknown("tracefs is not mounted: no tracepoint id to open"),
        Some((name, id)) => match syscalls::perf_event_open_tracepoint_with(id, how) {
            Ok(()) => Probe::Supported,
            Err(errno) => match syscalls::perf_event_open_tracepoint(id) {
                // The open fails with or without the addition: the addition is not what is refused.
                Err(base) => {
                    Probe::unknown(format!("perf_event_open of tracepoint {name} fails itself ({})", errno_name(base)))
                }
                Ok(()) => Probe::from_errno(errno, &format!("perf_event_open of tracepoint {name} with {what}")),
            },
        },
    };
    let sock_diag = {
        let tcp = syscalls::sock_diag_dump(libc::AF_INET as u8, libc::IPPROTO_TCP as u8);
        let udp = syscalls::sock_diag_dump(libc::AF_INET as u8, libc::IPPROTO_UDP as u8);
        match (tcp, udp) {
            (Ok(_), Ok(_)) => Probe::Supported,
            (Err(e), _) => Probe::from_errno(e, "a NETLINK_SOCK_DIAG dump of TCP sockets"),
            (_, Err(e)) => Probe::from_errno(e, "a NETLINK_SOCK_DIAG dump of UDP sockets (udp_diag)"),
        }
    };
    PerfEventFacts {
        tracefs,
        clock_monotonic: open_with(
            "use_clockid (CLOCK_MONOTONIC)",
            syscalls::PerfOpen { clock_monotonic: true, ..Default::default() },
        ),
        fd_cloexec: open_with("PERF_FLAG_FD_CLOEXEC", syscalls::PerfOpen { cloexec: true, ..Default::default() }),
        process_vm_readv: match syscalls::process_vm_readv_self() {
            Ok(()) => Probe::Supported,
            Err(e) => Probe::from_errno(e, "process_vm_readv of the agent's own memory"),
        },
        proc_pid_mem: probe_proc_self_mem(),
        pidfd_open: match syscalls::pidfd_open_self() {
            Ok(()) => Probe::Supported,
            Err(e) => Probe::from_errno(e, "pidfd_open of the agent itself"),
        },
        pidfd_getfd: match syscalls::pidfd_getfd_bad_pidfd() {
            libc::EBADF => Probe::Supported,
            0 => Probe::unknown("pidfd_getfd accepted pidfd -1"),
            e => Probe::from_errno(e, "pidfd_getfd (with a bad pidfd, which a kernel that has it answers EBADF)"),
        },
        sock_diag,
    }
}

/// Reads its own memory through /proc/self/mem (no unsafe: pread through std).
fn probe_proc_self_mem() -> Probe {
    use std::os::unix::fs::FileExt;
    let probe = *b"strata";
    let mut buf = [0u8; 6];
    match std::fs::File::open("/proc/self/mem").and_then(|f| f.read_exact_at(&mut buf, probe.as_ptr() as u64)) {
        Ok(()) if buf == probe => Probe::Supported,
        Ok(()) => Probe::unsupported("/proc/self/mem read back other bytes"),
        Err(e) => match e.raw_os_error() {
            Some(errno) => Probe::from_errno(errno, "reading /proc/self/mem"),
            None => Probe::unsupported(format!("reading /proc/self/mem: {e}")),
        },
    }
}

/// The answer of `/proc/filesystems` about tracefs.
pub fn tracefs_in(filesystems: Option<&str>) -> Probe {
    match filesystems {
        None => Probe::unknown("/proc/filesystems is not readable"),
        Some(text) if super::parse::parse_filesystems(text).iter().any(|f| f == "tracefs") => Probe::Supported,
        Some(_) => Probe::unsupported("/proc/filesystems lists no tracefs"),
    }
}
