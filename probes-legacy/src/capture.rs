//! The perf-event tier: syscall tracepoints through perf_event_open, no BPF at all.
//!
//! A reader thread polls every CPU's ring, orders the samples of one pass by time (an enter and its
//! exit may land on different CPUs), reads the pass's payloads ahead, then runs the samples through
//! the [`Tracker`] (the sooner the payload is read, the likelier it is still what moved: resolving
//! a new socket can take a sock_diag dump where the kernel has no pidfd_getfd), and hands batches
//! of events to the async side over a bounded channel. How payloads are read and sockets resolved
//! is asked of the kernel at start ([`LiveHost::probe`]): older kernels get the fallbacks, named in
//! [`PerfEventCapture::access`]. When the channel is full the thread waits and the kernel's rings
//! overrun: those drops come back as PERF_RECORD_LOST and are reported as `perf_ring` loss.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use probes_core::preflight::{self, PreflightError};
use strata_event::{Event, LossSource, Syscall};
use tokio::sync::mpsc;

use crate::format::{read_int, Field, Format};
use crate::memory::{self, Gathered, Memory};
use crate::perf::{self, Record, Ring};
use crate::procfs::{FdLookup, Procfs, SocketInfo};
use crate::sockets::Sockets;
use crate::tracker::{Host, Point, Sample, Tracker};

/// The syscalls traced, as (tracefs name, syscall). Each has a sys_enter_ and a sys_exit_ point.
pub const SYSCALLS: &[(&str, Syscall)] = &[
    ("read", Syscall::Read),
    ("write", Syscall::Write),
    ("readv", Syscall::Readv),
    ("writev", Syscall::Writev),
    ("recvfrom", Syscall::Recvfrom),
    ("sendto", Syscall::Sendto),
    ("recvmsg", Syscall::Recvmsg),
    ("sendmsg", Syscall::Sendmsg),
    ("recvmmsg", Syscall::Recvmmsg),
    ("sendmmsg", Syscall::Sendmmsg),
    ("sendfile64", Syscall::Sendfile),
    ("connect", Syscall::Connect),
    ("accept", Syscall::Accept),
    ("accept4", Syscall::Accept4),
    ("close", Syscall::Close),
];

/// Tracepoints this tier needs, (category, name), for preflight and compat-check.
pub fn required_tracepoints() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = SYSCALLS
        .iter()
        .flat_map(|(n, _)| [format!("sys_enter_{n}"), format!("sys_exit_{n}")])
        .filter(|n| n != "sys_exit_close")
        .map(|n| ("syscalls".to_string(), n))
        .collect();
    v.push(("sched".into(), "sched_process_exit".into()));
    v.push(("sched".into(), "sched_process_exec".into()));
    v
}

#[derive(Clone, Debug)]
pub struct PerfConfig {
    pub capture_bytes: u32,
    /// Data pages per CPU ring (a power of two).
    pub ring_pages: usize,
    /// Run the reader thread SCHED_FIFO: fresher payloads, but a real-time thread on the node.
    pub realtime: bool,
    pub wakeup: Wakeup,
}

/// When the kernel wakes the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// On every sample: payloads are read within about 0.1 ms (with `realtime`), most of them
    /// before the process reuses its buffer; costly under load (a wake-up per syscall).
    PerSample,
    /// When a ring is half full, or at the next 1 ms poll: about as cheap as the CO-RE tier, but
    /// payloads are read up to a millisecond late, after most processes have reused the buffer.
    Batched,
}

impl Default for PerfConfig {
    fn default() -> Self {
        PerfConfig { capture_bytes: 4096, ring_pages: 256, realtime: true, wakeup: Wakeup::PerSample }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(
        "the perf-event tier needs {0}: run as root or grant it (securityContext.capabilities.add). \
         CAP_SYS_PTRACE reads other processes' payloads and fds; CAP_PERFMON (or CAP_SYS_ADMIN before 5.8) \
         opens system-wide tracepoints"
    )]
    Capabilities(String),
    #[error("tracepoint format {path}: {error}")]
    Format { path: String, error: String },
    #[error(
        "perf_event_open of tracepoint {tracepoint} on CPU {cpu} failed: {error}. The kernel needs CONFIG_PERF_EVENTS \
         and CONFIG_FTRACE_SYSCALLS; EACCES means /proc/sys/kernel/perf_event_paranoid forbids it without CAP_PERFMON"
    )]
    Open { tracepoint: String, cpu: u32, error: std::io::Error },
    #[error("mapping the perf ring of CPU {cpu}: {error}")]
    Mmap { cpu: u32, error: std::io::Error },
    #[error("ring pages {0} must be a power of two")]
    RingPages(usize),
    #[error("capture size {0} is out of range: give 0..=8192 bytes")]
    CaptureBytes(u32),
}

