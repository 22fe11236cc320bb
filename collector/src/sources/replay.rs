//! A capture file as a source: its events in batches, with the recording's wall clock.

use std::path::Path;

use strata_event::Event;

use crate::capture_file::{self, CaptureFileError};
use crate::clock::WallClock;

/// Events handed over at a time, as a live source would.
const BATCH: usize = 4096;

/// Hands the file's events to `f` in batches, the recording's clock with each; returns how many
/// events there were. A damaged file is an error after everything readable was handed over.
pub fn replay(path: &Path, mut f: impl FnMut(&[Event], WallClock)) -> Result<u64, CaptureFileError> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut clock = None;
    let result = capture_file::replay(path, |ev, c| {
        clock = Some(c);
        batch.push(ev);
        if batch.len() == BATCH {
            f(&batch, c);
            batch.clear();
        }
    });
    if let (false, Some(c)) = (batch.is_empty(), clock) {
        f(&batch, c);
    }
    result
}
