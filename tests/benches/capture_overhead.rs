//! What capture costs the service it watches, measured the way operators run strata: wrk -t1 -c32
//! against nginx on loopback with nothing capturing, with only the raw_syscalls hooks attached and
//! their programs returning at once (`hooks-only`: the floor of any capture on syscall hooks, see
//! probes-core/bpf/hooks_floor.bpf.c), with `strata run --output none` (the default
//! exporters: Prometheus on) on the core tier (its default hooks: raw_syscalls where the kernel has
//! its own BTF), the core tier on the per-syscall tracepoints (`per-syscall`: what kernels without
//! BTF run), the same on the perf-event tier, and with tcpdump
//! capturing 4 KiB of every packet (`tcpdump -i lo -s 4096 -w /dev/null`) as the packet-capture
//! peer. The modes alternate round by round, so drift on this shared machine hits them alike.
//!
//! For each mode: requests/s, the ratio to uncaptured and the capturing process's CPU over the
//! window (utime + stime). The kernel's per-program statistics (kernel.bpf_stats_enabled) cost
//! two clock reads per program run, so they are off where throughput is measured and on only in a
//! mode of their own, `core+stats` (and `per-syscall+stats`): its row gives the in-kernel time per
//! program run and per request, and each program's (run_time_ns / run_cnt, read with bpftool).
//! Per request is what compares the hooks: a raw_syscalls program runs for every syscall, most of
//! them returning at once. Then a fixed-rate run
//! (RATE requests/s over keep-alive connections) with the core tier: the agent's CPU per 1 000
//! requests/s, what a fleet pays every day.
//!
//!     cargo build --release -p collector && cargo bench -p strata-e2e --bench capture_overhead
//!
//! ROUNDS, SECONDS and RATE (environment) change the length and the fixed rate; MODES (a comma
//! list of off, hooks-only, core, core+stats, per-syscall, per-syscall+stats, perf-event, tcpdump) picks modes; extra strata arguments go in STRATA_ARGS.
//! BASELINE=/path/to/strata adds `baseline` and `baseline+stats`: the core tier of that other build,
//! alternating with this one's in the same rounds. On a shared machine whose uncaptured rate moves
//! by a quarter from run to run, that is how a change is measured (e.g. a copy of target/release/strata
//! taken before it).
//! Needs root, nginx, wrk, tcpdump and bpftool.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_e2e::agent::Agent;
use strata_e2e::{free_port, require_tool, servers};

