//! Building the module on the node, as DKMS does: the sources into a scratch directory, then
//! `make -C <the kernel's build tree> M=<dir> modules`, with the compiler the kernel's own
//! Makefile names. The result is checked (it must be a module for this release) and cached under
//! `<cache>/kmod/<release>/<source hash>/strata.ko`, so a node builds once per kernel and strata
//! version.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use btf_cache::cache::{Cache, Cached};

use crate::source;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "no kernel build tree for {release} (looked in {looked}): install the headers package \
         ({hint}), or give --kernel-build DIR"
    )]
    NoKernelBuild { release: String, looked: String, hint: String },
    #[error("building the module needs {tool}, which is not on PATH: {hint}")]
    NoTool { tool: &'static str, hint: &'static str },
    #[error("building the module against {kdir} failed: {first_error} (whole log: {log})")]
    Failed { kdir: String, first_error: String, log: String },
    #[error("building the module against {kdir} took longer than {secs} s and was stopped")]
    TimedOut { kdir: String, secs: u64 },
    #[error("the built module is for kernel {built:?}, not {release}: the build tree at {kdir} is another kernel's")]
    WrongKernel { built: String, release: String, kdir: String },
    #[error(transparent)]
    Cache(#[from] btf_cache::cache::CacheError),
    #[error("{0}")]
    Io(String),
}

/// Where a node keeps a release's build tree: the kbuild symlink the headers package makes, then
/// Debian/Ubuntu's and RHEL's own places.
pub fn kernel_build_candidates(release: &str) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/lib/modules/{release}/build")),
        PathBuf::from(format!("/usr/src/linux-headers-{release}")),
        PathBuf::from(format!("/usr/src/kernels/{release}")),
    ]
}

/// The first candidate that holds a kbuild Makefile.
pub fn find_kernel_build(release: &str) -> Option<PathBuf> {
    kernel_build_candidates(release).into_iter().find(|d| d.join("Makefile").is_file())
}

/// The cache key of the module built from these sources for `release`.
pub fn cache_key(release: &str) -> String {
    format!("{release}/{}/{}.ko", source::source_hash(), source::MODULE_NAME)
}

/// The module's part of strata's cache.
pub fn cache(root: &Path) -> Cache {
    Cache::named(root, "kmod")
}

/// The module built from these sources for `release`, if the cache holds it (intact, and for
/// this release: one copied in from another kernel is passed over, and rebuilt where it can be).
pub fn cached(cache_root: &Path, release: &str) -> Option<Cached> {
    let hit = cache(cache_root).lookup(&cache_key(release))?;
    let bytes = std::fs::read(&hit.path).ok()?;
    match vermagic_release(&bytes) {
        Some(built) if built == release => Some(hit),
        built => {
            log::warn!(
                "cached module {} is for kernel {}, not {release}: passing it over",
                hit.path.display(),
                built.as_deref().unwrap_or("(no vermagic)")
            );
            None
        }
    }
}

/// The release a module was built for: the first word of its `vermagic=` (in `.modinfo`).
pub fn vermagic_release(ko: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"vermagic=";
    let at = ko.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &ko[at..];
    let end = rest.iter().position(|&b| b == 0 || b == b' ').unwrap_or(rest.len());
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// The first line of a build log that says why it failed: a compiler error, else make's.
pub fn first_error(log: &str) -> String {
    let pick = |pat: &str| log.lines().find(|l| l.contains(pat)).map(str::trim);
    // The compiler's own error, else make's (`make: *** ...`), else the log's last line.
    pick("error:")
        .or_else(|| pick("***"))
        .or_else(|| pick("Error"))
        .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output")
        .to_string()
}

/// How to build.
pub struct BuildRequest<'a> {
    pub release: &'a str,
    /// The kernel's build tree (`/lib/modules/<release>/build`); found when None.
    pub kernel_build: Option<&'a Path>,
    pub cache_root: &'a Path,
    pub timeout: Duration,
    /// The compiler, when not the one the kernel's Makefile names (a node whose distribution
    /// built the kernel with a compiler it no longer ships).
    pub cc: Option<&'a str>,
}

/// The module for `release`: from the cache, else built and cached.
pub fn build(req: &BuildRequest) -> Result<Cached, BuildError> {
    if let Some(c) = cached(req.cache_root, req.release) {
        return Ok(c);
    }
    let kdir = match req.kernel_build {
        Some(d) => d.to_path_buf(),
        None => find_kernel_build(req.release).ok_or_else(|| BuildError::NoKernelBuild {
            release: req.release.to_string(),
            looked: kernel_build_candidates(req.release)
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hint: format!("Debian/Ubuntu: linux-headers-{r}; RHEL/Fedora: kernel-devel-{r}", r = req.release),
        })?,
    };
    if !on_path("make") {
        return Err(BuildError::NoTool {
            tool: "make",
            hint: "apt-get install make (or the node image's build tools)",
        });
    }
    // The compiler asked for (a path, or a name on PATH), else the kernel's own: gcc.
    let compiler = req.cc.unwrap_or("gcc");
    let found = if compiler.contains('/') { Path::new(compiler).is_file() } else { on_path(compiler) };
    if !found {
        return Err(BuildError::NoTool {
            tool: if req.cc.is_some() { "the compiler given" } else { "gcc" },
            hint: "apt-get install gcc",
        });
    }
    let cache = cache(req.cache_root);
    let scratch = cache
        .scratch(".build-")
        .map_err(|e| BuildError::Io(format!("a scratch directory in {}: {e}", cache.dir().display())))?;
    let work = scratch.path();
    let result = compile(&kdir, work, req.timeout, req.cc, &req.cache_root.join("logs")).and_then(|ko| {
        let bytes = std::fs::read(&ko).map_err(|e| BuildError::Io(format!("reading {}: {e}", ko.display())))?;
        let origin = format!("built against {}", kdir.display());
        cache.store(&cache_key(req.release), &bytes, &origin, |_| check_release(&bytes, req.release, &kdir))?
    });
    result
}

