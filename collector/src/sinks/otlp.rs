//! OTLP export with opentelemetry-otlp (gRPC or HTTP, chosen and configured by the standard
//! OTEL_* variables): metrics through the SDK's periodic reader as exponential histograms, spans
//! and logs through strata's own bounded batches so that every drop and failed export is counted.
//!
//! Exports of spans and logs run on the telemetry thread with a plain executor; the gRPC channel's
//! background work runs on a small runtime of its own. An exporter that is down costs one failed
//! call per flush; what could not be sent is dropped and counted, never queued without bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument as SdkInstrument, InstrumentKind, PeriodicReader, SdkMeterProvider, Stream, Temporality,
};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;

use crate::clock::WallClock;
use crate::metadata::Attribution;
use crate::pipeline::Record;
use crate::telemetry::agent_stats::AgentStats;
use crate::telemetry::semconv::Observation;
use crate::telemetry::trace_context::{parent_of, Parent};
use protocols::message::Protocol;

/// The resource a span or log record is exported under: the observed service and, when it runs
/// in one, its container, pod and workload (semantic conventions: `k8s.*` and `container.*` are
/// resource attributes).
#[derive(Clone, Debug, Default)]
struct ResourceKey {
    service: String,
    attribution: Option<Arc<Attribution>>,
}

impl ResourceKey {
    fn of(r: &Record, o: &Observation) -> ResourceKey {
        let service =
            o.attributes.iter().find(|(k, _)| *k == "service.name").map(|(_, v)| v.clone()).unwrap_or_default();
        ResourceKey { service, attribution: r.endpoint.attribution.clone() }
    }

    fn sort_key(&self) -> (String, u64) {
        (self.service.clone(), self.attribution.as_ref().map_or(0, |a| a.serial))
    }
}

/// Attributes that belong to the resource, not to each span or log record.
fn on_resource(key: &str) -> bool {
    key.starts_with("k8s.") || key.starts_with("container.")
}

/// Spans and logs held between flushes; beyond, new ones are dropped and counted.
pub const MAX_PENDING: usize = 8192;
/// How often spans and logs are sent.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// Fraction of traces started here that are kept (a caller's decision is followed).
    pub sample_ratio: f64,
    /// Requests at least this slow get a log record.
    pub slow_threshold: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("starting the OTLP runtime: {0}")]
    Runtime(std::io::Error),
    #[error("building the OTLP {signal} exporter: {error}")]
    Build { signal: &'static str, error: String },
}

pub struct Otlp {
    // Declared first: dropped (shut down) before the runtime the gRPC channels live on.
    meters: SdkMeterProvider,
    instruments: Instruments,
    spans: opentelemetry_otlp::SpanExporter,
    pending_spans: Vec<(ResourceKey, SpanData)>,
    logs: opentelemetry_otlp::LogExporter,
    logger: SdkLogger,
    _logger_provider: SdkLoggerProvider,
    pending_logs: Arc<Mutex<Vec<PendingLog>>>,
    /// The resource of the log record being emitted (the processor files it with the record).
    emitting: Arc<Mutex<ResourceKey>>,
    scope: InstrumentationScope,
    ids: RandomIdGenerator,
    config: OtlpConfig,
    clock: WallClock,
    stats: Arc<AgentStats>,
    host: String,
    /// This node's name, from the NODE_NAME variable a DaemonSet sets (`k8s.node.name`).
    node: Option<String>,
    _runtime: tokio::runtime::Runtime,
}

struct Instruments {
    meter: Meter,
    durations: BTreeMap<&'static str, Histogram<f64>>,
    edge_total: Counter<u64>,
    edge_failed: Counter<u64>,
    edge_server: Histogram<f64>,
    edge_client: Histogram<f64>,
}

