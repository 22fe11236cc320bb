//! BTF for kernels built without their own (`CONFIG_DEBUG_INFO_BTF`), so the same CO-RE probes
//! relocate there too: fetched from an archive in the public layout, unpacked, checked and cached.
//!
//! ```text
//! KernelId ──► cache hit? ──yes──► check ──► use
//!                  │no
//!                  ▼
//!    fetch ID/VERSION_ID/ARCH/RELEASE.btf.tar.xz ──► unpack ──► header ──► check ──► cache ──► use
//! ```
//!
//! The check that a BTF is right for the running kernel needs BPF and lives with the probes
//! (probes-core's `btf_check`); this crate takes it as a function and runs it before anything is
//! cached. Any failure names the URL or file and what was wrong, and leaves the cache as it was.

pub mod cache;
pub mod edit;
pub mod fetch;
pub mod generate;
pub mod node;
pub mod types;
pub mod unpack;

use std::path::Path;

pub use cache::{Cache, CacheError, Cached, DEFAULT_ROOT};
pub use fetch::{Archive, FetchError, FetchLimits, DEFAULT_ARCHIVE};
pub use node::{KernelId, KernelIdError};

/// Why no usable BTF came from the archive (or a given file).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF archive {0}")]
    Fetch(#[from] FetchError),
    #[error("BTF archive {location}: {error}")]
    Unpack { location: String, error: unpack::UnpackError },
    #[error("BTF from {location} is not BTF: {error}")]
    NotBtf { location: String, error: String },
    #[error("BTF from {location} is unusable: {error}")]
    Rejected { location: String, error: String },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Generate(#[from] generate::GenerateError),
}

/// A BTF ready for the loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub btf: Cached,
    /// Found in the cache (no download).
    pub from_cache: bool,
}

/// The cache key of an archive entry.
pub fn archive_key(id: &KernelId) -> String {
    format!("archive/{}/{}/{}/{}.btf", id.distro, id.version, id.arch, id.release)
}

/// The BTF for `id`: from the cache when a checked copy is there, else fetched from `archive`,
/// unpacked, checked with `check` (which must prove it right for this kernel) and cached.
pub fn fetch_archived(
    id: &KernelId,
    archive: &Archive,
    cache: &Cache,
    limits: &FetchLimits,
    check: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<Resolved, BtfError> {
    let key = archive_key(id);
    if let Some(hit) = cache.lookup(&key) {
        match check(&hit.path) {
            Ok(()) => return Ok(Resolved { btf: hit, from_cache: true }),
            Err(e) => {
                log::warn!(
                    "cached BTF {} (from {}) no longer passes its check ({e}): fetching it again",
                    hit.path.display(),
                    hit.origin
                );
                cache.remove(&key);
            }
        }
    }
    let rel = id.archive_path();
    let location = archive.location(&rel);
    let packed = fetch::fetch(archive, &rel, limits)?;
    let btf = unpack::btf_from_tar_xz(&packed, &id.release)
        .map_err(|error| BtfError::Unpack { location: location.clone(), error })?;
    unpack::check_header(&btf).map_err(|error| BtfError::NotBtf { location: location.clone(), error })?;
    let stored = cache.store(&key, &btf, &location, check)?;
    let btf = stored.map_err(|error| BtfError::Rejected { location, error })?;
    log::info!("BTF for {id} fetched from {} and cached at {} (sha256 {})", btf.origin, btf.path.display(), btf.sha256);
    Ok(Resolved { btf, from_cache: false })
}

/// A BTF file given directly (`--btf FILE`): checked like an archive's, used in place.
pub fn given_file(path: &Path, check: &dyn Fn(&Path) -> Result<(), String>) -> Result<Cached, BtfError> {
    let location = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| BtfError::NotBtf { location: location.clone(), error: e.to_string() })?;
    unpack::check_header(&bytes).map_err(|error| BtfError::NotBtf { location: location.clone(), error })?;
    check(path).map_err(|error| BtfError::Rejected { location: location.clone(), error })?;
    Ok(Cached { path: path.to_path_buf(), sha256: cache::sha256_hex(&bytes), origin: location })
}

/// The cache key of a BTF generated from headers: the kernel release and the headers' content.
pub fn generated_key(release: &str, headers_key: &str) -> String {
    format!("generated/{release}/{}.btf", &headers_key[..headers_key.len().min(16)])
}

/// A BTF generated from `headers` (or the cached one made from the same headers), checked with
/// `check` before it is cached. `work` is a scratch directory.
pub fn generate_cached(
    headers: &generate::Headers,
    tools: &generate::Tools,
    cache: &Cache,
    work: &Path,
    check: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<Resolved, BtfError> {
    let key = generated_key(&headers.release, &generate::headers_key(headers, tools, work)?);
    if let Some(hit) = cache.lookup(&key) {
        if check(&hit.path).is_ok() {
            return Ok(Resolved { btf: hit, from_cache: true });
        }
        cache.remove(&key);
    }
    let btf = generate::generate(headers, tools, work)?;
    let origin =
        format!("generated from the headers in {} with {} and pahole", headers.obj.display(), headers_tool_name(tools));
    unpack::check_header(&btf).map_err(|error| BtfError::NotBtf { location: origin.clone(), error })?;
    let stored = cache.store(&key, &btf, &origin, check)?;
    let btf = stored.map_err(|error| BtfError::Rejected { location: origin, error })?;
    Ok(Resolved { btf, from_cache: false })
}

fn headers_tool_name(tools: &generate::Tools) -> String {
    tools.clang.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "clang".into())
}

/// A BTF generated earlier for `release` (by an init container, say) that still passes `check`:
/// found without the headers, which this node may not carry.
pub fn lookup_generated(cache: &Cache, release: &str, check: &dyn Fn(&Path) -> Result<(), String>) -> Option<Cached> {
    let dir = cache.dir().join("generated").join(release);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".btf"))
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let hit = cache.lookup(&format!("generated/{release}/{n}"))?;
        check(&hit.path).is_ok().then_some(hit)
    })
}
