//! The metrics strata keeps for Prometheus: a latency histogram per (instrument, attributes) and
//! the service graph's edges, rendered with the agent's own counters in the text exposition
//! format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::telemetry::agent_stats::AgentStats;
use crate::telemetry::histogram::Histogram;
use crate::telemetry::semconv::{Edge, Instrument, Observation, Series};

type Labels = Vec<(&'static str, String)>;

/// Most series kept per instrument; past it, new attribute sets share one series whose every
/// attribute is `*` (the label limit usually folds long before).
pub const MAX_SERIES_PER_INSTRUMENT: usize = 20_000;

#[derive(Default)]
struct EdgeStats {
    total: u64,
    failed: u64,
    client: Histogram,
    server: Histogram,
}

type EdgeKey = (String, String, &'static str);

#[derive(Default)]
pub struct MetricStore {
    /// Each instrument's series in exposition order, as indices into `histograms`.
    red: BTreeMap<Instrument, BTreeMap<Labels, usize>>,
    histograms: Vec<Histogram>,
    edges: BTreeMap<EdgeKey, usize>,
    edge_stats: Vec<EdgeStats>,
    /// Where a converged series (by its shared `Series`' address) was counted last time: its
    /// histogram, its edge, and whether it went to the all-`*` series. The `Arc` is kept, so the
    /// address cannot be another series' while it is here. Saves comparing and copying every
    /// label of every observation.
    placed: foldhash::HashMap<usize, Placed>,
    /// Observations that went to an all-`*` series because an instrument was full.
    pub series_overflow: u64,
}

struct Placed {
    _series: Arc<Series>,
    histogram: usize,
    edge: Option<usize>,
    overflowed: bool,
}

/// Series addresses remembered; past it the map starts over.
const MAX_PLACED: usize = 65536;

impl MetricStore {
    pub fn observe(&mut self, o: &Observation) {
        let address = Arc::as_ptr(&o.series) as usize;
        if !self.placed.contains_key(&address) {
            let placed = self.place(o);
            if self.placed.len() >= MAX_PLACED {
                self.placed.clear();
            }
            self.placed.insert(address, placed);
        }
        let placed = &self.placed[&address];
        self.series_overflow += u64::from(placed.overflowed);
        self.histograms[placed.histogram].observe(o.seconds);
        if let (Some(i), Some(edge)) = (placed.edge, &o.edge) {
            let e = &mut self.edge_stats[i];
            e.total += 1;
            e.failed += u64::from(o.error);
            if edge.observed_by_client { &mut e.client } else { &mut e.server }.observe(o.seconds);
        }
    }

    /// Finds (or makes) the histogram and edge a series counts on.
    fn place(&mut self, o: &Observation) -> Placed {
        let series = self.red.entry(o.instrument).or_default();
        let overflowed = !series.contains_key(&o.attributes) && series.len() >= MAX_SERIES_PER_INSTRUMENT;
        let labels = if overflowed {
            o.attributes.iter().map(|(k, _)| (*k, crate::telemetry::converge::OVERFLOW.to_string())).collect()
        } else {
            o.attributes.clone()
        };
        let histograms = &mut self.histograms;
        let histogram = *series.entry(labels).or_insert_with(|| {
            histograms.push(Histogram::default());
            histograms.len() - 1
        });
        let edge = o.edge.as_ref().map(|Edge { client, server, connection_type, .. }| {
            let stats = &mut self.edge_stats;
            *self.edges.entry((client.clone(), server.clone(), connection_type)).or_insert_with(|| {
                stats.push(EdgeStats::default());
                stats.len() - 1
            })
        });
        Placed { _series: o.series.clone(), histogram, edge, overflowed }
    }

    pub fn series(&self) -> usize {
        self.histograms.len()
    }

    /// The Prometheus text exposition (version 0.0.4) of everything, agent counters included.
    pub fn render(&self, stats: &AgentStats) -> String {
        let mut out = String::with_capacity(64 << 10);
        for (instrument, series) in &self.red {
            header(&mut out, instrument.prometheus, "histogram", instrument.description);
            for (labels, h) in series {
                let labels: Vec<(String, &str)> =
                    labels.iter().map(|(k, v)| (k.replace('.', "_"), v.as_str())).collect();
                histogram(&mut out, instrument.prometheus, &labels, &self.histograms[*h]);
            }
        }
        self.render_graph(&mut out);
        render_agent(&mut out, stats, self);
        out
    }

    fn render_graph(&self, out: &mut String) {
        if self.edges.is_empty() {
            return;
        }
        fn labels((c, s, t): &EdgeKey) -> Vec<(String, &str)> {
            vec![("client".into(), c.as_str()), ("server".into(), s.as_str()), ("connection_type".into(), *t)]
        }
        let total = "traces_service_graph_request_total";
        header(out, total, "counter", "Requests between two services (client → server)");
        let edges: Vec<(&EdgeKey, &EdgeStats)> = self.edges.iter().map(|(k, i)| (k, &self.edge_stats[*i])).collect();
        for (k, e) in &edges {
            sample(out, total, &labels(k), e.total as f64);
        }
        let failed = "traces_service_graph_request_failed_total";
        header(out, failed, "counter", "Failed requests between two services");
        for (k, e) in &edges {
            sample(out, failed, &labels(k), e.failed as f64);
        }
        for (name, side) in [
            ("traces_service_graph_request_server_seconds", false),
            ("traces_service_graph_request_client_seconds", true),
        ] {
            header(out, name, "histogram", "Request duration on the edge, as that side saw it");
            for (k, e) in &edges {
                let h = if side { &e.client } else { &e.server };
                if h.count() > 0 {
                    histogram(out, name, &labels(k), h);
                }
            }
        }
    }
}

fn render_agent(out: &mut String, stats: &AgentStats, store: &MetricStore) {
    let c = stats.counters();
    let tier = stats.tier();
    header(out, "strata_agent_info", "gauge", "The agent: capture tier, kernel release and version (always 1)");
    let info = [
        ("tier".to_string(), tier),
        ("kernel_release".to_string(), stats.kernel_release.as_str()),
        ("version".to_string(), env!("CARGO_PKG_VERSION")),
    ];
    sample(out, "strata_agent_info", &info, 1.0);
    let plain: [(&str, &str, &str, f64); 5] = [
        ("strata_tier_degraded", "gauge", "1 when capturing with a degraded (no BPF) tier", stats.degraded() as f64),
        ("strata_events_total", "counter", "Socket events captured", stats.events.load(Relaxed) as f64),
        (
            "strata_parse_errors_total",
            "counter",
            "Chunks a protocol parser rejected",
            stats.parse_errors.load(Relaxed) as f64,
        ),
        ("strata_series", "gauge", "Metric series kept for Prometheus", store.series() as f64),
        (
            "strata_series_overflow_total",
            "counter",
            "Observations folded into an all-* series (series limit)",
            store.series_overflow as f64,
        ),
    ];
    for (name, kind, help, v) in plain {
        header(out, name, kind, help);
        sample(out, name, &[], v);
    }
    let keyed = |out: &mut String, name: &str, label: &str, help: &str, kind: &str, m: Vec<(&str, u64)>| {
        header(out, name, kind, help);
        for (k, v) in m {
            sample(out, name, &[(label.to_string(), k)], v as f64);
        }
    };
    keyed(
        out,
        "strata_events_lost_total",
        "source",
        "Events lost before user space, by where",
        "counter",
        c.lost.iter().map(|(k, v)| (k.name(), *v)).collect(),
    );
    keyed(
        out,
        "strata_records_total",
        "protocol",
        "Request/response records",
        "counter",
        c.records.iter().map(|(k, v)| (*k, *v)).collect(),
    );
    keyed(
        out,
        "strata_queue_dropped_total",
        "queue",
        "Items dropped because a queue was full",
        "counter",
        c.dropped.iter().map(|(k, v)| (*k, *v)).collect(),
    );
    keyed(
        out,
        "strata_label_values_folded_total",
        "label",
        "Observations whose label value folded into *",
        "counter",
        c.folded.iter().map(|(k, v)| (*k, *v)).collect(),
    );
    keyed(
        out,
        "strata_export_failures_total",
        "exporter",
        "Exports that failed",
        "counter",
        c.export_failures.iter().map(|(k, v)| (*k, *v)).collect(),
    );
    keyed(
        out,
        "strata_queue_depth",
        "queue",
        "Items waiting in a queue",
        "gauge",
        vec![("telemetry", stats.queue_depth.load(Relaxed))],
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &[(String, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (le, n) in h.cumulative() {
        let le = if le.is_infinite() { "+Inf".to_string() } else { le.to_string() };
        let mut with_le = labels.to_vec();
        with_le.push(("le".into(), &le));
        sample(out, &bucket, &with_le, n as f64);
    }
    sample(out, &format!("{name}_sum"), labels, h.sum());
    sample(out, &format!("{name}_count"), labels, h.count() as f64);
}

fn sample(out: &mut String, name: &str, labels: &[(String, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
}