/// The protocol the OTEL_* variables ask for a signal (the specification's default: HTTP).
fn wants_grpc(signal: &str) -> bool {
    let specific = std::env::var(format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")).ok();
    specific.or_else(|| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok()).is_some_and(|p| p.trim() == "grpc")
}

/// Builds an exporter inside the runtime when it speaks gRPC (tonic spawns its channel there);
/// the HTTP one uses a blocking client that must be made outside any runtime.
fn build<T, E: std::fmt::Display>(
    rt: &tokio::runtime::Runtime,
    signal: &'static str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, OtlpError> {
    let built = if wants_grpc(&signal.to_uppercase()) {
        let _inside = rt.enter();
        f()
    } else {
        f()
    };
    built.map_err(|e| OtlpError::Build { signal, error: e.to_string() })
}

impl Otlp {
    pub fn start(config: OtlpConfig, clock: WallClock, stats: Arc<AgentStats>) -> Result<Otlp, OtlpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("strata-otlp")
            .enable_all()
            .build()
            .map_err(OtlpError::Runtime)?;
        let host = hostname();
        let mut agent_resource = Resource::builder().with_attribute(KeyValue::new("host.name", host.clone()));
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            agent_resource = agent_resource.with_service_name("strata");
        }
        let agent_resource = agent_resource.build();

        let metric_exporter = build(&runtime, "metrics", || opentelemetry_otlp::MetricExporter::builder().build())?;
        let mut reader = PeriodicReader::builder(Counted { inner: metric_exporter, stats: stats.clone() });
        if std::env::var_os("OTEL_METRIC_EXPORT_INTERVAL").is_none() {
            reader = reader.with_interval(Duration::from_secs(10));
        }
        let meters = SdkMeterProvider::builder()
            .with_resource(agent_resource.clone())
            .with_reader(reader.build())
            .with_view(exponential_histograms)
            .build();
        let meter = meters.meter_with_scope(scope());
        register_agent_metrics(&meter, stats.clone());
        let instruments = Instruments::new(meter);

        let spans = build(&runtime, "traces", || opentelemetry_otlp::SpanExporter::builder().build())?;
        let mut logs = build(&runtime, "logs", || opentelemetry_otlp::LogExporter::builder().build())?;
        logs.set_resource(&agent_resource);
        let pending_logs = Arc::new(Mutex::new(Vec::new()));
        let emitting = Arc::new(Mutex::new(ResourceKey::default()));
        let logger_provider = SdkLoggerProvider::builder()
            .with_resource(agent_resource)
            .with_log_processor(LogQueue {
                pending: pending_logs.clone(),
                emitting: emitting.clone(),
                stats: stats.clone(),
            })
            .build();
        let logger = logger_provider.logger_with_scope(scope());
        Ok(Otlp {
            meters,
            instruments,
            spans,
            pending_spans: Vec::new(),
            logs,
            logger,
            _logger_provider: logger_provider,
            pending_logs,
            emitting,
            scope: scope(),
            ids: RandomIdGenerator::default(),
            config,
            clock,
            stats,
            host,
            node: std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()),
            _runtime: runtime,
        })
    }

    /// A record's measurement, span and (when it failed or was slow) log record.
    pub fn record(&mut self, r: &Record, o: &Observation) {
        self.instruments.observe(o);
        let span = self.span(r, o);
        let span_ids = span.as_ref().map(|s| (s.span_context.trace_id(), s.span_context.span_id()));
        if let Some(span) = span {
            if self.pending_spans.len() < MAX_PENDING {
                self.pending_spans.push((ResourceKey::of(r, o), span));
            } else {
                self.stats.add_dropped("spans", 1);
            }
        }
        let slow = o.seconds >= self.config.slow_threshold.as_secs_f64();
        if o.error || slow {
            self.log(r, o, slow, span_ids);
        }
    }

    fn span(&self, r: &Record, o: &Observation) -> Option<SpanData> {
        let parent = parent_of(r);
        // Parent-based: the caller's decision stands; undecided and new traces go by ratio.
        match parent {
            Some(Parent { sampled: Some(false), .. }) => return None,
            Some(Parent { sampled: None, trace_id, .. }) if !keep(trace_id, self.config.sample_ratio) => return None,
            _ => {}
        }
        let client = r.endpoint.role == strata_event::Role::Client;
        let (trace_id, span_id, parent_span_id) = match parent {
            // The header a client sent names the client's own span.
            Some(Parent { trace_id, span_id, .. }) if client => {
                (TraceId::from(trace_id), SpanId::from(span_id), SpanId::INVALID)
            }
            Some(Parent { trace_id, span_id, .. }) => {
                (TraceId::from(trace_id), self.ids.new_span_id(), SpanId::from(span_id))
            }
            None => {
                let trace_id = self.ids.new_trace_id();
                if !keep(u128::from_be_bytes(trace_id.to_bytes()), self.config.sample_ratio) {
                    return None;
                }
                (trace_id, self.ids.new_span_id(), SpanId::INVALID)
            }
        };
        let start = self.clock.system_time(r.start_ns);
        let end = start + Duration::from_secs_f64(o.seconds);
        let mut attributes: Vec<KeyValue> =
            o.attributes.iter().filter(|(k, _)| !on_resource(k)).map(|(k, v)| KeyValue::new(*k, v.clone())).collect();
        attributes.extend(raw_attributes(r));
        let status = if o.error {
            Status::error(r.error.clone().or_else(|| r.status.clone()).unwrap_or_default())
        } else {
            Status::Unset
        };
        Some(SpanData {
            span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::default()),
            parent_span_id,
            parent_span_is_remote: parent_span_id != SpanId::INVALID,
            span_kind: if client { SpanKind::Client } else { SpanKind::Server },
            name: o.operation.clone().into(),
            start_time: start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        })
    }

    fn log(&self, r: &Record, o: &Observation, slow: bool, span: Option<(TraceId, SpanId)>) {
        let mut rec = self.logger.create_log_record();
        let when = self.clock.system_time(r.start_ns);
        rec.set_timestamp(when);
        rec.set_observed_timestamp(SystemTime::now());
        let (severity, text, event) = if o.error {
            (Severity::Error, "ERROR", "strata.request.error")
        } else {
            (Severity::Warn, "WARN", "strata.request.slow")
        };
        rec.set_severity_number(severity);
        rec.set_severity_text(text);
        rec.set_event_name(event);
        let status = r.status.as_deref().unwrap_or("-");
        let error = r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        rec.set_body(AnyValue::from(format!(
            "{} {} {} → {status}{error} in {:.3} ms{}",
            r.endpoint.comm,
            r.protocol.name(),
            o.operation,
            o.seconds * 1e3,
            if slow { " (slow)" } else { "" }
        )));
        rec.add_attributes(o.attributes.iter().filter(|(k, _)| !on_resource(k)).map(|(k, v)| (*k, v.clone())));
        rec.add_attributes(raw_attributes(r).into_iter().map(|kv| (kv.key, AnyValue::from(kv.value.to_string()))));
        if let Some((trace, span)) = span {
            rec.set_trace_context(trace, span, Some(TraceFlags::SAMPLED));
        }
        *self.emitting.lock().unwrap_or_else(|e| e.into_inner()) = ResourceKey::of(r, o);
        self.logger.emit(rec);
    }

    /// Sends the spans and logs gathered since the last flush, grouped by resource: the observed
    /// service, and its container, pod and workload when known.
    pub fn flush(&mut self) {
        let spans = std::mem::take(&mut self.pending_spans);
        let mut groups: BTreeMap<(String, u64), (ResourceKey, Vec<SpanData>)> = BTreeMap::new();
        for (key, s) in spans {
            groups.entry(key.sort_key()).or_insert_with(|| (key, Vec::new())).1.push(s);
        }
        for (_, (key, group)) in groups {
            let n = group.len() as u64;
            self.spans.set_resource(&self.resource(&key));
            if let Err(e) = futures_executor::block_on(self.spans.export(group)) {
                self.failed("otlp_traces", "spans", n, &e);
            }
        }
        let logs = std::mem::take(&mut *self.pending_logs.lock().unwrap_or_else(|e| e.into_inner()));
        let mut groups: BTreeMap<(String, u64), (ResourceKey, Vec<LogWithScope>)> = BTreeMap::new();
        for (key, record, scope) in logs {
            groups.entry(key.sort_key()).or_insert_with(|| (key, Vec::new())).1.push((record, scope));
        }
        for (_, (key, group)) in groups {
            self.logs.set_resource(&self.resource(&key));
            let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> = group.iter().map(|(r, s)| (r, s)).collect();
            if let Err(e) = futures_executor::block_on(self.logs.export(LogBatch::new(&refs))) {
                self.failed("otlp_logs", "logs", group.len() as u64, &e);
            }
        }
    }

    /// The resource of a group of spans or log records.
    fn resource(&self, key: &ResourceKey) -> Resource {
        let mut b = Resource::builder_empty()
            .with_service_name(key.service.clone())
            .with_attribute(KeyValue::new("host.name", self.host.clone()));
        if let Some(node) = &self.node {
            b = b.with_attribute(KeyValue::new("k8s.node.name", node.clone()));
        }
        if let Some(a) = &key.attribution {
            b = b.with_attributes(
                a.all_attributes().into_iter().map(|(k, v)| KeyValue::new(k.into_owned(), v.to_string())),
            );
        }
        b.build()
    }

    fn failed(&self, exporter: &'static str, queue: &'static str, n: u64, e: &dyn std::fmt::Display) {
        self.stats.add_export_failure(exporter);
        self.stats.add_dropped(queue, n);
        log::warn!("OTLP export of {n} {queue} failed (dropped, counted): {e}");
    }

    /// Final flush of everything, metrics included.
    pub fn shutdown(mut self) {
        self.flush();
        if let Err(e) = self.meters.shutdown() {
            log::warn!("OTLP metrics at shutdown: {e}");
        }
    }
}

