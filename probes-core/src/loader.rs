//! Loads a capture object with aya, attaches it to the syscall tracepoints, and reads its ring or
//! perf buffer asynchronously. Dropping a [`Capture`] detaches and unloads everything it made.

use std::path::PathBuf;

use std::collections::HashMap as StdHashMap;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader, Endianness};
use tokio::io::unix::AsyncFd;

use crate::objects::{Buffer, CaptureObject, SyscallHooks};
use crate::perf_buffer::PerfReader;
use crate::preflight::{self, PreflightError};
use strata_event::{wire, Event, LossSource, RecordBatch};

/// Where CO-RE relocations get the kernel's type information from. The loader does not care how
/// a file came to be (an archive, or generated from headers): the plan decided, and the file was
/// checked against this kernel before it got here (see [`crate::btf_check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfSource {
    /// The running kernel's own, /sys/kernel/btf/vmlinux.
    Kernel,
    /// A BTF file for this kernel from elsewhere.
    File(PathBuf),
}

impl BtfSource {
    pub fn describe(&self) -> String {
        match self {
            BtfSource::Kernel => "kernel BTF".to_string(),
            BtfSource::File(p) => format!("BTF {}", p.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// Payload bytes captured per syscall; at most [`wire::MAX_CAPTURE`].
    pub capture_bytes: u32,
    /// Buffer size in bytes: a power of two, a multiple of the page size. The ring buffer is one
    /// buffer this size; perf buffers share it out per CPU.
    pub ring_bytes: u32,
    pub btf: BtfSource,
    pub buffer: Buffer,
    /// Attach the optional TCP state-change program (`sock:inet_sock_set_state`): its events feed
    /// no record, and every state change of every TCP socket pays for it, so it is off unless
    /// asked for (`--tcp-states`).
    pub tcp_states: bool,
    pub hooks: HooksChoice,
}

/// Which syscall hooks to attach (see [`SyscallHooks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HooksChoice {
    /// raw_syscalls where the ring buffer and the kernel's own BTF allow them, else the
    /// per-syscall tracepoints; and the per-syscall tracepoints, with the reason logged, when the
    /// kernel refuses the raw_syscalls programs.
    Auto,
    /// These hooks or an error.
    Only(SyscallHooks),
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            capture_bytes: 4096,
            ring_bytes: 8 << 20,
            btf: BtfSource::Kernel,
            buffer: Buffer::RingBuffer,
            tcp_states: false,
            hooks: HooksChoice::Auto,
        }
    }
}

