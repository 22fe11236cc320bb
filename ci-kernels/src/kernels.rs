//! Getting a bootable kernel image for a manifest entry: extract vmlinuz from a Debian kernel .deb,
//! or build a bzImage from a Debian kernel source package plus a config fragment. Both cached.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::manifest::{BuildSource, DebSource, Kernel, Source};
use crate::{apt, cache};

pub struct Prepared {
    pub image: PathBuf,
    /// `uname -r` of the kernel, where known before boot (Debian packages name it; a build's tree
    /// says it).
    pub release: Option<String>,
    /// A built kernel's tree, ready for external modules (`make M=...`).
    pub build_tree: Option<PathBuf>,
    /// What it is, for the log: the package file or the build key.
    pub what: String,
    pub cached: bool,
}

pub fn prepare(kernel: &Kernel, cache_dir: &Path, manifest_dir: &Path) -> Result<Prepared> {
    match kernel.source() {
        Source::Deb(d) => from_deb(d, cache_dir),
        Source::Build(b) => build(b, cache_dir, manifest_dir),
    }
}

fn sh(script: &str) -> Result<()> {
    let st = Command::new("sh").arg("-c").arg(script).status().with_context(|| format!("running {script}"))?;
    if !st.success() {
        bail!("`{script}` failed ({st})");
    }
    Ok(())
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn from_deb(d: &DebSource, cache_dir: &Path) -> Result<Prepared> {
    let (pkg, ver) = apt::resolve_image(&d.meta, &d.suite)?;
    let deb_name = cache::deb_file_name(&pkg, &ver, "amd64");
    let out_dir = cache_dir.join("kernels").join(cache::deb_kernel_key(&deb_name));
    let image = out_dir.join("vmlinuz");
    let release = pkg.strip_prefix("linux-image-").map(str::to_string);
    if image.exists() {
        return Ok(Prepared { image, release, build_tree: None, what: deb_name, cached: true });
    }
    let deb = apt::download(&pkg, &ver, "amd64", &cache_dir.join("debs"))?;
    let tmp = out_dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    // Only ./boot: the modules are most of the package and an initramfs-only boot needs none.
    sh(&format!("dpkg-deb --fsys-tarfile {} | tar -x -C {} --wildcards './boot/vmlinuz-*'", quote(&deb), quote(&tmp)))?;
    let vmlinuz = std::fs::read_dir(tmp.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .with_context(|| format!("no boot/vmlinuz-* in {}", deb.display()))?;
    std::fs::rename(&vmlinuz, tmp.join("vmlinuz"))?;
    std::fs::remove_dir_all(tmp.join("boot"))?;
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::rename(&tmp, &out_dir)?;
    Ok(Prepared { image, release, build_tree: None, what: deb_name, cached: false })
}

/// Lines of the fragment the final .config does not honour: `CONFIG_X=y` that is not set, or
/// `# CONFIG_X is not set` that is on. Pure.
pub fn fragment_drift(config: &str, fragment: &str) -> Vec<String> {
    let mut drift = Vec::new();
    for l in fragment.lines().map(str::trim) {
        if let Some(rest) = l.strip_prefix("# ").and_then(|r| r.strip_suffix(" is not set")) {
            if rest.starts_with("CONFIG_") && config.lines().any(|c| c.starts_with(&format!("{rest}="))) {
                drift.push(format!("{rest} is on, the fragment wants it off"));
            }
        } else if l.starts_with("CONFIG_") && !config.lines().any(|c| c.trim() == l) {
            let name = l.split('=').next().unwrap_or(l);
            let actual = config
                .lines()
                .find(|c| c.starts_with(&format!("{name}=")) || *c == format!("# {name} is not set"))
                .unwrap_or("nothing");
            drift.push(format!("{l} did not stick (a dependency is missing?): .config has {actual}"));
        }
    }
    drift
}

fn check_tools() -> Result<()> {
    let mut missing = Vec::new();
    for t in ["make", "gcc", "flex", "bison", "bc", "xz", "perl"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            missing.push(t);
        }
    }
    for (h, pkg) in [("/usr/include/libelf.h", "libelf-dev"), ("/usr/include/openssl/ssl.h", "libssl-dev")] {
        if !Path::new(h).exists() {
            missing.push(pkg);
        }
    }
    if !missing.is_empty() {
        bail!(
            "building a kernel needs {}: apt-get install build-essential flex bison bc xz-utils libelf-dev libssl-dev",
            missing.join(", ")
        );
    }
    Ok(())
}

fn build(b: &BuildSource, cache_dir: &Path, manifest_dir: &Path) -> Result<Prepared> {
    let frag_path = manifest_dir.join(&b.fragment);
    let fragment = std::fs::read_to_string(&frag_path).with_context(|| format!("reading {}", frag_path.display()))?;
    let ver = apt::version_in_suite(&b.source, &b.suite)?;
    let arch = "all";
    let deb_name = cache::deb_file_name(&b.source, &ver, arch);
    let key = cache::build_key(&deb_name, &b.base, &fragment);
    let out_dir = cache_dir.join("builds").join(&key);
    let image = out_dir.join("bzImage");
    let tree = out_dir.join("tree");
    let release =
        || std::fs::read_to_string(tree.join("include/config/kernel.release")).ok().map(|r| r.trim().to_string());
    if image.exists() && tree.is_dir() {
        return Ok(Prepared {
            image,
            release: release(),
            build_tree: Some(tree.clone()),
            what: format!("{key} ({deb_name} + {})", b.fragment),
            cached: true,
        });
    }
    check_tools()?;
    let deb = apt::download(&b.source, &ver, arch, &cache_dir.join("debs"))?;
    let work = cache_dir.join("builds").join(format!("{key}.work"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let log = work.join("build.log");
    let started = Instant::now();
    eprintln!("ci-kernels: building {key} from {deb_name} + {} (log: {})", b.fragment, log.display());
    sh(&format!(
        "cd {w} && dpkg-deb --fsys-tarfile {deb} | tar -x --wildcards './usr/src/linux-source-*.tar.xz' \
         && tar -xf usr/src/linux-source-*.tar.xz && rm -rf usr",
        w = quote(&work),
        deb = quote(&deb)
    ))?;
    let tree = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("linux-source-")))
        .context("the source package held no linux-source-* tree")?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    sh(&format!("cd {t} && make {base} >>{l} 2>&1", t = quote(&tree), base = b.base, l = quote(&log)))?;
    {
        use std::io::Write;
        let mut cfg = std::fs::OpenOptions::new().append(true).open(tree.join(".config"))?;
        writeln!(cfg, "\n# ci-kernels fragment {}\n{fragment}", b.fragment)?;
    }
    sh(&format!("cd {t} && make olddefconfig >>{l} 2>&1", t = quote(&tree), l = quote(&log)))?;
    let config = std::fs::read_to_string(tree.join(".config"))?;
    let drift = fragment_drift(&config, &fragment);
    if !drift.is_empty() {
        bail!("the configured kernel does not match {}:\n  {}", b.fragment, drift.join("\n  "));
    }
    // The image, then the modules (and Module.symvers) external modules are built against.
    sh(&format!("cd {t} && make -j{jobs} bzImage modules >>{l} 2>&1", t = quote(&tree), l = quote(&log)))
        .with_context(|| format!("kernel build failed: see {}", log.display()))?;
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir)?;
    std::fs::copy(tree.join("arch/x86/boot/bzImage"), &image)?;
    std::fs::write(out_dir.join("config"), &config)?;
    std::fs::copy(&log, out_dir.join("build.log"))?;
    std::fs::rename(&tree, out_dir.join("tree"))?;
    std::fs::remove_dir_all(&work)?;
    eprintln!("ci-kernels: built {key} in {:.0} s", started.elapsed().as_secs_f64());
    let tree = out_dir.join("tree");
    Ok(Prepared {
        image,
        release: release(),
        build_tree: Some(tree.clone()),
        what: format!("{key} ({deb_name} + {})", b.fragment),
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_detects_options_that_did_not_stick_or_came_back() {
        let frag = "# comment\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_BPF_SYSCALL is not set\n";
        let good = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_BPF_SYSCALL is not set\n";
        assert!(fragment_drift(good, frag).is_empty());
        let bad = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_BPF_SYSCALL=y\n";
        let d = fragment_drift(bad, frag);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("CONFIG_B=y did not stick") && d[0].contains("# CONFIG_B is not set"));
        assert!(d[1].contains("CONFIG_BPF_SYSCALL is on"));
    }
}

/// A Debian kernel's headers, as its headers packages install them (`linux-headers-R` and the
/// `linux-headers-ABI-common` it includes), extracted under the cache.
pub struct HeadersTree {
    /// `…/usr/src/linux-headers-R`: what `strata btf generate --headers` is given.
    pub dir: PathBuf,
    pub release: String,
}

/// The `-common` package a Debian headers package includes: the release without its flavour.
pub fn common_headers_package(release: &str) -> Option<String> {
    release.rsplit_once('-').map(|(abi, _flavour)| format!("linux-headers-{abi}-common"))
}

/// Downloads and extracts the headers of the kernel `d` names (cached by the package files).
pub fn headers(d: &DebSource, cache_dir: &Path) -> Result<HeadersTree> {
    let (image, ver) = apt::resolve_image(&d.meta, &d.suite)?;
    let release = image.strip_prefix("linux-image-").context("not a linux-image-* package")?.to_string();
    let arch_pkg = format!("linux-headers-{release}");
    let common_pkg = common_headers_package(&release).with_context(|| format!("no flavour in release {release}"))?;
    let arch_deb = cache::deb_file_name(&arch_pkg, &ver, "amd64");
    let out = cache_dir.join("headers").join(cache::deb_kernel_key(&arch_deb));
    let dir = out.join("root/usr/src").join(&arch_pkg);
    if dir.join("include/generated/utsrelease.h").is_file() {
        return Ok(HeadersTree { dir, release });
    }
    let debs = cache_dir.join("debs");
    let arch = apt::download(&arch_pkg, &ver, "amd64", &debs)?;
    let common = apt::download(&common_pkg, &ver, "all", &debs)?;
    let tmp = out.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("root"))?;
    for deb in [&arch, &common] {
        sh(&format!("dpkg-deb -x {} {}", quote(deb), quote(&tmp.join("root"))))?;
    }
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out)?;
    Ok(HeadersTree { dir, release })
}

