//! The kernel-module tier as a capture source: load the module (removing one a crashed agent left
//! behind), check its ABI, map its rings, start it, then read records as the BPF tiers do. Dropping
//! the capture stops the probes, unmaps, closes the device and unloads the module, so nothing stays
//! loaded after strata exits; every failure on the way in unloads it too.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_event::batch::RecordBatch;
use strata_event::wire::LOST_SLOTS;
use strata_event::{Event, LossSource};
use tokio::io::unix::AsyncFd;

use crate::abi;
use crate::device::{Device, DeviceError, Rings};
use crate::module::{self, ModuleError};
use crate::ring;

/// How often the reader looks at the rings when no wake-up came: records below the wake-up
/// threshold wait at most this long (as on the BPF ring buffer).
const POLL_EVERY: Duration = Duration::from_millis(10);
/// Per-CPU ring bounds (the module rounds up to a power of two).
const MIN_RING: u32 = 64 << 10;
const MAX_RING: u32 = 64 << 20;

#[derive(Clone, Debug)]
pub struct KmodConfig {
    /// The module to load (built for this kernel: see [`crate::kbuild`]).
    pub module: PathBuf,
    pub capture_bytes: u32,
    /// Kernel buffer bytes in all, shared out across the CPUs' rings.
    pub ring_bytes: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(
        "a {name} module is loaded and in use (another strata is capturing with it): stop that agent, or run \
         another tier",
        name = crate::source::MODULE_NAME
    )]
    InUse,
    #[error("the loaded module speaks ABI {got}, this strata {want}: it was built from other sources")]
    Abi { got: u32, want: u32 },
    #[error("watching the module's device: {0}")]
    Poll(std::io::Error),
}

impl KmodError {
    /// True when the node cannot run this tier (as opposed to a bug or a bad argument).
    pub fn is_environment(&self) -> bool {
        true
    }
}

/// The device's fd, for the async reactor (the Device keeps ownership).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

pub struct KmodCapture {
    // Field order is drop order: unmap, stop watching, close the device, then unload.
    rings: Rings,
    watch: AsyncFd<Fd>,
    device: Device,
    _unload: UnloadOnDrop,
    detached: bool,
    lost_reported: [u64; LOST_SLOTS as usize],
    undecodable: u64,
    undecodable_reported: u64,
}

