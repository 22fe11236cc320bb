//! What must hold before BPF programs can be loaded and attached, and errors that say how to fix
//! it. The checks read procfs/sysfs; the decisions are pure functions so they are tested without
//! root.

use std::path::{Path, PathBuf};

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Effective capabilities, from the `CapEff:` line of /proc/self/status.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// Names of the capabilities missing for loading tracepoint programs. CAP_SYS_ADMIN covers
/// everything (and is the only way before 5.8); otherwise CAP_BPF and CAP_PERFMON are needed.
pub fn missing_capabilities(cap_eff: u64) -> Vec<&'static str> {
    let has = |c: u32| cap_eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) {
        return vec![];
    }
    let mut missing = vec![];
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "strata needs {missing} to load its BPF programs (it has neither these nor CAP_SYS_ADMIN). \
         Run it as root, or grant them: `setcap cap_bpf,cap_perfmon,cap_sys_resource+ep $(which strata)`, \
         or in Kubernetes add them to securityContext.capabilities.add (CAP_SYS_ADMIN on kernels before 5.8)"
    )]
    Capabilities { missing: String },
    #[error(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed ({error}). Mount it with \
         `mount -t tracefs tracefs /sys/kernel/tracing` (in Kubernetes, mount the host's /sys/kernel/tracing \
         into the pod), and check the kernel has CONFIG_FTRACE_SYSCALLS"
    )]
    Tracefs { error: String },
    #[error(
        "tracepoint {0} is missing from this kernel (no {1}). strata's capture needs it: the kernel lacks \
         CONFIG_FTRACE_SYSCALLS or this syscall. Try `strata run --tier perf-event` once available, or see \
         `strata compat-check`"
    )]
    TracepointMissing(String, PathBuf),
}

/// Checks this process's capabilities.
pub fn check_capabilities() -> Result<(), PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // Unknown (no procfs): let the kernel decide and report its errno.
    let Some(eff) = parse_cap_eff(&status) else { return Ok(()) };
    let missing = missing_capabilities(eff);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::Capabilities { missing: missing.join(" and ") })
    }
}

/// Fails when no capture tier at all could run: every tier needs CAP_PERFMON (or CAP_SYS_ADMIN)
/// for system-wide tracepoints. The message names what the CO-RE tier needs, the usual fix.
/// Without CAP_BPF alone, the compat plan decides (the perf-event tier needs no BPF).
pub fn check_any_tier_capabilities() -> Result<(), PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(eff) = parse_cap_eff(&status) else { return Ok(()) };
    let missing = missing_capabilities(eff);
    if missing.contains(&"CAP_PERFMON") {
        Err(PreflightError::Capabilities { missing: missing.join(" and ") })
    } else {
        Ok(())
    }
}

/// The tracefs events directory, mounting tracefs at /sys/kernel/tracing if no copy is mounted.
pub fn ensure_tracefs() -> Result<PathBuf, PreflightError> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let events = Path::new(dir).join("events");
        if events.join("syscalls").is_dir() || events.join("sched").is_dir() {
            return Ok(events);
        }
    }
    mount_tracefs().map_err(|e| PreflightError::Tracefs { error: e.to_string() })?;
    Ok(PathBuf::from("/sys/kernel/tracing/events"))
}

fn mount_tracefs() -> std::io::Result<()> {
    let src = c"tracefs";
    let target = c"/sys/kernel/tracing";
    // SAFETY: all pointers are NUL-terminated C strings that outlive the call.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Fails naming the first tracepoint (category/name) missing under `events`.
pub fn check_tracepoints<'a>(
    events: &Path,
    wanted: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), PreflightError> {
    for (category, name) in wanted {
        let dir = events.join(category).join(name);
        if !dir.join("id").exists() {
            return Err(PreflightError::TracepointMissing(format!("{category}:{name}"), dir));
        }
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so map creation does not fail
/// with a misleading EPERM. Harmless on newer kernels.
pub fn raise_memlock_rlimit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a plain setrlimit call with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tstrata\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff(""), None);
    }

    #[test]
    fn names_missing_capabilities() {
        assert!(missing_capabilities(1 << CAP_SYS_ADMIN).is_empty());
        assert!(missing_capabilities((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_empty());
        assert_eq!(missing_capabilities(1 << CAP_BPF), vec!["CAP_PERFMON"]);
        assert_eq!(missing_capabilities(0), vec!["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn names_the_missing_tracepoint() {
        let dir = std::env::temp_dir().join(format!("strata-tp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("syscalls/sys_enter_read")).unwrap();
        std::fs::write(dir.join("syscalls/sys_enter_read/id"), "1").unwrap();
        assert!(check_tracepoints(&dir, [("syscalls", "sys_enter_read")]).is_ok());
        let err =
            check_tracepoints(&dir, [("syscalls", "sys_enter_read"), ("sock", "inet_sock_set_state")]).unwrap_err();
        assert!(err.to_string().contains("sock:inet_sock_set_state"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// (major, minor) of a release string such as "6.1.0-27-amd64" or "5.10.0".
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The running kernel's (major, minor), from uname(2).
pub fn running_release() -> Option<(u32, u32)> {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates release.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    parse_release(&release.to_string_lossy())
}

#[cfg(test)]
mod release_tests {
    use super::parse_release;

    #[test]
    fn releases_as_distributions_spell_them() {
        assert_eq!(parse_release("6.1.0-27-amd64"), Some((6, 1)));
        assert_eq!(parse_release("5.10.0"), Some((5, 10)));
        assert_eq!(parse_release("4.14.336-257.562.amzn2.x86_64"), Some((4, 14)));
        assert_eq!(parse_release("6.18"), Some((6, 18)));
        assert_eq!(parse_release("garbage"), None);
    }
}
