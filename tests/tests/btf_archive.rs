//! The archived-btf tier's archive, end to end against a real HTTP server (nginx) on loopback
//! serving real files: this kernel's own BTF packed the way the public archive packs entries
//! (`ID/VERSION_ID/ARCH/RELEASE.btf.tar.xz`), and every way an archive goes wrong. Each failure
//! must name the URL and what was wrong, leave the cache as it was, and end in exit code 3 for
//! `strata btf fetch` (and in the next tier for `strata run`, which the kernel matrix shows on
//! kernels without BTF, and the compat-check tests show on their facts).
//!
//! This kernel has BTF of its own, so `--always` / `--tier archived-btf` make strata use the
//! archive anyway; the BTF served is this kernel's, or one edited to describe another kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use btf_cache::edit::shift_member;
use strata_e2e::agent::Agent;
use strata_e2e::{require_tool, run_ok, servers};

const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// One agent at a time: a capture sees the whole node.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This node as the archive names it: (`ID/VERSION_ID/ARCH`, release).
fn archive_dir_and_release() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release").expect("/etc/os-release");
    let field = |k: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("/etc/os-release has no {k}"))
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string();
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        a => a,
    };
    (format!("{}/{}/{arch}", field("ID"), field("VERSION_ID")), release)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-btf-archive-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An archive tree holding `btf` as this kernel's entry (tar + xz, as the archive makes them);
/// `mangle` may damage the packed bytes. Returns the archive root.
fn archive_with(name: &str, btf: &[u8], mangle: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let root = scratch(name);
    let (dir, release) = archive_dir_and_release();
    let entry_dir = root.join(&dir);
    std::fs::create_dir_all(&entry_dir).unwrap();
    let work = scratch(&format!("{name}-pack"));
    std::fs::write(work.join(format!("{release}.btf")), btf).unwrap();
    let packed = entry_dir.join(format!("{release}.btf.tar.xz"));
    let tar = require_tool("tar", "tar");
    require_tool("xz", "xz-utils");
    run_ok(Command::new(tar).arg("-cJf").arg(&packed).arg("-C").arg(&work).arg(format!("{release}.btf")));
    let mut bytes = std::fs::read(&packed).unwrap();
    mangle(&mut bytes);
    std::fs::write(&packed, bytes).unwrap();
    std::fs::remove_dir_all(work).unwrap();
    root
}

fn kernel_btf() -> Vec<u8> {
    std::fs::read(KERNEL_BTF).unwrap_or_else(|e| {
        panic!(
            "{KERNEL_BTF}: {e}: these tests serve this kernel's own BTF, so they need a kernel with BTF (run as root)"
        )
    })
}

fn strata(args: &[&str]) -> Output {
    Command::new(strata_e2e::strata_bin()).args(args).output().expect("run strata")
}

