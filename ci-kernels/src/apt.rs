//! Debian packages through the machine's own apt: resolve a meta package in a suite to the kernel
//! image it depends on, download it, and add a missing suite by copying the machine's existing Debian
//! source with the suite name changed (the archive address is never written into the repository: it
//! is read off this machine at run time). The parsing is pure; the rest shells out to apt.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::cache;

/// From `apt-cache madison PKG` output: the first binary version published in `suite` or one of its
/// update suites (`suite-security`, `suite-updates`, `suite-backports`). apt lists newest first.
pub fn madison_pick(output: &str, suite: &str) -> Option<String> {
    for line in output.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        if f.len() != 3 || !f[2].ends_with("Packages") {
            continue;
        }
        let Some(dist) = f[2].split_whitespace().nth(1) else { continue };
        let s = dist.split('/').next().unwrap_or("");
        if s == suite || s.strip_prefix(suite).is_some_and(|r| r.starts_with('-')) {
            return Some(f[1].to_string());
        }
    }
    None
}

/// From `apt-cache show META=VERSION`: the `linux-image-*` package it depends on, and the exact
/// version when the dependency pins one (`(= 6.1.176-1)`).
pub fn depends_image(show: &str) -> Option<(String, Option<String>)> {
    let deps = show.lines().find_map(|l| l.strip_prefix("Depends:"))?;
    for d in deps.split(',') {
        let d = d.split('|').next()?.trim();
        let name = d.split_whitespace().next()?;
        if name.starts_with("linux-image-") {
            let ver = d.split_once("(=").map(|(_, v)| v.trim().trim_end_matches(')').trim().to_string());
            return Some((name.to_string(), ver));
        }
    }
    None
}

/// A deb822 stanza for `suite`, copied from the first Debian (non-security) `deb` stanza of a
/// `.sources` file that carries `main`.
pub fn stanza_for_suite(sources: &str, suite: &str) -> Option<String> {
    for stanza in sources.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let (Some(types), Some(uris), Some(suites), Some(components)) =
            (field("Types"), field("URIs"), field("Suites"), field("Components"))
        else {
            continue;
        };
        if !types.split_whitespace().any(|t| t == "deb")
            || uris.contains("security")
            || !components.split_whitespace().any(|c| c == "main")
            || !suites.split_whitespace().any(|s| !s.contains('-'))
        {
            continue;
        }
        let mut out = format!("Types: deb\nURIs: {uris}\nSuites: {suite}\nComponents: main\n");
        if let Some(sb) = field("Signed-By") {
            out.push_str(&format!("Signed-By: {sb}\n"));
        }
        return Some(out);
    }
    None
}

/// The same from a one-line-style `sources.list`.
pub fn line_for_suite(list: &str, suite: &str) -> Option<String> {
    for l in list.lines() {
        let l = l.trim();
        let mut w = l.split_whitespace();
        if w.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = w.collect();
        let opts = if rest.first().is_some_and(|x| x.starts_with('[')) {
            let end = rest.iter().position(|x| x.ends_with(']'))?;
            rest.drain(..=end).collect::<Vec<_>>().join(" ") + " "
        } else {
            String::new()
        };
        if rest.len() < 3 || rest[0].contains("security") || rest[1].contains('-') || !rest[2..].contains(&"main") {
            continue;
        }
        return Some(format!("deb {opts}{} {suite} main\n", rest[0]));
    }
    None
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn madison(pkg: &str) -> Result<String> {
    run(Command::new("apt-cache").arg("madison").arg(pkg))
}

fn configured_suites() -> String {
    let mut all = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("list" | "sources")) {
                all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                all.push('\n');
            }
        }
    }
    all
}

/// Adds `suite` to apt (as /etc/apt/sources.list.d/strata-SUITE.sources or .list) and updates.
fn add_suite(suite: &str) -> Result<()> {
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut made = None;
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files {
            if p.extension().and_then(|x| x.to_str()) == Some("sources") {
                if let Some(s) = stanza_for_suite(&std::fs::read_to_string(&p).unwrap_or_default(), suite) {
                    made = Some((dir.join(format!("strata-{suite}.sources")), s));
                    break;
                }
            }
        }
    }
    if made.is_none() {
        let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
        made = line_for_suite(&list, suite).map(|s| (dir.join(format!("strata-{suite}.list")), s));
    }
    let (path, text) = made.ok_or_else(|| {
        anyhow!("no Debian apt source on this machine to copy for suite {suite}: add one for {suite} by hand")
    })?;
    eprintln!("ci-kernels: adding apt suite {suite} as {} (copied from this machine's Debian source)", path.display());
    std::fs::write(&path, text).with_context(|| format!("writing {} (needs root)", path.display()))?;
    apt_update()
}

