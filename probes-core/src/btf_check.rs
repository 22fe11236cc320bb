//! Is this BTF right for this kernel? Asked before the probes are relocated with a BTF that did
//! not come from the kernel itself (an archive's, or one generated from headers).
//!
//! Two checks, cheapest first:
//! 1. [`check_declares_probe_fields`] (pure): the capture objects are relocated against the BTF
//!    offline (aya-obj, as the loader would). A field or type the BTF lacks poisons the
//!    instruction that reads it; any poisoned instruction in a required program fails the BTF.
//! 2. [`check_against_kernel`] (needs BPF): the BTF check program (bpf/btf_check.bpf.c), relocated
//!    with the BTF, walks fds of sockets whose ends the agent knows (a TCP connection over IPv4
//!    loopback and, where the host has IPv6, one over ::1) with the probes' own code, and the
//!    agent compares what it read field by field: inode, family, transport, both ports, both
//!    addresses. A BTF of another kernel build puts these fields elsewhere, so it reads wrong
//!    values here instead of producing wrong records later. It is the defensible answer to
//!    "does this BTF match the running kernel": it asks the running kernel, about exactly the
//!    fields the probes use.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;

use aya::maps::Array;
use aya::programs::TracePoint;
use aya::{Btf, EbpfLoader, Endianness};

use crate::loader::error_chain;
use crate::objects::{CaptureObject, BTF_CHECK_OBJECT, CAPTURE_OBJECTS, PROBES};
use strata_event::wire;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfCheckError {
    #[error("not a BTF file: {0}")]
    Unparseable(String),
    #[error("the BTF lacks types or fields the probes read ({0})")]
    MissingFields(String),
    #[error("the BTF check program could not run here: {0}")]
    CannotCheck(String),
    #[error("the BTF does not describe this kernel: read through it, {0}")]
    Mismatch(String),
}

/// The instruction aya-obj writes where a relocation found nothing to point at.
const POISON_IMM: i32 = 0xBAD2310;
const BPF_CALL_CODE: u8 = 0x85;

/// Relocates every capture object against `btf` offline and fails if a required program reads a
/// type or field the BTF does not declare. Optional programs may go unrelocated (the loader then
/// leaves them out).
pub fn check_declares_probe_fields(btf: &[u8]) -> Result<(), BtfCheckError> {
    let target = aya_obj::btf::Btf::parse(btf, object::Endianness::default())
        .map_err(|e| BtfCheckError::Unparseable(e.to_string()))?;
    let mut missing = Vec::new();
    for object in CAPTURE_OBJECTS {
        missing.extend(unrelocated_programs(&object, &target)?);
    }
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(BtfCheckError::MissingFields(missing.join("; ")))
    }
}

fn unrelocated_programs(object: &CaptureObject, target: &aya_obj::btf::Btf) -> Result<Vec<String>, BtfCheckError> {
    let mut obj = aya_obj::Object::parse(object.bytes)
        .map_err(|e| BtfCheckError::CannotCheck(format!("parsing {}: {e}", object.file)))?;
    obj.relocate_btf(target).map_err(|e| BtfCheckError::MissingFields(format!("{}: {e}", object.file)))?;
    let mut out = Vec::new();
    for (name, program) in &obj.programs {
        if PROBES.iter().any(|p| p.program == name && p.optional) {
            continue;
        }
        let Some(function) = obj.functions.get(&program.function_key()) else { continue };
        let poisoned =
            function.instructions.iter().filter(|i| i.code == BPF_CALL_CODE && i.imm == POISON_IMM).count();
        if poisoned > 0 {
            out.push(format!("{name}: {poisoned} accesses unresolved"));
        }
    }
    Ok(out)
}

/// `struct strata_btf_check_config` of bpf/btf_check.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct CheckConfig {
    pid_tgid: u64,
    fds: [i32; 2],
}

/// `struct strata_btf_check_result` of bpf/btf_check.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct CheckResult {
    found: u32,
    _pad: u32,
    sock_id: u64,
    sock: wire::Socket,
}

// SAFETY: plain integers and byte arrays; every bit pattern is valid.
unsafe impl aya::Pod for CheckConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for CheckResult {}

/// What the live check compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCheck {
    /// Whether an IPv6 connection was checked too (the host may have no IPv6).
    pub ipv6_checked: bool,
}

/// A loopback TCP connection whose ends are known.
struct KnownSocket {
    client: TcpStream,
    _server: TcpStream,
    _listener: TcpListener,
}

