//! Booting one guest under QEMU (TCG: software emulation; never KVM here) with a timeout, the serial
//! console going to a file that is watched for the result line and for a kernel panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::guest::{parse_serial, RESULT_MARKER};
use crate::judge::GuestOutcome;

pub struct Boot<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub append: String,
    pub timeout: Duration,
    pub serial_log: PathBuf,
}

pub fn args(b: &Boot) -> Vec<String> {
    let mut a: Vec<String> = [
        "-machine",
        "q35,accel=tcg",
        "-m",
        "1G",
        "-smp",
        "1",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-monitor",
        "none",
    ]
    .map(String::from)
    .to_vec();
    a.push("-serial".into());
    a.push(format!("file:{}", b.serial_log.display()));
    a.push("-kernel".into());
    a.push(b.kernel.display().to_string());
    a.push("-initrd".into());
    a.push(b.initrd.display().to_string());
    a.push("-append".into());
    a.push(b.append.clone());
    a
}

/// Boots and waits. QEMU is killed on timeout, on a kernel panic, and if it lingers after the result.
pub fn boot(b: &Boot) -> Result<GuestOutcome> {
    let _ = std::fs::remove_file(&b.serial_log);
    let qemu_log = b.serial_log.with_extension("qemu.log");
    let mut child = Command::new("qemu-system-x86_64")
        .args(args(b))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&qemu_log)?)
        .stderr(std::fs::File::create(qemu_log.with_extension("qemu.err"))?)
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let started = Instant::now();
    let mut result_seen: Option<Instant> = None;
    let mut stop_reason: Option<String> = None;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        let log = std::fs::read(&b.serial_log).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        if result_seen.is_none()
            && log.contains(RESULT_MARKER)
            && log[log.find(RESULT_MARKER).unwrap()..].contains('\n')
        {
            result_seen = Some(Instant::now());
        }
        if let Some(p) = parse_serial(&log).panic {
            // panic=-1 reboots and -no-reboot ends QEMU; give it a moment, then make sure.
            std::thread::sleep(Duration::from_secs(2));
            stop_reason = Some(p);
            break None;
        }
        if result_seen.is_some_and(|t| t.elapsed() > Duration::from_secs(15)) {
            break None; // it reported but did not power off: fine, stop it
        }
        if started.elapsed() > b.timeout {
            stop_reason = Some(format!("timeout after {} s", b.timeout.as_secs()));
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let status = match status {
        Some(s) => Some(s),
        None => {
            let _ = child.kill();
            child.wait().ok();
            None
        }
    };
    let log = String::from_utf8_lossy(&std::fs::read(&b.serial_log).unwrap_or_default()).into_owned();
    let parsed = parse_serial(&log);
    Ok(match parsed.result {
        Some(Ok(r)) => GuestOutcome::Reported(Box::new(r)),
        Some(Err(e)) => GuestOutcome::BadResult(e),
        None => {
            let why = if let Some(p) = parsed.panic {
                p
            } else if let Some(r) = stop_reason {
                r
            } else {
                let err = std::fs::read_to_string(qemu_log.with_extension("qemu.err")).unwrap_or_default();
                format!(
                    "QEMU exited ({}) before a result line{}",
                    status.map(|s| s.to_string()).unwrap_or_default(),
                    if err.trim().is_empty() { String::new() } else { format!(": {}", err.trim()) }
                )
            };
            GuestOutcome::NoResult(why)
        }
    })
}

/// The last `n` lines of a log.
pub fn tail(path: &Path, n: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_asks_for_kvm() {
        let b = Boot {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            append: "console=ttyS0".into(),
            timeout: Duration::from_secs(1),
            serial_log: PathBuf::from("/tmp/s.log"),
        };
        let a = args(&b).join(" ");
        assert!(a.contains("accel=tcg"));
        assert!(!a.contains("kvm") && !a.contains("-cpu host"));
        assert!(a.contains("-serial file:/tmp/s.log") && a.contains("-no-reboot"));
    }
}
