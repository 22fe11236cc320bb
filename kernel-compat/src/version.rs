//! Kernel release numbers: parsed from `uname -r` strings such as `3.10.0-1160.el7.x86_64`,
//! `5.15.0-91-generic` or `6.18.44-fc-v669`.

use std::fmt;

/// A kernel version `major.minor.patch`. Ordered, so `v >= KernelVersion::new(4, 14, 0)` reads
/// the way the kernel documentation states requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KernelVersion { major, minor, patch }
    }

    /// Parses the leading `major.minor[.patch]` of a release string; anything after the numbers
    /// (distro suffixes) is ignored. `None` when there is no `major.minor` at the start.
    pub fn parse(release: &str) -> Option<Self> {
        let release = release.trim();
        let numeric_end = release.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(release.len());
        let mut fields = release[..numeric_end].split('.');
        let major = fields.next()?.parse().ok()?;
        let minor = fields.next()?.parse().ok()?;
        let patch = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(KernelVersion { major, minor, patch })
    }

    /// `LINUX_VERSION_CODE` as the kernel computes it (`KERNEL_VERSION(a,b,c)`); the patch level
    /// saturates at 255 like the kernel's own macro since 4.9.256 / 4.14.214.
    pub fn code(&self) -> u32 {
        (self.major.min(255) << 16) | (self.minor.min(255) << 8) | self.patch.min(255)
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KernelVersion;

    #[test]
    fn parses_distro_release_strings() {
        assert_eq!(KernelVersion::parse("3.10.0-1160.el7.x86_64"), Some(KernelVersion::new(3, 10, 0)));
        assert_eq!(KernelVersion::parse("5.15.0-91-generic"), Some(KernelVersion::new(5, 15, 0)));
        assert_eq!(KernelVersion::parse("6.18.44-fc-v669"), Some(KernelVersion::new(6, 18, 44)));
        assert_eq!(KernelVersion::parse("4.14.336-253.554.amzn2.x86_64"), Some(KernelVersion::new(4, 14, 336)));
        assert_eq!(KernelVersion::parse("6.1-rc3"), Some(KernelVersion::new(6, 1, 0)));
        assert_eq!(KernelVersion::parse("garbage"), None);
        assert_eq!(KernelVersion::parse(""), None);
        assert_eq!(KernelVersion::parse("5"), None);
        assert_eq!(KernelVersion::parse("-1.2"), None);
    }

    #[test]
    fn version_code_saturates_patch() {
        assert_eq!(KernelVersion::new(4, 9, 300).code(), (4 << 16) | (9 << 8) | 255);
        assert_eq!(KernelVersion::new(5, 10, 0).code(), 0x050a00);
    }
}