impl KnownSocket {
    fn open(ip: std::net::IpAddr) -> io::Result<KnownSocket> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        Ok(KnownSocket { client, _server: server, _listener: listener })
    }

    fn inode(&self) -> u64 {
        // SAFETY: zeroed stat is a valid out-buffer; the fd is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        unsafe { libc::fstat(self.client.as_raw_fd(), &mut st) };
        st.st_ino
    }

    /// Every field the probes read, compared; the first difference, said plainly.
    fn compare(&self, r: &CheckResult) -> Result<(), String> {
        let fd = self.client.as_raw_fd();
        if r.found != 1 {
            return Err(format!("fd {fd}, a TCP socket, is not recognized as one"));
        }
        let local = self.client.local_addr().map_err(|e| e.to_string())?;
        let peer = self.client.peer_addr().map_err(|e| e.to_string())?;
        let s = &r.sock;
        let (family, addr_len) = if local.is_ipv4() { (wire::AF_INET, 4) } else { (wire::AF_INET6, 16) };
        let addr_bytes = |a: &SocketAddr| match a {
            SocketAddr::V4(v) => v.ip().octets().to_vec(),
            SocketAddr::V6(v) => v.ip().octets().to_vec(),
        };
        let checks: [(&str, String, String); 7] = [
            ("the socket's inode number (inode.i_ino)", r.sock_id.to_string(), self.inode().to_string()),
            ("its transport (socket.type)", s.protocol.to_string(), wire::IPPROTO_TCP.to_string()),
            ("its address family (sock_common.skc_family)", s.local.family.to_string(), family.to_string()),
            ("its local port (sock_common.skc_num)", s.local.port.to_string(), local.port().to_string()),
            ("its remote port (sock_common.skc_dport)", s.remote.port.to_string(), peer.port().to_string()),
            ("its local address", format!("{:?}", &s.local.addr[..addr_len]), format!("{:?}", addr_bytes(&local))),
            ("its remote address", format!("{:?}", &s.remote.addr[..addr_len]), format!("{:?}", addr_bytes(&peer))),
        ];
        for (what, got, want) in checks {
            if got != want {
                return Err(format!("{what} of a {local} -> {peer} connection reads {got}, not {want}"));
            }
        }
        Ok(())
    }
}

/// Runs the BTF check program relocated with the BTF at `btf_path` (see the module docs).
pub fn check_against_kernel(btf_path: &Path) -> Result<KernelCheck, BtfCheckError> {
    let cannot = |what: &str, e: &dyn std::fmt::Display| BtfCheckError::CannotCheck(format!("{what}: {e}"));
    let btf = Btf::parse_file(btf_path, Endianness::default()).map_err(|e| BtfCheckError::Unparseable(e.to_string()))?;
    let events = crate::preflight::ensure_tracefs().map_err(|e| cannot("tracefs", &e))?;
    if !events.join("syscalls/sys_enter_getppid").is_dir() {
        return Err(BtfCheckError::CannotCheck("the tracepoint syscalls:sys_enter_getppid is missing".into()));
    }
    crate::preflight::raise_memlock_rlimit();
    let v4 = KnownSocket::open(Ipv4Addr::LOCALHOST.into()).map_err(|e| cannot("a TCP connection on 127.0.0.1", &e))?;
    let v6 = KnownSocket::open(Ipv6Addr::LOCALHOST.into()).ok();

    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(BTF_CHECK_OBJECT)
        .map_err(|e| BtfCheckError::MissingFields(format!("relocating the check program: {}", error_chain(&e))))?;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
    let config = CheckConfig {
        pid_tgid: (u64::from(std::process::id()) << 32) | tid,
        fds: [v4.client.as_raw_fd(), v6.as_ref().map_or(-1, |k| k.client.as_raw_fd())],
    };
    {
        let map = ebpf.map_mut("check_config").ok_or_else(|| cannot("the check object", &"no check_config map"))?;
        let mut array: Array<_, CheckConfig> = Array::try_from(map).map_err(|e| cannot("check_config", &e))?;
        array.set(0, config, 0).map_err(|e| cannot("check_config", &e))?;
    }
    {
        let program: &mut TracePoint = ebpf
            .program_mut("btf_check")
            .ok_or_else(|| cannot("the check object", &"no btf_check program"))?
            .try_into()
            .map_err(|e| cannot("btf_check", &e))?;
        program.load().map_err(|e| match e {
            aya::programs::ProgramError::LoadError { io_error, verifier_log } => BtfCheckError::MissingFields(format!(
                "the kernel refused the check program relocated with it ({io_error}); verifier: {}",
                last_lines(&verifier_log.to_string(), 3)
            )),
            other => cannot("loading the check program", &error_chain(&other)),
        })?;
        program.attach("syscalls", "sys_enter_getppid").map_err(|e| cannot("attaching the check program", &error_chain(&e)))?;
    }
    // SAFETY: getppid has no preconditions; called as a raw syscall so libc cannot answer it.
    unsafe { libc::syscall(libc::SYS_getppid) };
    let results = ebpf.map("check_result").ok_or_else(|| cannot("the check object", &"no check_result map"))?;
    let results: Array<_, CheckResult> = Array::try_from(results).map_err(|e| cannot("check_result", &e))?;
    let r4 = results.get(&0, 0).map_err(|e| cannot("check_result", &e))?;
    let r6 = results.get(&1, 0).map_err(|e| cannot("check_result", &e))?;
    v4.compare(&r4).map_err(BtfCheckError::Mismatch)?;
    if let Some(v6) = &v6 {
        v6.compare(&r6).map_err(BtfCheckError::Mismatch)?;
    }
    Ok(KernelCheck { ipv6_checked: v6.is_some() })
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
