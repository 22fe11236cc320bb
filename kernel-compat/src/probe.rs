//! The answer to one question asked of the kernel.

use serde::{Deserialize, Serialize};

/// Result of probing one kernel feature.
///
/// `Unsupported` means the kernel answered "no" (an errno such as `ENOSYS` or `EINVAL`, a missing
/// file, a verifier "unknown func"). `Unknown` means the question could not be asked (e.g. `bpf()`
/// itself was denied, tracefs is not mounted): the plan must not read it as "no".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Probe {
    Supported,
    Unsupported {
        /// Symbolic errno (`"EPERM"`, `"ENOSYS"`, ...) when the answer came from a syscall.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<String>,
        reason: String,
    },
    Unknown {
        reason: String,
    },
}

impl Default for Probe {
    fn default() -> Self {
        Probe::Unknown { reason: "not recorded".into() }
    }
}

impl Probe {
    pub fn unsupported(reason: impl Into<String>) -> Self {
        Probe::Unsupported { errno: None, reason: reason.into() }
    }

    /// A "no" that came from a syscall failing with `errno`.
    pub fn from_errno(errno: i32, what: &str) -> Self {
        let name = errno_name(errno);
        Probe::Unsupported { reason: format!("{what} failed with {name} ({})", errno_text(errno)), errno: Some(name) }
    }

    pub fn unknown(reason: impl Into<String>) -> Self {
        Probe::Unknown { reason: reason.into() }
    }

    pub fn is_supported(&self) -> bool {
        matches!(self, Probe::Supported)
    }

    pub fn is_unsupported(&self) -> bool {
        matches!(self, Probe::Unsupported { .. })
    }

    /// The symbolic errno of an `Unsupported` answer, if it came from a syscall.
    pub fn errno(&self) -> Option<&str> {
        match self {
            Probe::Unsupported { errno: Some(e), .. } => Some(e),
            _ => None,
        }
    }

    /// The human explanation of a negative or unknown answer ("" for `Supported`).
    pub fn reason(&self) -> &str {
        match self {
            Probe::Supported => "",
            Probe::Unsupported { reason, .. } | Probe::Unknown { reason } => reason,
        }
    }
}

/// Symbolic name of the errno values the probes can meet. Names rather than numbers go into
/// [`Facts`](crate::Facts) because they are the same on every architecture and readable in
/// hand-written fixtures.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        // ENOTSUPP is kernel-internal but leaks out of bpf() on some paths.
        524 => "ENOTSUPP",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

fn errno_text(errno: i32) -> String {
    if errno == 524 {
        return "operation not supported by the kernel".into();
    }
    std::io::Error::from_raw_os_error(errno).to_string().split(" (os error").next().unwrap_or_default().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_a_status_tag() {
        let p = Probe::from_errno(libc::EPERM, "bpf(BPF_MAP_CREATE)");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["status"], "unsupported");
        assert_eq!(json["errno"], "EPERM");
        assert!(json["reason"].as_str().unwrap().contains("operation not permitted"), "{json}");
        assert_eq!(serde_json::to_value(Probe::Supported).unwrap(), serde_json::json!({"status": "supported"}));
        let back: Probe = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
