//! Reads a BPF perf event array (the perf-buffer object's `events` map): one mmap'd ring per CPU,
//! all registered in one epoll instance, which tokio watches as a single readable fd.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use aya::maps::perf::{PerfEvent, PerfEventArrayBuffer};
use aya::maps::{MapData, PerfEventArray};
use tokio::io::unix::AsyncFd;

/// The smallest per-CPU ring: room for a few dozen full data records.
const MIN_RING_BYTES: usize = 256 << 10;

pub struct PerfReader {
    epoll: AsyncFd<OwnedFd>,
    rings: Vec<PerfEventArrayBuffer<MapData>>,
    /// A sample that straddles the end of its ring is joined here before it is decoded.
    joined: Vec<u8>,
    /// Samples the kernel reported it had to drop (PERF_RECORD_LOST), all CPUs, since start.
    pub lost_samples: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PerfReaderError {
    #[error("listing the online CPUs ({0}): {1}")]
    Cpus(&'static str, io::Error),
    #[error("opening the perf buffer of CPU {cpu}: {error}")]
    Open { cpu: u32, error: String },
    #[error("epoll: {0}")]
    Epoll(io::Error),
}

impl PerfReader {
    /// Opens one ring per online CPU, together about `total_bytes` (each a power of two of pages).
    pub fn open(map: aya::maps::Map, total_bytes: usize) -> Result<PerfReader, PerfReaderError> {
        let mut array =
            PerfEventArray::try_from(map).map_err(|e| PerfReaderError::Open { cpu: 0, error: e.to_string() })?;
        let cpus = aya::util::online_cpus().map_err(|(what, e)| PerfReaderError::Cpus(what, e))?;
        let pages = ring_pages(total_bytes, cpus.len(), page_size());
        // SAFETY: plain syscall; the fd is owned right after.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(PerfReaderError::Epoll(io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut rings = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let ring = array.open(cpu, Some(pages)).map_err(|e| PerfReaderError::Open { cpu, error: e.to_string() })?;
            epoll_add(epoll.as_raw_fd(), ring.as_raw_fd(), rings.len() as u64).map_err(PerfReaderError::Epoll)?;
            rings.push(ring);
        }
        // SAFETY: the AsyncFd owns the OwnedFd, whose as_raw_fd always returns the same open fd.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE) }
            .map_err(|e| PerfReaderError::Epoll(e.into()))?;
        Ok(PerfReader { epoll, rings, joined: Vec::new(), lost_samples: 0 })
    }

    /// Waits until a ring has samples, then hands up to `max` of them to `each`.
    pub async fn next_batch(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut guard = self.epoll.readable_mut().await?;
        // Consume the epoll notifications; which CPU woke does not matter, every ring is drained.
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // SAFETY: valid buffer of 16 events; timeout 0 never blocks.
        unsafe { libc::epoll_wait(guard.get_inner().as_raw_fd(), events.as_mut_ptr(), 16, 0) };
        let full = Self::drain(&mut self.rings, &mut self.joined, &mut self.lost_samples, max, &mut each);
        if !full && !self.rings.iter().any(|r| r.readable()) {
            // Drained: wait for the next wake-up.
            guard.clear_ready();
        }
        Ok(())
    }

    /// Hands every sample the rings hold now to `each`, without waiting.
    pub fn drain_all(&mut self, mut each: impl FnMut(&[u8])) {
        Self::drain(&mut self.rings, &mut self.joined, &mut self.lost_samples, usize::MAX, &mut each);
    }

    /// Returns whether `max` stopped the drain before the rings were empty.
    fn drain(
        rings: &mut [PerfEventArrayBuffer<MapData>],
        joined: &mut Vec<u8>,
        lost: &mut u64,
        max: usize,
        each: &mut impl FnMut(&[u8]),
    ) -> bool {
        let mut n = 0;
        for ring in rings.iter_mut() {
            if !ring.readable() {
                continue;
            }
            let flow = ring.try_fold((), |(), ev| {
                match ev {
                    PerfEvent::Sample { head, tail: [] } => each(head),
                    PerfEvent::Sample { head, tail } => {
                        joined.clear();
                        joined.extend_from_slice(head);
                        joined.extend_from_slice(tail);
                        each(joined);
                    }
                    PerfEvent::Lost { count } => *lost += count,
                }
                n += 1;
                if n >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            if flow.is_break() {
                return true;
            }
        }
        false
    }
}

/// Pages per CPU ring: `total_bytes` shared by `cpus`, rounded down to a power of two of pages,
/// at least [`MIN_RING_BYTES`].
pub fn ring_pages(total_bytes: usize, cpus: usize, page: usize) -> usize {
    let per_cpu = (total_bytes / cpus.max(1)).max(MIN_RING_BYTES);
    let pages = (per_cpu / page).max(1);
    1 << (usize::BITS - 1 - pages.leading_zeros())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

fn epoll_add(epoll: RawFd, fd: RawFd, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: data };
    // SAFETY: both fds are open; ev is a valid event.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ring_pages;

    #[test]
    fn rings_share_the_budget_in_powers_of_two_of_pages() {
        // 8 MiB over 2 CPUs: 4 MiB each = 1024 pages.
        assert_eq!(ring_pages(8 << 20, 2, 4096), 1024);
        // 8 MiB over 3 CPUs: 2.67 MiB each, rounded down to 2 MiB = 512 pages.
        assert_eq!(ring_pages(8 << 20, 3, 4096), 512);
        // Never below the floor, even with many CPUs.
        assert_eq!(ring_pages(8 << 20, 256, 4096), 64);
        // 64 KiB pages (arm64): still a power of two.
        assert_eq!(ring_pages(8 << 20, 2, 65536), 64);
    }
}
