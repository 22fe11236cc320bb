//! `strata run` and `strata record`: capture until stopped, write events out (to the terminal,
//! as JSON lines, or to a capture file).

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use probes_core::loader::{monotonic_ns, CaptureConfig};
use probes_legacy::capture::{PerfConfig, Wakeup};
use tokio::signal::unix::{signal, SignalKind};

use crate::source::{LiveSource, SourceError};
use collector::capture_file::CaptureWriter;
use std::sync::Arc;

use collector::output::{self, EventSink, OutputFormat, RecordLines, WallClock};
use collector::telemetry::agent_stats::AgentStats;
use collector::telemetry::otlp::OtlpConfig;
use collector::telemetry::{Telemetry, TelemetryConfig, TelemetryError};
use kernel_compat::Tier;

/// Capture tiers `--tier` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TierArg {
    /// The best tier this node can run.
    Auto,
    /// CO-RE BPF probes relocated with the kernel's own BTF.
    Core,
    /// perf_event_open on syscall tracepoints, no BPF.
    PerfEvent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PerfWakeupArg {
    PerSample,
    Batched,
}

/// What `strata run` prints on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunOutput {
    /// The busiest operations with rate, p50, p99 and error %, refreshed every --table-every.
    Table,
    /// One readable line per record (or per event with --raw-events).
    Text,
    /// One JSON object per record (docs/records.md), or per event with --raw-events.
    Jsonl,
    /// Nothing: only the exporters (Prometheus, OTLP).
    None,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = RunOutput::Table)]
    pub output: RunOutput,
    /// Print the normalized events themselves instead of request/response records (text or
    /// jsonl output; no telemetry).
    #[arg(long)]
    pub raw_events: bool,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Metrics, spans and logs: where they go and how labels converge.
#[derive(Debug, clap::Args)]
pub struct TelemetryArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics; `off` disables the endpoint.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub prometheus_listen: String,
    /// Export metrics, spans and logs over OTLP, configured by the standard OTEL_EXPORTER_OTLP_*
    /// variables (protocol grpc or http/protobuf). On by itself when OTEL_EXPORTER_OTLP_ENDPOINT
    /// is set; OTEL_SDK_DISABLED=true turns it off.
    #[arg(long)]
    pub otlp: bool,
    /// Distinct values a label may take; later ones fold into `*`.
    #[arg(long, default_value_t = 100)]
    pub label_limit: usize,
    /// Requests at least this slow are logged (OTLP logs).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub slow_threshold: Duration,
    /// Fraction of new traces kept as spans (0 to 1); a caller's sampling decision in traceparent
    /// or B3 headers is followed.
    #[arg(long, default_value_t = 0.1)]
    pub trace_sample_ratio: f64,
    /// Records waiting for the telemetry thread before new ones are dropped (and counted).
    #[arg(long, default_value_t = 65536)]
    pub telemetry_queue: usize,
    /// How often the terminal table refreshes.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub table_every: Duration,
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// The capture file to write (replay it with `strata replay FILE`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// How to capture: shared by `run` and `record`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Capture tier: `auto` picks the best one this node runs.
    #[arg(long, value_enum, default_value_t = TierArg::Auto)]
    pub tier: TierArg,
    /// Payload bytes captured per syscall (at most 8192); the true byte count is always reported.
    #[arg(long, default_value_t = 4096)]
    pub capture_bytes: u32,
    /// Kernel ring buffer size in bytes (a power of two); a bigger one rides out longer bursts.
    #[arg(long, default_value_t = 8 << 20)]
    pub ring_bytes: u32,
    /// perf-event tier: run its reader thread SCHED_FIFO (priority 1), so payloads and sockets are
    /// read about 0.1 ms after the syscall instead of several ms on a busy node (short-lived clients
    /// are gone by then). `--perf-realtime false` keeps it an ordinary (nice -15) thread.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub perf_realtime: bool,
    /// perf-event tier: wake the reader on every sample (`per-sample`: fresher payloads) or in
    /// batches (`batched`: far less overhead under load, most payloads read too late to be right).
    #[arg(long, value_enum, default_value_t = PerfWakeupArg::PerSample)]
    pub perf_wakeup: PerfWakeupArg,
    /// Stop after this long (e.g. 30s, 5m); by default run until SIGINT or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] SourceError),
    #[error("reading the ring buffer: {0}")]
    Ring(std::io::Error),
    #[error("writing output: {0}")]
    Output(std::io::Error),
    #[error("no capture tier can run on this node:\n{0}\n(see `strata compat-check`)")]
    NoTier(String),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    CaptureFile(#[from] collector::capture_file::CaptureFileError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

/// How often kernel-side loss counters are read and reported.
const LOSS_REPORT_EVERY: Duration = Duration::from_secs(1);
const BATCH: usize = 4096;

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let clock = WallClock::now();
    let stdout = || Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>;
    let mut sink: Box<dyn EventSink + Send> = if args.raw_events {
        let format = match args.output {
            RunOutput::Text | RunOutput::Table => OutputFormat::Text,
            RunOutput::Jsonl => OutputFormat::Jsonl,
            RunOutput::None => return Err(RunError::Usage("--raw-events needs --output text or jsonl".into())),
        };
        output::sink(format, true, stdout(), clock)
    } else {
        let config = telemetry_config(&args.telemetry, args.output)?;
        let lines = match args.output {
            RunOutput::Text => Some(OutputFormat::Text),
            RunOutput::Jsonl => Some(OutputFormat::Jsonl),
            RunOutput::Table | RunOutput::None => None,
        };
        let mut records = RecordLines::new(lines, stdout(), clock, Default::default());
        if !config.is_off() {
            let stats = Arc::new(AgentStats::new(kernel_release()));
            let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
            records = records.with_telemetry(Telemetry::start(config, stats, clock, stdout(), on_terminal)?);
        }
        Box::new(records)
    };
    capture(&args.capture, &mut *sink).await
}