fn fetch(archive: &str, cache: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["btf", "fetch", "--always", "--btf-archive", archive, "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    strata(&args)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_good_entry_is_fetched_checked_cached_and_never_fetched_twice() {
    let root = archive_with("good", &kernel_btf(), |_| {});
    let nginx = servers::nginx_files(&root);
    let cache = scratch("good-cache");
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let out = fetch(&url, &cache, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("fetched, checked against this kernel and cached"), "{stdout}");
    let cached = files_under(&cache.join("btf"));
    assert_eq!(cached.len(), 2, "the BTF and its sha256 record: {cached:?}");
    let btf_file = cached.iter().find(|p| p.extension().is_some_and(|e| e == "btf")).expect("the cached BTF");
    assert_eq!(std::fs::read(btf_file).unwrap(), kernel_btf(), "the cached BTF is the served one, unpacked");

    // A second fetch (a restart, a second pod) is answered from the cache: no request reaches the
    // archive.
    let requests = nginx.access_log().len();
    assert_eq!(requests, 1, "{:?}", nginx.access_log());
    let again = fetch(&url, &cache, &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already cached"));
    assert_eq!(nginx.access_log().len(), requests, "no second download");
    drop(nginx);
    let offline = fetch(&url, &cache, &[]);
    assert_eq!(offline.status.code(), Some(0), "the cache serves even with the archive gone");
}

/// A fetch that must fail, and how: exit 3, a message naming `what` and the entry's location, and
/// an empty cache.
#[track_caller]
fn assert_refused(out: &Output, cache: &Path, location: &str, what: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code: {stderr}");
    assert!(stderr.contains(location), "names {location}: {stderr}");
    for w in what {
        assert!(stderr.contains(w), "says {w:?}: {stderr}");
    }
    assert!(files_under(cache).is_empty(), "the cache is left as it was: {:?}", files_under(cache));
}

fn entry_location(base: &str) -> String {
    let (dir, release) = archive_dir_and_release();
    format!("{base}/{dir}/{release}.btf.tar.xz")
}

#[test]
fn a_missing_entry_is_not_found() {
    let root = scratch("empty");
    let nginx = servers::nginx_files(&root);
    let cache = scratch("empty-cache");
    let url = format!("http://127.0.0.1:{}", nginx.port);
    assert_refused(
        &fetch(&url, &cache, &[]),
        &cache,
        &entry_location(&url),
        &["not found", "no entry for this kernel"],
    );
}

#[test]
fn an_archive_that_never_answers_times_out_after_bounded_retries() {
    let silent = servers::silent();
    let cache = scratch("silent-cache");
    let url = format!("http://127.0.0.1:{}", silent.port);
    let started = std::time::Instant::now();
    let out = fetch(&url, &cache, &["--btf-timeout", "1s"]);
    assert_refused(&out, &cache, &entry_location(&url), &["no answer within 1 s", "tried 3 times"]);
    assert!(started.elapsed() < Duration::from_secs(30), "bounded: {:?}", started.elapsed());
}

#[test]
fn a_truncated_download_is_refused() {
    let root = archive_with("truncated", &kernel_btf(), |b| b.truncate(b.len() / 2));
    let nginx = servers::nginx_files(&root);
    let cache = scratch("truncated-cache");
    let url = format!("http://127.0.0.1:{}", nginx.port);
    assert_refused(&fetch(&url, &cache, &[]), &cache, &entry_location(&url), &["truncated or corrupt"]);
}

#[test]
fn a_corrupt_download_is_refused() {
    let root = archive_with("corrupt", &kernel_btf(), |b| {
        let mid = b.len() / 2;
        for x in &mut b[mid..mid + 64] {
            *x ^= 0xa5;
        }
    });
    let nginx = servers::nginx_files(&root);
    let cache = scratch("corrupt-cache");
    let url = format!("http://127.0.0.1:{}", nginx.port);
    assert_refused(&fetch(&url, &cache, &[]), &cache, &entry_location(&url), &["truncated or corrupt"]);
}

#[test]
fn garbage_in_place_of_btf_is_refused() {
    let root = archive_with("garbage", b"<html><body>502 Bad Gateway</body></html>", |_| {});
    let nginx = servers::nginx_files(&root);
    let cache = scratch("garbage-cache");
    let url = format!("http://127.0.0.1:{}", nginx.port);
    assert_refused(&fetch(&url, &cache, &[]), &cache, &entry_location(&url), &["is not BTF", "bad magic"]);
}

#[test]
fn a_btf_of_another_kernel_is_refused_by_the_check_against_this_one() {
    // This kernel's BTF with sock_common.skc_family moved: what a BTF of another build of the same
    // release looks like to the probes.
    let other = shift_member(&kernel_btf(), "sock_common", "skc_family", 8).unwrap();
    let root = archive_with("other-kernel", &other, |_| {});
    let nginx = servers::nginx_files(&root);
    let cache = scratch("other-cache");
    let url = format!("http://127.0.0.1:{}", nginx.port);
    assert_refused(&fetch(&url, &cache, &[]), &cache, &entry_location(&url), &["does not describe this kernel"]);
}

#[test]
fn run_with_a_forced_archived_tier_and_no_usable_entry_says_why() {
    let root = scratch("run-empty");
    let nginx = servers::nginx_files(&root);
    let cache = scratch("run-empty-cache");
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let out = strata(&[
        "run",
        "--tier",
        "archived-btf",
        "--btf-archive",
        &url,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--output",
        "none",
        "--prometheus-listen",
        "off",
        "--duration",
        "1s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--tier archived-btf cannot run here") && stderr.contains("not found"), "{stderr}");
}

/// The whole tier: `strata run --tier archived-btf` fetches this kernel's BTF from the archive,
/// caches it, relocates the probes with it (over the perf buffer too) and captures curl → nginx
/// exactly, on both sides.
#[test]
fn the_archived_btf_tier_captures_every_exchange_exactly() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = archive_with("capture", &kernel_btf(), |_| {});
    let archive = servers::nginx_files(&root);
    let cache = scratch("capture-cache");
    let url = format!("http://127.0.0.1:{}", archive.port);
    let web = servers::nginx();
    let curl = require_tool("curl", "curl");
    for transport in ["ring-buffer", "perf-buffer"] {
        let agent = Agent::start_records(&[
            "--tier",
            "archived-btf",
            "--transport",
            transport,
            "--btf-archive",
            &url,
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        for i in 0..5 {
            run_ok(
                Command::new(&curl)
                    .args(["-sS", "-o", "/dev/null"])
                    .arg(format!("http://127.0.0.1:{}/archived/{i}", web.port)),
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        let c = agent.stop();
        assert!(c.status.success(), "{}", c.stderr);
        assert!(c.stderr.contains("capturing: tier archived-btf"), "{}", c.stderr);
        assert!(c.stderr.contains(&transport.replace('-', " ")), "{}", c.stderr);
        for role in ["client", "server"] {
            let mut targets: Vec<String> = c
                .events
                .iter()
                .filter(|r| {
                    r["protocol"] == "http"
                        && r["role"] == role
                        && r["target"].as_str().is_some_and(|t| t.starts_with("/archived/"))
                })
                .map(|r| format!("{} {}", r["target"].as_str().unwrap(), r["status"].as_str().unwrap_or("-")))
                .collect();
            targets.sort();
            let want: Vec<String> = (0..5).map(|i| format!("/archived/{i} 200")).collect();
            assert_eq!(targets, want, "{transport}, {role} side");
        }
    }
    assert_eq!(archive.access_log().len(), 1, "fetched once, then from the cache: {:?}", archive.access_log());
}
