use std::io::{BufWriter, Write};

use strata_event::{Direction, EventKind};
use strata_event::Event;

use super::{EventSink, WallClock};

/// One line per event, for a person watching a terminal:
/// `time comm[pid] kind transport role local -> remote details`.
pub struct TextLines {
    out: BufWriter<Box<dyn Write + Send>>,
    clock: WallClock,
}

impl TextLines {
    pub fn new(out: Box<dyn Write + Send>, clock: WallClock) -> TextLines {
        TextLines { out: BufWriter::new(out), clock }
    }
}

/// The first line of a payload, escaped and shortened: usually the request or status line.
fn first_line(payload: &[u8], max: usize) -> String {
    let end = payload.iter().position(|&b| b == b'\n').unwrap_or(payload.len()).min(max);
    strata_event::Payload(payload[..end].to_vec()).escaped()
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
                first_line(&d.payload.0, 72)
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

impl EventSink for TextLines {
    fn write_event(&mut self, ev: &Event) -> std::io::Result<()> {
        let t = humantime::format_rfc3339_micros(self.clock.system_time(ev.ts_ns));
        writeln!(self.out, "{t} {}[{}] {}", ev.comm, ev.pid, describe(ev))
    }

    fn flush(&mut self) -> std::io::Result<()> {
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
