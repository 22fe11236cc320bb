//! Where archives are, and getting one: HTTP(S) with timeouts, bounded retries, the standard proxy
//! variables and a size cap, or a local directory (`file://DIR`) for air-gapped fleets.

use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The public BTF archive (BTFHub's): every distro kernel it has built BTF for.
pub const DEFAULT_ARCHIVE: &str = "https://github.com/aquasecurity/btfhub-archive/raw/main";

/// An archive's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Archive {
    /// `http://` or `https://` base URL (no trailing slash).
    Http(String),
    /// `file://DIR`: a directory in the archive's layout.
    Dir(PathBuf),
}

impl FromStr for Archive {
    type Err = String;

    fn from_str(s: &str) -> Result<Archive, String> {
        if let Some(dir) = s.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(format!("{s}: a file:// archive needs an absolute directory (file:///srv/btf)"));
            }
            return Ok(Archive::Dir(PathBuf::from(dir)));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Archive::Http(s.trim_end_matches('/').to_string()));
        }
        Err(format!("{s}: an archive is an http://, https:// or file:// URL"))
    }
}

impl Archive {
    /// Where `rel` (an archive path) is: a URL or a file path, for messages.
    pub fn location(&self, rel: &str) -> String {
        match self {
            Archive::Http(base) => format!("{base}/{rel}"),
            Archive::Dir(dir) => dir.join(rel).display().to_string(),
        }
    }
}

/// How long and how much a fetch may take.
#[derive(Clone, Debug)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    /// The whole request, body included.
    pub timeout: Duration,
    /// Tries in all, for failures that may pass (timeouts, refused connections, 5xx, 429).
    pub attempts: u32,
    /// Pause before the second try; doubled before each further one.
    pub backoff: Duration,
    /// Largest archive accepted (compressed); the public archive's entries are 1-10 MiB.
    pub max_bytes: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            attempts: 3,
            backoff: Duration::from_secs(1),
            max_bytes: 64 << 20,
        }
    }
}

/// Why a fetch failed. `location` is the URL or path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{location}: not found: the archive has no entry for this kernel")]
    NotFound { location: String },
    #[error("{location}: HTTP status {status}")]
    Status { location: String, status: u16 },
    #[error("{location}: no answer within {secs} s (tried {attempts} times)")]
    Timeout { location: String, secs: u64, attempts: u32 },
    #[error("{location}: {error} (tried {attempts} times)")]
    Network { location: String, error: String, attempts: u32 },
    #[error("{location}: larger than the {limit} bytes an archive may be")]
    TooLarge { location: String, limit: u64 },
    #[error("{location}: {error}")]
    Read { location: String, error: String },
}

/// Fetches `rel` from `archive`.
pub fn fetch(archive: &Archive, rel: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
    let location = archive.location(rel);
    match archive {
        Archive::Dir(dir) => {
            let path = dir.join(rel);
            let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => FetchError::NotFound { location: location.clone() },
                _ => FetchError::Read { location: location.clone(), error: e.to_string() },
            })?;
            read_capped(file, &location, limits.max_bytes)
        }
        Archive::Http(_) => fetch_http(&location, limits),
    }
}

fn read_capped(r: impl Read, location: &str, max: u64) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| FetchError::Read { location: location.to_string(), error: e.to_string() })?;
    if out.len() as u64 > max {
        return Err(FetchError::TooLarge { location: location.to_string(), limit: max });
    }
    Ok(out)
}

/// Makes rustls with ring the process's TLS provider. Call once at start: every reqwest client in
/// the process (the archive's, the OTLP exporter's) is built on rustls without a provider of its
/// own, and panics if none is installed. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS for https archives: rustls with ring, trusting the system's roots (the CA bundle of the
/// image or node, `SSL_CERT_FILE`/`SSL_CERT_DIR`) and Mozilla's, built in, so a minimal image with no
/// CA bundle still reaches the public archive. A plain http:// archive never needs any of it.
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    log::debug!("TLS roots: {} built in, {added} from the system", webpki_roots::TLS_SERVER_ROOTS.len());
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn fetch_http(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.timeout)
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Network { location: url.to_string(), error: chain(&e), attempts: 0 })?;
    let mut backoff = limits.backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let retry = match get_once(&client, url, limits) {
            Ok(bytes) => return Ok(bytes),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Again(e)) => e,
        };
        if attempt >= limits.attempts.max(1) {
            return Err(match retry {
                FetchError::Timeout { location, secs, .. } => FetchError::Timeout { location, secs, attempts: attempt },
                FetchError::Network { location, error, .. } => {
                    FetchError::Network { location, error, attempts: attempt }
                }
                other => other,
            });
        }
        log::warn!("fetching {url} failed ({retry}); trying again in {} s", backoff.as_secs_f32());
        std::thread::sleep(backoff);
        backoff *= 2;
    }
}

