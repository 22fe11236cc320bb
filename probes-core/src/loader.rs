//! Loads the CO-RE object with aya, attaches it to the syscall tracepoints, and reads its ring
//! buffer asynchronously. Dropping a [`Capture`] detaches and unloads everything it made.

use std::path::PathBuf;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Btf, Ebpf, EbpfLoader, Endianness};
use tokio::io::unix::AsyncFd;

use crate::decode::decode;
use crate::event::{Event, LossSource};
use crate::preflight::{self, PreflightError};
use crate::wire;

/// The ring-buffer CO-RE object, built from bpf/strata.bpf.c.
pub static CORE_RINGBUF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata.bpf.o"));
/// The same source built for the perf event array transport (kernels before 5.8).
pub static CORE_PERFBUF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata_perfbuf.bpf.o"));
/// "clang" when this build compiled the objects, "committed" when it used bpf/prebuilt/.
pub const OBJECT_ORIGIN: &str = env!("STRATA_BPF_ORIGIN");

/// Every program of the object and the tracepoint (category, name) it attaches to.
pub const PROBES: &[(&str, &str, &str)] = &[
    ("enter_read", "syscalls", "sys_enter_read"),
    ("exit_read", "syscalls", "sys_exit_read"),
    ("enter_write", "syscalls", "sys_enter_write"),
    ("exit_write", "syscalls", "sys_exit_write"),
    ("enter_readv", "syscalls", "sys_enter_readv"),
    ("exit_readv", "syscalls", "sys_exit_readv"),
    ("enter_writev", "syscalls", "sys_enter_writev"),
    ("exit_writev", "syscalls", "sys_exit_writev"),
    ("enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("exit_recvfrom", "syscalls", "sys_exit_recvfrom"),
    ("enter_sendto", "syscalls", "sys_enter_sendto"),
    ("exit_sendto", "syscalls", "sys_exit_sendto"),
    ("enter_recvmsg", "syscalls", "sys_enter_recvmsg"),
    ("exit_recvmsg", "syscalls", "sys_exit_recvmsg"),
    ("enter_sendmsg", "syscalls", "sys_enter_sendmsg"),
    ("exit_sendmsg", "syscalls", "sys_exit_sendmsg"),
    ("enter_recvmmsg", "syscalls", "sys_enter_recvmmsg"),
    ("exit_recvmmsg", "syscalls", "sys_exit_recvmmsg"),
    ("enter_sendmmsg", "syscalls", "sys_enter_sendmmsg"),
    ("exit_sendmmsg", "syscalls", "sys_exit_sendmmsg"),
    ("enter_sendfile64", "syscalls", "sys_enter_sendfile64"),
    ("exit_sendfile64", "syscalls", "sys_exit_sendfile64"),
    ("enter_connect", "syscalls", "sys_enter_connect"),
    ("exit_connect", "syscalls", "sys_exit_connect"),
    ("enter_accept", "syscalls", "sys_enter_accept"),
    ("exit_accept", "syscalls", "sys_exit_accept"),
    ("enter_accept4", "syscalls", "sys_enter_accept4"),
    ("exit_accept4", "syscalls", "sys_exit_accept4"),
    ("enter_close", "syscalls", "sys_enter_close"),
    ("sock_set_state", "sock", "inet_sock_set_state"),
];

/// Where CO-RE relocations get the kernel's type information from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfSource {
    /// The running kernel's own, /sys/kernel/btf/vmlinux.
    Kernel,
    /// A BTF file for this kernel from elsewhere (an archive, or generated on the node).
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// Payload bytes captured per syscall; at most [`wire::MAX_CAPTURE`].
    pub capture_bytes: u32,
    /// Ring buffer size in bytes: a power of two, a multiple of the page size.
    pub ring_bytes: u32,
    pub btf: BtfSource,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig { capture_bytes: 4096, ring_bytes: 8 << 20, btf: BtfSource::Kernel }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("capture size {0} is out of range: give 0..={max} bytes", max = wire::MAX_CAPTURE)]
    CaptureBytes(u32),
    #[error("ring buffer size {0} must be a power of two and at least 4096 bytes")]
    RingBytes(u32),
    #[error(
        "no BTF for this kernel ({path}: {error}). The CO-RE probes cannot be relocated without it, and strata \
         never loads them unrelocated. The kernel needs CONFIG_DEBUG_INFO_BTF=y, or a BTF file for it"
    )]
    NoBtf { path: String, error: String },
    #[error("loading the BPF object failed: {0}")]
    Object(String),
    #[error("the kernel's verifier rejected program {program}: {error}\n--- verifier log ---\n{log}")]
    Verifier { program: String, error: String, log: String },
    #[error("attaching {program} to tracepoint {tracepoint} failed: {error}")]
    Attach { program: String, tracepoint: String, error: String },
    #[error("the BPF object lacks map {0}: the object and this binary disagree")]
    MissingMap(&'static str),
    #[error("ring buffer: {0}")]
    Ring(String),
}

impl CaptureError {
    /// True when the node cannot run this tier (as opposed to a bad argument).
    pub fn is_environment(&self) -> bool {
        !matches!(self, CaptureError::CaptureBytes(_) | CaptureError::RingBytes(_))
    }
}