/// Keeps the traces whose id falls in the lowest `ratio` of the id space (as the SDK's
/// TraceIdRatioBased sampler does), so every agent keeps the same traces.
fn keep(trace_id: u128, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let low = trace_id as u64 >> 1;
    (low as f64) < ratio.max(0.0) * (1u64 << 63) as f64
}

/// Span and log attributes that are not labels: raw values and the connection.
fn raw_attributes(r: &Record) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("process.pid", i64::from(r.endpoint.pid)),
        KeyValue::new("network.transport", r.endpoint.transport.name()),
        KeyValue::new("network.peer.address", r.endpoint.remote.ip().to_string()),
        KeyValue::new("network.peer.port", i64::from(r.endpoint.remote.port())),
        KeyValue::new("network.local.address", r.endpoint.local.ip().to_string()),
        KeyValue::new("network.local.port", i64::from(r.endpoint.local.port())),
        KeyValue::new("strata.request.bytes", r.request_bytes as i64),
        KeyValue::new("strata.response.bytes", r.response_bytes as i64),
    ];
    if let Some(target) = &r.target {
        if matches!(r.protocol, Protocol::Http | Protocol::Http2) {
            a.push(KeyValue::new("url.path", target.chars().take(1024).collect::<String>()));
        }
    }
    if let Some(status) = &r.status {
        if matches!(r.protocol, Protocol::Http | Protocol::Http2) {
            a.push(KeyValue::new("http.response.status_code", status.parse::<i64>().unwrap_or(0)));
        }
    }
    if r.partial {
        a.push(KeyValue::new("strata.partial", true));
    }
    a
}

