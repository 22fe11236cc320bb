//! `strata run`: capture until stopped, write events out.

use std::io::ErrorKind;
use std::time::Duration;

use probes_core::loader::{monotonic_ns, Capture, CaptureConfig, CaptureError};
use tokio::signal::unix::{signal, SignalKind};

use crate::output::{self, EventSink, OutputFormat, WallClock};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Payload bytes captured per syscall (at most 8192); the true byte count is always reported.
    #[arg(long, default_value_t = 4096)]
    pub capture_bytes: u32,
    /// Kernel ring buffer size in bytes (a power of two); a bigger one rides out longer bursts.
    #[arg(long, default_value_t = 8 << 20)]
    pub ring_bytes: u32,
    /// Stop after this long (e.g. 30s, 5m); by default run until SIGINT or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("reading the ring buffer: {0}")]
    Ring(std::io::Error),
    #[error("writing output: {0}")]
    Output(std::io::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// How often kernel-side loss counters are read and reported.
const LOSS_REPORT_EVERY: Duration = Duration::from_secs(1);
const BATCH: usize = 4096;

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let cfg = CaptureConfig { capture_bytes: args.capture_bytes, ring_bytes: args.ring_bytes, ..Default::default() };
    let mut capture = Capture::start(&cfg)?;
    log::info!(
        "capturing: tier core (CO-RE, kernel BTF, ring buffer {} KiB, objects from {}), payload cap {} B",
        cfg.ring_bytes / 1024,
        probes_core::loader::OBJECT_ORIGIN,
        cfg.capture_bytes
    );
    let mut sink = output::sink(args.output, Box::new(std::io::stdout()), WallClock::now());
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
                if let Err(e) = write_all(&mut *sink, &mut batch) { break Err(e); }
            }
            _ = loss_tick.tick() => {
                batch.extend(capture.take_losses(monotonic_ns()));
                if let Err(e) = write_all(&mut *sink, &mut batch) { break Err(e); }
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
    let drained = write_all(&mut *sink, &mut batch);
    log::info!("stopped: programs detached");
    result.and(drained).or_else(|e| match e {
        // A closed stdout (`strata run | head`) is a normal way to stop.
        RunError::Output(io) if io.kind() == ErrorKind::BrokenPipe => Ok(()),
        e => Err(e),
    })
}

fn write_all(sink: &mut dyn EventSink, batch: &mut Vec<probes_core::Event>) -> Result<(), RunError> {
    for ev in batch.drain(..) {
        sink.write_event(&ev).map_err(RunError::Output)?;
    }
    sink.flush().map_err(RunError::Output)
}