/// The kbuild package a Debian headers package depends on (`linux-kbuild-6.1`,
/// `linux-kbuild-6.12.117+deb12`), from its Depends field. Pure.
pub fn kbuild_package(depends: &str) -> Option<String> {
    depends
        .split(',')
        .map(|d| d.trim().split([' ', '(']).next().unwrap_or(""))
        .find(|name| name.starts_with("linux-kbuild-"))
        .map(str::to_string)
}

/// A Debian headers tree a module can be built against, as on a node with the headers package
/// installed: the headers (arch and -common) plus the kbuild package their `scripts` link to,
/// extracted under one root. The arch Makefile includes the -common one by its absolute
/// /usr/src path, which is rewritten to the root here.
pub fn kbuild_tree(d: &DebSource, cache_dir: &Path) -> Result<HeadersTree> {
    let tree = headers(d, cache_dir)?;
    let root =
        tree.dir.parent().and_then(Path::parent).and_then(Path::parent).context("headers tree root")?.to_path_buf();
    let ready = root.join(".kbuild-ready");
    if ready.is_file() {
        return Ok(tree);
    }
    let (image, ver) = apt::resolve_image(&d.meta, &d.suite)?;
    let arch_pkg = image.replace("linux-image-", "linux-headers-");
    let arch_deb = apt::download(&arch_pkg, &ver, "amd64", &cache_dir.join("debs"))?;
    let depends = Command::new("dpkg-deb").arg("-f").arg(&arch_deb).arg("Depends").output()?;
    let depends = String::from_utf8_lossy(&depends.stdout).to_string();
    let kbuild =
        kbuild_package(&depends).with_context(|| format!("{arch_pkg} depends on no linux-kbuild-* ({depends})"))?;
    let kbuild_ver = apt::version_in_suite(&kbuild, &d.suite)?;
    let kbuild_deb = apt::download(&kbuild, &kbuild_ver, "amd64", &cache_dir.join("debs"))?;
    sh(&format!("dpkg-deb -x {} {}", quote(&kbuild_deb), quote(&root)))?;
    let makefile = tree.dir.join("Makefile");
    let text = std::fs::read_to_string(&makefile)?;
    std::fs::write(&makefile, text.replace("/usr/src/", &format!("{}/usr/src/", root.display())))?;
    std::fs::write(&ready, format!("{kbuild} {kbuild_ver}\n"))?;
    Ok(tree)
}