impl Instruments {
    fn new(meter: Meter) -> Instruments {
        let edge_hist = |name: &'static str| meter.f64_histogram(name).with_unit("s").build();
        Instruments {
            durations: BTreeMap::new(),
            edge_total: meter.u64_counter("traces_service_graph_request_total").build(),
            edge_failed: meter.u64_counter("traces_service_graph_request_failed_total").build(),
            edge_server: edge_hist("traces_service_graph_request_server_seconds"),
            edge_client: edge_hist("traces_service_graph_request_client_seconds"),
            meter,
        }
    }

    fn observe(&mut self, o: &Observation) {
        let meter = &self.meter;
        let h = self.durations.entry(o.instrument.otel).or_insert_with(|| {
            meter.f64_histogram(o.instrument.otel).with_unit("s").with_description(o.instrument.description).build()
        });
        let attrs: Vec<KeyValue> = o.attributes.iter().map(|(k, v)| KeyValue::new(*k, v.clone())).collect();
        h.record(o.seconds, &attrs);
        if let Some(e) = &o.edge {
            let attrs = [
                KeyValue::new("client", e.client.clone()),
                KeyValue::new("server", e.server.clone()),
                KeyValue::new("connection_type", e.connection_type),
            ];
            self.edge_total.add(1, &attrs);
            if o.error {
                self.edge_failed.add(1, &attrs);
            }
            if e.observed_by_client { &self.edge_client } else { &self.edge_server }.record(o.seconds, &attrs);
        }
    }
}

/// One labelled family of the agent's counters, as (label value, count) pairs.
type ReadCounters = fn(&crate::telemetry::agent_stats::Counters) -> Vec<(String, u64)>;