fn telemetry_config(args: &TelemetryArgs, output: RunOutput) -> Result<TelemetryConfig, RunError> {
    let usage = |m: String| RunError::Usage(m);
    let prometheus = match args.prometheus_listen.as_str() {
        "off" | "" => None,
        a => Some(a.parse().map_err(|e| usage(format!("--prometheus-listen {a}: {e} (want ADDR:PORT or off)")))?),
    };
    if !(0.0..=1.0).contains(&args.trace_sample_ratio) {
        return Err(usage(format!("--trace-sample-ratio {} is not between 0 and 1", args.trace_sample_ratio)));
    }
    if args.label_limit == 0 || args.telemetry_queue == 0 {
        return Err(usage("--label-limit and --telemetry-queue must be at least 1".into()));
    }
    let env_on = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let otlp = ((args.otlp || env_on) && !disabled)
        .then_some(OtlpConfig { sample_ratio: args.trace_sample_ratio, slow_threshold: args.slow_threshold });
    Ok(TelemetryConfig {
        prometheus,
        otlp,
        label_limit: args.label_limit,
        queue_capacity: args.telemetry_queue,
        table_every: (output == RunOutput::Table).then_some(args.table_every),
        process_names_from_proc: true,
    })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|r| r.trim().to_string()).unwrap_or_default()
}

pub async fn record(args: RecordArgs) -> Result<(), RunError> {
    let mut file = CaptureWriter::create(&args.out, WallClock::now())?;
    let result = capture(&args.capture, &mut file).await;
    let finished = file.finish().map_err(RunError::Output);
    log::info!("capture written to {}", args.out.display());
    result.and(finished)
}

