//! `strata run` and `strata record`: the command lines, then the two threads of a capture.
//!
//! ```text
//! capture thread (tokio, current-thread)          pipeline thread (this one)
//!   source.next_batch ──► queue (bounded) ──────►   flow: pipeline ──► sinks
//!   loss counters every second ─┘                                     (lines, telemetry, file)
//!   SIGINT/SIGTERM/--duration: detach, drain, finish
//! ```

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use kernel_compat::Tier;
use probes_core::loader::monotonic_ns;
use tokio::signal::unix::{signal, SignalKind};

use collector::capture_file::{CaptureFileError, CaptureWriter};
use collector::clock::WallClock;
use collector::flow::Flow;
use collector::queue::{self, BatchSender};
use collector::sinks::capture_file::CaptureFileSink;
use collector::sinks::event_lines::EventLines;
use collector::sinks::otlp::{Otlp, OtlpConfig, OtlpError, OtlpSink};
use collector::sinks::prometheus::{self, PrometheusError};
use collector::sinks::record_lines::RecordLines;
use collector::sinks::table::{Table, TableSink};
use collector::sinks::{LineFormat, RecordSink};
use collector::sources::{CaptureSettings, LiveSource, SourceError};
use collector::telemetry::agent_stats::AgentStats;
use collector::telemetry::{Telemetry, TelemetryConfig, TelemetryError, TelemetrySink};

use super::args::CaptureArgs;
use super::tiers::{self, Candidate, ChoiceError};

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
    #[command(flatten)]
    pub metadata: collector::metadata::MetadataArgs,
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
    pub out: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] SourceError),
    #[error(transparent)]
    Choice(#[from] ChoiceError),
    #[error("reading the kernel's buffer: {0}")]
    Ring(std::io::Error),
    #[error("writing output: {0}")]
    Output(std::io::Error),
    #[error("{0}")]
    Thread(String),
    #[error(transparent)]
    CaptureFile(#[from] CaptureFileError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(transparent)]
    Otlp(#[from] OtlpError),
}

impl RunError {
    /// The process exit code (see main.rs).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Capture(c) if !c.is_environment() => crate::exit::USAGE,
            RunError::Usage(_) => crate::exit::USAGE,
            RunError::Capture(_) | RunError::Choice(_) => crate::exit::ENVIRONMENT,
            _ => crate::exit::FAILURE,
        }
    }
}

/// How often kernel-side loss counters are read and reported.
const LOSS_REPORT_EVERY: Duration = Duration::from_secs(1);
/// Events read from the kernel per batch.
const BATCH: usize = 4096;

pub fn run(args: RunArgs) -> Result<(), RunError> {
    // Bad values are reported before anything starts (a Prometheus port, a thread).
    args.capture.settings().map_err(RunError::Usage)?;
    let clock = WallClock::now();
    let stdout = || Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>;
    let mut stats = None;
    let flow = if args.raw_events {
        let format = match args.output {
            RunOutput::Text | RunOutput::Table => LineFormat::Text,
            RunOutput::Jsonl => LineFormat::Jsonl,
            RunOutput::None => return Err(RunError::Usage("--raw-events needs --output text or jsonl".into())),
        };
        Flow::events(vec![Box::new(EventLines::new(format, stdout(), clock))])
    } else {
        let exports = telemetry_exports(&args.telemetry, args.output)?;
        let mut sinks: Vec<Box<dyn RecordSink>> = Vec::new();
        match args.output {
            RunOutput::Text => sinks.push(Box::new(RecordLines::new(LineFormat::Text, stdout(), clock))),
            RunOutput::Jsonl => sinks.push(Box::new(RecordLines::new(LineFormat::Jsonl, stdout(), clock))),
            RunOutput::Table | RunOutput::None => {}
        }
        let s = Arc::new(AgentStats::new(kernel_release()));
        let mut telemetry: Vec<Box<dyn TelemetrySink>> = Vec::new();
        if let Some(addr) = exports.prometheus {
            let (sink, bound) = prometheus::serve(addr, s.clone())?;
            log::info!("Prometheus metrics at http://{bound}/metrics (probes: /healthz, /readyz)");
            telemetry.push(Box::new(sink));
        }
        if let Some(c) = exports.otlp {
            telemetry.push(Box::new(OtlpSink::new(Otlp::start(c, clock, s.clone())?)));
            log::info!("exporting over OTLP (endpoint and protocol from the OTEL_* variables)");
        }
        if let Some(every) = exports.table_every {
            let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
            telemetry.push(Box::new(TableSink::new(Table::new(stdout(), every, on_terminal))));
        }
        if !telemetry.is_empty() {
            sinks.push(Box::new(Telemetry::start(exports.config, s.clone(), telemetry)?));
            stats = Some(s);
        }
        Flow::records(Default::default(), sinks, stats.clone()).with_metadata(args.metadata.start())
    };
    capture(&args.capture, flow, stats)
}

