//! The default output: events go through the pipeline and what comes out, one line per
//! request/response record, is written as JSON or as text.

use std::io::{BufWriter, Write};

use strata_event::Event;
use serde::Serialize;

use super::{EventSink, OutputFormat, WallClock};
use crate::pipeline::conntrack::Limits;
use crate::pipeline::{Pipeline, Record, Stats};
use crate::telemetry::Telemetry;

pub struct RecordLines {
    pipeline: Pipeline,
    records: Vec<Record>,
    out: BufWriter<Box<dyn Write + Send>>,
    /// None: records are not printed (the terminal table or the exporters show them).
    format: Option<OutputFormat>,
    clock: WallClock,
    telemetry: Option<Telemetry>,
    /// Events (and losses) since the agent's counters were last updated: they are published once
    /// per batch, at flush, not per event.
    unpublished_events: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    record: &'a Record,
}

impl RecordLines {
    pub fn new(
        format: Option<OutputFormat>,
        out: Box<dyn Write + Send>,
        clock: WallClock,
        limits: Limits,
    ) -> RecordLines {
        RecordLines {
            pipeline: Pipeline::new(limits),
            records: vec![],
            out: BufWriter::with_capacity(1 << 16, out),
            format,
            clock,
            telemetry: None,
            unpublished_events: 0,
        }
    }

    /// Records also go to telemetry (metrics, spans, logs, the table).
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> RecordLines {
        self.telemetry = Some(telemetry);
        self
    }

    pub fn stats(&self) -> Stats {
        self.pipeline.stats()
    }

    /// The agent's own counters: events in since the last batch, parse errors so far.
    fn publish_counters(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(t) = &self.telemetry {
            t.stats().events.fetch_add(std::mem::take(&mut self.unpublished_events), Relaxed);
            t.stats().parse_errors.store(self.pipeline.parse_errors(), Relaxed);
        }
    }

    fn write_records(&mut self) -> std::io::Result<()> {
        if let Some(t) = &self.telemetry {
            t.offer(&self.records);
        }
        for r in self.records.drain(..) {
            match self.format {
                None => {}
                Some(OutputFormat::Jsonl) => {
                    let time = humantime::format_rfc3339_nanos(self.clock.system_time(r.start_ns)).to_string();
                    serde_json::to_writer(&mut self.out, &Line { time, record: &r })?;
                    self.out.write_all(b"\n")?;
                }
                Some(OutputFormat::Text) => writeln!(self.out, "{}", text_line(&r, self.clock))?,
            }
        }
        Ok(())
    }
}

/// `12:00:01.234 http GET /path -> 200 1.234 ms  curl[42] client 127.0.0.1:5000 -> 127.0.0.1:80`
fn text_line(r: &Record, clock: WallClock) -> String {
    let time = humantime::format_rfc3339_millis(clock.system_time(r.start_ns)).to_string();
    let clock_part = time.get(11..23).unwrap_or(&time);
    let latency = match r.latency_ns {
        Some(ns) => format!("{:.3} ms", ns as f64 / 1e6),
        None => "no response".to_string(),
    };
    let e = &r.endpoint;
    format!(
        "{clock_part} {} {} {} -> {} {latency}{}{}  {}[{}] {} {} -> {}",
        r.protocol,
        r.operation.as_deref().unwrap_or("-"),
        r.target.as_deref().unwrap_or("-"),
        r.status.as_deref().unwrap_or("-"),
        r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
        if r.partial { " [partial]" } else { "" },
        e.comm,
        e.pid,
        e.role,
        e.local,
        e.remote,
    )
}

impl EventSink for RecordLines {
    fn write_event(&mut self, ev: &Event) -> std::io::Result<()> {
        if let Some(t) = &self.telemetry {
            self.unpublished_events += 1;
            if let strata_event::EventKind::Loss(l) = &ev.kind {
                let source = serde_json::to_value(l.source).ok().and_then(|v| v.as_str().map(str::to_string));
                t.stats().add_lost(source.as_deref().unwrap_or("unknown"), l.count);
            }
        }
        self.pipeline.push(ev, &mut self.records);
        if self.records.is_empty() {
            return Ok(());
        }
        self.write_records()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.publish_counters();
        self.out.flush()
    }

    fn set_tier(&mut self, tier: &str, degraded: bool) {
        if let Some(t) = &self.telemetry {
            t.stats().set_tier(tier, degraded);
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.pipeline.finish(&mut self.records);
        self.write_records()?;
        self.publish_counters();
        if let Some(mut t) = self.telemetry.take() {
            t.finish();
        }
        let s = self.pipeline.stats();
        log::info!(
            "pipeline: {} events, {} records ({} unanswered, {} orphan responses), {} parse errors, {} lost events reported",
            s.events,
            s.records,
            s.unanswered,
            s.orphans,
            s.parse_errors,
            s.lost_events
        );
        self.out.flush()
    }
}