/// Captures with the tier `args` names (or the best one), writing to `sink` until stopped.
async fn capture(args: &CaptureArgs, sink: &mut dyn EventSink) -> Result<(), RunError> {
    let tiers: Vec<TierArg> = match args.tier {
        TierArg::Auto => {
            // One clear message for the most common mistake (not root), before the plan's list.
            probes_core::preflight::check_any_tier_capabilities()
                .map_err(|e| RunError::Capture(SourceError::Core(e.into())))?;
            planned_tiers()?
        }
        forced => vec![forced],
    };
    let mut capture = None;
    for (i, tier) in tiers.iter().enumerate() {
        match start(*tier, args) {
            Ok(source) => {
                sink.set_tier(tier.name(), *tier == TierArg::PerfEvent);
                capture = Some(source);
                break;
            }
            // Detection predicts, loading decides: a tier that fails to load (a verifier that
            // refuses a program, say) hands over to the next one instead of failing the agent.
            Err(e) if e.is_environment() && i + 1 < tiers.len() => {
                log::warn!("tier {} failed to start, falling back to {}: {e}", tier.name(), tiers[i + 1].name());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut capture = capture.expect("the loop returns or sets a source");
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut loss_tick = tokio::time::interval(LOSS_REPORT_EVERY);
    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut batch = Vec::with_capacity(BATCH);

    let result = loop {
        tokio::select! {
            r = capture.next_batch(&mut batch, BATCH) => {
                if let Err(e) = r { break Err(RunError::Ring(e)); }
                if let Err(e) = write_all(sink, &mut batch) { break Err(e); }
            }
            _ = loss_tick.tick() => {
                batch.extend(capture.take_losses(monotonic_ns()));
                if let Err(e) = write_all(sink, &mut batch) { break Err(e); }
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = &mut deadline => break Ok(()),
        }
    };
    // Detach first, then deliver what the kernel had already recorded: stopping loses nothing.
    capture.detach();
    capture.drain(&mut batch);
    batch.extend(capture.take_losses(monotonic_ns()));
    let drained = write_all(sink, &mut batch).and_then(|()| sink.finish().map_err(RunError::Output));
    log::info!("stopped: programs detached");
    result.and(drained).or_else(|e| match e {
        // A closed stdout (`strata run | head`) is a normal way to stop.
        RunError::Output(io) if io.kind() == ErrorKind::BrokenPipe => Ok(()),
        e => Err(e),
    })
}

impl TierArg {
    fn name(self) -> &'static str {
        match self {
            TierArg::Auto => "auto",
            TierArg::Core => "core",
            TierArg::PerfEvent => "perf-event",
        }
    }
}

/// The tiers to try, best first, from this node's compat plan (logged once).
fn planned_tiers() -> Result<Vec<TierArg>, RunError> {
    let (_, plan) = crate::compat::plan_here();
    let rejected: Vec<String> =
        plan.rejected.iter().map(|r| format!("{}: {}", r.tier.name(), r.reasons.join("; "))).collect();
    log::info!(
        "compat plan: tier {} ({:?} fidelity){}",
        plan.tier.name(),
        plan.fidelity(),
        if rejected.is_empty() { String::new() } else { format!("; passed over: {}", rejected.join(" | ")) }
    );
    match plan.tier {
        Tier::Core => Ok(vec![TierArg::Core, TierArg::PerfEvent]),
        Tier::PerfEvent => Ok(vec![TierArg::PerfEvent]),
        _ => Err(RunError::NoTier(rejected.join("\n"))),
    }
}

fn start(tier: TierArg, args: &CaptureArgs) -> Result<LiveSource, SourceError> {
    match tier {
        TierArg::Auto | TierArg::Core => {
            let cfg =
                CaptureConfig { capture_bytes: args.capture_bytes, ring_bytes: args.ring_bytes, ..Default::default() };
            let source = LiveSource::start_core(&cfg)?;
            log::info!(
                "capturing: tier core (CO-RE, kernel BTF, ring buffer {} KiB, objects from {}), payload cap {} B",
                cfg.ring_bytes / 1024,
                probes_core::loader::OBJECT_ORIGIN,
                cfg.capture_bytes
            );
            Ok(source)
        }
        TierArg::PerfEvent => {
            let cfg = PerfConfig {
                capture_bytes: args.capture_bytes,
                realtime: args.perf_realtime,
                wakeup: match args.perf_wakeup {
                    PerfWakeupArg::PerSample => Wakeup::PerSample,
                    PerfWakeupArg::Batched => Wakeup::Batched,
                },
                ..Default::default()
            };
            let source = LiveSource::start_perf_event(&cfg)?;
            log::info!(
                "capturing: tier perf-event (perf_event_open on syscall tracepoints, no BPF; {} pages per CPU ring), \
                 payload cap {} B",
                cfg.ring_pages,
                cfg.capture_bytes
            );
            Ok(source)
        }
    }
}

fn write_all(sink: &mut dyn EventSink, batch: &mut Vec<strata_event::Event>) -> Result<(), RunError> {
    for ev in batch.drain(..) {
        sink.write_event(&ev).map_err(RunError::Output)?;
    }
    sink.flush().map_err(RunError::Output)
}
