//! From records to what operators consume: the transform between the pipeline and the telemetry
//! sinks (Prometheus, OTLP, the terminal table, in `sinks/`). The pipeline thread hands records
//! over through a bounded queue (a full queue drops and counts, it never blocks the capture); one
//! telemetry thread converges labels (paths templated, SQL obfuscated, at most N values a label)
//! and hands every sink each batch of records with their observations.

pub mod agent_stats;
pub mod converge;
pub mod histogram;
pub mod semconv;
pub mod trace_context;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::pipeline::Record;
use agent_stats::AgentStats;
use semconv::Converger;
pub use semconv::Observation;

/// A consumer of converged records: a metric store, an exporter, a view.
pub trait TelemetrySink: Send {
    /// A batch of records, each with its observation (records without one, such as a protocol no
    /// instrument covers, are left out).
    fn observe(&mut self, batch: &[(Record, Observation)]);
    /// Called every [`TICK`] and after each batch: refreshes, periodic flushes.
    fn tick(&mut self) {}
    /// The agent stops: flush everything.
    fn finish(&mut self) {}
}

#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Distinct values per label before new ones fold into `*`.
    pub label_limit: usize,
    /// Records waiting for the telemetry thread; beyond, new ones are dropped and counted.
    pub queue_capacity: usize,
    /// Name services after their process's main thread, read from /proc (live capture only).
    pub process_names_from_proc: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("starting the telemetry thread: {0}")]
    Thread(std::io::Error),
}

/// The pipeline side's handle: offers records, then finishes (flushing every sink).
pub struct Telemetry {
    /// Batches as the pipeline made them: one hand-over per batch, not per record.
    queue: Option<SyncSender<Vec<Record>>>,
    /// Records (not batches) the queue may hold.
    capacity: u64,
    stats: Arc<AgentStats>,
    thread: Option<JoinHandle<()>>,
}

/// Batches in flight at most; the record count is what bounds the queue.
const QUEUED_BATCHES: usize = 4096;

/// How often the telemetry thread wakes when idle (the table, flushes, folded counts).
pub const TICK: Duration = Duration::from_millis(200);

impl Telemetry {
    pub fn start(
        config: TelemetryConfig,
        stats: Arc<AgentStats>,
        sinks: Vec<Box<dyn TelemetrySink>>,
    ) -> Result<Telemetry, TelemetryError> {
        let (tx, rx) = mpsc::sync_channel(QUEUED_BATCHES);
        let mut converger = Converger::new(config.label_limit);
        if config.process_names_from_proc {
            converger = converger.with_process_names(Box::new(process_name));
        }
        let worker = Worker { converger, sinks, stats: stats.clone() };
        let thread = std::thread::Builder::new()
            .name("strata-telemetry".into())
            .spawn(move || worker.run(rx))
            .map_err(TelemetryError::Thread)?;
        Ok(Telemetry { queue: Some(tx), capacity: config.queue_capacity as u64, stats, thread: Some(thread) })
    }

    /// Hands records over; what does not fit in the queue is dropped and counted.
    pub fn offer(&self, mut records: Vec<Record>) {
        let Some(q) = &self.queue else { return };
        let mut by_protocol: Vec<(&'static str, u64)> = Vec::new();
        for r in &records {
            match by_protocol.iter_mut().find(|(p, _)| *p == r.protocol.name()) {
                Some((_, n)) => *n += 1,
                None => by_protocol.push((r.protocol.name(), 1)),
            }
        }
        self.stats.add_records(by_protocol);
        // Only this thread adds to the depth, so the room read here cannot shrink before the add.
        let room = self.capacity.saturating_sub(self.stats.queue_depth.load(Relaxed));
        let mut dropped = records.len().saturating_sub(room as usize) as u64;
        records.truncate(room as usize);
        let n = records.len() as u64;
        if n > 0 {
            self.stats.queue_depth.fetch_add(n, Relaxed);
            if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = q.try_send(records) {
                self.stats.queue_depth.fetch_sub(b.len() as u64, Relaxed);
                dropped += n;
            }
        }
        if dropped > 0 {
            self.stats.add_dropped("telemetry", dropped);
        }
    }

    pub fn stats(&self) -> &Arc<AgentStats> {
        &self.stats
    }

    /// Lets the thread drain the queue and finish every sink, then waits for it.
    pub fn finish(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl crate::flow::RecordSink for Telemetry {
    fn write_batch(&mut self, records: &[Record]) -> std::io::Result<()> {
        self.offer(records.to_vec());
        Ok(())
    }

    fn take_batch(&mut self, records: Vec<Record>) -> std::io::Result<()> {
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
    sinks: Vec<Box<dyn TelemetrySink>>,
    stats: Arc<AgentStats>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Vec<Record>>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(mut batch) => {
                    // Take whatever else is waiting too, up to a bound: each sink sees one batch
                    // at a time, and fewer, larger batches cost less per record.
                    while batch.len() < 4096 {
                        match rx.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(_) => break,
                        }
                    }
                    self.stats.queue_depth.fetch_sub(batch.len() as u64, Relaxed);
                    self.handle(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.stats.set_folded(self.converger.limiter().folded());
            for s in &mut self.sinks {
                s.tick();
            }
        }
        self.stats.set_folded(self.converger.limiter().folded());
        for s in &mut self.sinks {
            s.finish();
        }
    }

    fn handle(&mut self, records: Vec<Record>) {
        let observed: Vec<(Record, Observation)> = records
            .into_iter()
            .filter_map(|r| {
                let o = self.converger.observe(&r)?;
                Some((r, o))
            })
            .collect();
        for s in &mut self.sinks {
            s.observe(&observed);
        }
    }
}

#[cfg(test)]
mod tests;
