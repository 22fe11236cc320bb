use std::io::{BufWriter, Write};

use strata_event::Event;
use serde::Serialize;

use super::{EventSink, WallClock};

/// One JSON object per line: the event's fields plus `time` (RFC 3339, UTC).
pub struct JsonLines {
    out: BufWriter<Box<dyn Write + Send>>,
    clock: WallClock,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

impl JsonLines {
    pub fn new(out: Box<dyn Write + Send>, clock: WallClock) -> JsonLines {
        JsonLines { out: BufWriter::with_capacity(1 << 16, out), clock }
    }
}

impl EventSink for JsonLines {
    fn write_event(&mut self, ev: &Event) -> std::io::Result<()> {
        let time = humantime::format_rfc3339_nanos(self.clock.system_time(ev.ts_ns)).to_string();
        serde_json::to_writer(&mut self.out, &Line { time, event: ev })?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
