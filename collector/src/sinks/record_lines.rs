//! Request/response records as lines: JSON (docs/records.md) for machines, text for people.

use std::io::{BufWriter, Write};

use serde::Serialize;

use super::{LineFormat, RecordSink};
use crate::clock::WallClock;
use crate::pipeline::Record;

pub struct RecordLines {
    format: LineFormat,
    out: BufWriter<Box<dyn Write + Send>>,
    clock: WallClock,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    record: &'a Record,
}

impl RecordLines {
    pub fn new(format: LineFormat, out: Box<dyn Write + Send>, clock: WallClock) -> RecordLines {
        RecordLines { format, out: BufWriter::with_capacity(1 << 16, out), clock }
    }
}

impl RecordSink for RecordLines {
    fn write_batch(&mut self, records: &[Record]) -> std::io::Result<()> {
        for r in records {
            match self.format {
                LineFormat::Jsonl => {
                    let time = humantime::format_rfc3339_nanos(self.clock.system_time(r.start_ns)).to_string();
                    serde_json::to_writer(&mut self.out, &Line { time, record: r })?;
                    self.out.write_all(b"\n")?;
                }
                LineFormat::Text => writeln!(self.out, "{}", text_line(r, self.clock))?,
            }
        }
        self.out.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `12:00:01.234 http GET /path -> 200 1.234 ms  curl[42] client 127.0.0.1:5000 -> 127.0.0.1:80`, with
/// the process's pod after its pid when it runs in one (`nginx[42 shop/web-1/nginx]`, or
/// `nginx[42 container 7c2f9d3e41b0]` outside a known pod).
fn text_line(r: &Record, clock: WallClock) -> String {
    let time = humantime::format_rfc3339_millis(clock.system_time(r.start_ns)).to_string();
    let clock_part = time.get(11..23).unwrap_or(&time);
    let latency = match r.latency_ns {
        Some(ns) => format!("{:.3} ms", ns as f64 / 1e6),
        None => "no response".to_string(),
    };
    let e = &r.endpoint;
    format!(
        "{clock_part} {} {} {} -> {} {latency}{}{}  {}[{}{}] {} {} -> {}",
        r.protocol.name(),
        r.operation.as_deref().unwrap_or("-"),
        r.target.as_deref().unwrap_or("-"),
        r.status.as_deref().unwrap_or("-"),
        r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
        if r.partial { " [partial]" } else { "" },
        e.comm,
        e.pid,
        where_(e.attribution.as_deref()),
        e.role.name(),
        e.local,
        e.remote,
    )
}

/// ` namespace/pod/container`, or ` container <short id>`, or nothing.
fn where_(a: Option<&crate::metadata::Attribution>) -> String {
    let Some(a) = a else { return String::new() };
    match (&a.namespace, &a.pod) {
        (Some(ns), Some(pod)) => format!(" {ns}/{pod}/{}", a.container.as_deref().unwrap_or("?")),
        _ => a.container_id.as_ref().map_or_else(String::new, |id| format!(" container {}", &id.as_str()[..12])),
    }
}
