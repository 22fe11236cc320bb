//! `strata record`: events into a capture file (format in [`crate::capture_file`]).

use strata_event::Event;

use super::EventSink;
use crate::capture_file::CaptureWriter;

/// The capture file as a sink; `finish` leaves it complete.
pub struct CaptureFileSink(Option<CaptureWriter>);

impl CaptureFileSink {
    pub fn new(writer: CaptureWriter) -> CaptureFileSink {
        CaptureFileSink(Some(writer))
    }
}

impl EventSink for CaptureFileSink {
    fn write_batch(&mut self, events: &[Event]) -> std::io::Result<()> {
        let Some(w) = self.0.as_mut() else { return Ok(()) };
        for ev in events {
            w.write(ev)?;
        }
        // One frame per batch: a killed recorder loses at most the batch in flight.
        w.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self.0.take() {
            Some(w) => w.finish(),
            None => Ok(()),
        }
    }
}
