//! Harness for end-to-end tests: run the real `strata` binary as root against real servers
//! (nginx, dnsmasq from Debian's packages) and read back what it captured.
//!
//! Nothing here skips: a missing server or tool fails the test with what to install.

pub mod agent;
pub mod container;
pub mod kube_api;
pub mod records;
pub mod servers;

use std::path::PathBuf;
use std::process::Command;

/// The `strata` binary of this build (target/<profile>/strata, next to the test's deps/ dir), or
/// the one named by STRATA_BIN.
pub fn strata_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let bin = profile_dir.join("strata");
    assert!(bin.is_file(), "{} not found: run the tests with `cargo test --workspace`, which builds it", bin.display());
    bin
}

/// The OTLP receiver of the end-to-end tests (tests/otlp-sink), built next to `strata`.
pub fn otlp_sink_bin() -> PathBuf {
    let bin = strata_bin().with_file_name("strata-otlp-sink");
    assert!(bin.is_file(), "{} not found: run the tests with `cargo test --workspace`, which builds it", bin.display());
    bin
}

/// A plain HTTP/1.1 GET on loopback: (status code, body). For scraping strata's /metrics and
/// querying Prometheus's API without another HTTP client.
pub fn http_get(port: u16, path_and_query: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect :{port}: {e}"));
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(conn, "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.to_string() };
    (status, body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn url_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The gRPC peer of the end-to-end tests (tests/grpc-peer), built next to `strata`.
pub fn grpc_peer_bin() -> PathBuf {
    let bin = strata_bin().with_file_name("strata-grpc-peer");
    assert!(bin.is_file(), "{} not found: run the tests with `cargo test --workspace`, which builds it", bin.display());
    bin
}

/// A copy of the `strata` binary that an unprivileged user can run: the checkout may sit below a
/// directory only root may enter (/root), which would make "permission denied" pass for "strata
/// refused". The copy lives in a world-readable temporary directory.
pub fn strata_bin_for_nobody() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("strata-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("strata");
    if !bin.exists() {
        // Copy to a temporary name and rename: parallel tests may race to create it.
        let tmp = dir.join(format!("strata.{:?}", std::thread::current().id()));
        std::fs::copy(strata_bin(), &tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &bin).unwrap();
    }
    bin
}

/// The path of a tool the tests need, or a failure naming the Debian package that has it.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: these tests need it (apt-get install {package})");
}

/// These tests load BPF programs: they must run as root. Fails (does not skip) otherwise.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "end-to-end capture tests must run as root (they load BPF programs)");
}

/// A TCP port that was free a moment ago, for a server under test.
/// Whether this kernel runs the CO-RE probes on raw_syscalls by default: its own BTF and 5.11 or
/// later (bpf_get_current_task_btf), the loader's rule.
pub fn kernel_runs_raw_syscall_hooks() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let version = probes_core::preflight::parse_release(release.trim()).unwrap_or((0, 0));
    version >= probes_core::objects::RAW_SYSCALLS_CAPTURE.oldest_kernel
        && std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs a command to completion, failing the test with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