/// What the telemetry thread feeds, from the command line.
struct TelemetryExports {
    prometheus: Option<std::net::SocketAddr>,
    otlp: Option<OtlpConfig>,
    table_every: Option<Duration>,
    config: TelemetryConfig,
}

fn telemetry_exports(args: &TelemetryArgs, output: RunOutput) -> Result<TelemetryExports, RunError> {
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
    Ok(TelemetryExports {
        prometheus,
        otlp,
        table_every: (output == RunOutput::Table).then_some(args.table_every),
        config: TelemetryConfig {
            label_limit: args.label_limit,
            queue_capacity: args.telemetry_queue,
            process_names_from_proc: true,
        },
    })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|r| r.trim().to_string()).unwrap_or_default()
}

pub fn record(args: RecordArgs) -> Result<(), RunError> {
    let writer = CaptureWriter::create(&args.out, WallClock::now())?;
    let flow = Flow::events(vec![Box::new(CaptureFileSink::new(writer))]);
    let result = capture(&args.capture, flow, None);
    log::info!("capture written to {}", args.out.display());
    result
}

/// What the capture thread tells the pipeline thread once it knows: the tier that started, and
/// how it captures.
type StartReport = Result<(Tier, String), RunError>;

/// Captures with the best tier that starts, feeding `flow` until stopped.
fn capture(args: &CaptureArgs, mut flow: Flow, stats: Option<Arc<AgentStats>>) -> Result<(), RunError> {
    let settings = args.settings().map_err(RunError::Usage)?;
    let candidates = choose(args)?;
    let (tx, rx) = queue::bounded(args.event_queue);
    let (started_tx, started_rx) = mpsc::channel::<StartReport>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let duration = args.duration;
    let capture_thread = std::thread::Builder::new()
        .name("strata-capture".into())
        .spawn(move || capture_thread(&candidates, &settings, duration, tx, started_tx, stop_rx))
        .map_err(|e| RunError::Thread(format!("starting the capture thread: {e}")))?;

    match started_rx.recv() {
        Ok(Ok((tier, description))) => {
            if let Some(s) = &stats {
                s.set_tier(tier);
            }
            // After the agent's own telemetry knows it: from here on, /readyz says ready.
            log::info!("capturing: tier {tier} ({description}), payload cap {} B", args.capture_bytes);
        }
        Ok(Err(e)) => {
            let _ = capture_thread.join();
            return Err(e);
        }
        Err(_) => return Err(join_error(capture_thread)),
    };
    // The pipeline thread: whatever the capture hands over, until it finishes. An output that
    // fails (a closed stdout) stops the capture.
    let mut output = Ok(());
    while let Some(batch) = rx.recv() {
        if let Err(e) = flow.consume(&batch) {
            output = Err(e);
            let _ = stop_tx.send(true);
            break;
        }
    }
    drop(rx);
    let captured =
        capture_thread.join().unwrap_or_else(|_| Err(RunError::Thread("the capture thread panicked".into())));
    let finished = flow.finish();
    log::info!("stopped: programs detached");
    let output = output.and(finished).or_else(|e| match e.kind() {
        // A closed stdout (`strata run | head`) is a normal way to stop.
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(RunError::Output(e)),
    });
    captured.and(output)
}

fn join_error(handle: std::thread::JoinHandle<Result<(), RunError>>) -> RunError {
    match handle.join() {
        Ok(Err(e)) => e,
        Ok(Ok(())) => RunError::Thread("the capture thread ended before starting".into()),
        Err(_) => RunError::Thread("the capture thread panicked".into()),
    }
}

