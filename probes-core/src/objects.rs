//! The compiled BPF objects this build carries, and what each of their programs attaches to.
//!
//! One C source (bpf/strata.bpf.c) builds three capture objects. Two differ only in what old
//! kernels lack (bpf/variant.h): the ring-buffer object for 5.8+, and the perf-buffer object for
//! 4.14+; both hook each socket syscall's own tracepoints and relocate against any BTF (the
//! kernel's, an archive's, one generated from headers). The third, the raw-syscalls object, is the
//! ring-buffer object hooked on raw_syscalls with BTF-typed programs instead: cheaper per captured
//! call, but only where the kernel has its own BTF. bpf/btf_check.bpf.c proves a BTF right for the
//! running kernel (see [`crate::btf_check`]).

/// The ring-buffer CO-RE object (kernels 5.8+).
pub static RINGBUF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata.bpf.o"));
/// The same source built for the perf event array transport (kernels 4.14+).
pub static PERFBUF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata_perfbuf.bpf.o"));
/// The ring-buffer object hooked on raw_syscalls (tp_btf; the kernel's own BTF).
pub static RAW_SYSCALLS_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata_raw.bpf.o"));
/// The BTF check program.
pub static BTF_CHECK_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/btf_check.bpf.o"));
/// The raw_syscalls hooks with programs that return at once (see [`crate::hooks_floor`]).
pub static HOOKS_FLOOR_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hooks_floor.bpf.o"));
/// "clang" when this build compiled the objects, "committed" when it used bpf/prebuilt/.
pub const OBJECT_ORIGIN: &str = env!("STRATA_BPF_ORIGIN");

/// How records travel from the probes to the agent: which of the two capture objects is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// BPF ring buffer (5.8+): one buffer shared by all CPUs, ordered.
    RingBuffer,
    /// BPF perf event array (4.3+; the probes need 4.14): one buffer per CPU.
    PerfBuffer,
}

impl Buffer {
    pub fn name(self) -> &'static str {
        match self {
            Buffer::RingBuffer => "ring buffer",
            Buffer::PerfBuffer => "perf buffer",
        }
    }
}

/// Where the probes hook the socket syscalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyscallHooks {
    /// Each socket syscall's own tracepoints, `syscalls:sys_enter_read` and so on (4.14+, any
    /// BTF). The kernel formats a trace record of the arguments before each program runs.
    PerSyscall,
    /// One BTF-typed program per direction on `raw_syscalls:sys_enter`/`sys_exit` (tp_btf),
    /// given the registers as they are. It runs for every syscall of the node and returns at once
    /// for all but the socket ones; it needs the kernel's own BTF and 5.11.
    RawSyscalls,
}

impl SyscallHooks {
    pub fn name(self) -> &'static str {
        match self {
            SyscallHooks::PerSyscall => "per-syscall tracepoints",
            SyscallHooks::RawSyscalls => "raw_syscalls (tp_btf)",
        }
    }
}

/// A capture object: its bytes, and the oldest kernel its programs are written for.
#[derive(Clone, Copy, Debug)]
pub struct CaptureObject {
    pub file: &'static str,
    pub bytes: &'static [u8],
    pub buffer: Buffer,
    pub hooks: SyscallHooks,
    /// The oldest kernel (major, minor) this object claims to load on; `object_check` holds every
    /// program of it to the rules of that kernel.
    pub oldest_kernel: (u32, u32),
}

/// The objects that relocate against any BTF: what archives and generated BTFs are checked for.
pub const CAPTURE_OBJECTS: [CaptureObject; 2] = [
    CaptureObject {
        file: "strata.bpf.o",
        bytes: RINGBUF_OBJECT,
        buffer: Buffer::RingBuffer,
        hooks: SyscallHooks::PerSyscall,
        oldest_kernel: (5, 8),
    },
    CaptureObject {
        file: "strata_perfbuf.bpf.o",
        bytes: PERFBUF_OBJECT,
        buffer: Buffer::PerfBuffer,
        hooks: SyscallHooks::PerSyscall,
        oldest_kernel: (4, 14),
    },
];

/// The raw-syscalls object: ring buffer, bpf_get_current_task_btf (5.11+), only with the
/// kernel's own BTF.
pub const RAW_SYSCALLS_CAPTURE: CaptureObject = CaptureObject {
    file: "strata_raw.bpf.o",
    bytes: RAW_SYSCALLS_OBJECT,
    buffer: Buffer::RingBuffer,
    hooks: SyscallHooks::RawSyscalls,
    oldest_kernel: (5, 11),
};