impl PerfError {
    pub fn is_environment(&self) -> bool {
        !matches!(self, PerfError::RingPages(_) | PerfError::CaptureBytes(_))
    }
}

/// How a raw sample's tracepoint id maps to what it means.
#[derive(Clone)]
enum PointKind {
    Enter(Syscall, Vec<Field>),
    Exit(Syscall, Field),
    ProcessExit,
    Exec,
}

pub struct PerfEventCapture {
    /// How payloads are read and sockets resolved here (the fallbacks this kernel needed).
    pub access: String,
    rx: mpsc::Receiver<Vec<Event>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    undelivered: Vec<Vec<Event>>,
}

const CAP_SYS_PTRACE: u32 = 19;

fn check_capabilities() -> Result<(), PerfError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(eff) = preflight::parse_cap_eff(&status) else { return Ok(()) };
    let has = |c: u32| eff & (1u64 << c) != 0;
    let mut missing = vec![];
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    if !has(preflight::CAP_PERFMON) && !has(preflight::CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PerfError::Capabilities(missing.join(" and ")))
    }
}

fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit with valid pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn read_format(events: &Path, category: &str, name: &str) -> Result<Format, PerfError> {
    let path = events.join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| PerfError::Format { path: path.display().to_string(), error: e.to_string() })?;
    Format::parse(&text).map_err(|e| PerfError::Format { path: path.display().to_string(), error: e.to_string() })
}

impl PerfEventCapture {
    /// Opens every tracepoint on every online CPU and starts the reader thread. Must run inside a
    /// tokio runtime (for the channel's async side only).
    pub fn start(cfg: &PerfConfig) -> Result<PerfEventCapture, PerfError> {
        if cfg.capture_bytes > strata_event::wire::MAX_CAPTURE {
            return Err(PerfError::CaptureBytes(cfg.capture_bytes));
        }
        if !cfg.ring_pages.is_power_of_two() {
            return Err(PerfError::RingPages(cfg.ring_pages));
        }
        check_capabilities()?;
        let events = preflight::ensure_tracefs()?;
        let required = required_tracepoints();
        preflight::check_tracepoints(&events, required.iter().map(|(c, n)| (c.as_str(), n.as_str())))?;
        raise_nofile_limit();

        let mut kinds: HashMap<u16, PointKind> = HashMap::new();
        for (name, syscall) in SYSCALLS {
            let enter = read_format(&events, "syscalls", &format!("sys_enter_{name}"))?;
            kinds.insert(enter.id as u16, PointKind::Enter(*syscall, enter.syscall_args()));
            if *syscall != Syscall::Close {
                let exit = read_format(&events, "syscalls", &format!("sys_exit_{name}"))?;
                let ret = exit
                    .field("ret")
                    .map_err(|e| PerfError::Format { path: exit.name.clone(), error: e.to_string() })?;
                kinds.insert(exit.id as u16, PointKind::Exit(*syscall, ret.clone()));
            }
        }
        let pexit = read_format(&events, "sched", "sched_process_exit")?;
        kinds.insert(pexit.id as u16, PointKind::ProcessExit);
        let exec = read_format(&events, "sched", "sched_process_exec")?;
        kinds.insert(exec.id as u16, PointKind::Exec);

        let cpus = perf::parse_cpu_list(&std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default());
        let cpus = if cpus.is_empty() { vec![0] } else { cpus };
        let mut rings = vec![];
        let mut others = vec![];
        for cpu in cpus {
            let mut owner: Option<Ring> = None;
            for (&id, _) in kinds.iter() {
                let wakeup_bytes = match cfg.wakeup {
                    Wakeup::PerSample => 0,
                    Wakeup::Batched => (cfg.ring_pages * page_size() / 2) as u32,
                };
                let fd = perf::open_tracepoint(id as u32, cpu, wakeup_bytes).map_err(|error| PerfError::Open {
                    tracepoint: tracepoint_name(&events, id),
                    cpu,
                    error,
                })?;

                match &owner {
                    None => {
                        owner = Some(Ring::map(fd, cfg.ring_pages).map_err(|error| PerfError::Mmap { cpu, error })?)
                    }
                    Some(ring) => {
                        perf::redirect_output(&fd, ring.fd()).map_err(|error| PerfError::Open {
                            tracepoint: tracepoint_name(&events, id),
                            cpu,
                            error,
                        })?;
                        others.push(fd);
                    }
                }
            }
            rings.extend(owner);
        }

        let host = LiveHost::probe();
        let access = host.describe();
        if host.memory.access() != memory::Access::VmReadv || host.sockets.method() != crate::sockets::Method::Pidfd {
            log::info!("perf-event on this kernel: {access}");
        }
        if host.memory.access() == memory::Access::Unavailable {
            log::warn!(
                "perf-event: no process memory can be read ({}): data events carry byte counts only, and each is \
                 counted as perf_payload_unreadable loss",
                host.memory.why.as_deref().unwrap_or("?")
            );
        }
        let (tx, rx) = mpsc::channel(256);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            rings,
            redirected: others,
            kinds,
            tracker: Tracker::new(host, cfg.capture_bytes as usize),
            self_pid: std::process::id(),
            realtime: cfg.realtime,
            lost_ring: 0,
            reported_pending: 0,
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("strata-perf".into())
            .spawn(move || reader.run(tx, stop2))
            .expect("spawn the perf reader thread");
        Ok(PerfEventCapture { access, rx, stop, thread: Some(thread), undelivered: vec![] })
    }

