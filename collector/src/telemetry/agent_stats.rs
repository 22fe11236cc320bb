//! The agent's own telemetry: what it captured, lost, dropped and failed to export. Written by the
//! capture thread and the exporters, read by the Prometheus endpoint and the OTLP exporter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counters shared between threads; each is monotonic except the queue depth.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// The capture tier (core, perf-event) and whether it is a degraded one (1) or not (0).
    pub tier: Mutex<String>,
    pub degraded: AtomicU64,
    pub kernel_release: String,
    pub events: AtomicU64,
    pub parse_errors: AtomicU64,
    /// Records waiting in the queue to the telemetry thread.
    pub queue_depth: AtomicU64,
    counters: Mutex<Counters>,
}

/// Counters keyed by a label value (a loss source, a protocol, an exporter).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub lost: BTreeMap<String, u64>,
    pub records: BTreeMap<&'static str, u64>,
    pub dropped: BTreeMap<&'static str, u64>,
    pub folded: BTreeMap<&'static str, u64>,
    pub export_failures: BTreeMap<&'static str, u64>,
}

impl AgentStats {
    pub fn new(kernel_release: String) -> AgentStats {
        AgentStats { kernel_release, ..Default::default() }
    }

    pub fn set_tier(&self, tier: &str, degraded: bool) {
        *self.tier.lock().unwrap_or_else(|e| e.into_inner()) = tier.to_string();
        self.degraded.store(u64::from(degraded), Relaxed);
    }

    pub fn tier(&self) -> String {
        self.tier.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.counters.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn add_lost(&self, source: &str, n: u64) {
        self.with(|c| *c.lost.entry(source.to_string()).or_default() += n);
    }

    /// Adds records by protocol (one lock for a whole batch).
    pub fn add_records(&self, by_protocol: impl IntoIterator<Item = (&'static str, u64)>) {
        self.with(|c| {
            for (protocol, n) in by_protocol {
                *c.records.entry(protocol).or_default() += n;
            }
        });
    }

    pub fn add_dropped(&self, queue: &'static str, n: u64) {
        self.with(|c| *c.dropped.entry(queue).or_default() += n);
    }

    /// Replaces the folded-label counts (the limiter owns the running totals).
    pub fn set_folded(&self, folded: impl Iterator<Item = (&'static str, u64)>) {
        self.with(|c| c.folded.extend(folded));
    }

    pub fn add_export_failure(&self, exporter: &'static str) {
        self.with(|c| *c.export_failures.entry(exporter).or_default() += 1);
    }

    pub fn counters(&self) -> Counters {
        self.with(|c| c.clone())
    }
}
