//! The terminal view of a bare `strata run`: every few seconds, the busiest operations of the
//! last interval with their rate, p50, p99 and error share.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::telemetry::semconv::Observation;

/// Rows shown per refresh.
pub const ROWS: usize = 20;
/// Operations tracked per interval; the rest are counted in a last `(other)` row.
const MAX_KEYS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    service: String,
    role: &'static str,
    protocol: String,
    operation: String,
}

/// Latencies kept per operation and interval for the quantiles: a uniform sample (reservoir) of
/// them, so p50 and p99 are read from real values rather than interpolated in wide buckets.
const SAMPLE: usize = 1024;

#[derive(Default)]
struct Window {
    count: u64,
    errors: u64,
    sample: Vec<f64>,
}

impl Window {
    fn observe(&mut self, seconds: f64, error: bool, rng: &mut u64) {
        self.count += 1;
        self.errors += u64::from(error);
        if self.sample.len() < SAMPLE {
            self.sample.push(seconds);
        } else {
            // Algorithm R: the n-th value replaces a random slot with probability SAMPLE/n.
            let slot = (xorshift(rng) % self.count) as usize;
            if slot < SAMPLE {
                self.sample[slot] = seconds;
            }
        }
    }

    /// Nearest-rank quantile of the sample.
    fn quantile(&self, q: f64) -> Option<f64> {
        let mut s = self.sample.clone();
        s.sort_by(f64::total_cmp);
        let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len().max(1));
        s.get(rank - 1).copied()
    }
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

pub struct Table {
    out: Box<dyn Write + Send>,
    every: Duration,
    since: Instant,
    window: HashMap<Key, Window>,
    other: Window,
    /// ANSI clear-screen between refreshes (only on a terminal).
    clear: bool,
    rng: u64,
}

impl Table {
    pub fn new(out: Box<dyn Write + Send>, every: Duration, clear: bool) -> Table {
        Table {
            out,
            every,
            since: Instant::now(),
            window: HashMap::new(),
            other: Window::default(),
            clear,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub fn observe(&mut self, o: &Observation) {
        let attr = |k: &str| o.attributes.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str()).unwrap_or("");
        let key = Key {
            service: attr("service.name").to_string(),
            role: o.role.name(),
            protocol: attr("network.protocol.name").to_string(),
            operation: o.operation.chars().take(60).collect(),
        };
        let w = if self.window.len() < MAX_KEYS || self.window.contains_key(&key) {
            self.window.entry(key).or_default()
        } else {
            &mut self.other
        };
        w.observe(o.seconds, o.error, &mut self.rng);
    }

    /// Prints the table when the interval is over; returns whether it did.
    pub fn tick(&mut self) -> std::io::Result<bool> {
        let elapsed = self.since.elapsed();
        if elapsed < self.every {
            return Ok(false);
        }
        let text = self.render(elapsed.as_secs_f64());
        if self.clear {
            self.out.write_all(b"\x1b[2J\x1b[H")?;
        }
        self.out.write_all(text.as_bytes())?;
        self.out.flush()?;
        self.window.clear();
        self.other = Window::default();
        self.since = Instant::now();
        Ok(true)
    }

    fn render(&self, seconds: f64) -> String {
        let mut rows: Vec<(&Key, &Window)> = self.window.iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.operation.cmp(&b.0.operation)));
        let mut s = format!(
            "strata — top operations over the last {seconds:.0} s ({} seen)\n{:<16} {:<6} {:<8} {:<40} {:>9} {:>10} {:>10} {:>7}\n",
            rows.len(),
            "SERVICE",
            "ROLE",
            "PROTOCOL",
            "OPERATION",
            "REQ/S",
            "P50",
            "P99",
            "ERR%"
        );
        let other = ("(other)", &self.other);
        let shown = rows.iter().take(ROWS).map(|(k, w)| (Some(*k), *w));
        let tail = (self.other.count > 0).then_some((None, other.1));
        for (key, w) in shown.chain(tail) {
            let n = w.count;
            let (service, role, protocol, operation) = match key {
                Some(k) => (k.service.as_str(), k.role, k.protocol.as_str(), k.operation.as_str()),
                None => ("", "", "", other.0),
            };
            s.push_str(&format!(
                "{:<16} {:<6} {:<8} {:<40} {:>9.1} {:>10} {:>10} {:>6.1}%\n",
                service,
                role,
                protocol,
                operation,
                n as f64 / seconds.max(1e-9),
                duration(w.quantile(0.5)),
                duration(w.quantile(0.99)),
                100.0 * w.errors as f64 / n.max(1) as f64
            ));
        }
        if rows.is_empty() {
            s.push_str("(no requests seen in this interval)\n");
        }
        s.push('\n');
        s
    }
}

fn duration(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 1e-3 => format!("{:.0} µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

/// The table as a telemetry sink: a write error (a closed terminal) stops it, not the agent.
pub struct TableSink(Option<Table>);

impl TableSink {
    pub fn new(table: Table) -> TableSink {
        TableSink(Some(table))
    }
}

impl crate::telemetry::TelemetrySink for TableSink {
    fn observe(&mut self, batch: &[(crate::pipeline::Record, Observation)]) {
        if let Some(t) = self.0.as_mut() {
            for (_, o) in batch {
                t.observe(o);
            }
        }
    }

    fn tick(&mut self) {
        if let Some(Err(e)) = self.0.as_mut().map(Table::tick) {
            log::warn!("writing the table: {e}");
            self.0 = None;
        }
    }
}
