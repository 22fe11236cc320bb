//! perf_event_open on tracepoints and the mmap'ed ring each CPU's samples arrive in.
//!
//! One ring per CPU: the first tracepoint opened on a CPU owns the mmap and every other tracepoint
//! on that CPU is redirected into it (PERF_EVENT_IOC_SET_OUTPUT), so samples of a CPU come in
//! order from one place.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, Ordering};

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_TID: u64 = 1 << 1;
const PERF_SAMPLE_TIME: u64 = 1 << 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const FLAG_USE_CLOCKID: u64 = 1 << 25;
const FLAG_WATERMARK: u64 = 1 << 14;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;

pub const PERF_RECORD_LOST: u32 = 2;
pub const PERF_RECORD_SAMPLE: u32 = 9;

/// `struct perf_event_attr` up to `config3` (PERF_ATTR_SIZE_VER8). Older kernels accept it as
/// long as the fields they do not know are zero.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved2: u16,
    aux_sample_size: u32,
    reserved3: u32,
    sig_data: u64,
    config3: u64,
}

/// Opens tracepoint `id` on `cpu` for every process, sampling every hit with tid, time
/// (CLOCK_MONOTONIC, the CO-RE tier's clock) and the raw record. `wakeup_bytes` = 0 wakes the
/// reader on every sample (freshest payload reads), otherwise once that many bytes are waiting.
pub fn open_tracepoint(id: u32, cpu: u32, wakeup_bytes: u32) -> io::Result<OwnedFd> {
    let mut attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id as u64,
        sample_period: 1,
        sample_type: PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_RAW,
        flags: FLAG_USE_CLOCKID,
        wakeup: 1,
        clockid: libc::CLOCK_MONOTONIC,
        ..Default::default()
    };
    if wakeup_bytes > 0 {
        attr.flags |= FLAG_WATERMARK;
        attr.wakeup = wakeup_bytes;
    }
    let open = |flags: libc::c_ulong| {
        // SAFETY: attr is a valid perf_event_attr of the size it declares.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                -1 as libc::pid_t,
                cpu as libc::c_int,
                -1 as libc::c_int,
                flags,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    };
    match open(PERF_FLAG_FD_CLOEXEC) {
        // Kernels before 3.14 know no PERF_FLAG_FD_CLOEXEC: open without it, then mark the fd.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let fd = open(0).map_err(|_| e)?;
            // SAFETY: fcntl on an fd we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
            Ok(fd)
        }
        other => other,
    }
}

