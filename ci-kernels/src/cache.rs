//! The download/build cache: where it lives and how entries are keyed. Keys are pure functions of
//! content, so a changed package version or config fragment gets a new entry and old ones stay valid.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

pub const DEFAULT_DIR: &str = "/var/cache/strata-ci-kernels";
pub const ENV: &str = "STRATA_KERNEL_CACHE";

/// `$STRATA_KERNEL_CACHE`, or the default.
pub fn dir_from(env: Option<std::ffi::OsString>) -> PathBuf {
    match env {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_DIR),
    }
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The file `apt-get download` writes for a package version (epoch colon escaped as apt does).
pub fn deb_file_name(package: &str, version: &str, arch: &str) -> String {
    format!("{package}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Directory (under `kernels/`) holding the vmlinuz extracted from a kernel .deb.
pub fn deb_kernel_key(deb_file: &str) -> String {
    format!("deb-{}", deb_file.trim_end_matches(".deb"))
}

/// Directory (under `builds/`) holding a kernel built from a source package with a config.
/// `RECIPE` is bumped when the build steps change in a way that changes the output.
pub fn build_key(source_deb_file: &str, base: &str, fragment: &str) -> String {
    // v2: the configured and built tree is kept (with its modules and Module.symvers), so
    // strata's kernel module can be built against it as against a node's headers.
    const RECIPE: &str = "bzImage-v2-tree";
    let h = sha256_hex(&[RECIPE.as_bytes(), source_deb_file.as_bytes(), base.as_bytes(), fragment.as_bytes()]);
    format!("build-{}", &h[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_defaults_and_overrides() {
        assert_eq!(dir_from(None), PathBuf::from("/var/cache/strata-ci-kernels"));
        assert_eq!(dir_from(Some("".into())), PathBuf::from("/var/cache/strata-ci-kernels"));
        assert_eq!(dir_from(Some("/tmp/k".into())), PathBuf::from("/tmp/k"));
    }

    #[test]
    fn deb_keys_follow_the_package_file() {
        let f = deb_file_name("linux-image-6.1.0-50-amd64", "6.1.176-1", "amd64");
        assert_eq!(f, "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb");
        assert_eq!(deb_kernel_key(&f), "deb-linux-image-6.1.0-50-amd64_6.1.176-1_amd64");
        assert_eq!(deb_file_name("p", "1:2.0", "all"), "p_1%3a2.0_all.deb");
    }

    #[test]
    fn build_keys_change_with_source_and_config() {
        let a = build_key("linux-source-5.10_5.10.237-1_all.deb", "tinyconfig", "CONFIG_X=y\n");
        assert_eq!(a, build_key("linux-source-5.10_5.10.237-1_all.deb", "tinyconfig", "CONFIG_X=y\n"));
        assert_ne!(a, build_key("linux-source-5.10_5.10.238-1_all.deb", "tinyconfig", "CONFIG_X=y\n"));
        assert_ne!(a, build_key("linux-source-5.10_5.10.237-1_all.deb", "tinyconfig", "CONFIG_Y=y\n"));
        assert_ne!(a, build_key("linux-source-5.10_5.10.237-1_all.deb", "allnoconfig", "CONFIG_X=y\n"));
        assert!(a.starts_with("build-") && a.len() == 6 + 16);
    }

    #[test]
    fn sha256_known_vector_and_framing() {
        // sha256 of 8 zero bytes (the length prefix of an empty part).
        assert_eq!(sha256_hex(&[b""]), "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc");
        assert_ne!(sha256_hex(&[b"ab", b"c"]), sha256_hex(&[b"a", b"bc"]));
    }
}
