//! Pure parsers for the files `gather` reads. No I/O: each takes text or bytes and returns what
//! it could make of them, never panicking on garbage (see tests/no_panic.rs).

use std::collections::BTreeMap;
use std::io::Read;

use super::{Capabilities, Distro};

/// Config options kept from the kernel config (without `CONFIG_`). Everything else in the
/// ~10 000-line file is dropped: facts are saved and shipped, keep them small.
pub const RELEVANT_CONFIG_OPTIONS: &[&str] = &[
    "BPF",
    "BPF_SYSCALL",
    "BPF_EVENTS",
    "BPF_JIT",
    "BPF_JIT_ALWAYS_ON",
    "BPF_UNPRIV_DEFAULT_OFF",
    "BPF_LSM",
    "HAVE_EBPF_JIT",
    "DEBUG_INFO_BTF",
    "DEBUG_INFO_BTF_MODULES",
    "IKCONFIG_PROC",
    "KPROBES",
    "KPROBE_EVENTS",
    "UPROBES",
    "UPROBE_EVENTS",
    "FTRACE",
    "FTRACE_SYSCALLS",
    "TRACEPOINTS",
    "PERF_EVENTS",
    "DEBUG_FS",
    "MODULES",
    "MODULE_UNLOAD",
    "MODULE_SIG",
    "MODULE_SIG_FORCE",
    "SECURITY_LOCKDOWN_LSM",
    "SECURITY_LOCKDOWN_LSM_EARLY",
    "LOCK_DOWN_KERNEL_FORCE_INTEGRITY",
    "LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY",
    "CROSS_MEMORY_ATTACH",
    "INET_DIAG",
    "INET_TCP_DIAG",
    "INET_UDP_DIAG",
];

/// Upper bound on a decompressed `/proc/config.gz`: real configs are 100-300 KB; the bound keeps
/// a corrupt or hostile file from exhausting memory.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Keeps the [`RELEVANT_CONFIG_OPTIONS`] of a kernel config. `# CONFIG_X is not set` becomes
/// `"n"`; quoted string values lose their quotes.
pub fn parse_kernel_config(text: &str) -> BTreeMap<String, String> {
    let mut options = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let (name, value) = if let Some(rest) = line.strip_prefix("# CONFIG_") {
            match rest.strip_suffix(" is not set") {
                Some(name) => (name, "n"),
                None => continue,
            }
        } else if let Some(rest) = line.strip_prefix("CONFIG_") {
            match rest.split_once('=') {
                Some((name, value)) => (name, value.trim_matches('"')),
                None => continue,
            }
        } else {
            continue;
        };
        if RELEVANT_CONFIG_OPTIONS.contains(&name) {
            options.insert(name.to_string(), value.to_string());
        }
    }
    options
}

/// Gunzips `/proc/config.gz`; `None` if the bytes are not gzip, are truncated, decompress to more
/// than 16 MiB, or are not UTF-8 after lossy repair would be meaningless (we repair lossily:
/// config files are ASCII, a stray byte must not hide the rest).
pub fn gunzip_config(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let decoder = flate2::read::GzDecoder::new(bytes);
    decoder.take(MAX_CONFIG_BYTES).read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `/etc/os-release`: `KEY=value` lines, values optionally quoted (shell-style).
pub fn parse_os_release(text: &str) -> Distro {
    let mut distro = Distro::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        let value = unquote_shell(value.trim());
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "ID" => distro.id = Some(value),
            "VERSION_ID" => distro.version_id = Some(value),
            "PRETTY_NAME" => distro.pretty_name = Some(value),
            _ => {}
        }
    }
    distro
}

