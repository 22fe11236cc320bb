//! The agent's own telemetry: what it captured, lost, dropped and failed to export. Written by the
//! capture thread and the exporters, read by the Prometheus endpoint and the OTLP exporter.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use kernel_compat::{Fidelity, Tier};
use strata_event::LossSource;

/// Counters shared between threads; each is monotonic except the queue depth.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// The capture tier, once one started.
    pub tier: Mutex<Option<Tier>>,
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
    pub lost: BTreeMap<LossSource, u64>,
    pub records: BTreeMap<&'static str, u64>,
    pub dropped: BTreeMap<&'static str, u64>,
    pub folded: BTreeMap<&'static str, u64>,
    pub export_failures: BTreeMap<&'static str, u64>,
}

impl AgentStats {
    pub fn new(kernel_release: String) -> AgentStats {
        AgentStats { kernel_release, ..Default::default() }
    }

    pub fn set_tier(&self, tier: Tier) {
        *self.tier.lock().unwrap_or_else(|e| e.into_inner()) = Some(tier);
    }

    /// The tier's name, empty before one started.
    pub fn tier(&self) -> &'static str {
        self.tier.lock().unwrap_or_else(|e| e.into_inner()).map_or("", Tier::name)
    }

    /// 1 when the tier is a degraded one (kmod, perf-event), else 0.
    pub fn degraded(&self) -> u64 {
        let tier = *self.tier.lock().unwrap_or_else(|e| e.into_inner());
        u64::from(tier.is_some_and(|t| t.fidelity() != Fidelity::Full))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.counters.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn add_lost(&self, source: LossSource, n: u64) {
        self.with(|c| *c.lost.entry(source).or_default() += n);
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
