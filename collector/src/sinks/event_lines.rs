//! `--raw-events`: the normalized events themselves, one per line. As text, for a person watching
//! a terminal (`time comm[pid] kind transport role local -> remote details`); as JSON, the event's
//! fields plus `time` (RFC 3339, UTC) (docs/events.md).

use std::io::{BufWriter, Write};

use serde::Serialize;
use strata_event::{Direction, Event, EventKind};

use super::{EventSink, LineFormat};
use crate::clock::WallClock;

pub struct EventLines {
    format: LineFormat,
    out: BufWriter<Box<dyn Write + Send>>,
    clock: WallClock,
}

impl EventLines {
    pub fn new(format: LineFormat, out: Box<dyn Write + Send>, clock: WallClock) -> EventLines {
        EventLines { format, out: BufWriter::with_capacity(1 << 16, out), clock }
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// The first line of a payload, escaped and shortened: usually the request or status line.
fn first_line(payload: &[u8], max: usize) -> String {
    let end = payload.iter().position(|&b| b == b'\n').unwrap_or(payload.len()).min(max);
    strata_event::Payload::from(&payload[..end]).escaped()
}

fn describe(ev: &Event) -> String {
    match &ev.kind {
        EventKind::Open(o) => format!(
            "open  {:?} {:?} {} -> {}{}",
            o.conn.transport,
            o.conn.role,
            o.conn.local,
            o.conn.remote,
            if o.in_progress { " (in progress)" } else { "" }
        ),
        EventKind::Data(d) => {
            let arrow = match d.direction {
                Direction::Egress => "->",
                Direction::Ingress => "<-",
            };
            format!(
                "data  {:?} {:?} {} {arrow} {} {:?} {}B{} \"{}\"",
                d.conn.transport,
                d.conn.role,
                d.conn.local,
                d.conn.remote,
                d.syscall,
                d.byte_count,
                if d.truncated { " (truncated)" } else { "" },
                first_line(&d.payload, 72)
            )
        }
        EventKind::Close(c) => format!(
            "close {:?} {:?} {} -> {} sent {}B received {}B",
            c.conn.transport, c.conn.role, c.conn.local, c.conn.remote, c.bytes_sent, c.bytes_received
        ),
        EventKind::State(s) => {
            format!("state tcp {} -> {} {} => {}", s.local, s.remote, s.old_state.name(), s.new_state.name())
        }
        EventKind::Loss(l) => format!("LOSS  {} records lost ({:?})", l.count, l.source),
    }
}

impl EventSink for EventLines {
    fn write_batch(&mut self, events: &[Event]) -> std::io::Result<()> {
        for ev in events {
            match self.format {
                LineFormat::Text => {
                    let t = humantime::format_rfc3339_micros(self.clock.system_time(ev.ts_ns));
                    writeln!(self.out, "{t} {}[{}] {}", ev.comm, ev.pid, describe(ev))?;
                }
                LineFormat::Jsonl => {
                    let time = humantime::format_rfc3339_nanos(self.clock.system_time(ev.ts_ns)).to_string();
                    serde_json::to_writer(&mut self.out, &JsonLine { time, event: ev })?;
                    self.out.write_all(b"\n")?;
                }
            }
        }
        self.out.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_stops_at_newline_and_escapes() {
        assert_eq!(first_line(b"GET / HTTP/1.1\r\nHost: x\r\n", 72), "GET / HTTP/1.1\\r");
        assert_eq!(first_line(b"\x00\x01abc", 72), "\\x00\\x01abc");
        assert_eq!(first_line(b"abcdef", 3), "abc");
    }
}