/// Refuses a module that is not for `release` (a build tree of another kernel).
pub fn check_release(ko: &[u8], release: &str, kdir: &Path) -> Result<(), BuildError> {
    let built = vermagic_release(ko).unwrap_or_default();
    if built != release {
        return Err(BuildError::WrongKernel { built, release: release.to_string(), kdir: kdir.display().to_string() });
    }
    Ok(())
}

fn compile(
    kdir: &Path,
    work: &Path,
    timeout: Duration,
    cc: Option<&str>,
    keep_log_in: &Path,
) -> Result<PathBuf, BuildError> {
    source::write_to(work)
        .map_err(|e| BuildError::Io(format!("writing the module sources to {}: {e}", work.display())))?;
    let log_path = work.join("build.log");
    let log = std::fs::File::create(&log_path).map_err(|e| BuildError::Io(format!("{}: {e}", log_path.display())))?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut make = Command::new("make");
    make.arg("-C").arg(kdir).arg(format!("M={}", work.display())).arg(format!("-j{jobs}"));
    if let Some(cc) = cc {
        make.arg(format!("CC={cc}"));
    }
    let mut child = make
        .arg("modules")
        // The compiler's temporary files stay in the private scratch directory too.
        .env("TMPDIR", work)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| BuildError::Io(e.to_string()))?)
        .stderr(log)
        .spawn()
        .map_err(|e| BuildError::Io(format!("running make: {e}")))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BuildError::TimedOut { kdir: kdir.display().to_string(), secs: timeout.as_secs() });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(BuildError::Io(format!("waiting for make: {e}"))),
        }
    };
    let ko = work.join(format!("{}.ko", source::MODULE_NAME));
    if !status.success() || !ko.is_file() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        // Keep the log where the operator can read it: the scratch directory goes.
        // Beside the cache's entries, not among them.
        let kept = keep_log_in.join("kmod-build.log");
        let _ = std::fs::create_dir_all(keep_log_in).and_then(|_| std::fs::write(&kept, &text));
        return Err(BuildError::Failed {
            kdir: kdir.display().to_string(),
            first_error: first_error(&text),
            log: kept.display().to_string(),
        });
    }
    Ok(ko)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vermagic_names_the_release() {
        let ko = b"\x7fELF....license=GPL\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0name=strata\0";
        assert_eq!(vermagic_release(ko).as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(vermagic_release(b"no modinfo here"), None);
    }

    #[test]
    fn a_module_for_another_kernel_is_refused() {
        let ko = b"vermagic=5.10.0-32-amd64 SMP mod_unload \0";
        let e = check_release(ko, "6.1.0-57-amd64", Path::new("/k")).unwrap_err();
        assert!(e.to_string().contains("5.10.0-32-amd64") && e.to_string().contains("6.1.0-57-amd64"), "{e}");
        check_release(ko, "5.10.0-32-amd64", Path::new("/k")).unwrap();
    }

    #[test]
    fn the_compiler_error_is_what_a_failed_build_says() {
        let log = "make: Entering directory '/k'\n  CC [M]  /w/strata_kmod.c\n/w/strata_kmod.c:10:1: error: unknown type name 'foo'\nmake[1]: *** Error 1\n";
        assert_eq!(first_error(log), "/w/strata_kmod.c:10:1: error: unknown type name 'foo'");
        let log = "make: Entering directory '/k'\nmake: *** No rule to make target 'modules'.  Stop.\nmake: Leaving directory '/k'\n";
        assert_eq!(first_error(log), "make: *** No rule to make target 'modules'.  Stop.");
    }

    #[test]
    fn a_cached_module_for_another_kernel_is_passed_over() {
        let root = tempfile::tempdir().unwrap();
        let store = |release: &str, ko: &[u8]| {
            cache(root.path()).store(&cache_key(release), ko, "test", |_| Ok::<(), ()>(())).unwrap().unwrap();
        };
        store("6.1.0-57-amd64", b"\0vermagic=6.1.0-57-amd64 SMP mod_unload \0");
        assert!(cached(root.path(), "6.1.0-57-amd64").is_some());
        store("5.10.0-32-amd64", b"\0vermagic=6.1.0-57-amd64 SMP mod_unload \0");
        assert!(cached(root.path(), "5.10.0-32-amd64").is_none());
    }

    #[test]
    fn keys_name_the_release_and_the_sources() {
        let k = cache_key("6.1.0-57-amd64");
        assert!(k.starts_with("6.1.0-57-amd64/") && k.ends_with("/strata.ko"), "{k}");
        assert!(k.contains(&source::source_hash()));
    }
}