fn wrk(port: u16, seconds: u32) -> f64 {
    let wrk = require_tool("wrk", "wrk");
    let out = Command::new(wrk)
        .args(["-t1", "-c32", &format!("-d{seconds}s"), &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("Requests/sec:")).unwrap_or_else(|| panic!("wrk said: {text}"));
    line["Requests/sec:".len()..].trim().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// (run_time_ns, run_cnt) of each of strata's loaded programs, by name.
fn bpf_stats() -> BTreeMap<String, (u64, u64)> {
    let ours: Vec<&str> =
        probes_core::objects::PROBES.iter().chain(probes_core::objects::RAW_PROBES).map(|p| p.program).collect();
    let out = Command::new(require_tool("bpftool", "bpftool")).args(["prog", "show", "--json"]).output().unwrap();
    let progs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut stats = BTreeMap::new();
    for p in progs {
        let Some(name) = p["name"].as_str() else { continue };
        // The kernel keeps 15 bytes of a name; bpftool shows BTF's full name where it has it.
        let Some(full) = ours.iter().find(|o| **o == name || (name.len() == 15 && o.starts_with(name))) else {
            continue;
        };
        let e = stats.entry(full.to_string()).or_insert((0, 0));
        e.0 += p["run_time_ns"].as_u64().unwrap_or(0);
        e.1 += p["run_cnt"].as_u64().unwrap_or(0);
    }
    stats
}

fn stats_delta(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
) -> BTreeMap<String, (u64, u64)> {
    after
        .iter()
        .map(|(k, (t, c))| {
            let (t0, c0) = before.get(k).copied().unwrap_or((0, 0));
            (k.clone(), (t.saturating_sub(t0), c.saturating_sub(c0)))
        })
        .collect()
}

/// What capturing during a window cost.
#[derive(Default)]
struct Window {
    rps: f64,
    cpu: f64,
    bpf: BTreeMap<String, (u64, u64)>,
}

enum Capturer {
    Strata(Agent),
    Tcpdump(Child),
    /// Programs in the kernel only: no process of its own.
    HooksOnly(probes_core::hooks_floor::HooksFloor),
}

impl Capturer {
    fn pid(&self) -> Option<u32> {
        match self {
            Capturer::Strata(a) => Some(a.pid()),
            Capturer::Tcpdump(c) => Some(c.id()),
            Capturer::HooksOnly(_) => None,
        }
    }

    fn stop(self) {
        match self {
            Capturer::Strata(a) => {
                let c = a.stop();
                assert!(c.status.success(), "strata failed: {}", c.stderr);
            }
            Capturer::Tcpdump(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Capturer::HooksOnly(floor) => drop(floor),
        }
    }
}

/// `strata run` as operators run it (no record output, Prometheus on), on `tier_args`.
fn strata_args<'a>(tier_args: &[&'a str], listen: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [&["run", "--output", "none"][..], tier_args, &["--prometheus-listen", listen][..], extra].concat()
}

fn start(mode: &str, extra: &[&str]) -> Option<Capturer> {
    let listen = format!("127.0.0.1:{}", free_port());
    let strata = |tier_args: &[&str]| {
        Some(Capturer::Strata(Agent::start_exporting(&strata_args(tier_args, &listen, extra), &[])))
    };
    match mode {
        "off" => None,
        "hooks-only" => {
            let floor = probes_core::hooks_floor::attach().unwrap_or_else(|e| panic!("hooks-only: {e}"));
            Some(Capturer::HooksOnly(floor))
        }
        "baseline" | "baseline+stats" => {
            let bin = std::env::var_os("BASELINE").expect("the baseline modes need BASELINE=/path/to/strata");
            let args = strata_args(&["--tier", "core"], &listen, extra);
            Some(Capturer::Strata(Agent::start_exporting_binary(std::path::Path::new(&bin), &args)))
        }
        "core" | "core+stats" => strata(&["--tier", "core"]),
        "per-syscall" | "per-syscall+stats" => strata(&["--tier", "core", "--syscall-hooks", "per-syscall"]),
        "perf-event" => strata(&["--tier", "perf-event"]),
        "tcpdump" => {
            let child = Command::new(require_tool("tcpdump", "tcpdump"))
                .args(["-i", "lo", "-s", "4096", "-w", "/dev/null"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tcpdump");
            std::thread::sleep(Duration::from_millis(500));
            Some(Capturer::Tcpdump(child))
        }
        m => panic!("unknown mode {m}"),
    }
}

fn measure(mode: &str, extra: &[&str], load: impl FnOnce() -> f64) -> Window {
    set_bpf_stats(mode.ends_with("+stats"));
    let capturer = start(mode, extra);
    let pid = capturer.as_ref().and_then(Capturer::pid);
    let (cpu0, bpf0) = (pid.map(cpu_seconds).unwrap_or(0.0), bpf_stats());
    let rps = load();
    let (cpu1, bpf1) = (pid.map(cpu_seconds).unwrap_or(0.0), bpf_stats());
    if let Some(c) = capturer {
        c.stop();
    }
    set_bpf_stats(false);
    Window { rps, cpu: cpu1 - cpu0, bpf: stats_delta(&bpf0, &bpf1) }
}

/// kernel.bpf_stats_enabled: per-program run counts and times, at two clock reads per run.
fn set_bpf_stats(on: bool) {
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", if on { "1" } else { "0" })
        .expect("set kernel.bpf_stats_enabled (run as root)");
}

/// `rate` requests/s for `seconds` over 4 keep-alive connections; returns the rate achieved.
fn paced(port: u16, rate: u64, seconds: u64) -> f64 {
    const CONNS: u64 = 4;
    let threads: Vec<_> = (0..CONNS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut buf = vec![0u8; 4096];
                let per = rate / CONNS;
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < Duration::from_secs(seconds) {
                    let due = start + Duration::from_micros(n * 1_000_000 / per.max(1));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    s.write_all(b"GET /paced HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
                    // nginx answers with a fixed body: read until the head and its body are in.
                    let mut got = Vec::new();
                    loop {
                        let k = s.read(&mut buf).unwrap();
                        assert!(k > 0, "nginx closed the connection");
                        got.extend_from_slice(&buf[..k]);
                        if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"hello from nginx\n") {
                            break;
                        }
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / seconds as f64
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not run us for real.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = env("ROUNDS", 5);
    let seconds: u32 = env("SECONDS", 5);
    let rate: u64 = env("RATE", 5000);
    let mut modes: Vec<String> =
        env("MODES", "off,hooks-only,core,core+stats,per-syscall,perf-event,tcpdump".to_string())
            .split(',')
            .map(str::to_string)
            .collect();
    if std::env::var_os("BASELINE").is_some() && !modes.iter().any(|m| m.starts_with("baseline")) {
        modes.extend(["baseline".to_string(), "baseline+stats".to_string()]);
    }
    let extra_args: String = env("STRATA_ARGS", String::new());
    let extra: Vec<&str> = extra_args.split_whitespace().collect();
    // Turned on for the core+stats windows only; restored at the end.
    let stats_was = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());

    let nginx = servers::nginx();
    wrk(nginx.port, 1); // warm-up
    let mut windows: BTreeMap<String, Vec<Window>> = BTreeMap::new();
    for round in 1..=rounds {
        let mut line = format!("round {round}:");
        for mode in &modes {
            let w = measure(mode, &extra, || wrk(nginx.port, seconds));
            line.push_str(&format!("  {mode} {:.0} req/s", w.rps));
            windows.entry(mode.clone()).or_default().push(w);
        }
        println!("{line}");
    }

    let off = median(windows.get("off").map(|w| w.iter().map(|w| w.rps).collect()).unwrap_or_default());
    println!("\nmedians over {rounds} rounds of {seconds} s (wrk -t1 -c32 -> nginx on loopback):");
    // A raw_syscalls program also runs (and returns at once) for every other syscall, so its
    // mean per run is not comparable with a per-syscall program's: BPF time per request is.
    println!(
        "{:<18} {:>9} {:>7} {:>14} {:>12} {:>15}",
        "mode", "req/s", "vs off", "capturer CPU", "BPF ns/run", "BPF ns/request"
    );
    for mode in &modes {
        let ws = &windows[mode];
        let rps = median(ws.iter().map(|w| w.rps).collect());
        let cpu = median(ws.iter().map(|w| w.cpu / seconds as f64).collect());
        let (t, c): (u64, u64) = ws.iter().flat_map(|w| w.bpf.values()).fold((0, 0), |a, (t, c)| (a.0 + t, a.1 + c));
        let requests: f64 = ws.iter().map(|w| w.rps * seconds as f64).sum();
        let (per_run, per_request) = if c > 0 {
            (format!("{:.0}", t as f64 / c as f64), format!("{:.0}", t as f64 / requests))
        } else {
            ("-".into(), "-".into())
        };
        let cpu =
            if mode == "off" || mode == "hooks-only" { "-".into() } else { format!("{:.0}% of a core", cpu * 100.0) };
        println!("{mode:<18} {rps:>9.0} {:>7.3} {cpu:>14} {per_run:>12} {per_request:>15}", rps / off);
    }
    for mode in modes.iter().filter(|m| m.ends_with("+stats")) {
        let mut per_prog: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (name, (t, c)) in windows[mode].iter().flat_map(|w| w.bpf.iter()) {
            let e = per_prog.entry(name.as_str()).or_default();
            e.0 += t;
            e.1 += c;
        }
        println!("\n{mode}: kernel.bpf_stats_enabled, per program (all rounds): runs, mean ns per run");
        for (name, (t, c)) in per_prog.iter().filter(|(_, (_, c))| *c > 0) {
            println!("  {name:<18} {c:>10} {:>8.0}", *t as f64 / *c as f64);
        }
    }

    // What a fleet pays every day: a steady rate, the agent's CPU per 1 000 requests/s.
    let fixed_seconds = seconds.max(5) as u64;
    let w = measure("core", &extra, || paced(nginx.port, rate, fixed_seconds));
    let cpu_share = w.cpu / fixed_seconds as f64;
    println!(
        "\nfixed rate: {:.0} req/s for {fixed_seconds} s with the core tier: agent CPU {:.1}% of a core, {:.2}% per 1 000 req/s",
        w.rps,
        cpu_share * 100.0,
        cpu_share * 100.0 / (w.rps / 1000.0)
    );
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_was.trim());
}