/// The tiers to try, best first, from this node's compat plan (logged once), or the forced one.
fn choose(args: &CaptureArgs) -> Result<Vec<Candidate>, RunError> {
    if args.tier == super::args::TierChoice::Auto {
        // One clear message for the most common mistake (not root), before the plan's list.
        probes_core::preflight::check_any_tier_capabilities()
            .map_err(|e| RunError::Capture(SourceError::Bpf(e.into())))?;
    }
    let facts = match args.tier {
        // A forced archived-btf or host-compiled tier looks for its BTF even where the kernel has
        // one.
        super::args::TierChoice::Forced(Tier::ArchivedBtf) => {
            let mut facts = super::compat::gather_here(&args.btf, false);
            facts.btf_archive_hint = super::btf::archive_hint(&facts, &args.btf, true);
            facts
        }
        super::args::TierChoice::Forced(Tier::HostCompiled) => {
            let mut facts = super::compat::gather_here(&args.btf, false);
            facts.btf_generated = super::btf::generated_hint(&facts, &args.btf, true);
            facts
        }
        super::args::TierChoice::Forced(Tier::Kmod) => {
            let mut facts = super::compat::gather_here(&args.btf, false);
            facts.kmod_built = super::kmod::module_hint(&facts, &args.btf);
            facts
        }
        _ => super::compat::gather_here(&args.btf, true),
    };
    let plan = kernel_compat::plan(&facts, &super::compat::built_tiers());
    let rejected: Vec<String> =
        plan.rejected.iter().map(|r| format!("{}: {}", r.tier.name(), r.reasons.join("; "))).collect();
    log::info!(
        "compat plan: tier {} ({:?} fidelity){}",
        plan.tier.name(),
        plan.fidelity(),
        if rejected.is_empty() { String::new() } else { format!("; passed over: {}", rejected.join(" | ")) }
    );
    Ok(tiers::candidates(args, &facts, &plan)?)
}

/// The capture thread: starts a tier, then reads batches into the queue until stopped.
fn capture_thread(
    candidates: &[Candidate],
    settings: &CaptureSettings,
    duration: Option<Duration>,
    mut tx: BatchSender,
    started: mpsc::Sender<StartReport>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RunError> {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let e = RunError::Thread(format!("starting the async runtime: {e}"));
            let _ = started.send(Err(RunError::Thread(e.to_string())));
            return Err(e);
        }
    };
    runtime.block_on(async move {
        let mut source = match tiers::start_first(candidates, settings) {
            Ok((tier, s)) => {
                let _ = started.send(Ok((tier, s.description)));
                s.source
            }
            Err(e) => {
                let _ = started.send(Err(RunError::Capture(e)));
                return Ok(());
            }
        };
        let mut sigint = signal(SignalKind::interrupt()).map_err(|e| RunError::Thread(format!("signals: {e}")))?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(|e| RunError::Thread(format!("signals: {e}")))?;
        let mut loss_tick = tokio::time::interval(LOSS_REPORT_EVERY);
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let result = loop {
            let mut batch = Vec::with_capacity(BATCH);
            tokio::select! {
                r = source.next_batch(&mut batch, BATCH) => {
                    if let Err(e) = r { break Err(RunError::Ring(e)); }
                }
                _ = loss_tick.tick() => batch.extend(source.take_losses(monotonic_ns())),
                _ = sigint.recv() => break Ok(()),
                _ = sigterm.recv() => break Ok(()),
                _ = stop.changed() => break Ok(()),
                _ = &mut deadline => break Ok(()),
            }
            if tx.send(batch, monotonic_ns()).is_err() {
                // The pipeline thread ended (its output failed): nothing more to do.
                break Ok(());
            }
        };
        finish_capture(&mut source, tx);
        result
    })
}

/// Detach first, then deliver what the kernel had already recorded: stopping loses nothing.
fn finish_capture(source: &mut LiveSource, tx: BatchSender) {
    source.detach();
    let mut last = Vec::new();
    source.drain(&mut last);
    last.extend(source.take_losses(monotonic_ns()));
    let _ = tx.finish(last, monotonic_ns());
}