/// The agent's own counters, read at each metric export.
fn register_agent_metrics(meter: &Meter, stats: Arc<AgentStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = stats.clone();
    meter
        .u64_observable_counter("strata.events")
        .with_callback(move |o| o.observe(s.events.load(Relaxed), &[]))
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter("strata.parse_errors")
        .with_callback(move |o| o.observe(s.parse_errors.load(Relaxed), &[]))
        .build();
    let s = stats.clone();
    meter
        .u64_observable_gauge("strata.queue.depth")
        .with_callback(move |o| o.observe(s.queue_depth.load(Relaxed), &[KeyValue::new("queue", "telemetry")]))
        .build();
    let s = stats.clone();
    meter
        .u64_observable_gauge("strata.agent.info")
        .with_callback(move |o| {
            let attrs = [
                KeyValue::new("tier", s.tier()),
                KeyValue::new("kernel_release", s.kernel_release.clone()),
                KeyValue::new("version", env!("CARGO_PKG_VERSION")),
            ];
            o.observe(1, &attrs);
        })
        .build();
    let s = stats.clone();
    meter.u64_observable_gauge("strata.tier.degraded").with_callback(move |o| o.observe(s.degraded(), &[])).build();
    let keyed: [(&'static str, &'static str, ReadCounters); 5] = [
        ("strata.events.lost", "source", |c| c.lost.iter().map(|(k, v)| (k.name().to_string(), *v)).collect()),
        ("strata.records", "protocol", |c| c.records.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        ("strata.queue.dropped", "queue", |c| c.dropped.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        ("strata.label_values.folded", "label", |c| c.folded.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        ("strata.export.failures", "exporter", |c| {
            c.export_failures.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        }),
    ];
    for (name, label, read) in keyed {
        let s = stats.clone();
        meter
            .u64_observable_counter(name)
            .with_callback(move |o| {
                for (k, v) in read(&s.counters()) {
                    o.observe(v, &[KeyValue::new(label, k)]);
                }
            })
            .build();
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("strata").with_version(env!("CARGO_PKG_VERSION")).build()
}

/// OTLP metrics as exponential histograms: no bucket layout to choose, fine resolution at every
/// scale.
fn exponential_histograms(i: &SdkInstrument) -> Option<Stream> {
    if i.kind() != InstrumentKind::Histogram {
        return None;
    }
    let aggregation = Aggregation::Base2ExponentialHistogram { max_size: 160, max_scale: 20, record_min_max: true };
    Stream::builder().with_aggregation(aggregation).build().ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// The metric exporter, counting failed exports.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::MetricExporter,
    stats: Arc<AgentStats>,
}

impl PushMetricExporter for Counted {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if let Err(e) = &result {
            self.stats.add_export_failure("otlp_metrics");
            log::warn!("OTLP metrics export failed: {e}");
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// A log record waiting for the next flush, with the resource it goes under.
type PendingLog = (ResourceKey, SdkLogRecord, InstrumentationScope);
type LogWithScope = (SdkLogRecord, InstrumentationScope);

/// Holds emitted log records until the telemetry thread flushes them; bounded, drops counted.
#[derive(Debug)]
struct LogQueue {
    pending: Arc<Mutex<Vec<PendingLog>>>,
    emitting: Arc<Mutex<ResourceKey>>,
    stats: Arc<AgentStats>,
}

impl LogProcessor for LogQueue {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING {
            let key = self.emitting.lock().unwrap_or_else(|e| e.into_inner()).clone();
            pending.push((key, record.clone(), scope.clone()));
        } else {
            self.stats.add_dropped("logs", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
}

/// OTLP as a telemetry sink: spans and logs flushed every [`FLUSH_EVERY`], everything at the end.
pub struct OtlpSink {
    otlp: Option<Otlp>,
    last_flush: std::time::Instant,
}

impl OtlpSink {
    pub fn new(otlp: Otlp) -> OtlpSink {
        OtlpSink { otlp: Some(otlp), last_flush: std::time::Instant::now() }
    }
}

impl crate::telemetry::TelemetrySink for OtlpSink {
    fn observe(&mut self, batch: &[(Record, Observation)]) {
        if let Some(o) = self.otlp.as_mut() {
            for (r, obs) in batch {
                o.record(r, obs);
            }
        }
    }

    fn tick(&mut self) {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            if let Some(o) = self.otlp.as_mut() {
                o.flush();
            }
            self.last_flush = std::time::Instant::now();
        }
    }

    fn finish(&mut self) {
        if let Some(o) = self.otlp.take() {
            o.shutdown();
        }
    }
}