/// How often the reader drains the buffer when no wake-up came: the ring buffer wakes it only per
/// [`wakeup_bytes`] of records, so a trickle waits at most this long.
pub const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Bytes of records that make the kernel wake the reader: a 32nd of the ring (256 KiB of the
/// default 8 MiB), so the ring is far from full when the reader is woken.
pub fn wakeup_bytes(ring_bytes: u32) -> u32 {
    (ring_bytes / 32).max(4096)
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
    #[error("loading the BPF object {object} failed: {error}")]
    Object { object: &'static str, error: String },
    #[error("the kernel's verifier rejected program {program}: {error}\n--- verifier log ---\n{log}")]
    Verifier { program: String, error: String, log: String },
    #[error("the raw_syscalls hooks need {0}")]
    RawSyscallsUnavailable(&'static str),
    #[error("attaching {program} to tracepoint {tracepoint} failed: {error}")]
    Attach { program: String, tracepoint: String, error: String },
    #[error("the BPF object lacks map {0}: the object and this binary disagree")]
    MissingMap(&'static str),
    #[error("{buffer}: {error}")]
    Buffer { buffer: &'static str, error: String },
}

impl CaptureError {
    /// True when the node cannot run this tier (as opposed to a bad argument).
    pub fn is_environment(&self) -> bool {
        !matches!(self, CaptureError::CaptureBytes(_) | CaptureError::RingBytes(_))
    }
}

/// `struct strata_config` as aya writes it (global data or the config map).
#[repr(transparent)]
#[derive(Clone, Copy)]
struct ProgramConfig(wire::Config);

// SAFETY: plain integers, every bit pattern valid, no padding (asserted by tests/wire_layout.rs).
unsafe impl aya::Pod for ProgramConfig {}

/// `struct strata_lost_key` as aya reads it.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct LostKey(wire::LostKey);

// SAFETY: as above.
unsafe impl aya::Pod for LostKey {}

enum Reader {
    Ring(AsyncFd<RingBuf<MapData>>),
    Perf(PerfReader),
}

/// A running CO-RE capture.
pub struct Capture {
    reader: Reader,
    lost: PerCpuArray<MapData, u64>,
    /// The same losses by process.
    lost_by_tgid: HashMap<MapData, LostKey, u64>,
    /// Losses reported so far per slot, attributed to a process or not.
    lost_reported: [u64; wire::LOST_SLOTS as usize],
    /// The per-process counts as last read.
    tgid_seen: StdHashMap<LostKey, u64>,
    /// Kernel-side emit failures already reported, and perf records the kernel said it dropped:
    /// see [`Capture::take_losses`].
    perf_lost_reported: u64,
    undecodable: u64,
    undecodable_reported: u64,
    /// Optional programs left out, with why.
    pub skipped: Vec<(String, String)>,
    /// Where the programs hook the syscalls.
    pub hooks: SyscallHooks,
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
        preflight::raise_memlock_rlimit();
        let btf = load_btf(&cfg.btf)?;
        let per_syscall = CaptureObject::for_transport(cfg.buffer, SyscallHooks::PerSyscall)
            .expect("every transport has a per-syscall object");
        // The attach point of a tp_btf program is a type of the kernel's own BTF.
        let raw = crate::objects::RAW_SYSCALLS_CAPTURE;
        let raw = match (cfg.buffer, &cfg.btf, preflight::running_release()) {
            (Buffer::PerfBuffer, _, _) => Err("the ring buffer (5.8+), not the perf buffer"),
            (_, BtfSource::File(_), _) => Err("the kernel's own BTF, not a BTF file"),
            (_, _, Some(release)) if release < raw.oldest_kernel => Err("kernel 5.11 or later"),
            _ => Ok(raw),
        };
        match (cfg.hooks, raw) {
            (HooksChoice::Only(SyscallHooks::PerSyscall), _) | (HooksChoice::Auto, Err(_)) => {
                Capture::start_object(cfg, per_syscall, &btf, &events)
            }
            (HooksChoice::Only(SyscallHooks::RawSyscalls), Err(why)) => Err(CaptureError::RawSyscallsUnavailable(why)),
            (HooksChoice::Only(SyscallHooks::RawSyscalls), Ok(raw)) => Capture::start_object(cfg, raw, &btf, &events),
            (HooksChoice::Auto, Ok(raw)) => match Capture::start_object(cfg, raw, &btf, &events) {
                Ok(capture) => Ok(capture),
                Err(e) => {
                    log::warn!(
                        "the kernel refused the raw_syscalls hooks ({}); capturing on the per-syscall tracepoints",
                        first_line(&e.to_string())
                    );
                    Capture::start_object(cfg, per_syscall, &btf, &events)
                }
            },
        }
    }

    fn start_object(
        cfg: &CaptureConfig,
        object: CaptureObject,
        btf: &Btf,
        events: &std::path::Path,
    ) -> Result<Capture, CaptureError> {
        if object.hooks == SyscallHooks::PerSyscall {
            preflight::check_tracepoints(events, crate::objects::required_tracepoints())?;
        }
        let config = ProgramConfig(wire::Config {
            capture_bytes: cfg.capture_bytes,
            self_tgid: std::process::id(),
            wakeup_bytes: wakeup_bytes(cfg.ring_bytes),
            _pad: 0,
        });
        let mut loader = EbpfLoader::new();
        loader.btf(Some(btf));
        if cfg.buffer == Buffer::RingBuffer {
            loader.override_global("strata_cfg", &config, true).map_max_entries("events", cfg.ring_bytes);
        }
        let mut ebpf = loader
            .load(object.bytes)
            .map_err(|e| CaptureError::Object { object: object.file, error: error_chain(&e) })?;
        if cfg.buffer == Buffer::PerfBuffer {
            // Before any program runs: a zeroed configuration would trace the agent itself.
            let map = ebpf.map_mut("config_map").ok_or(CaptureError::MissingMap("config_map"))?;
            let mut array: Array<_, ProgramConfig> =
                Array::try_from(map).map_err(|e| CaptureError::Object { object: object.file, error: e.to_string() })?;
            array
                .set(0, config, 0)
                .map_err(|e| CaptureError::Object { object: object.file, error: format!("writing config_map: {e}") })?;
        }

        let mut skipped = Vec::new();
        for probe in object.probes().iter().filter(|p| cfg.tcp_states || p.program != "sock_set_state") {
            let Some(program) = ebpf.program_mut(probe.program) else {
                if probe.optional {
                    skipped.push((probe.program.to_string(), format!("not in {}", object.file)));
                    continue;
                }
                return Err(CaptureError::Object {
                    object: object.file,
                    error: format!("program {} not in object", probe.program),
                });
            };
            if probe.optional && !events.join(probe.category).join(probe.tracepoint).is_dir() {
                skipped.push((
                    probe.program.to_string(),
                    format!("tracepoint {}:{} missing from this kernel", probe.category, probe.tracepoint),
                ));
                continue;
            }
            let attach_error = |e: aya::programs::ProgramError| CaptureError::Attach {
                program: probe.program.to_string(),
                tracepoint: format!("{}:{}", probe.category, probe.tracepoint),
                error: error_chain(&e),
            };
            let attached = if probe.category == "raw_syscalls" {
                let program: &mut BtfTracePoint = program.try_into().map_err(|e| CaptureError::Object {
                    object: object.file,
                    error: format!("{}: {e}", probe.program),
                })?;
                program
                    .load(probe.tracepoint, btf)
                    .map_err(|e| verifier_error(probe.program, e))
                    .and_then(|()| program.attach().map(|_| ()).map_err(attach_error))
            } else {
                let program: &mut TracePoint = program.try_into().map_err(|e| CaptureError::Object {
                    object: object.file,
                    error: format!("{}: {e}", probe.program),
                })?;
                program
                    .load()
                    .map_err(|e| verifier_error(probe.program, e))
                    .and_then(|()| program.attach(probe.category, probe.tracepoint).map(|_| ()).map_err(attach_error))
            };
            match attached {
                Ok(()) => {}
                Err(e) if probe.optional => skipped.push((probe.program.to_string(), first_line(&e.to_string()))),
                Err(e) => return Err(e),
            }
        }
        for (program, why) in &skipped {
            log::info!("optional program {program} left out: {why}");
        }

        let events_map = ebpf.take_map("events").ok_or(CaptureError::MissingMap("events"))?;
        let reader = match cfg.buffer {
            Buffer::RingBuffer => {
                let ring = RingBuf::try_from(events_map)
                    .map_err(|e| CaptureError::Buffer { buffer: "ring buffer", error: e.to_string() })?;
                // SAFETY: the RingBuf owns the map fd for as long as the AsyncFd owns the RingBuf,
                // and its as_raw_fd always returns that fd.
                let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                    .map_err(|e| CaptureError::Buffer { buffer: "ring buffer", error: e.to_string() })?;
                Reader::Ring(ring)
            }
            Buffer::PerfBuffer => Reader::Perf(
                PerfReader::open(events_map, cfg.ring_bytes as usize)
                    .map_err(|e| CaptureError::Buffer { buffer: "perf buffer", error: e.to_string() })?,
            ),
        };
        let lost = PerCpuArray::try_from(ebpf.take_map("lost").ok_or(CaptureError::MissingMap("lost"))?)
            .map_err(|e| CaptureError::Buffer { buffer: "lost counters", error: e.to_string() })?;
        let lost_by_tgid =
            HashMap::try_from(ebpf.take_map("lost_by_tgid").ok_or(CaptureError::MissingMap("lost_by_tgid"))?)
                .map_err(|e| CaptureError::Buffer { buffer: "lost counters", error: e.to_string() })?;
        Ok(Capture {
            reader,
            lost,
            lost_by_tgid,
            lost_reported: [0; wire::LOST_SLOTS as usize],
            tgid_seen: StdHashMap::new(),
            perf_lost_reported: 0,
            undecodable: 0,
            undecodable_reported: 0,
            skipped,
            hooks: object.hooks,
            ebpf: Some(ebpf),
        })
    }

    /// Waits until records are available, then appends up to `max` decoded events to `out`.
    /// Records are copied out of the kernel's buffer once, into one batch buffer, and decoded as
    /// slices of it: no allocation per event.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>, max: usize) -> std::io::Result<()> {
        let mut batch = RecordBatch::with_capacity(RecordBatch::FIRST_BYTES);
        match &mut self.reader {
            Reader::Ring(ring) => match tokio::time::timeout(POLL_EVERY, ring.readable_mut()).await {
                Ok(guard) => {
                    let mut guard = guard?;
                    let ring = guard.get_inner_mut();
                    while batch.len() < max {
                        let Some(item) = ring.next() else { break };
                        batch.push(&item);
                    }
                    if batch.len() < max {
                        // Drained: wait for the next wake-up (or the timer).
                        guard.clear_ready();
                    }
                }
                // No wake-up: records below the wake-up threshold wait in the ring.
                Err(_) => {
                    let ring = ring.get_mut();
                    while batch.len() < max {
                        let Some(item) = ring.next() else { break };
                        batch.push(&item);
                    }
                }
            },
            Reader::Perf(perf) => perf.next_batch(max, |bytes| batch.push(bytes)).await?,
        }
        self.decode(batch, out);
        Ok(())
    }

    /// Detaches and unloads every program: no new records are made. What the buffers still hold
    /// can be read with [`Capture::drain`].
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    /// Appends every record the buffers hold now, without waiting.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        let mut batch = RecordBatch::with_capacity(RecordBatch::FIRST_BYTES);
        match &mut self.reader {
            Reader::Ring(ring) => {
                let ring = ring.get_mut();
                while let Some(item) = ring.next() {
                    batch.push(&item);
                }
            }
            Reader::Perf(perf) => perf.drain_all(|bytes| batch.push(bytes)),
        }
        self.decode(batch, out);
    }

    fn decode(&mut self, batch: RecordBatch, out: &mut Vec<Event>) {
        batch.decode_counting(out, &mut self.undecodable);
    }

    /// Loss events for records lost since the last call (kernel buffer full, pairing map full,
    /// messages beyond the per-call limit, undecodable records), stamped `now_ns`: by process where
    /// the kernel knew it (the event's pid), the rest with pid 0.
    pub fn take_losses(&mut self, now_ns: u64) -> Vec<Event> {
        let mut out = vec![];
        // Per process first: the programs count the global slot before the process's, so every
        // per-process count read here is already in the global counts read after.
        let mut attributed = [0u64; wire::LOST_SLOTS as usize];
        // Only the entries the map still holds are remembered: the table stays as small as it.
        let previous = std::mem::take(&mut self.tgid_seen);
        for entry in self.lost_by_tgid.iter() {
            let Ok((key, value)) = entry else { continue };
            let slot = key.0.slot as usize;
            let Some(source) = LossSource::KERNEL_SLOTS.get(slot) else { continue };
            self.tgid_seen.insert(key, value);
            let seen = previous.get(&key).copied().unwrap_or(0);
            // An entry the LRU evicted and made again starts from zero.
            let delta = if value >= seen { value - seen } else { value };
            if delta > 0 {
                attributed[slot] += delta;
                let mut ev = Event::loss(now_ns, *source, delta);
                ev.pid = key.0.tgid;
                out.push(ev);
            }
        }
        let mut emit_failures = 0;
        for (slot, source) in LossSource::KERNEL_SLOTS.iter().enumerate() {
            let total = match self.lost.get(&(slot as u32), 0) {
                Ok(per_cpu) => per_cpu.iter().sum::<u64>(),
                Err(e) => {
                    log::warn!("reading the loss counters: {e}");
                    continue;
                }
            };
            if source.is_buffer_full() {
                emit_failures += total;
            }
            self.lost_reported[slot] += attributed[slot];
            let unattributed = total.saturating_sub(self.lost_reported[slot]);
            self.lost_reported[slot] = self.lost_reported[slot].max(total);
            if unattributed > 0 {
                out.push(Event::loss(now_ns, *source, unattributed));
            }
        }
        // A full perf buffer is seen twice where the kernel both fails the program's
        // bpf_perf_event_output (counted above, by kind) and later writes PERF_RECORD_LOST. Kernels
        // whose helper does not report the failure leave only the second: report what the kernel
        // dropped beyond what the programs counted, so nothing is counted twice or missed.
        if let Reader::Perf(perf) = &self.reader {
            let unexplained = perf.lost_samples.saturating_sub(emit_failures);
            let delta = unexplained.saturating_sub(self.perf_lost_reported);
            self.perf_lost_reported = self.perf_lost_reported.max(unexplained);
            if delta > 0 {
                out.push(Event::loss(now_ns, LossSource::KernelPerfBuffer, delta));
            }
        }
        let delta = self.undecodable - self.undecodable_reported;
        self.undecodable_reported = self.undecodable;
        if delta > 0 {
            out.push(Event::loss(now_ns, LossSource::Undecodable, delta));
        }
        out
    }

    /// The loaded programs' kernel ids and names (for run-time statistics).
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        let Some(ebpf) = &self.ebpf else { return vec![] };
        ebpf.programs().filter_map(|(name, p)| p.info().ok().map(|i| (name.to_string(), i.id()))).collect()
    }
}

/// Reads the BTF the relocations use.
pub fn load_btf(src: &BtfSource) -> Result<Btf, CaptureError> {
    let (path, res) = match src {
        BtfSource::Kernel => ("/sys/kernel/btf/vmlinux".to_string(), Btf::from_sys_fs()),
        BtfSource::File(p) => (p.display().to_string(), Btf::parse_file(p, Endianness::default())),
    };
    res.map_err(|e| CaptureError::NoBtf { path, error: e.to_string() })
}

pub(crate) fn verifier_error(program: &str, e: aya::programs::ProgramError) -> CaptureError {
    match e {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => CaptureError::Verifier {
            program: program.to_string(),
            error: io_error.to_string(),
            log: verifier_log.to_string(),
        },
        other => {
            CaptureError::Object { object: "capture object", error: format!("{program}: {}", error_chain(&other)) }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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
