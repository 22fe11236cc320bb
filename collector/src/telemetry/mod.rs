//! From records to what operators consume: RED metrics and the service graph (Prometheus and
//! OTLP), spans and logs (OTLP), and the terminal table. The capture thread hands records over
//! through a bounded queue (a full queue drops and counts, it never blocks the capture); one
//! telemetry thread converges labels and feeds every exporter.

pub mod agent_stats;
pub mod converge;
pub mod histogram;
pub mod otlp;
pub mod prometheus;
pub mod semconv;
pub mod store;
pub mod table;
pub mod trace_context;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::WallClock;
use crate::pipeline::Record;
use agent_stats::AgentStats;
use otlp::{Otlp, OtlpConfig};
use semconv::Converger;
use store::MetricStore;
use table::Table;

#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Where to serve Prometheus scrapes (None: no endpoint).
    pub prometheus: Option<SocketAddr>,
    /// OTLP export (configured by the OTEL_* variables), None: off.
    pub otlp: Option<OtlpConfig>,
    /// Distinct values per label before new ones fold into `*`.
    pub label_limit: usize,
    /// Records waiting for the telemetry thread; beyond, new ones are dropped and counted.
    pub queue_capacity: usize,
    /// Refresh the terminal table this often (None: no table).
    pub table_every: Option<Duration>,
    /// Name services after their process's main thread, read from /proc (live capture only).
    pub process_names_from_proc: bool,
}

impl TelemetryConfig {
    pub fn is_off(&self) -> bool {
        self.prometheus.is_none() && self.otlp.is_none() && self.table_every.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("serving Prometheus metrics on {addr}: {error} (choose another with --prometheus-listen, or `off`)")]
    Prometheus { addr: SocketAddr, error: std::io::Error },
    #[error(transparent)]
    Otlp(#[from] otlp::OtlpError),
    #[error("starting the telemetry thread: {0}")]
    Thread(std::io::Error),
}

/// The capture side's handle: offers records, then finishes (flushing every exporter).
pub struct Telemetry {
    queue: Option<SyncSender<Record>>,
    stats: Arc<AgentStats>,
    thread: Option<JoinHandle<()>>,
}

/// How often the telemetry thread wakes when idle (table, flushes, folded counts).
const TICK: Duration = Duration::from_millis(200);

impl Telemetry {
    pub fn start(
        config: TelemetryConfig,
        stats: Arc<AgentStats>,
        clock: WallClock,
        table_out: Box<dyn std::io::Write + Send>,
        table_clear: bool,
    ) -> Result<Telemetry, TelemetryError> {
        let store = Arc::new(Mutex::new(MetricStore::default()));
        if let Some(addr) = config.prometheus {
            let bound = prometheus::serve(addr, store.clone(), stats.clone())
                .map_err(|error| TelemetryError::Prometheus { addr, error })?;
            log::info!("Prometheus metrics at http://{bound}/metrics");
        }
        let otlp = match config.otlp.clone() {
            Some(c) => {
                let o = Otlp::start(c, clock, stats.clone())?;
                log::info!("exporting over OTLP (endpoint and protocol from the OTEL_* variables)");
                Some(o)
            }
            None => None,
        };
        let table = config.table_every.map(|every| Table::new(table_out, every, table_clear));
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let mut converger = Converger::new(config.label_limit);
        if config.process_names_from_proc {
            converger = converger.with_process_names(Box::new(process_name));
        }
        let worker = Worker { converger, store, otlp, table, stats: stats.clone() };
        let thread = std::thread::Builder::new()
            .name("strata-telemetry".into())
            .spawn(move || worker.run(rx))
            .map_err(TelemetryError::Thread)?;
        Ok(Telemetry { queue: Some(tx), stats, thread: Some(thread) })
    }

    /// Hands records over; when the queue is full a record is dropped and counted.
    pub fn offer(&self, records: &[Record]) {
        let Some(q) = &self.queue else { return };
        let mut by_protocol: Vec<(&'static str, u64)> = Vec::new();
        let (mut sent, mut dropped) = (0, 0);
        for r in records {
            match by_protocol.iter_mut().find(|(p, _)| *p == r.protocol) {
                Some((_, n)) => *n += 1,
                None => by_protocol.push((r.protocol, 1)),
            }
            match q.try_send(r.clone()) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => dropped += 1,
            }
        }
        self.stats.add_records(by_protocol);
        self.stats.queue_depth.fetch_add(sent, Relaxed);
        if dropped > 0 {
            self.stats.add_dropped("telemetry", dropped);
        }
    }

    pub fn stats(&self) -> &Arc<AgentStats> {
        &self.stats
    }

    /// Lets the thread drain the queue and flush every exporter, then waits for it.
    pub fn finish(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl crate::sinks::RecordSink for Telemetry {
    fn write_batch(&mut self, records: &[Record]) -> std::io::Result<()> {
        self.offer(records);
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        Telemetry::finish(self);
        Ok(())
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A process's name: its main thread's comm, as /proc/<pid>/comm has it.
fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim_end().to_string())
}

struct Worker {
    converger: Converger,
    store: Arc<Mutex<MetricStore>>,
    otlp: Option<Otlp>,
    table: Option<Table>,
    stats: Arc<AgentStats>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Record>) {
        let mut last_flush = Instant::now();
        loop {
            match rx.recv_timeout(TICK) {
                Ok(first) => {
                    // Take whatever else is waiting too, and handle it under one store lock.
                    let mut batch = vec![first];
                    while batch.len() < 1024 {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    self.stats.queue_depth.fetch_sub(batch.len() as u64, Relaxed);
                    self.handle(&batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.stats.set_folded(self.converger.limiter().folded());
            if let Some(t) = self.table.as_mut() {
                if let Err(e) = t.tick() {
                    log::warn!("writing the table: {e}");
                    self.table = None;
                }
            }
            if last_flush.elapsed() >= otlp::FLUSH_EVERY {
                if let Some(o) = self.otlp.as_mut() {
                    o.flush();
                }
                last_flush = Instant::now();
            }
        }
        self.stats.set_folded(self.converger.limiter().folded());
        if let Some(o) = self.otlp.take() {
            o.shutdown();
        }
    }

    fn handle(&mut self, records: &[Record]) {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            let Some(o) = self.converger.observe(r) else { continue };
            store.observe(&o);
            if let Some(t) = self.table.as_mut() {
                t.observe(&o);
            }
            if let Some(x) = self.otlp.as_mut() {
                x.record(r, &o);
            }
        }
    }
}

#[cfg(test)]
mod tests;