pub fn redirect_output(fd: &OwnedFd, ring_owner: &OwnedFd) -> io::Result<()> {
    // SAFETY: ioctl on two perf fds we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_OUTPUT, ring_owner.as_raw_fd()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;

/// Installs an ftrace filter expression (e.g. `common_pid != 42`) on a tracepoint event, so the
/// kernel drops non-matching samples before they reach the ring.
pub fn set_filter(fd: &OwnedFd, filter: &str) -> io::Result<()> {
    let c = std::ffi::CString::new(filter).map_err(io::Error::other)?;
    // SAFETY: ioctl on a perf fd we own with a NUL-terminated string that outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_FILTER, c.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn set_enabled(fd: &OwnedFd, on: bool) -> io::Result<()> {
    let req = if on { PERF_EVENT_IOC_ENABLE } else { PERF_EVENT_IOC_DISABLE };
    // SAFETY: ioctl on a perf fd we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The mmap'ed ring of one CPU.
pub struct Ring {
    fd: OwnedFd,
    base: *mut u8,
    map_len: usize,
    data_offset: usize,
    data_size: usize,
    scratch: Vec<u8>,
}

// SAFETY: the mapping is owned by this struct alone and only touched through &mut self.
unsafe impl Send for Ring {}

/// One record read from a ring.
pub enum Record<'a> {
    Sample { pid: u32, tid: u32, time: u64, raw: &'a [u8] },
    Lost { count: u64 },
    Other,
}

impl Ring {
    /// Maps `pages` (a power of two) data pages plus the control page of `fd`.
    pub fn map(fd: OwnedFd, pages: usize) -> io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map_len = page * (pages + 1);
        // SAFETY: mapping a perf fd as documented in perf_event_open(2).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring { fd, base: base.cast(), map_len, data_offset: page, data_size: page * pages, scratch: vec![] })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn head_tail(&self) -> (*const u64, *mut u64) {
        // struct perf_event_mmap_page: data_head at 1024, data_tail at 1032.
        // SAFETY: both offsets are inside the first mapped page.
        unsafe { (self.base.add(1024) as *const u64, self.base.add(1032) as *mut u64) }
    }

    /// Calls `f` for every record waiting in the ring, then frees their space.
    pub fn drain(&mut self, mut f: impl FnMut(Record<'_>)) -> usize {
        let (head_p, tail_p) = self.head_tail();
        // SAFETY: aligned u64s in the control page; the kernel writes head, we write tail.
        let head = unsafe { std::ptr::read_volatile(head_p) };
        fence(Ordering::Acquire);
        let mut tail = unsafe { std::ptr::read_volatile(tail_p) };
        let mut n = 0;
        while tail < head {
            let header = self.copy_out(tail, 8);
            let typ = u32::from_le_bytes(header[0..4].try_into().unwrap());
            let size = u16::from_le_bytes(header[6..8].try_into().unwrap()) as u64;
            if size < 8 {
                // A corrupt header: drop everything rather than spin.
                tail = head;
                break;
            }
            let rec = self.copy_out(tail, size as usize).to_vec();
            f(parse_record(typ, &rec));
            tail += size;
            n += 1;
        }
        fence(Ordering::Release);
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(tail_p, tail) };
        n
    }

    /// `len` bytes at ring position `pos`, joined across the wrap-around.
    fn copy_out(&mut self, pos: u64, len: usize) -> &[u8] {
        let start = (pos % self.data_size as u64) as usize;
        self.scratch.clear();
        let first = len.min(self.data_size - start);
        // SAFETY: start + first <= data_size and len - first < data_size: inside the data area.
        unsafe {
            let data = self.base.add(self.data_offset);
            self.scratch.extend_from_slice(std::slice::from_raw_parts(data.add(start), first));
            self.scratch.extend_from_slice(std::slice::from_raw_parts(data, len - first));
        }
        &self.scratch
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// A record's body: header (8 bytes), then for samples pid, tid, time, raw size, raw bytes.
fn parse_record(typ: u32, rec: &[u8]) -> Record<'_> {
    let u32_at = |o: usize| rec.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| rec.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    match typ {
        PERF_RECORD_SAMPLE => {
            let (Some(pid), Some(tid), Some(time), Some(size)) = (u32_at(8), u32_at(12), u64_at(16), u32_at(24)) else {
                return Record::Other;
            };
            match rec.get(28..28 + size as usize) {
                Some(raw) => Record::Sample { pid, tid, time, raw },
                None => Record::Other,
            }
        }
        // struct { header; u64 id; u64 lost; }
        PERF_RECORD_LOST => Record::Lost { count: u64_at(16).unwrap_or(0) },
        _ => Record::Other,
    }
}

/// CPUs listed in /sys/devices/system/cpu/online ("0-3,5").
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut cpus = vec![];
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    cpus.extend(a..=b.min(a + 4096));
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5\n"), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("0"), vec![0]);
        assert_eq!(parse_cpu_list("garbage,2"), vec![2]);
    }

    #[test]
    fn sample_records_parse_and_short_ones_do_not_panic() {
        let mut rec = vec![0u8; 28];
        rec[0..4].copy_from_slice(&PERF_RECORD_SAMPLE.to_le_bytes());
        rec[8..12].copy_from_slice(&7u32.to_le_bytes());
        rec[12..16].copy_from_slice(&8u32.to_le_bytes());
        rec[16..24].copy_from_slice(&99u64.to_le_bytes());
        rec[24..28].copy_from_slice(&3u32.to_le_bytes());
        rec.extend_from_slice(b"abc");
        match parse_record(PERF_RECORD_SAMPLE, &rec) {
            Record::Sample { pid, tid, time, raw } => assert_eq!((pid, tid, time, raw), (7, 8, 99, &b"abc"[..])),
            _ => panic!("not a sample"),
        }
        for n in 0..rec.len() {
            assert!(matches!(parse_record(PERF_RECORD_SAMPLE, &rec[..n]), Record::Other));
        }
    }
}
