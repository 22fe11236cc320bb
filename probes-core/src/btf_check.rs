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
        let poisoned = function.instructions.iter().filter(|i| i.code == BPF_CALL_CODE && i.imm == POISON_IMM).count();
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
    let btf =
        Btf::parse_file(btf_path, Endianness::default()).map_err(|e| BtfCheckError::Unparseable(e.to_string()))?;
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
        program
            .attach("syscalls", "sys_enter_getppid")
            .map_err(|e| cannot("attaching the check program", &error_chain(&e)))?;
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

/// The kernel fields the probes read (bpf/socket.h), as (struct, member path): for reports. The
/// comparison below does not rely on this list: it compares every relocated instruction.
pub const RELOCATED_FIELDS: &[(&str, &str)] = &[
    ("task_struct", "files"),
    ("files_struct", "fdt"),
    ("fdtable", "max_fds"),
    ("fdtable", "fd"),
    ("file", "f_inode"),
    ("file", "private_data"),
    ("inode", "i_mode"),
    ("inode", "i_ino"),
    ("socket", "type"),
    ("socket", "sk"),
    ("sock", "__sk_common.skc_family"),
    ("sock", "__sk_common.skc_num"),
    ("sock", "__sk_common.skc_dport"),
    ("sock", "__sk_common.skc_rcv_saddr"),
    ("sock", "__sk_common.skc_daddr"),
    ("sock", "__sk_common.skc_v6_rcv_saddr"),
    ("sock", "__sk_common.skc_v6_daddr"),
];

/// Two BTFs' relocations of the capture objects, side by side.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RelocationComparison {
    /// CO-RE relocations (field accesses) of the required programs, both objects: what was compared.
    pub relocated: usize,
    /// Instructions the two BTFs relocate differently: `object program #index: a vs b`.
    pub differences: Vec<String>,
}

fn insn_bytes(i: &aya_obj::generated::bpf_insn) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = i.code;
    b[1] = (i.src_reg() << 4) | i.dst_reg();
    b[2..4].copy_from_slice(&i.off.to_le_bytes());
    b[4..8].copy_from_slice(&i.imm.to_le_bytes());
    b
}

/// A program's name and its instructions, each as its 8 encoded bytes.
type ProgramBytes = (String, Vec<[u8; 8]>);

/// Every required program's instructions, relocated against `btf`.
fn relocated_programs(object: &CaptureObject, btf: &aya_obj::btf::Btf) -> Result<Vec<ProgramBytes>, BtfCheckError> {
    let mut obj = aya_obj::Object::parse(object.bytes)
        .map_err(|e| BtfCheckError::CannotCheck(format!("parsing {}: {e}", object.file)))?;
    obj.relocate_btf(btf).map_err(|e| BtfCheckError::MissingFields(format!("{}: {e}", object.file)))?;
    let mut out: Vec<ProgramBytes> = obj
        .programs
        .iter()
        .filter(|(name, _)| PROBES.iter().any(|p| p.program == name.as_str() && !p.optional))
        .filter_map(|(name, p)| {
            let f = obj.functions.get(&p.function_key())?;
            Some((name.clone(), f.instructions.iter().map(insn_bytes).collect()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// How many CO-RE relocations the required programs of `object` carry (the `.BTF.ext` records of
/// their sections).
pub fn core_relocations(object: &CaptureObject) -> Result<usize, BtfCheckError> {
    use object::{Object as _, ObjectSection as _};
    let bad = |what: &str| BtfCheckError::CannotCheck(format!("{}: {what}", object.file));
    let elf = object::File::parse(object.bytes).map_err(|e| bad(&e.to_string()))?;
    let ext =
        elf.section_by_name(".BTF.ext").ok_or_else(|| bad("no .BTF.ext"))?.data().map_err(|e| bad(&e.to_string()))?;
    let btf = elf.section_by_name(".BTF").ok_or_else(|| bad("no .BTF"))?.data().map_err(|e| bad(&e.to_string()))?;
    let u32_at = |b: &[u8], o: usize| b.get(o..o + 4).map(|x| u32::from_le_bytes(x.try_into().unwrap()));
    let hdr_len = u32_at(ext, 4).ok_or_else(|| bad("short .BTF.ext"))? as usize;
    if hdr_len < 32 {
        return Ok(0);
    }
    let (off, len) = (u32_at(ext, 24).unwrap_or(0) as usize, u32_at(ext, 28).unwrap_or(0) as usize);
    let relos = ext.get(hdr_len + off..hdr_len + off + len).ok_or_else(|| bad(".BTF.ext relocations out of bounds"))?;
    // Section names are offsets into .BTF's string section.
    let btf_hdr = u32_at(btf, 4).unwrap_or(24) as usize;
    let str_start = btf_hdr + u32_at(btf, 16).unwrap_or(0) as usize;
    let name_at = |o: u32| {
        let s = &btf[(str_start + o as usize).min(btf.len())..];
        String::from_utf8_lossy(&s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]).into_owned()
    };
    let record = u32_at(relos, 0).ok_or_else(|| bad("no relocation record size"))? as usize;
    let (mut pos, mut count) = (4, 0);
    while let (Some(sec), Some(n)) = (u32_at(relos, pos), u32_at(relos, pos + 4)) {
        let section = name_at(sec);
        let optional = PROBES.iter().any(|p| p.optional && section.ends_with(&format!("/{}", p.tracepoint)));
        if !optional {
            count += n as usize;
        }
        pos += 8 + n as usize * record;
    }
    Ok(count)
}

/// Relocates both capture objects against `a` and against `b` and compares every instruction:
/// no difference means every field the probes read has the same offset (and size) in both.
pub fn compare_relocations(a: &[u8], b: &[u8]) -> Result<RelocationComparison, BtfCheckError> {
    let parse = |btf: &[u8]| {
        aya_obj::btf::Btf::parse(btf, object::Endianness::default())
            .map_err(|e| BtfCheckError::Unparseable(e.to_string()))
    };
    let (a, b) = (parse(a)?, parse(b)?);
    let mut cmp = RelocationComparison::default();
    for object in CAPTURE_OBJECTS {
        let with_a = relocated_programs(&object, &a)?;
        let with_b = relocated_programs(&object, &b)?;
        cmp.relocated += core_relocations(&object)?;
        for ((name, ia), (_, ib)) in with_a.iter().zip(&with_b) {
            for (i, (y, z)) in ia.iter().zip(ib).enumerate() {
                if y != z {
                    let show = |b: &[u8; 8]| {
                        format!(
                            "off {} imm {}",
                            i16::from_le_bytes([b[2], b[3]]),
                            i32::from_le_bytes(b[4..8].try_into().unwrap())
                        )
                    };
                    cmp.differences.push(format!("{} {name} #{i}: {} vs {}", object.file, show(y), show(z)));
                }
            }
        }
    }
    Ok(cmp)
}