    /// Waits for the next batch of events and appends it (at most `max` is a hint: whole batches).
    pub async fn next_batch(&mut self, out: &mut Vec<Event>, _max: usize) -> std::io::Result<()> {
        match self.rx.recv().await {
            Some(batch) => {
                out.extend(batch);
                Ok(())
            }
            None => Err(std::io::Error::other("the perf reader thread stopped")),
        }
    }

    /// Stops the tracepoints; the reader drains what the rings hold and ends.
    pub fn detach(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Let the reader finish while we keep receiving: it may be blocked on a full channel.
        let mut pending = vec![];
        while let Some(t) = self.thread.as_ref() {
            if t.is_finished() {
                let _ = self.thread.take().unwrap().join();
                break;
            }
            while let Ok(b) = self.rx.try_recv() {
                pending.push(b);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.undelivered = pending;
    }

    /// Everything received but not yet handed out.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        for b in self.undelivered.drain(..) {
            out.extend(b);
        }
        while let Ok(b) = self.rx.try_recv() {
            out.extend(b);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn tracepoint_name(events: &Path, id: u16) -> String {
    // Only for error messages: find the directory whose id file holds `id`.
    for cat in ["syscalls", "sched"] {
        if let Ok(dir) = std::fs::read_dir(events.join(cat)) {
            for e in dir.flatten() {
                if std::fs::read_to_string(e.path().join("id")).ok().and_then(|s| s.trim().parse::<u16>().ok())
                    == Some(id)
                {
                    return format!("{cat}:{}", e.file_name().to_string_lossy());
                }
            }
        }
    }
    format!("id {id}")
}

struct Reader {
    rings: Vec<Ring>,
    redirected: Vec<std::os::fd::OwnedFd>,
    kinds: HashMap<u16, PointKind>,
    tracker: Tracker<LiveHost>,
    self_pid: u32,
    realtime: bool,
    lost_ring: u64,
    reported_pending: u64,
}

const LOSS_REPORT_EVERY: Duration = Duration::from_secs(1);
const POLL_MS: i32 = 1;

impl Reader {
    fn run(mut self, tx: mpsc::Sender<Vec<Event>>, stop: Arc<AtomicBool>) {
        // Payloads and sockets are looked up after the fact: every microsecond the reader waits for
        // a CPU, a short-lived client may exit and take its memory and /proc entries with it. Run
        // ahead of ordinary processes (best effort: needs CAP_SYS_NICE, which root has).
        // SAFETY: plain syscalls on this thread's own id.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            // SCHED_FIFO (the default; can be turned off) cuts the wait from milliseconds to about 0.1 ms on a busy node,
            // at the price of a real-time thread that can hog a CPU under a flood of samples.
            let param = libc::sched_param { sched_priority: 1 };
            let realtime = self.realtime && libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0;
            if !realtime && libc::setpriority(libc::PRIO_PROCESS, tid, -15) != 0 {
                log::debug!("could not raise the perf reader's priority: {}", std::io::Error::last_os_error());
            }
            // This thread's own syscalls (reading /proc and process memory) and the main thread's
            // (writing output) would wake it again and again: drop them in the kernel.
            // common_pid is the thread id. User-space filtering by pid stays as the fallback
            // where the kernel refuses the filter.
            let filter = format!("common_pid != {} && common_pid != {}", self.self_pid, tid);
            for fd in self.rings.iter().map(|r| r.fd()).chain(self.redirected.iter()) {
                if let Err(e) = perf::set_filter(fd, &filter) {
                    log::debug!("tracepoint filter refused ({e}); filtering own samples in user space");
                    break;
                }
            }
        }
        let mut last_loss = Instant::now();
        let mut samples: Vec<Sample> = vec![];
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if stopping {
                for r in &self.rings {
                    let _ = perf::set_enabled(r.fd(), false);
                }
                for fd in &self.redirected {
                    let _ = perf::set_enabled(fd, false);
                }
            } else {
                // Wake-ups for perf samples go through irq_work, which some virtual machines only
                // run at the next timer tick (4 ms at HZ=250): long enough for a short-lived
                // client to exit. Polling every millisecond bounds that wait.
                self.wait(POLL_MS);
            }
            self.collect(&mut samples);
            if log::log_enabled!(log::Level::Trace) && !samples.is_empty() {
                let now = probes_core::loader::monotonic_ns();
                let oldest = samples.iter().map(|s| s.time).min().unwrap_or(now);
                log::trace!(
                    "perf pass: {} samples, oldest {} us old",
                    samples.len(),
                    now.saturating_sub(oldest) / 1000
                );
            }
            let mut out = vec![];
            samples.sort_by_key(|s| s.time);
            self.tracker.prefetch(&samples);
            for s in samples.drain(..) {
                self.tracker.on_sample(s, &mut out);
            }
            self.tracker.end_pass();
            if stopping || last_loss.elapsed() >= LOSS_REPORT_EVERY {
                last_loss = Instant::now();
                out.extend(self.losses());
            }
            if !out.is_empty() && tx.blocking_send(out).is_err() {
                return;
            }
            if stopping {
                return;
            }
        }
    }

    fn wait(&self, timeout_ms: i32) {
        let mut fds: Vec<libc::pollfd> = self
            .rings
            .iter()
            .map(|r| libc::pollfd { fd: r.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    }

    fn collect(&mut self, samples: &mut Vec<Sample>) {
        let kinds = &self.kinds;
        let self_pid = self.self_pid;
        let mut lost = 0;
        for ring in &mut self.rings {
            ring.drain(|rec| match rec {
                Record::Sample { pid, tid, time, raw } => {
                    if pid == self_pid || raw.len() < 2 {
                        return;
                    }
                    let id = u16::from_le_bytes([raw[0], raw[1]]);
                    let point = match kinds.get(&id) {
                        Some(PointKind::Enter(sc, args)) => {
                            let mut a = [0u64; 6];
                            for (i, f) in args.iter().take(6).enumerate() {
                                a[i] = read_int(raw, f).unwrap_or(0) as u64;
                            }
                            Some((*sc, Point::Enter(a)))
                        }
                        Some(PointKind::Exit(sc, ret)) => read_int(raw, ret).map(|r| (*sc, Point::Exit(r))),
                        // The syscall is irrelevant here; Close is a placeholder.
                        Some(PointKind::ProcessExit) => Some((Syscall::Close, Point::ProcessExit)),
                        Some(PointKind::Exec) => Some((Syscall::Close, Point::Exec)),
                        None => None,
                    };
                    if let Some((syscall, point)) = point {
                        samples.push(Sample { pid, tid, time, syscall, point });
                    }
                }
                Record::Lost { count } => lost += count,
                Record::Other => {}
            });
        }
        self.lost_ring += lost;
    }

    fn losses(&mut self) -> Vec<Event> {
        let now = probes_core::loader::monotonic_ns();
        let mut out = vec![];
        let mk = |source, count| Event::loss(now, source, count);
        if self.lost_ring > 0 {
            out.push(mk(LossSource::PerfRing, self.lost_ring));
            self.lost_ring = 0;
        }
        let pending = self.tracker.pending_overflow - self.reported_pending;
        if pending > 0 {
            out.push(mk(LossSource::PerfPending, pending));
            self.reported_pending = self.tracker.pending_overflow;
        }
        // Losses of a process are its own loss events (as the CO-RE tiers attribute theirs).
        let of = |source, pid, count| {
            let mut ev = Event::loss(now, source, count);
            ev.pid = pid;
            ev
        };
        out.extend(self.tracker.unresolved.take().into_iter().map(|(pid, n)| of(LossSource::PerfUnresolved, pid, n)));
        if self.tracker.unreadable_messages > 0 {
            out.push(mk(LossSource::PerfUnreadable, self.tracker.unreadable_messages));
            self.tracker.unreadable_messages = 0;
        }
        out.extend(
            self.tracker
                .unreadable_payloads
                .take()
                .into_iter()
                .map(|(pid, n)| of(LossSource::PerfPayloadUnreadable, pid, n)),
        );
        out
    }
}

/// The live [`Host`]: /proc, sockets asked of the kernel, process memory.
pub struct LiveHost {
    procfs: Procfs,
    sockets: Sockets,
    memory: Memory,
}

impl LiveHost {
    /// Asks the kernel which ways of reading memory and resolving sockets work here.
    pub fn probe() -> LiveHost {
        LiveHost { procfs: Procfs::default(), sockets: Sockets::probe(Procfs::default()), memory: Memory::probe() }
    }

    /// How payloads are read and sockets resolved, and why not better.
    pub fn describe(&self) -> String {
        let memory = match &self.memory.why {
            Some(why) => format!("{} ({why})", self.memory.access().describe()),
            None => self.memory.access().describe().to_string(),
        };
        format!("{}; {memory}", self.sockets.describe())
    }
}

impl Host for LiveHost {
    fn fd(&mut self, pid: u32, fd: i32) -> FdLookup {
        self.procfs.fd(pid, fd)
    }
    fn socket_info(&mut self, pid: u32, fd: i32, inode: u64) -> Option<SocketInfo> {
        self.sockets.info(pid, fd, inode)
    }
    fn read(&mut self, pid: u32, addr: u64, len: usize) -> Vec<u8> {
        self.memory.read(pid, addr, len)
    }
    fn read_iovecs(&mut self, pid: u32, iov: u64, count: u64, budget: usize) -> Gathered {
        self.memory.read_iovecs(pid, iov, count, budget, strata_event::wire::MAX_IOV as usize)
    }
    fn iov_total(&mut self, pid: u32, iov: u64, count: u64) -> Option<u64> {
        self.memory.iov_total(pid, iov, count, strata_event::wire::MAX_IOV as usize)
    }
    fn read_msghdr(&mut self, pid: u32, addr: u64) -> Option<memory::MsgHdr> {
        self.memory.read_msghdr(pid, addr)
    }
    fn read_sockaddr(&mut self, pid: u32, addr: u64) -> Option<SocketAddr> {
        if addr == 0 {
            return None;
        }
        self.memory.read_sockaddr(pid, addr)
    }
    fn alive(&mut self, pid: u32) -> bool {
        self.procfs.alive(pid)
    }
    fn comm(&mut self, pid: u32) -> String {
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(s) => s.trim_end().to_string(),
            Err(e) => {
                log::trace!("comm of {pid}: {e}");
                String::new()
            }
        }
    }
}
