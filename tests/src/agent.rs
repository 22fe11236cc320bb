//! A `strata run --output jsonl` process under test.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Agent {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

/// What a stopped agent printed.
pub struct Captured {
    pub events: Vec<Value>,
    pub stderr: String,
    pub status: ExitStatus,
}

impl Agent {
    /// Starts `strata run --output jsonl --raw-events <extra>` (the normalized events) and waits
    /// until it says it is capturing.
    pub fn start(extra: &[&str]) -> Agent {
        Agent::spawn(&[&["run", "--output", "jsonl", "--raw-events"], extra].concat(), true)
    }

    /// Starts `strata run --output jsonl <extra>`: request/response records (no Prometheus
    /// endpoint, so tests running side by side do not compete for its port).
    pub fn start_records(extra: &[&str]) -> Agent {
        Agent::spawn(&[&["run", "--output", "jsonl", "--prometheus-listen", "off"], extra].concat(), true)
    }

    /// Starts `strata <args>` with extra environment variables, its standard output discarded:
    /// for the exporters' tests, which read what strata exports instead.
    pub fn start_exporting(args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::spawn_with(args, env, false)
    }

    /// Like [`Agent::start_exporting`], with another build of strata (a benchmark's baseline).
    pub fn start_exporting_binary(bin: &std::path::Path, args: &[&str]) -> Agent {
        Agent::spawn_binary(bin, args, &[], false)
    }

    /// Starts `strata <args>` with extra environment variables, keeping its standard output (the
    /// records, with `--output jsonl`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::spawn_with(args, env, true)
    }

    /// Starts `strata record --out FILE <extra>`: the events go to a capture file.
    pub fn start_recording(file: &std::path::Path, extra: &[&str]) -> Agent {
        Agent::spawn(&[&["record", "--out", file.to_str().unwrap()], extra].concat(), true)
    }

    /// Like [`Agent::start`], with the events written to /dev/null (for load and benchmarks).
    pub fn start_discarding(extra: &[&str]) -> Agent {
        Agent::spawn(&[&["run", "--output", "jsonl", "--raw-events"], extra].concat(), false)
    }

    fn spawn(args: &[&str], keep_output: bool) -> Agent {
        Agent::spawn_with(args, &[], keep_output)
    }

    fn spawn_with(args: &[&str], env: &[(&str, &str)], keep_output: bool) -> Agent {
        Agent::spawn_binary(&crate::strata_bin(), args, env, keep_output)
    }

    fn spawn_binary(bin: &std::path::Path, args: &[&str], env: &[(&str, &str)], keep_output: bool) -> Agent {
        crate::require_root();
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(if keep_output { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        let out = child.stdout.take();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut out) = out {
                out.read_to_string(&mut s).expect("read strata stdout");
            }
            s
        });
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent { child, stdout: Some(stdout), stderr_lines: rx, stderr_seen: vec![] };
        agent.wait_for_stderr("capturing:", Duration::from_secs(30));
        agent
    }

    fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.stderr_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!("strata did not start capturing; its stderr:\n{}", self.stderr_seen.join("\n"));
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`, waits for the exit, and returns everything printed.
    pub fn stop_with(mut self, signal: i32) -> Captured {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("strata did not exit within 30 s of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.take().unwrap().join().unwrap();
        self.stderr_seen.extend(self.stderr_lines.try_iter());
        let events = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        Captured { events, stderr: self.stderr_seen.join("\n"), status }
    }

    pub fn stop(self) -> Captured {
        self.stop_with(libc::SIGINT)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Captured {
    /// Events of one kind ("open", "data", "close", "state", "loss").
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["event"] == kind)
    }

    /// Events of a process.
    pub fn of_pid(&self, pid: u32) -> impl Iterator<Item = &Value> + '_ {
        self.events.iter().filter(move |e| e["pid"] == pid)
    }

    /// Total of records reported lost by source (e.g. "kernel_data").
    pub fn lost(&self, source: &str) -> u64 {
        self.of_kind("loss").filter(|e| e["source"] == source).map(|e| e["count"].as_u64().unwrap()).sum()
    }

    /// Records of these processes reported lost, any source: losses the kernel or the agent could
    /// attribute (another process's drops never count here).
    pub fn lost_by(&self, pids: &[u32]) -> u64 {
        self.of_kind("loss").filter(|e| pids.iter().any(|p| e["pid"] == *p)).map(|e| e["count"].as_u64().unwrap()).sum()
    }

    /// Records reported lost without a process (pid 0): whose they were, nobody can tell.
    pub fn lost_unattributed(&self) -> u64 {
        self.lost_by(&[0])
    }

    /// The captured payload of a data event, unescaped to bytes.
    pub fn payload(ev: &Value) -> Vec<u8> {
        let s = ev["payload"].as_str().expect("payload string");
        strata_event::Payload::unescape(s).unwrap_or_else(|| panic!("malformed payload escape: {s:?}")).to_vec()
    }
}
