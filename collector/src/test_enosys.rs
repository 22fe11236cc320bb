//! Emulating older kernels in tests: with `STRATA_TEST_ENOSYS=name,name,...` in its environment,
//! strata installs a seccomp filter on itself, before anything else runs, under which the named
//! syscalls fail with ENOSYS: exactly what a kernel that predates them answers. The end-to-end
//! tests use it to run the perf-event tier as it runs on kernels that cannot be booted here
//! (pidfd_getfd is 5.6, process_vm_readv needs CONFIG_CROSS_MEMORY_ATTACH, ...).
//!
//! Undocumented on purpose and never for production: it only takes capabilities away, and strata
//! says so loudly (a warning at start) whenever it is set.

/// The environment variable.
pub const VAR: &str = "STRATA_TEST_ENOSYS";

/// The syscalls a test may take away, by name (x86_64 and aarch64 numbers from libc).
const SYSCALLS: &[(&str, libc::c_long)] = &[
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    // Not missing from any kernel: taken away with process_vm_readv, it leaves strata no way to
    // read process memory (/proc/PID/mem is read with pread), to show what is then counted.
    ("pread64", libc::SYS_pread64),
    ("clone3", libc::SYS_clone3),
    ("rseq", libc::SYS_rseq),
    ("statx", libc::SYS_statx),
    ("getrandom", libc::SYS_getrandom),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("close_range", libc::SYS_close_range),
    ("openat2", libc::SYS_openat2),
    ("faccessat2", libc::SYS_faccessat2),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("memfd_create", libc::SYS_memfd_create),
    ("membarrier", libc::SYS_membarrier),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Parses the variable's value into syscall numbers.
fn parse(value: &str) -> Result<Vec<(&'static str, libc::c_long)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            SYSCALLS.iter().copied().find(|(n, _)| *n == name).ok_or_else(|| {
                let known: Vec<&str> = SYSCALLS.iter().map(|(n, _)| *n).collect();
                format!("{VAR}: unknown syscall {name:?} (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// The seccomp program: other architectures' calls pass; each named call gets ENOSYS.
fn program(nrs: &[libc::c_long]) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let stmt = |code, k| libc::sock_filter { code, jt: 0, jf: 0, k };
    let jump = |k, jt, jf| libc::sock_filter { code: JEQ_K, jt, jf, k };
    // struct seccomp_data: int nr; __u32 arch; ...
    let mut p =
        vec![stmt(LD_W_ABS, 4), jump(AUDIT_ARCH, 1, 0), stmt(RET_K, libc::SECCOMP_RET_ALLOW), stmt(LD_W_ABS, 0)];
    for &nr in nrs {
        p.push(jump(nr as u32, 0, 1));
        p.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    p
}

/// Installs the filter the variable asks for, on every thread (there is only one yet).
/// Ok(None) when the variable is not set; Ok(names) when installed; Err when it cannot be
/// honoured (strata must not then run as if the test had what it asked for).
pub fn install_from_env() -> Result<Option<Vec<&'static str>>, String> {
    let Some(value) = std::env::var_os(VAR) else { return Ok(None) };
    let value = value.into_string().map_err(|v| format!("{VAR}={v:?} is not UTF-8"))?;
    let calls = parse(&value)?;
    let nrs: Vec<libc::c_long> = calls.iter().map(|(_, nr)| *nr).collect();
    let mut filter = program(&nrs);
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: prctl and seccomp with a filter program that outlives the calls (the kernel copies
    // it).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(format!("{VAR}: PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error()));
        }
        let rc = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        );
        if rc != 0 {
            return Err(format!("{VAR}: installing the seccomp filter: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(Some(calls.iter().map(|(n, _)| *n).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            parse("pidfd_open, pidfd_getfd").unwrap(),
            vec![("pidfd_open", libc::SYS_pidfd_open), ("pidfd_getfd", libc::SYS_pidfd_getfd)]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        let e = parse("pidfd_open,nosuchcall").unwrap_err();
        assert!(e.contains("nosuchcall") && e.contains("process_vm_readv"), "{e}");
    }

    #[test]
    fn the_program_answers_enosys_for_each_named_call_only() {
        let p = program(&[434, 438]);
        // arch check (3) + load nr + 2 per call + allow.
        assert_eq!(p.len(), 4 + 4 + 1);
        assert_eq!(p[4].k, 434);
        assert_eq!(p[5].k, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(p.last().unwrap().k, libc::SECCOMP_RET_ALLOW);
    }
}