/// A running CO-RE capture.
pub struct Capture {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    lost_reported: [u64; wire::LOST_SLOTS as usize],
    undecodable: u64,
    undecodable_reported: u64,
    // Programs and links; detached when this is dropped or taken by `detach`.
    ebpf: Option<Ebpf>,
}

impl Capture {
    /// Checks the environment, loads and attaches every program. Must run inside a tokio runtime.
    pub fn start(cfg: &CaptureConfig) -> Result<Capture, CaptureError> {
        if cfg.capture_bytes > wire::MAX_CAPTURE {
            return Err(CaptureError::CaptureBytes(cfg.capture_bytes));
        }
        if !cfg.ring_bytes.is_power_of_two() || cfg.ring_bytes < 4096 {
            return Err(CaptureError::RingBytes(cfg.ring_bytes));
        }
        preflight::check_capabilities()?;
        let events = preflight::ensure_tracefs()?;
        preflight::check_tracepoints(&events, PROBES.iter().map(|(_, c, n)| (*c, *n)))?;
        preflight::raise_memlock_rlimit();

        let btf = load_btf(&cfg.btf)?;
        let self_tgid = std::process::id();
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("capture_bytes", &cfg.capture_bytes, true)
            .override_global("self_tgid", &self_tgid, true)
            .map_max_entries("events", cfg.ring_bytes)
            .load(CORE_RINGBUF_OBJECT)
            .map_err(|e| CaptureError::Object(error_chain(&e)))?;

        for (prog, category, tp) in PROBES {
            let program: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| CaptureError::Object(format!("program {prog} not in object")))?
                .try_into()
                .map_err(|e| CaptureError::Object(format!("{prog}: {e}")))?;
            program.load().map_err(|e| verifier_error(prog, e))?;
            program.attach(category, tp).map_err(|e| CaptureError::Attach {
                program: prog.to_string(),
                tracepoint: format!("{category}:{tp}"),
                error: error_chain(&e),
            })?;
        }

        let ring = RingBuf::try_from(ebpf.take_map("events").ok_or(CaptureError::MissingMap("events"))?)
            .map_err(|e| CaptureError::Ring(e.to_string()))?;
        // SAFETY: the RingBuf owns the map fd for as long as the AsyncFd owns the RingBuf, and
        // its as_raw_fd always returns that fd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| CaptureError::Ring(e.to_string()))?;
        let lost = PerCpuArray::try_from(ebpf.take_map("lost").ok_or(CaptureError::MissingMap("lost"))?)
            .map_err(|e| CaptureError::Ring(e.to_string()))?;
        Ok(Capture {
            ring,
            lost,
            lost_reported: [0; wire::LOST_SLOTS as usize],
            undecodable: 0,
            undecodable_reported: 0,
            ebpf: Some(ebpf),
        })
    }

    /// Waits until records are available, then appends up to `max` decoded events to `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>, max: usize) -> std::io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut n = 0;
        while n < max {
            let Some(item) = ring.next() else { break };
            match decode(&item) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    self.undecodable += 1;
                    log::warn!("undecodable record of {} bytes: {e}", item.len());
                }
            }
            n += 1;
        }
        if n < max {
            // Drained: wait for the next epoll wake-up.
            guard.clear_ready();
        }
        Ok(())
    }

    /// Detaches and unloads every program: no new records are made. What the ring buffer still
    /// holds can be read with [`Capture::drain`].
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    /// Appends every record the ring buffer holds now, without waiting.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    self.undecodable += 1;
                    log::warn!("undecodable record of {} bytes: {e}", item.len());
                }
            }
        }
    }

    /// Loss events for records lost since the last call (kernel buffer full, pairing map full,
    /// undecodable records), stamped `now_ns`.
    pub fn take_losses(&mut self, now_ns: u64) -> Vec<Event> {
        let mut out = vec![];
        for (slot, source) in LossSource::KERNEL_SLOTS.iter().enumerate() {
            let total = match self.lost.get(&(slot as u32), 0) {
                Ok(per_cpu) => per_cpu.iter().sum::<u64>(),
                Err(e) => {
                    log::warn!("reading the loss counters: {e}");
                    continue;
                }
            };
            let delta = total.saturating_sub(self.lost_reported[slot]);
            self.lost_reported[slot] = total;
            if delta > 0 {
                out.push(Event::loss(now_ns, *source, delta));
            }
        }
        let delta = self.undecodable - self.undecodable_reported;
        self.undecodable_reported = self.undecodable;
        if delta > 0 {
            out.push(Event::loss(now_ns, LossSource::Undecodable, delta));
        }
        out
    }
}

fn load_btf(src: &BtfSource) -> Result<Btf, CaptureError> {
    let (path, res) = match src {
        BtfSource::Kernel => ("/sys/kernel/btf/vmlinux".to_string(), Btf::from_sys_fs()),
        BtfSource::File(p) => (p.display().to_string(), Btf::parse_file(p, Endianness::default())),
    };
    res.map_err(|e| CaptureError::NoBtf { path, error: e.to_string() })
}

fn verifier_error(program: &str, e: aya::programs::ProgramError) -> CaptureError {
    match e {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => CaptureError::Verifier {
            program: program.to_string(),
            error: io_error.to_string(),
            log: verifier_log.to_string(),
        },
        other => CaptureError::Object(format!("{program}: {}", error_chain(&other))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
