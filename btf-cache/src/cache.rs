//! The on-disk cache: one file per entry (a BTF, or the kernel module built for a release), with a
//! sidecar holding its sha256 and where it came from, written atomically (temporary file, check,
//! rename), so a restart or a second agent on the node never downloads or builds twice and a failed
//! attempt leaves the cache as it was.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where strata keeps what it fetched or built, unless told otherwise.
pub const DEFAULT_ROOT: &str = "/var/cache/strata";

/// A BTF in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub path: PathBuf,
    pub sha256: String,
    /// Where it came from (a URL, a path, or how it was generated).
    pub origin: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the cache at {path}: {error}")]
pub struct CacheError {
    pub path: String,
    pub error: String,
}

/// One part of strata's cache directory: `ROOT/btf` for BTF, `ROOT/kmod` for kernel modules.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    /// The BTF cache under `root` (strata's cache directory; BTFs go to `root/btf`).
    pub fn new(root: &Path) -> Cache {
        Cache::named(root, "btf")
    }

    /// The part of the cache under `root/name`.
    pub fn named(root: &Path, name: &str) -> Cache {
        Cache { dir: root.join(name) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A private scratch directory (mode 0700, unpredictable name) beside the entries, removed
    /// when dropped. Builds run in it as root, so it is never a guessable path in a shared /tmp;
    /// and in a pod the cache is the one writable place (the root filesystem is read-only).
    pub fn scratch(&self, prefix: &str) -> std::io::Result<tempfile::TempDir> {
        std::fs::create_dir_all(&self.dir)?;
        tempfile::Builder::new().prefix(prefix).tempdir_in(&self.dir)
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let file = self.dir.join(key);
        let mut sidecar = file.clone().into_os_string();
        sidecar.push(".sha256");
        (file, PathBuf::from(sidecar))
    }

    /// The entry under `key` (a relative path such as `archive/debian/10/x86_64/R.btf`), if it is
    /// there and its bytes still hash to what was recorded. A damaged entry reads as absent.
    pub fn lookup(&self, key: &str) -> Option<Cached> {
        let (file, sidecar) = self.paths(key);
        let record = std::fs::read_to_string(&sidecar).ok()?;
        let (sha, origin) = record.trim_end().split_once("  ")?;
        let bytes = std::fs::read(&file).ok()?;
        let actual = sha256_hex(&bytes);
        if actual != sha {
            log::warn!("cached {} hashes to {actual}, not the {sha} recorded: ignoring it", file.display());
            return None;
        }
        Some(Cached { path: file, sha256: actual, origin: origin.to_string() })
    }

    /// Stores `btf` under `key` once `check` accepts it. `check` gets the path of the new file
    /// before it is in place; if it refuses, nothing changes and its reason is returned.
    pub fn store<E>(
        &self,
        key: &str,
        btf: &[u8],
        origin: &str,
        check: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Result<Cached, E>, CacheError> {
        let (file, sidecar) = self.paths(key);
        let parent = file.parent().expect("a cache key has a file name");
        let io = |what: &str, e: std::io::Error| CacheError {
            path: self.dir.display().to_string(),
            error: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(parent).map_err(|e| io("creating it", e))?;
        let tmp = parent.join(format!(".{}.tmp.{}", file.file_name().unwrap().to_string_lossy(), std::process::id()));
        let sidecar_tmp =
            parent.join(format!(".{}.sha256.tmp.{}", file.file_name().unwrap().to_string_lossy(), std::process::id()));
        let cleanup = || {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&sidecar_tmp);
        };
        let sha = sha256_hex(btf);
        let written =
            write_synced(&tmp, btf).and_then(|()| write_synced(&sidecar_tmp, format!("{sha}  {origin}\n").as_bytes()));
        if let Err(e) = written {
            cleanup();
            return Err(io("writing", e));
        }
        if let Err(e) = check(&tmp) {
            cleanup();
            return Ok(Err(e));
        }
        // The BTF first, then its record: a crash in between leaves a file whose record does not
        // match, which lookup treats as absent.
        let placed = std::fs::rename(&tmp, &file).and_then(|()| std::fs::rename(&sidecar_tmp, &sidecar));
        if let Err(e) = placed {
            cleanup();
            return Err(io("renaming into place", e));
        }
        Ok(Ok(Cached { path: file, sha256: sha, origin: origin.to_string() }))
    }

    /// Removes the entry under `key` (one that no longer passes its check).
    pub fn remove(&self, key: &str) {
        let (file, sidecar) = self.paths(key);
        let _ = std::fs::remove_file(sidecar);
        let _ = std::fs::remove_file(file);
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_after_the_check_and_finds_it_again() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let stored = cache
            .store("archive/a/1/x86_64/k.btf", b"btf bytes", "https://x/k", |_| Ok::<(), String>(()))
            .unwrap()
            .unwrap();
        assert_eq!(stored.path, root.path().join("btf/archive/a/1/x86_64/k.btf"));
        assert_eq!(cache.lookup("archive/a/1/x86_64/k.btf"), Some(stored.clone()));
        assert_eq!(stored.sha256, sha256_hex(b"btf bytes"));
        assert_eq!(stored.origin, "https://x/k");
    }

    #[test]
    fn a_refused_btf_leaves_the_cache_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let first = cache.store("k.btf", b"good", "one", |_| Ok::<(), String>(())).unwrap().unwrap();
        let refused = cache.store("k.btf", b"bad", "two", |p| Err(format!("no: {}", p.display()))).unwrap();
        assert!(refused.unwrap_err().starts_with("no: "));
        assert_eq!(cache.lookup("k.btf"), Some(first));
        let names: Vec<_> = std::fs::read_dir(cache.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn a_damaged_entry_reads_as_absent() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let c = cache.store("k.btf", b"good", "one", |_| Ok::<(), String>(())).unwrap().unwrap();
        std::fs::write(&c.path, b"goad").unwrap();
        assert_eq!(cache.lookup("k.btf"), None);
    }
}
