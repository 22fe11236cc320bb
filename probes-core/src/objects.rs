//! The compiled BPF objects this build carries, and what each of their programs attaches to.
//!
//! One C source (bpf/strata.bpf.c) builds two capture objects that differ only in what old kernels
//! lack (bpf/variant.h): the ring-buffer object for 5.8+, and the perf-buffer object for 4.14+.
//! A third, bpf/btf_check.bpf.c, proves a BTF right for the running kernel (see [`crate::btf_check`]).

/// The ring-buffer CO-RE object (kernels 5.8+).
pub static RINGBUF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata.bpf.o"));
/// The same source built for the perf event array transport (kernels 4.14+).
pub static PERFBUF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata_perfbuf.bpf.o"));
/// The BTF check program.
pub static BTF_CHECK_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/btf_check.bpf.o"));
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

/// A capture object: its bytes, and the oldest kernel its programs are written for.
#[derive(Clone, Copy, Debug)]
pub struct CaptureObject {
    pub file: &'static str,
    pub bytes: &'static [u8],
    pub buffer: Buffer,
    /// The oldest kernel (major, minor) this object claims to load on; `object_check` holds every
    /// program of it to the rules of that kernel.
    pub oldest_kernel: (u32, u32),
}

pub const CAPTURE_OBJECTS: [CaptureObject; 2] = [
    CaptureObject { file: "strata.bpf.o", bytes: RINGBUF_OBJECT, buffer: Buffer::RingBuffer, oldest_kernel: (5, 8) },
    CaptureObject {
        file: "strata_perfbuf.bpf.o",
        bytes: PERFBUF_OBJECT,
        buffer: Buffer::PerfBuffer,
        oldest_kernel: (4, 14),
    },
];

impl CaptureObject {
    pub fn for_buffer(buffer: Buffer) -> CaptureObject {
        match buffer {
            Buffer::RingBuffer => CAPTURE_OBJECTS[0],
            Buffer::PerfBuffer => CAPTURE_OBJECTS[1],
        }
    }
}

/// A program of the capture objects and the tracepoint it attaches to.
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

/// The tracepoints capture cannot do without.
pub fn required_tracepoints() -> impl Iterator<Item = (&'static str, &'static str)> {
    PROBES.iter().filter(|p| !p.optional).map(|p| (p.category, p.tracepoint))
}
