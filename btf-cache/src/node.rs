//! Which kernel a BTF is for, as the public BTF archive (BTFHub's layout) names it:
//! `ID/VERSION_ID/ARCH/RELEASE.btf.tar.xz`, from `/etc/os-release` and `uname`.

use std::fmt;

/// A node's kernel as the archive keys it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelId {
    /// `ID` of /etc/os-release: `ubuntu`, `debian`, `centos`, `rhel`, `amzn`, ...
    pub distro: String,
    /// `VERSION_ID` of /etc/os-release: `20.04`, `10`, `2`, ...
    pub version: String,
    /// The archive's architecture name: `x86_64` or `arm64`.
    pub arch: String,
    /// `uname -r`.
    pub release: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelIdError {
    #[error("{0} is not known (read from /etc/os-release), so no archive entry can be named")]
    Missing(&'static str),
    #[error("{what} {value:?} cannot name an archive path (empty, '/', '..' or a control character)")]
    Unsafe { what: &'static str, value: String },
}

impl KernelId {
    /// Builds the id; `machine` is `uname -m` (`aarch64` becomes the archive's `arm64`). Every
    /// part becomes a path component, so each is checked to be one.
    pub fn new(
        distro: Option<&str>,
        version: Option<&str>,
        machine: &str,
        release: &str,
    ) -> Result<KernelId, KernelIdError> {
        let distro = distro.ok_or(KernelIdError::Missing("the distribution (ID)"))?;
        let version = version.ok_or(KernelIdError::Missing("the distribution's version (VERSION_ID)"))?;
        let arch = match machine {
            "aarch64" => "arm64",
            other => other,
        };
        for (what, value) in
            [("ID", distro), ("VERSION_ID", version), ("architecture", arch), ("kernel release", release)]
        {
            if value.is_empty()
                || value == "."
                || value == ".."
                || value.contains('/')
                || value.chars().any(|c| c.is_control())
            {
                return Err(KernelIdError::Unsafe { what, value: value.to_string() });
            }
        }
        Ok(KernelId {
            distro: distro.to_string(),
            version: version.to_string(),
            arch: arch.to_string(),
            release: release.to_string(),
        })
    }

    /// `ID/VERSION_ID/ARCH/RELEASE.btf.tar.xz`, relative to an archive's root.
    pub fn archive_path(&self) -> String {
        format!("{}/{}/{}/{}.btf.tar.xz", self.distro, self.version, self.arch, self.release)
    }
}

impl fmt::Display for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.distro, self.version, self.arch, self.release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_path_follows_the_public_layout() {
        let k = KernelId::new(Some("ubuntu"), Some("20.04"), "x86_64", "5.4.0-1018-aws").unwrap();
        assert_eq!(k.archive_path(), "ubuntu/20.04/x86_64/5.4.0-1018-aws.btf.tar.xz");
        let k = KernelId::new(Some("amzn"), Some("2"), "aarch64", "4.14.256-197.484.amzn2.aarch64").unwrap();
        assert_eq!(k.archive_path(), "amzn/2/arm64/4.14.256-197.484.amzn2.aarch64.btf.tar.xz");
    }

    #[test]
    fn parts_that_would_escape_the_archive_are_refused() {
        assert!(matches!(
            KernelId::new(Some("debian"), Some("../.."), "x86_64", "5.10.0-1-amd64"),
            Err(KernelIdError::Unsafe { .. })
        ));
        assert!(KernelId::new(Some("debian"), Some("11"), "x86_64", "a/b").is_err());
        assert_eq!(
            KernelId::new(None, Some("11"), "x86_64", "5.10"),
            Err(KernelIdError::Missing("the distribution (ID)"))
        );
    }
}