enum Attempt {
    /// Worth another try.
    Again(FetchError),
    Final(FetchError),
}

fn get_once(client: &reqwest::blocking::Client, url: &str, limits: &FetchLimits) -> Result<Vec<u8>, Attempt> {
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            Attempt::Again(FetchError::Timeout {
                location: url.to_string(),
                secs: limits.timeout.as_secs(),
                attempts: 1,
            })
        } else {
            Attempt::Again(FetchError::Network { location: url.to_string(), error: chain(&e), attempts: 1 })
        }
    };
    let resp = client.get(url).send().map_err(transport)?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(Attempt::Final(FetchError::NotFound { location: url.to_string() }));
    }
    if !status.is_success() {
        let e = FetchError::Status { location: url.to_string(), status: status.as_u16() };
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            Attempt::Again(e)
        } else {
            Attempt::Final(e)
        });
    }
    if resp.content_length().is_some_and(|n| n > limits.max_bytes) {
        return Err(Attempt::Final(FetchError::TooLarge { location: url.to_string(), limit: limits.max_bytes }));
    }
    let mut out = Vec::new();
    let mut body = resp.take(limits.max_bytes + 1);
    if let Err(e) = body.read_to_end(&mut out) {
        // reqwest reports a body timeout as an io error wrapping its own.
        let timed_out =
            e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).is_some_and(|r| r.is_timeout());
        return Err(if timed_out {
            Attempt::Again(FetchError::Timeout {
                location: url.to_string(),
                secs: limits.timeout.as_secs(),
                attempts: 1,
            })
        } else {
            Attempt::Again(FetchError::Network {
                location: url.to_string(),
                error: format!("reading the body: {e}"),
                attempts: 1,
            })
        });
    }
    if out.len() as u64 > limits.max_bytes {
        return Err(Attempt::Final(FetchError::TooLarge { location: url.to_string(), limit: limits.max_bytes }));
    }
    Ok(out)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let next = inner.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_urls_or_absolute_directories() {
        assert_eq!("https://example.org/btf/".parse(), Ok(Archive::Http("https://example.org/btf".into())));
        assert_eq!("file:///srv/btf".parse(), Ok(Archive::Dir("/srv/btf".into())));
        assert!("file://relative".parse::<Archive>().is_err());
        assert!("ftp://example.org".parse::<Archive>().is_err());
        assert!("/srv/btf".parse::<Archive>().is_err());
        let a: Archive = DEFAULT_ARCHIVE.parse().unwrap();
        assert_eq!(
            a.location("debian/10/x86_64/4.19.0-27-amd64.btf.tar.xz"),
            format!("{DEFAULT_ARCHIVE}/debian/10/x86_64/4.19.0-27-amd64.btf.tar.xz")
        );
    }

    #[test]
    fn a_missing_file_in_a_directory_archive_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::Dir(dir.path().to_path_buf());
        assert!(matches!(fetch(&a, "x/y.btf.tar.xz", &FetchLimits::default()), Err(FetchError::NotFound { .. })));
    }

    #[test]
    fn a_directory_archive_obeys_the_size_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 100]).unwrap();
        let a = Archive::Dir(dir.path().to_path_buf());
        let limits = FetchLimits { max_bytes: 99, ..Default::default() };
        assert!(matches!(fetch(&a, "big", &limits), Err(FetchError::TooLarge { limit: 99, .. })));
        let limits = FetchLimits { max_bytes: 100, ..Default::default() };
        assert_eq!(fetch(&a, "big", &limits).unwrap().len(), 100);
    }
}