fn unquote_shell(value: &str) -> String {
    let bytes = value.as_bytes();
    let quoted = bytes.len() >= 2 && (bytes[0] == b'"' || bytes[0] == b'\'') && bytes[bytes.len() - 1] == bytes[0];
    if !quoted {
        return value.to_string();
    }
    let inner = &value[1..value.len() - 1];
    // os-release(5): within double quotes, backslash escapes $ " \ ` .
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && bytes[0] == b'"' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Capability bit -> name, for the capabilities that matter to strata (and the common ones so
/// the list reads like `capsh --decode`). Bits without a name are shown as `cap_<n>`.
const CAPABILITY_NAMES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (2, "CAP_DAC_READ_SEARCH"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (9, "CAP_LINUX_IMMUTABLE"),
    (10, "CAP_NET_BIND_SERVICE"),
    (11, "CAP_NET_BROADCAST"),
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (14, "CAP_IPC_LOCK"),
    (15, "CAP_IPC_OWNER"),
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (18, "CAP_SYS_CHROOT"),
    (19, "CAP_SYS_PTRACE"),
    (20, "CAP_SYS_PACCT"),
    (21, "CAP_SYS_ADMIN"),
    (22, "CAP_SYS_BOOT"),
    (23, "CAP_SYS_NICE"),
    (24, "CAP_SYS_RESOURCE"),
    (25, "CAP_SYS_TIME"),
    (26, "CAP_SYS_TTY_CONFIG"),
    (27, "CAP_MKNOD"),
    (28, "CAP_LEASE"),
    (29, "CAP_AUDIT_WRITE"),
    (30, "CAP_AUDIT_CONTROL"),
    (31, "CAP_SETFCAP"),
    (32, "CAP_MAC_OVERRIDE"),
    (33, "CAP_MAC_ADMIN"),
    (34, "CAP_SYSLOG"),
    (35, "CAP_WAKE_ALARM"),
    (36, "CAP_BLOCK_SUSPEND"),
    (37, "CAP_AUDIT_READ"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
    (40, "CAP_CHECKPOINT_RESTORE"),
];

/// Names of the bits set in a capability mask.
pub fn capability_names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match CAPABILITY_NAMES.iter().find(|(b, _)| *b == bit) {
            Some((_, name)) => name.to_string(),
            None => format!("cap_{bit}"),
        })
        .collect()
}

/// `CapEff:` of `/proc/<pid>/status`.
pub fn parse_cap_eff(status: &str) -> Option<Capabilities> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    let mask = u64::from_str_radix(hex, 16).ok()?;
    Some(Capabilities { effective: hex.to_string(), names: capability_names(mask) })
}

/// `/sys/kernel/security/lockdown` reads like `none [integrity] confidentiality`: the bracketed
/// word is the active mode.
pub fn parse_lockdown(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        .map(str::to_string)
}

/// A sysctl holding one integer (`/proc/sys/kernel/perf_event_paranoid`, ...).
pub fn parse_sysctl_int<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

/// `/sys/module/module/parameters/sig_enforce` holds `Y` or `N`.
pub fn parse_kernel_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// The fixed part of a BTF blob (`struct btf_header` in include/uapi/linux/btf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfHeader {
    pub version: u8,
    pub hdr_len: u32,
    pub type_len: u32,
    pub str_len: u32,
}

pub const BTF_MAGIC: u16 = 0xEB9F;
const BTF_HEADER_LEN: usize = 24;

/// Validates a BTF blob the way the kernel and libbpf do before trusting it: magic `0xeB9F` in
/// host byte order (the kernel writes it as 0xeB9F), version 1, and type/string sections that lie inside the blob.
pub fn parse_btf_header(blob: &[u8]) -> Result<BtfHeader, String> {
    if blob.len() < BTF_HEADER_LEN {
        return Err(format!("{} bytes is shorter than a BTF header ({BTF_HEADER_LEN} bytes)", blob.len()));
    }
    let u16_at = |o: usize| u16::from_ne_bytes([blob[o], blob[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes([blob[o], blob[o + 1], blob[o + 2], blob[o + 3]]);
    let magic = u16_at(0);
    if magic == BTF_MAGIC.swap_bytes() {
        return Err("BTF magic is byte-swapped: the BTF is for the other endianness".into());
    }
    if magic != BTF_MAGIC {
        return Err(format!("bad BTF magic {magic:#06x} (expected {BTF_MAGIC:#06x})"));
    }
    let version = blob[2];
    if version != 1 {
        return Err(format!("unsupported BTF version {version} (expected 1)"));
    }
    let hdr_len = u32_at(4);
    let (type_off, type_len, str_off, str_len) = (u32_at(8), u32_at(12), u32_at(16), u32_at(20));
    if (hdr_len as usize) < BTF_HEADER_LEN {
        return Err(format!("BTF header length {hdr_len} is shorter than {BTF_HEADER_LEN}"));
    }
    let size = blob.len() as u64;
    let section_end = |off: u32, len: u32| hdr_len as u64 + off as u64 + len as u64;
    if section_end(type_off, type_len) > size {
        return Err(format!("BTF type section ends past the end of the {size}-byte blob"));
    }
    if section_end(str_off, str_len) > size {
        return Err(format!("BTF string section ends past the end of the {size}-byte blob"));
    }
    if str_len == 0 {
        return Err("BTF string section is empty".into());
    }
    Ok(BtfHeader { version, hdr_len, type_len, str_len })
}

/// Mount points where tracefs can be reached, in the order to try them, from `/proc/mounts`:
/// tracefs mounts first (4.1+), then `<debugfs>/tracing` (older kernels, where tracing lives in
/// debugfs). Octal escapes (`\040` for a space) are decoded.
/// The filesystem types of `/proc/filesystems` (`nodev\ttracefs` lines give `tracefs`).
pub fn parse_filesystems(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.split_whitespace().last()).map(str::to_string).collect()
}

pub fn tracefs_candidates(mounts: &str) -> Vec<String> {
    let mut tracefs = Vec::new();
    let mut debugfs = Vec::new();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_dev), Some(mount_point), Some(fstype)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let mount_point = unescape_mount_path(mount_point);
        if !mount_point.starts_with('/') {
            continue;
        }
        match fstype {
            "tracefs" => tracefs.push(mount_point),
            "debugfs" => debugfs.push(format!("{}/tracing", mount_point.trim_end_matches('/'))),
            _ => {}
        }
    }
    tracefs.extend(debugfs);
    tracefs
}

