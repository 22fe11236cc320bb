//! `strata replay FILE`: the pipeline on a recorded capture, without root or a kernel.

use std::path::PathBuf;

use collector::capture_file::CaptureFileError;
use collector::flow::Flow;
use collector::sinks::event_lines::EventLines;
use collector::sinks::record_lines::RecordLines;
use collector::sinks::LineFormat;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A capture file written by `strata record`.
    pub file: PathBuf,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = LineFormat::Text)]
    pub output: LineFormat,
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
    // The sinks need the recording's clock, which the file's header carries: made lazily.
    let mut flow: Option<Flow> = None;
    let mut write_error = None;
    let result = collector::sources::replay::replay(&args.file, |batch, clock| {
        if write_error.is_some() {
            return;
        }
        let out = Box::new(std::io::stdout());
        let f = flow.get_or_insert_with(|| match args.raw_events {
            true => Flow::events(vec![Box::new(EventLines::new(args.output, out, clock))]),
            false => Flow::records(Default::default(), vec![Box::new(RecordLines::new(args.output, out, clock))], None),
        });
        if let Err(e) = f.consume(batch) {
            write_error = Some(e);
        }
    });
    // Whatever was read before a damaged part is delivered before the error is reported.
    if let Some(f) = flow.as_mut() {
        if let Err(e) = f.finish() {
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
