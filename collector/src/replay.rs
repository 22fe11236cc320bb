//! `strata replay FILE`: the pipeline on a recorded capture, without root or a kernel.

use std::path::PathBuf;

use collector::capture_file::{self, CaptureFileError};
use collector::output::{self, OutputFormat, WallClock};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A capture file written by `strata record`.
    pub file: PathBuf,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Print the normalized events themselves instead of request/response records.
    #[arg(long)]
    pub raw_events: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    File(#[from] CaptureFileError),
    #[error("writing output: {0}")]
    Output(std::io::Error),
}

pub fn replay(args: &ReplayArgs) -> Result<(), ReplayError> {
    // The sink needs the recording's clock, which the file's header carries: make it lazily.
    let mut sink: Option<Box<dyn output::EventSink + Send>> = None;
    let mut write_error = None;
    let result = capture_file::replay(&args.file, |ev, clock: WallClock| {
        if write_error.is_some() {
            return;
        }
        let s =
            sink.get_or_insert_with(|| output::sink(args.output, args.raw_events, Box::new(std::io::stdout()), clock));
        if let Err(e) = s.write_event(&ev) {
            write_error = Some(e);
        }
    });
    // Whatever was read before a damaged part is delivered before the error is reported.
    if let Some(s) = sink.as_mut() {
        if let Err(e) = s.finish() {
            write_error.get_or_insert(e);
        }
    }
    if let Some(e) = write_error {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(ReplayError::Output(e));
        }
    }
    let n = result?;
    log::info!("replayed {n} events from {}", args.file.display());
    Ok(())
}
