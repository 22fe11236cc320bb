//! `/dev/strata`: opening it (making the node where /dev is not the host's, as in a pod), its
//! ioctls, and the mapping of every CPU's ring.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::abi;
use crate::source::MODULE_NAME;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("the module is loaded but its device did not appear (no /dev/{MODULE_NAME}, no /sys/class/misc/{MODULE_NAME}/dev) within {0:?}")]
    Missing(Duration),
    #[error("opening {path}: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("the module's device is in use by another process (another strata capturing?)")]
    Busy,
    #[error("{what} on the module's device: {error}")]
    Ioctl { what: &'static str, error: std::io::Error },
    #[error("mapping the module's rings ({bytes} bytes): {error}")]
    Map { bytes: usize, error: std::io::Error },
    #[error("the module's rings are not what this strata reads: {0}")]
    Layout(String),
}

/// The open device.
pub struct Device {
    fd: OwnedFd,
}

/// Where the node for the device is made when /dev has none (a pod's own /dev).
const PRIVATE_NODE: &str = "/run/strata/strata.dev";

impl Device {
    /// Opens the device, waiting up to `wait` for it to appear after a load.
    pub fn open(wait: Duration) -> Result<Device, DeviceError> {
        let started = Instant::now();
        loop {
            if let Some(path) = node()? {
                return open_path(&path);
            }
            if started.elapsed() > wait {
                return Err(DeviceError::Missing(wait));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn info(&self) -> Result<abi::Info, DeviceError> {
        let mut info = abi::Info::default();
        // SAFETY: the ioctl writes one Info, which `info` is.
        let rc = unsafe { libc::ioctl(self.raw_fd(), abi::IOC_INFO as _, &mut info as *mut abi::Info) };
        if rc != 0 {
            return Err(DeviceError::Ioctl { what: "asking its ABI", error: std::io::Error::last_os_error() });
        }
        Ok(info)
    }

    pub fn start(&self, start: &abi::Start) -> Result<(), DeviceError> {
        // SAFETY: the ioctl reads one Start.
        let rc = unsafe { libc::ioctl(self.raw_fd(), abi::IOC_START as _, start as *const abi::Start) };
        if rc != 0 {
            return Err(DeviceError::Ioctl { what: "starting the capture", error: std::io::Error::last_os_error() });
        }
        Ok(())
    }

    /// Detaches the module's probes: once this returns, no record is added.
    pub fn stop(&self) -> Result<(), DeviceError> {
        // SAFETY: no argument.
        let rc = unsafe { libc::ioctl(self.raw_fd(), abi::IOC_STOP as _, 0) };
        if rc != 0 {
            return Err(DeviceError::Ioctl { what: "stopping the capture", error: std::io::Error::last_os_error() });
        }
        Ok(())
    }

    /// Maps every CPU's ring.
    pub fn map(&self, info: &abi::Info) -> Result<Rings, DeviceError> {
        if !info.ring_bytes.is_power_of_two()
            || info.page_size < std::mem::size_of::<abi::Ctl>() as u32
            || info.ncpus == 0
        {
            return Err(DeviceError::Layout(format!("{info:?}")));
        }
        let stride = info.page_size as usize + info.ring_bytes as usize;
        let bytes = stride * info.ncpus as usize;
        // SAFETY: a fresh shared mapping of the device; the module checks offset and length.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DeviceError::Map { bytes, error: std::io::Error::last_os_error() });
        }
        Ok(Rings {
            base: ptr.cast(),
            bytes,
            stride,
            page: info.page_size as usize,
            ring_bytes: info.ring_bytes as usize,
            ncpus: info.ncpus as usize,
        })
    }
}

/// Where the device node is: /dev's, else one made from sysfs' major:minor. None while neither
/// exists yet.
fn node() -> Result<Option<PathBuf>, DeviceError> {
    let dev = PathBuf::from(format!("/dev/{MODULE_NAME}"));
    if dev.exists() {
        return Ok(Some(dev));
    }
    let Ok(numbers) = std::fs::read_to_string(format!("/sys/class/misc/{MODULE_NAME}/dev")) else { return Ok(None) };
    let Some((major, minor)) = numbers.trim().split_once(':') else { return Ok(None) };
    let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else { return Ok(None) };
    let path = PathBuf::from(PRIVATE_NODE);
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    let _ = std::fs::remove_file(&path);
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mknod reads the NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(major, minor)) };
    if rc != 0 {
        return Err(DeviceError::Open { path: path.display().to_string(), error: std::io::Error::last_os_error() });
    }
    Ok(Some(path))
}

fn open_path(path: &Path) -> Result<Device, DeviceError> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: open reads the NUL-terminated path; the fd returned is ours.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EBUSY) {
            return Err(DeviceError::Busy);
        }
        return Err(DeviceError::Open { path: path.display().to_string(), error });
    }
    // SAFETY: fd is a freshly opened descriptor nobody else owns.
    Ok(Device { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
}

/// Every CPU's ring, mapped: per CPU a control page (the module's head, the agent's tail, drop
/// counts), then the data.
pub struct Rings {
    base: *mut u8,
    bytes: usize,
    stride: usize,
    page: usize,
    ring_bytes: usize,
    ncpus: usize,
}

// SAFETY: the mapping is plain shared memory; the module and this reader synchronize through the
// head and tail words (acquire/release).
unsafe impl Send for Rings {}

impl Rings {
    pub fn ncpus(&self) -> usize {
        self.ncpus
    }

    pub fn ring_bytes(&self) -> usize {
        self.ring_bytes
    }

    fn ctl_word(&self, cpu: usize, offset: usize) -> &AtomicU64 {
        assert!(cpu < self.ncpus);
        // SAFETY: within the mapping, 8-aligned (page aligned base plus a multiple of 8), and only
        // ever accessed atomically by this process.
        unsafe { &*(self.base.add(cpu * self.stride + offset) as *const AtomicU64) }
    }

    /// The module's write position (acquire: the records before it are complete).
    pub fn head(&self, cpu: usize) -> u64 {
        self.ctl_word(cpu, abi::CTL_HEAD).load(Ordering::Acquire)
    }

    pub fn tail(&self, cpu: usize) -> u64 {
        self.ctl_word(cpu, abi::CTL_TAIL).load(Ordering::Relaxed)
    }

    /// Hands the space before `tail` back to the module (release: done reading it).
    pub fn set_tail(&self, cpu: usize, tail: u64) {
        self.ctl_word(cpu, abi::CTL_TAIL).store(tail, Ordering::Release)
    }

    /// The module's drop count for `slot` on `cpu`.
    pub fn lost(&self, cpu: usize, slot: usize) -> u64 {
        assert!(slot < 8);
        self.ctl_word(cpu, abi::CTL_LOST + slot * 8).load(Ordering::Relaxed)
    }

    /// `len` bytes at `offset` into `cpu`'s data. Only for the records between tail and head,
    /// which the module does not write until the tail passes them.
    pub fn bytes_at(&self, cpu: usize, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.ring_bytes);
        // SAFETY: within the mapping; see above for why nothing writes these bytes meanwhile.
        unsafe { std::slice::from_raw_parts(self.base.add(cpu * self.stride + self.page + offset), len) }
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        // SAFETY: the mapping made in Device::map, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.bytes) };
    }
}