impl KmodCapture {
    /// Loads and starts the module. Needs a tokio runtime (the device is watched by its reactor).
    pub fn start(cfg: &KmodConfig) -> Result<KmodCapture, KmodError> {
        if module::is_loaded() {
            // A module nobody uses is one a crashed agent left: ours replaces it. One in use is
            // another agent's, and stays.
            match module::unload() {
                Ok(()) => log::warn!(
                    "removed a {} module left loaded (by an agent that crashed?)",
                    crate::source::MODULE_NAME
                ),
                Err(ModuleError::Unload { errno, .. }) if errno == libc::EBUSY || errno == libc::EWOULDBLOCK => {
                    return Err(KmodError::InUse)
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The module gives every possible CPU a ring (nr_cpu_ids), whatever this process's CPU
        // quota: divide by those, or a pod limited to one CPU on a 64-CPU node maps 64 full rings.
        let ncpus = possible_cpus().unwrap_or(1);
        let per_cpu = (cfg.ring_bytes / ncpus).clamp(MIN_RING, MAX_RING);
        module::load(&cfg.module, &format!("ring_kib={}", per_cpu / 1024))?;
        Self::open(cfg).inspect_err(|_| {
            if let Err(e) = module::unload() {
                log::warn!("{e}");
            }
        })
    }

    fn open(cfg: &KmodConfig) -> Result<KmodCapture, KmodError> {
        let device = Device::open(Duration::from_secs(5))?;
        let info = device.info()?;
        if info.abi != abi::ABI {
            return Err(KmodError::Abi { got: info.abi, want: abi::ABI });
        }
        let rings = device.map(&info)?;
        // SAFETY: the fd stays open while registered: `watch` drops before `device` (field order).
        let watch = unsafe { AsyncFd::register_with_interest(Fd(device.raw_fd()), tokio::io::Interest::READABLE) }
            .map_err(|e| KmodError::Poll(e.into()))?;
        device.start(&abi::Start {
            self_tgid: std::process::id(),
            capture_bytes: cfg.capture_bytes,
            // One wake-up per 1/32 of a ring, as on the BPF ring buffer.
            wakeup_bytes: (info.ring_bytes / 32).max(4096),
            _pad: 0,
        })?;
        Ok(KmodCapture {
            rings,
            watch,
            device,
            _unload: UnloadOnDrop,
            detached: false,
            lost_reported: [0; LOST_SLOTS as usize],
            undecodable: 0,
            undecodable_reported: 0,
        })
    }

    /// Waits for records (a wake-up, or at most [`POLL_EVERY`]) and appends up to about `max`.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>, max: usize) -> std::io::Result<()> {
        if let Ok(guard) = tokio::time::timeout(POLL_EVERY, self.watch.readable()).await {
            let mut guard = guard?;
            guard.clear_ready();
        }
        let mut batch = RecordBatch::with_capacity(RecordBatch::FIRST_BYTES);
        self.read(&mut batch, max);
        self.decode(batch, out);
        Ok(())
    }

    /// Appends every record the rings hold now.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        let mut batch = RecordBatch::with_capacity(RecordBatch::FIRST_BYTES);
        self.read(&mut batch, usize::MAX);
        self.decode(batch, out);
    }

    fn read(&mut self, batch: &mut RecordBatch, max: usize) {
        let rings = &self.rings;
        for cpu in 0..rings.ncpus() {
            if batch.len() >= max {
                break;
            }
            let (tail, head) = (rings.tail(cpu), rings.head(cpu));
            let size = rings.ring_bytes() as u64;
            match ring::read_records(size, |o, l| rings.bytes_at(cpu, o, l), tail, head, |r| batch.push(r)) {
                Ok(end) => rings.set_tail(cpu, end),
                Err(e) => {
                    // Cannot happen with this strata's module; if it does, what is there is lost
                    // and said so, and the ring starts over at the module's head.
                    log::warn!("CPU {cpu}: {e}: skipping to the head");
                    self.undecodable += 1;
                    rings.set_tail(cpu, head);
                }
            }
        }
    }

    fn decode(&mut self, batch: RecordBatch, out: &mut Vec<Event>) {
        batch.decode_counting(out, &mut self.undecodable);
    }

    /// Loss events since the last call, by where (the module counts drops per CPU and kind; it
    /// does not know processes apart, so these have pid 0).
    pub fn take_losses(&mut self, now_ns: u64) -> Vec<Event> {
        let mut out = vec![];
        for (slot, source) in LossSource::KERNEL_SLOTS.iter().enumerate() {
            let total: u64 = (0..self.rings.ncpus()).map(|cpu| self.rings.lost(cpu, slot)).sum();
            let delta = total.saturating_sub(self.lost_reported[slot]);
            self.lost_reported[slot] = self.lost_reported[slot].max(total);
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

    /// Stops the module's probes: no record is added after this. The rings stay readable.
    pub fn detach(&mut self) {
        if !self.detached {
            if let Err(e) = self.device.stop() {
                log::warn!("{e}");
            }
            self.detached = true;
        }
    }

    /// The module file this capture loaded.
    pub fn describe(cfg: &KmodConfig) -> String {
        format!("kernel module {} on the raw syscall tracepoints", display(&cfg.module))
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

impl Drop for KmodCapture {
    fn drop(&mut self) {
        // The fields drop after this, in order; the last one unloads the module.
        self.detach();
    }
}

/// Unloads the module when dropped: after the device is closed and its rings unmapped, nothing
/// holds it.
struct UnloadOnDrop;

impl Drop for UnloadOnDrop {
    fn drop(&mut self) {
        for attempt in 0..50 {
            match module::unload() {
                Ok(()) => return,
                Err(ModuleError::Unload { errno, .. }) if errno == libc::ENOENT => return,
                Err(e) if attempt == 49 => log::warn!("{e}: it stays loaded (rmmod {})", crate::source::MODULE_NAME),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// How many CPUs the kernel may ever bring up: `/sys/devices/system/cpu/possible`'s highest + 1
/// (the module sizes by `nr_cpu_ids`, which is the same number).
fn possible_cpus() -> Option<u32> {
    parse_cpu_list(&std::fs::read_to_string("/sys/devices/system/cpu/possible").ok()?)
}

/// "0-63", "0,2-5" → the highest CPU + 1.
fn parse_cpu_list(list: &str) -> Option<u32> {
    let last = list.trim().split(',').filter_map(|r| r.rsplit('-').next()?.trim().parse::<u32>().ok()).max()?;
    Some(last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_give_the_highest_cpu_plus_one() {
        assert_eq!(parse_cpu_list("0-63\n"), Some(64));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(parse_cpu_list(""), None);
    }

    #[test]
    fn this_kernel_has_at_least_as_many_possible_cpus_as_usable_ones() {
        let usable = std::thread::available_parallelism().unwrap().get() as u32;
        assert!(possible_cpus().unwrap() >= usable);
    }
}