/// The compiler a kbuild tree's Makefile names (`gcc-12`), when it names one. Pure.
pub fn named_compiler(makefile_vars: &str) -> Option<String> {
    makefile_vars
        .lines()
        .filter(|l| l.trim_start().starts_with("CC"))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ')'))
        .find(|w| w.starts_with("gcc-"))
        .map(str::to_string)
}

#[cfg(test)]
mod headers_tests {
    #[test]
    fn the_kbuild_package_comes_from_depends() {
        let d = "linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), linux-kbuild-6.12.117+deb12, gcc-12";
        assert_eq!(super::kbuild_package(d).as_deref(), Some("linux-kbuild-6.12.117+deb12"));
        let d = "linux-headers-5.10.0-32-common (= 5.10.223-1), linux-kbuild-5.10 (>= 5.10.223-1), linux-compiler-gcc-10-x86";
        assert_eq!(super::kbuild_package(d).as_deref(), Some("linux-kbuild-5.10"));
        assert_eq!(super::kbuild_package("gcc-12"), None);
    }

    #[test]
    fn the_compiler_the_makefile_names() {
        let v = "override ARCH = x86\nCCACHE = ccache\nCC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-12\n";
        assert_eq!(super::named_compiler(v).as_deref(), Some("gcc-12"));
        let v = "CC = $(if $(X),$(CCACHE)) gcc-10\n";
        assert_eq!(super::named_compiler(v).as_deref(), Some("gcc-10"));
    }

    #[test]
    fn the_common_package_drops_the_flavour() {
        assert_eq!(super::common_headers_package("6.1.0-57-amd64").as_deref(), Some("linux-headers-6.1.0-57-common"));
        assert_eq!(
            super::common_headers_package("6.12.117+deb12-amd64").as_deref(),
            Some("linux-headers-6.12.117+deb12-common")
        );
    }
}