/// Every capture object this build carries.
pub const ALL_CAPTURE_OBJECTS: [CaptureObject; 3] = [CAPTURE_OBJECTS[0], CAPTURE_OBJECTS[1], RAW_SYSCALLS_CAPTURE];

impl CaptureObject {
    /// The object for a transport and hooks; None for raw_syscalls over the perf buffer, which no
    /// object offers (kernels without a ring buffer mostly lack BTF too).
    pub fn for_transport(buffer: Buffer, hooks: SyscallHooks) -> Option<CaptureObject> {
        match (buffer, hooks) {
            (Buffer::RingBuffer, SyscallHooks::PerSyscall) => Some(CAPTURE_OBJECTS[0]),
            (Buffer::PerfBuffer, SyscallHooks::PerSyscall) => Some(CAPTURE_OBJECTS[1]),
            (Buffer::RingBuffer, SyscallHooks::RawSyscalls) => Some(RAW_SYSCALLS_CAPTURE),
            (Buffer::PerfBuffer, SyscallHooks::RawSyscalls) => None,
        }
    }

    /// The programs the loader attaches from this object.
    pub fn probes(&self) -> &'static [Probe] {
        match self.hooks {
            SyscallHooks::PerSyscall => PROBES,
            SyscallHooks::RawSyscalls => RAW_PROBES,
        }
    }
}

/// A program of the capture objects and the tracepoint it attaches to (for a tp_btf program, the
/// category is `raw_syscalls` and the tracepoint the name its BTF type is found by).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub program: &'static str,
    pub category: &'static str,
    pub tracepoint: &'static str,
    /// Capture works without it: the loader skips it where the kernel lacks its tracepoint or the
    /// BTF lacks its types, and says so.
    pub optional: bool,
}

const fn required(program: &'static str, tracepoint: &'static str) -> Probe {
    Probe { program, category: "syscalls", tracepoint, optional: false }
}

/// Every program of the capture objects. The perf-buffer object has all but the optional ones.
pub const PROBES: &[Probe] = &[
    required("enter_read", "sys_enter_read"),
    required("exit_read", "sys_exit_read"),
    required("enter_write", "sys_enter_write"),
    required("exit_write", "sys_exit_write"),
    required("enter_readv", "sys_enter_readv"),
    required("exit_readv", "sys_exit_readv"),
    required("enter_writev", "sys_enter_writev"),
    required("exit_writev", "sys_exit_writev"),
    required("enter_recvfrom", "sys_enter_recvfrom"),
    required("exit_recvfrom", "sys_exit_recvfrom"),
    required("enter_sendto", "sys_enter_sendto"),
    required("exit_sendto", "sys_exit_sendto"),
    required("enter_recvmsg", "sys_enter_recvmsg"),
    required("exit_recvmsg", "sys_exit_recvmsg"),
    required("enter_sendmsg", "sys_enter_sendmsg"),
    required("exit_sendmsg", "sys_exit_sendmsg"),
    required("enter_recvmmsg", "sys_enter_recvmmsg"),
    required("exit_recvmmsg", "sys_exit_recvmmsg"),
    required("enter_sendmmsg", "sys_enter_sendmmsg"),
    required("exit_sendmmsg", "sys_exit_sendmmsg"),
    required("enter_sendfile64", "sys_enter_sendfile64"),
    required("exit_sendfile64", "sys_exit_sendfile64"),
    required("enter_connect", "sys_enter_connect"),
    required("exit_connect", "sys_exit_connect"),
    required("enter_accept", "sys_enter_accept"),
    required("exit_accept", "sys_exit_accept"),
    required("enter_accept4", "sys_enter_accept4"),
    required("exit_accept4", "sys_exit_accept4"),
    required("enter_close", "sys_enter_close"),
    // TCP state changes: 4.16+ (sock:inet_sock_set_state), ring-buffer object only. The pipeline
    // does not need them, so kernels and BTFs without them still capture fully.
    Probe { program: "sock_set_state", category: "sock", tracepoint: "inet_sock_set_state", optional: true },
];

/// The programs of the raw-syscalls object: two carry every socket syscall.
pub const RAW_PROBES: &[Probe] = &[
    Probe { program: "raw_sys_enter", category: "raw_syscalls", tracepoint: "sys_enter", optional: false },
    Probe { program: "raw_sys_exit", category: "raw_syscalls", tracepoint: "sys_exit", optional: false },
    Probe { program: "sock_set_state", category: "sock", tracepoint: "inet_sock_set_state", optional: true },
];

/// The tracepoints capture cannot do without.
pub fn required_tracepoints() -> impl Iterator<Item = (&'static str, &'static str)> {
    PROBES.iter().filter(|p| !p.optional).map(|p| (p.category, p.tracepoint))
}