fn unescape_mount_path(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value =
                (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(value) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystems() {
        let text = "nodev\tsysfs\nnodev\ttracefs\n\text4\nnodev\tbpf\n\n";
        assert_eq!(parse_filesystems(text), ["sysfs", "tracefs", "ext4", "bpf"]);
        assert!(parse_filesystems("").is_empty());
    }

    #[test]
    fn keeps_relevant_config_options() {
        let cfg = "# comment\nCONFIG_BPF=y\n# CONFIG_KPROBES is not set\nCONFIG_MODULES=y\nCONFIG_HZ=250\n\
                   CONFIG_DEBUG_INFO_BTF=y\nCONFIG_LOCALVERSION=\"\"\n";
        let opts = parse_kernel_config(cfg);
        assert_eq!(opts.get("BPF").map(String::as_str), Some("y"));
        assert_eq!(opts.get("KPROBES").map(String::as_str), Some("n"));
        assert_eq!(opts.get("DEBUG_INFO_BTF").map(String::as_str), Some("y"));
        assert!(!opts.contains_key("HZ"));
    }

    #[test]
    fn os_release_unquotes() {
        let d = parse_os_release(
            "ID=ubuntu\nVERSION_ID=\"24.04\"\nPRETTY_NAME='Ubuntu 24.04.3 LTS'\nNAME=\"A \\\"q\\\"\"\n",
        );
        assert_eq!(d.id.as_deref(), Some("ubuntu"));
        assert_eq!(d.version_id.as_deref(), Some("24.04"));
        assert_eq!(d.pretty_name.as_deref(), Some("Ubuntu 24.04.3 LTS"));
    }

    #[test]
    fn capabilities_by_name() {
        let caps = parse_cap_eff("Name:\tx\nCapEff:\t000001fffeffffff\n").unwrap();
        for name in ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_MODULE"] {
            assert!(caps.has(name), "{name} in {:?}", caps.names);
        }
        assert!(!caps.has("CAP_SYS_RESOURCE"));
        assert!(parse_cap_eff("CapEff:\tzz\n").is_none());
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n").unwrap().names, Vec::<String>::new());
    }

    #[test]
    fn lockdown_bracketed_word() {
        assert_eq!(parse_lockdown("none [integrity] confidentiality\n").as_deref(), Some("integrity"));
        assert_eq!(parse_lockdown("[none] integrity confidentiality").as_deref(), Some("none"));
        assert_eq!(parse_lockdown("none integrity"), None);
    }

    #[test]
    fn btf_header_checks() {
        let mut blob = vec![0u8; 64];
        blob[0..2].copy_from_slice(&BTF_MAGIC.to_ne_bytes());
        blob[2] = 1;
        blob[4..8].copy_from_slice(&24u32.to_ne_bytes());
        blob[12..16].copy_from_slice(&16u32.to_ne_bytes()); // type_len
        blob[16..20].copy_from_slice(&16u32.to_ne_bytes()); // str_off
        blob[20..24].copy_from_slice(&24u32.to_ne_bytes()); // str_len: ends at 24+16+24 = 64
        assert!(parse_btf_header(&blob).is_ok());
        blob[20..24].copy_from_slice(&25u32.to_ne_bytes());
        assert!(parse_btf_header(&blob).unwrap_err().contains("string section"));
        blob[2] = 2;
        assert!(parse_btf_header(&blob).unwrap_err().contains("version"));
        assert!(parse_btf_header(b"\x9f\xeb").is_err());
    }

    #[test]
    fn tracefs_from_mounts() {
        let mounts = "sysfs /sys sysfs rw 0 0\ndebugfs /sys/kernel/debug debugfs rw 0 0\n\
                      tracefs /sys/kernel/tracing tracefs rw 0 0\ntracefs /tmp/my\\040dir tracefs rw 0 0\n";
        assert_eq!(tracefs_candidates(mounts), vec!["/sys/kernel/tracing", "/tmp/my dir", "/sys/kernel/debug/tracing"]);
    }
}
