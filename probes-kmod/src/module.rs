//! Loading and unloading the module: finit_module(2) and delete_module(2), with the kernel's
//! reason turned into what an operator can do about it.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::source::MODULE_NAME;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("loading {path}: {reason}")]
    Load { path: String, errno: i32, reason: String },
    #[error("unloading the {MODULE_NAME} module: {reason}")]
    Unload { errno: i32, reason: String },
    #[error("{0}")]
    Io(String),
}

/// What a refused load means, by errno (init_module(2) and the kernel's module loader).
pub fn load_reason(errno: i32) -> String {
    format!("{} ({})", load_advice(errno), std::io::Error::from_raw_os_error(errno))
}

fn load_advice(errno: i32) -> String {
    match errno {
        libc::ENOEXEC => "the kernel says it is not a valid module for it (built for another kernel or \
                          configuration): rebuild it against this kernel's headers with `strata kmod build`"
            .into(),
        libc::EPERM => "the kernel refuses to load modules for this process: module loading is switched off \
                        (kernel.modules_disabled=1), kernel lockdown forbids unsigned modules, or the agent lacks \
                        CAP_SYS_MODULE"
            .into(),
        libc::EKEYREJECTED | libc::ENOKEY | libc::EBADMSG => "the kernel enforces module signatures \
                        (module.sig_enforce or CONFIG_MODULE_SIG_FORCE) and strata's module is unsigned: sign \
                        it with a key the kernel trusts, or use another tier"
            .into(),
        libc::EEXIST => format!("a module named {MODULE_NAME} is loaded already"),
        libc::ENOSYS => "the kernel has no loadable module support (CONFIG_MODULES is off)".into(),
        libc::ENOMEM => "out of memory".into(),
        libc::EINVAL => "the kernel rejected it as invalid (the kernel log says why: dmesg | tail)".into(),
        _ => "the kernel refused it (the kernel log may say more: dmesg | tail)".into(),
    }
}

/// Loads the module at `path` with `params` (`name=value` words).
pub fn load(path: &Path, params: &str) -> Result<(), ModuleError> {
    let file = std::fs::File::open(path).map_err(|e| ModuleError::Io(format!("opening {}: {e}", path.display())))?;
    let params = CString::new(params).map_err(|_| ModuleError::Io("module parameters hold a NUL".into()))?;
    // SAFETY: finit_module reads the open file and the NUL-terminated parameter string, both alive
    // for the call.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(ModuleError::Load { path: path.display().to_string(), errno, reason: load_reason(errno) });
    }
    Ok(())
}

/// Unloads the module; fails (EBUSY/EWOULDBLOCK) while anything still has its device open.
pub fn unload() -> Result<(), ModuleError> {
    let name = CString::new(MODULE_NAME).unwrap();
    // SAFETY: delete_module reads the NUL-terminated name.
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if rc != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let reason = match errno {
            libc::EWOULDBLOCK | libc::EBUSY => "it is in use (another strata is capturing with it?)".into(),
            libc::ENOENT => "it is not loaded".into(),
            e => std::io::Error::from_raw_os_error(e).to_string(),
        };
        return Err(ModuleError::Unload { errno, reason });
    }
    Ok(())
}

/// Whether `/proc/modules` (its text) lists the module.
pub fn listed(proc_modules: &str) -> bool {
    proc_modules.lines().any(|l| l.split_whitespace().next() == Some(MODULE_NAME))
}

/// Whether the running kernel has the module loaded.
pub fn is_loaded() -> bool {
    std::fs::read_to_string("/proc/modules").is_ok_and(|m| listed(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_modules_is_read_by_name() {
        let m = "strata_other 16384 0 - Live 0x0000000000000000\nstrata 45056 1 - Live 0x0000000000000000 (O)\n";
        assert!(listed(m));
        assert!(!listed("strata_other 16384 0 - Live 0x0\nnf_tables 1 0 - Live 0x0\n"));
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(load_reason(libc::ENOEXEC).contains("strata kmod build"));
        assert!(load_reason(libc::EKEYREJECTED).contains("signatures"));
        assert!(load_reason(libc::EPERM).contains("CAP_SYS_MODULE"));
    }
}