fn apt_update() -> Result<()> {
    eprintln!("ci-kernels: apt-get update");
    let st = Command::new("apt-get").args(["update", "-qq"]).status().context("running apt-get update")?;
    if !st.success() {
        bail!("apt-get update failed ({st})");
    }
    Ok(())
}

/// The newest version of `pkg` in `suite`, adding the suite to apt if this machine lacks it.
pub fn version_in_suite(pkg: &str, suite: &str) -> Result<String> {
    if let Some(v) = madison_pick(&madison(pkg)?, suite) {
        return Ok(v);
    }
    let configured = configured_suites();
    if !configured.split_whitespace().any(|w| w == suite) {
        add_suite(suite)?;
    } else {
        apt_update()?;
    }
    madison_pick(&madison(pkg)?, suite)
        .ok_or_else(|| anyhow!("apt knows no {pkg} in suite {suite} (apt-cache madison {pkg})"))
}

/// Meta package in a suite → (image package, version).
pub fn resolve_image(meta: &str, suite: &str) -> Result<(String, String)> {
    let meta_ver = version_in_suite(meta, suite)?;
    let show = run(Command::new("apt-cache").arg("show").arg(format!("{meta}={meta_ver}")))?;
    let (image, pinned) =
        depends_image(&show).ok_or_else(|| anyhow!("{meta} {meta_ver} depends on no linux-image-* package"))?;
    let ver = match pinned {
        Some(v) => v,
        None => version_in_suite(&image, suite)?,
    };
    Ok((image, ver))
}

/// `apt-get download PKG=VERSION` into `dir` unless the file is already there. Returns its path.
pub fn download(pkg: &str, version: &str, arch: &str, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join(cache::deb_file_name(pkg, version, arch));
    if file.exists() {
        return Ok(file);
    }
    eprintln!("ci-kernels: apt-get download {pkg}={version}");
    let st = Command::new("apt-get")
        // The cache is root's: let apt write there directly instead of warning that `_apt` cannot.
        .args(["download", "-qq", "-o", "APT::Sandbox::User=root"])
        .arg(format!("{pkg}={version}"))
        .current_dir(dir)
        .status()
        .context("running apt-get download")?;
    if !st.success() || !file.exists() {
        bail!("apt-get download {pkg}={version} did not produce {}", file.display());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADISON: &str =
        "linux-image-amd64 |  6.1.192-2 | http://mirror.example/debian-security bookworm-security/main amd64 Packages
linux-image-amd64 |  6.1.176-1 | http://mirror.example/debian bookworm/main amd64 Packages
linux-image-amd64 | 5.10.237-1 | http://mirror.example/debian bullseye/main amd64 Packages
    linux | 5.10.237-1 | http://mirror.example/debian bullseye/main Sources
";

    #[test]
    fn picks_the_version_of_the_suite() {
        assert_eq!(madison_pick(MADISON, "bullseye").as_deref(), Some("5.10.237-1"));
        // The security suite belongs to the release: newest first wins.
        assert_eq!(madison_pick(MADISON, "bookworm").as_deref(), Some("6.1.192-2"));
        assert_eq!(madison_pick(MADISON, "trixie"), None);
        // "bullseye" must not match "bullseye2" or pick a Sources line.
        assert_eq!(madison_pick("p | 1 | http://x bullseye2/main amd64 Packages\n", "bullseye"), None);
        assert_eq!(madison_pick("p | 1 | http://x bullseye/main Sources\n", "bullseye"), None);
    }

    #[test]
    fn finds_the_image_a_meta_package_pins() {
        let show =
            "Package: linux-image-amd64\nVersion: 6.1.176-1\nDepends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)\n";
        assert_eq!(depends_image(show), Some(("linux-image-6.1.0-50-amd64".into(), Some("6.1.176-1".into()))));
        let unpinned = "Depends: initramfs-tools | linux-initramfs-tool, linux-image-5.10.0-35-amd64\n";
        assert_eq!(depends_image(unpinned), Some(("linux-image-5.10.0-35-amd64".into(), None)));
        assert_eq!(depends_image("Depends: foo\n"), None);
    }

    #[test]
    fn copies_a_deb822_source_with_the_suite_changed() {
        let src = "Types: deb\n# snapshot comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let s = stanza_for_suite(src, "bullseye").unwrap();
        assert_eq!(
            s,
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        // Only a security source: nothing to copy.
        assert_eq!(stanza_for_suite(&src[src.find("\n\n").unwrap() + 2..], "bullseye"), None);
    }

    #[test]
    fn copies_a_one_line_source_with_the_suite_changed() {
        let list = "# comment\ndeb http://mirror.example/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n";
        assert_eq!(
            line_for_suite(list, "bullseye").as_deref(),
            Some("deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bullseye main\n")
        );
        assert_eq!(line_for_suite("deb-src http://x/debian bookworm main\n", "bullseye"), None);
    }
}
