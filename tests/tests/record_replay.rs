//! `strata record` writes what a live capture saw; `strata replay` gives it back, without root,
//! and a damaged file gives back everything before the damage, then a clear error.

use std::process::{Command, Stdio};

use serde_json::Value;
use strata_e2e::agent::Captured;
use strata_e2e::{require_root, require_tool, servers, strata_bin};

fn replay_as(args: &[&str], unprivileged: bool) -> std::process::Output {
    let mut cmd = if unprivileged {
        let mut c = Command::new(require_tool("setpriv", "util-linux"));
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]);
        c.arg(strata_e2e::strata_bin_for_nobody());
        c
    } else {
        Command::new(strata_bin())
    };
    cmd.arg("replay").args(args).output().unwrap()
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_recorded_exchange_replays_without_root_and_damage_is_reported() {
    require_root();
    let nginx = servers::nginx();
    let dir = std::env::temp_dir().join(format!("strata-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = dir.join("http.cap");

    let mut rec = Command::new(strata_bin())
        .args(["record", "--tier", "core", "--out", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it captures: its log says so.
    let mut err = std::io::BufReader::new(rec.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("capturing:") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0, "strata record exited early");
    }
    let url = format!("http://127.0.0.1:{}/recorded", nginx.port);
    let curl = Command::new(require_tool("curl", "curl")).args(["-s", "-o", "/dev/null", &url]).status().unwrap();
    assert!(curl.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    assert!(rec.wait().unwrap().success());
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    // Replayed by nobody, with no capabilities: the exchange is there.
    let out = replay_as(&[file.to_str().unwrap(), "--output", "jsonl", "--raw-events"], true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = lines(&out.stdout);
    let request = events
        .iter()
        .find(|e| e["event"] == "data" && Captured::payload(e).starts_with(b"GET /recorded HTTP/1.1\r\n"))
        .expect("curl's request in the replay");
    assert_eq!(request["role"], "client");
    assert_eq!(request["remote"], format!("127.0.0.1:{}", nginx.port));
    assert!(events.iter().any(|e| e["event"] == "close" && e["comm"] == "nginx"));
    // Deterministic: the same file gives the same lines, wall-clock times included.
    assert_eq!(replay_as(&[file.to_str().unwrap(), "--output", "jsonl", "--raw-events"], false).stdout, out.stdout);

    // Cut short: every whole record before the cut comes out, then an error naming the file.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.cap");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = replay_as(&[cut.to_str().unwrap(), "--output", "jsonl", "--raw-events"], false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cut.cap") && stderr.contains("good records, which were replayed"), "{stderr}");
    let partial = lines(&out.stdout);
    assert!(partial.len() < events.len());
    assert_eq!(partial[..], events[..partial.len()], "the records before the cut are the same");

    // Not a capture at all.
    std::fs::write(dir.join("junk.cap"), b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let out = replay_as(&[dir.join("junk.cap").to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a strata capture file"));
    std::fs::remove_dir_all(dir).unwrap();
}
