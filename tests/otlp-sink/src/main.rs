//! An OTLP receiver for strata's end-to-end tests: the three OpenTelemetry collector services
//! (traces, metrics, logs) of `opentelemetry-proto`, over OTLP/gRPC (h2c) and OTLP/HTTP with
//! protobuf bodies, both on the one port.
//!
//! ```text
//! strata-otlp-sink <port> <out-file>   # prints "listening on 127.0.0.1:<port>" once bound, runs until killed
//! ```
//!
//! A connection opening with the HTTP/2 preface is served as HTTP/2 (h2c with prior knowledge, as
//! OTLP/gRPC clients connect), any other as HTTP/1.1 (as OTLP/HTTP clients do). Requests are routed
//! by path: `/opentelemetry.proto.collector.{trace,metrics,logs}.v1.{Trace,Metrics,Logs}Service/Export`
//! are the gRPC methods, and OTLP/HTTP is:
//!
//! ```text
//! POST /v1/traces    Content-Type: application/x-protobuf   body: ExportTraceServiceRequest
//! POST /v1/metrics   Content-Type: application/x-protobuf   body: ExportMetricsServiceRequest
//! POST /v1/logs      Content-Type: application/x-protobuf   body: ExportLogsServiceRequest
//!   -> 200 OK, Content-Type: application/x-protobuf, body: the (empty) Export*ServiceResponse
//! another path: 404; another method: 405; another Content-Type (OTLP/JSON) or a Content-Encoding
//! (gzip, ...): 415; a body that does not decode: 400. All with a text/plain message, nothing written.
//! ```
//!
//! Every export request is answered with a default (success) response and appended to `<out-file>`
//! as one line, written and flushed at once, the same whichever way it came:
//!
//! ```text
//! {"signal":"traces"|"metrics"|"logs","request":<Export{Trace,Metrics,Logs}ServiceRequest>}
//! ```
//!
//! The request is serialized by `opentelemetry-proto`'s `with-serde` derives (checked by the tests
//! below), close to OTLP/JSON: field names are lowerCamelCase, in proto order; every field is present
//! (no default is left out), an absent message or optional is `null`; 64-bit integers (uint64,
//! fixed64, int64 `intValue`) are decimal strings, 32-bit integers, enums and doubles are numbers
//! (enums as their integer value, never their name); trace and span ids are lowercase hex strings,
//! `""` when empty. Paths into a line:
//!
//! ```text
//! traces:  request.resourceSpans[].resource.attributes[]
//!          request.resourceSpans[].scopeSpans[].scope.{name,version}
//!          request.resourceSpans[].scopeSpans[].spans[]:
//!            "traceId": "0102030405060708090a0b0c0d0e0f10"   (32 hex digits)
//!            "spanId": "0102030405060708"                    (16 hex digits)
//!            "parentSpanId": "abababababababab"              ("" for a root span)
//!            "name": "GET /users"
//!            "kind": 2                      (1 internal, 2 server, 3 client, 4 producer, 5 consumer)
//!            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "..."
//!            "attributes": [...], "status": null | {"message": "", "code": 0|1|2}, "flags": 0, ...
//! metrics: request.resourceMetrics[].scopeMetrics[].metrics[]:
//!            "name": "http.server.request.duration", "description": "", "unit": "s"
//!            "exponentialHistogram": {"dataPoints": [...], "aggregationTemporality": 2}
//!              (the data oneof is flattened: the key is the kind, "sum", "gauge", "histogram", ...)
//!          a data point of dataPoints[]:
//!            "attributes": [{"key": "http.request.method", "value": {"stringValue": "GET"}}]
//!            "startTimeUnixNano": "...", "timeUnixNano": "...", "count": "3", "sum": 0.75 | null,
//!            "scale": 2, "zeroCount": "1", "positive": {"offset": -3, "bucketCounts": ["1","0","1"]},
//!            "negative": null, "flags": 0, "exemplars": [], "min": 0.0, "max": 0.5, "zeroThreshold": 0.0
//! logs:    request.resourceLogs[].scopeLogs[].logRecords[]:
//!            "timeUnixNano": "...", "observedTimeUnixNano": "0", "severityNumber": 13,
//!            "severityText": "WARN", "body": {"stringValue": "ring buffer lost 3 events"},
//!            "attributes": [{"key": "lost", "value": {"intValue": "3"}}, ...],
//!            "traceId": "" | hex, "spanId": "" | hex, "flags": 0, "eventName": "", ...
//! ```
//!
//! An attribute is `{"key": k, "value": v}` with `v` one of `{"stringValue": "s"}`, `{"intValue": "42"}`
//! (a string), `{"doubleValue": 0.5}`, `{"boolValue": true}`, `{"bytesValue": "<base64>"}`,
//! `{"arrayValue": {"values": [v...]}}`, `{"kvlistValue": {"values": [kv...]}}`; `{}` for an empty
//! AnyValue, `null` for none.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tower::Service;

const USAGE: &str = "usage: strata-otlp-sink <port> <out-file>";

/// The OTLP/HTTP protobuf content type, of requests and responses.
const PROTOBUF: &str = "application/x-protobuf";

/// One output line (without the newline): `{"signal":"<signal>","request":<request JSON>}`.
///
/// Built by hand rather than through `serde_json::Value`, whose map would reorder the request's
/// fields alphabetically; this keeps them in proto order and needs no `serde` dependency.
fn json_line(signal: &str, request_json: &str) -> String {
    format!("{{\"signal\":\"{signal}\",\"request\":{request_json}}}")
}

/// The three collector services, all appending to the one output file.
struct Sink {
    out: Mutex<File>,
}

impl Sink {
    /// Appends one line for a received export request; the whole line goes out in one write.
    fn record(&self, signal: &str, request_json: serde_json::Result<String>) -> Result<(), Status> {
        let request_json = request_json.map_err(|e| Status::internal(format!("serialize {signal}: {e}")))?;
        self.append(signal, json_line(signal, &request_json)).map_err(Status::internal)
    }

    /// Appends `line` and a newline in one write, flushed; the error is also printed.
    fn append(&self, signal: &str, mut line: String) -> Result<(), String> {
        line.push('\n');
        // A poisoned lock only means another export panicked mid-write; the file is still usable.
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(line.as_bytes()).and_then(|()| out.flush()).map_err(|e| {
            eprintln!("write {signal}: {e}");
            format!("write {signal}: {e}")
        })
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.record("traces", serde_json::to_string(request.get_ref()))?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.record("metrics", serde_json::to_string(request.get_ref()))?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.record("logs", serde_json::to_string(request.get_ref()))?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Whether `path` (an HTTP/2 `:path`, "/<service>/<method>") is a method of `service`.
fn in_service(path: &str, service: &str) -> bool {
    path.strip_prefix('/').and_then(|p| p.strip_prefix(service)).is_some_and(|rest| rest.starts_with('/'))
}

/// An OTLP/HTTP export request, decoded: what to record and what to answer.
#[derive(Debug)]
struct HttpExport {
    signal: &'static str,
    /// The output line, as gRPC export writes it (without the newline).
    line: String,
    /// The encoded Export*ServiceResponse (empty: every field at its default).
    response: Vec<u8>,
}

fn not_found(path: &str) -> (StatusCode, String) {
    (StatusCode::NOT_FOUND, format!("no OTLP/HTTP endpoint {path}: /v1/traces, /v1/metrics, /v1/logs\n"))
}

/// Decodes the protobuf body of an OTLP/HTTP export to `path`, `/v1/{traces,metrics,logs}`.
/// An unknown path is a 404, a body that does not decode a 400, with a message.
fn http_export(path: &str, body: &[u8]) -> Result<HttpExport, (StatusCode, String)> {
    let bad =
        |signal: &str, e: prost::DecodeError| (StatusCode::BAD_REQUEST, format!("decode {signal} request: {e}\n"));
    let (signal, request_json, response) = match path {
        "/v1/traces" => {
            let request = ExportTraceServiceRequest::decode(body).map_err(|e| bad("traces", e))?;
            ("traces", serde_json::to_string(&request), ExportTraceServiceResponse::default().encode_to_vec())
        }
        "/v1/metrics" => {
            let request = ExportMetricsServiceRequest::decode(body).map_err(|e| bad("metrics", e))?;
            ("metrics", serde_json::to_string(&request), ExportMetricsServiceResponse::default().encode_to_vec())
        }
        "/v1/logs" => {
            let request = ExportLogsServiceRequest::decode(body).map_err(|e| bad("logs", e))?;
            ("logs", serde_json::to_string(&request), ExportLogsServiceResponse::default().encode_to_vec())
        }
        _ => return Err(not_found(path)),
    };
    let request_json =
        request_json.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("serialize {signal} request: {e}\n")))?;
    Ok(HttpExport { signal, line: json_line(signal, &request_json), response })
}

/// A response with `body`, of `content_type`.
fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(Full::new(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

/// Serves one OTLP/HTTP request (any request that is not a gRPC call).
async fn serve_http(sink: &Sink, request: http::Request<Incoming>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let header = |name| parts.headers.get(name).and_then(|value: &header::HeaderValue| value.to_str().ok());
    let fail = |(status, message): (StatusCode, String)| respond(status, "text/plain; charset=utf-8", message);
    // The path first: a 404 tells more than a 405 or 415 for a wrong endpoint.
    if !matches!(path, "/v1/traces" | "/v1/metrics" | "/v1/logs") {
        return fail(not_found(path));
    }
    if parts.method != Method::POST {
        let mut response = fail((StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes POST, not {}\n", parts.method)));
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    // Parameters (`; charset=...`) aside, only protobuf: no OTLP/JSON.
    let content_type = header(header::CONTENT_TYPE).unwrap_or("");
    if content_type.split(';').next().unwrap_or("").trim() != PROTOBUF {
        let message = format!("{path} takes Content-Type: {PROTOBUF}, not {content_type:?}\n");
        return fail((StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
    }
    // strata's exporter sends no Content-Encoding (it has no gzip-http feature): none is decoded.
    if let Some(encoding) = header(header::CONTENT_ENCODING).filter(|e| !e.eq_ignore_ascii_case("identity")) {
        let message = format!("{path}: Content-Encoding {encoding:?} is not supported, only uncompressed bodies\n");
        return fail((StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
    }
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return fail((StatusCode::BAD_REQUEST, format!("read {path} body: {e}\n"))),
    };
    let export = match http_export(path, &body) {
        Ok(export) => export,
        Err(error) => return fail(error),
    };
    match sink.append(export.signal, export.line) {
        Ok(()) => respond(StatusCode::OK, PROTOBUF, export.response),
        Err(message) => fail((StatusCode::INTERNAL_SERVER_ERROR, message + "\n")),
    }
}

/// Routes every request of every connection: gRPC calls by service name to the generated servers,
/// the rest to OTLP/HTTP.
struct Routes {
    sink: Arc<Sink>,
    traces: TraceServiceServer<Sink>,
    metrics: MetricsServiceServer<Sink>,
    logs: LogsServiceServer<Sink>,
}

impl Routes {
    // Without tonic's `router` feature (axum) there is no add_service: requests are routed here by
    // service name, and each generated server dispatches on the method and answers like tonic does.
    async fn serve(&self, request: http::Request<Incoming>) -> Result<http::Response<Body>, Infallible> {
        let path = request.uri().path();
        if in_service(path, TraceServiceServer::<Sink>::NAME) {
            self.traces.clone().call(request.map(Body::new)).await
        } else if in_service(path, MetricsServiceServer::<Sink>::NAME) {
            self.metrics.clone().call(request.map(Body::new)).await
        } else if in_service(path, LogsServiceServer::<Sink>::NAME) {
            self.logs.clone().call(request.map(Body::new)).await
        } else if request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"))
        {
            Ok(Status::unimplemented(format!("unknown service {path}")).into_http())
        } else {
            Ok(serve_http(&self.sink, request).await)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, path) = match args.as_slice() {
        [port, path] => match port.parse::<u16>() {
            Ok(port) => (port, path),
            Err(_) => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let out = match OpenOptions::new().create(true).append(true).open(path) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("open {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // tokio's bind sets SO_REUSEADDR, so a new sink can take the port of a killed one at once.
    let listener = match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("bind 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };

    let sink = Arc::new(Sink { out: Mutex::new(out) });
    let routes = Arc::new(Routes {
        traces: TraceServiceServer::from_arc(Arc::clone(&sink)),
        metrics: MetricsServiceServer::from_arc(Arc::clone(&sink)),
        logs: LogsServiceServer::from_arc(Arc::clone(&sink)),
        sink,
    });

    println!("listening on 127.0.0.1:{port}");
    let _ = std::io::stdout().flush();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        // Exports are small and answered at once: no Nagle delay (tonic's server sets this too).
        let _ = stream.set_nodelay(true);
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let routes = Arc::clone(&routes);
                async move { routes.serve(request).await }
            });
            // The auto builder reads the first bytes: the HTTP/2 preface (gRPC, h2c with prior
            // knowledge) or else HTTP/1.1 (OTLP/HTTP).
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Metric, ResourceMetrics,
        ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status as SpanStatus};
    use serde_json::json;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv("service.name", Value::StringValue("strata".into()))],
            ..Default::default()
        })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope { name: "strata".into(), version: "0.1.0".into(), ..Default::default() })
    }

    /// Builds the line the sink writes for a request serialized as it does (`serde_json::to_string`),
    /// and parses it back.
    fn line(signal: &str, request_json: serde_json::Result<String>) -> serde_json::Value {
        let line = json_line(signal, &request_json.unwrap());
        println!("{line}");
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn trace_shape() {
        let span = Span {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            parent_span_id: vec![0xab; 8],
            name: "GET /users".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_500_000,
            attributes: vec![kv("http.response.status_code", Value::IntValue(200))],
            ..Default::default()
        };
        let root = Span {
            span_id: vec![0xab; 8],
            parent_span_id: vec![],
            status: Some(SpanStatus { message: "boom".into(), code: status::StatusCode::Error as i32 }),
            kind: span::SpanKind::Client as i32,
            ..span.clone()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans { scope: scope(), spans: vec![span, root], ..Default::default() }],
                ..Default::default()
            }],
        };
        let line = line("traces", serde_json::to_string(&request));
        assert_eq!(line["signal"], "traces");
        let resource_spans = &line["request"]["resourceSpans"][0];
        assert_eq!(resource_spans["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(resource_spans["resource"]["attributes"][0]["value"]["stringValue"], "strata");
        let scope_spans = &resource_spans["scopeSpans"][0];
        assert_eq!(scope_spans["scope"]["name"], "strata");
        let span = &scope_spans["spans"][0];
        assert_eq!(span["traceId"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "abababababababab");
        assert_eq!(span["name"], "GET /users");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "200");
        assert_eq!(span["status"], serde_json::Value::Null);
        let root = &scope_spans["spans"][1];
        assert_eq!(root["parentSpanId"], "");
        assert_eq!(root["kind"], 3);
        assert_eq!(root["status"], json!({"message": "boom", "code": 2}));
    }

    #[test]
    fn metrics_shape() {
        let point = ExponentialHistogramDataPoint {
            attributes: vec![kv("http.request.method", Value::StringValue("GET".into()))],
            start_time_unix_nano: 1_700_000_000_000_000_000,
            time_unix_nano: 1_700_000_010_000_000_000,
            count: 3,
            sum: Some(0.75),
            scale: 2,
            zero_count: 1,
            positive: Some(Buckets { offset: -3, bucket_counts: vec![1, 0, 1] }),
            negative: None,
            min: Some(0.0),
            max: Some(0.5),
            ..Default::default()
        };
        let metric = Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics { scope: scope(), metrics: vec![metric], ..Default::default() }],
                ..Default::default()
            }],
        };
        let line = line("metrics", serde_json::to_string(&request));
        assert_eq!(line["signal"], "metrics");
        let metric = &line["request"]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0];
        assert_eq!(metric["name"], "http.server.request.duration");
        assert_eq!(metric["unit"], "s");
        let histogram = &metric["exponentialHistogram"];
        assert_eq!(histogram["aggregationTemporality"], 2);
        let point = &histogram["dataPoints"][0];
        assert_eq!(point["attributes"][0], json!({"key": "http.request.method", "value": {"stringValue": "GET"}}));
        assert_eq!(point["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(point["timeUnixNano"], "1700000010000000000");
        // 64-bit integers (fixed64/uint64) are decimal strings, 32-bit ones and doubles numbers.
        assert_eq!(point["count"], "3");
        assert_eq!(point["sum"], 0.75);
        assert_eq!(point["scale"], 2);
        assert_eq!(point["zeroCount"], "1");
        assert_eq!(point["positive"], json!({"offset": -3, "bucketCounts": ["1", "0", "1"]}));
        assert_eq!(point["min"], 0.0);
        assert_eq!(point["max"], 0.5);
        // An absent optional message is null, not left out.
        assert_eq!(point["negative"], serde_json::Value::Null);
    }

    #[test]
    fn logs_shape() {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            severity_number: SeverityNumber::Warn as i32,
            severity_text: "WARN".into(),
            body: Some(AnyValue { value: Some(Value::StringValue("ring buffer lost 3 events".into())) }),
            attributes: vec![
                kv("lost", Value::IntValue(3)),
                kv("cpu", Value::StringValue("0".into())),
                kv("ratio", Value::DoubleValue(0.5)),
                kv("ok", Value::BoolValue(true)),
                kv("raw", Value::BytesValue(vec![1, 2, 3])),
                kv(
                    "list",
                    Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::IntValue(1)) }] }),
                ),
                KeyValue { key: "empty".into(), value: Some(AnyValue { value: None }), ..Default::default() },
                KeyValue { key: "absent".into(), value: None, ..Default::default() },
            ],
            trace_id: vec![0x11; 16],
            span_id: vec![0x22; 8],
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs { scope: scope(), log_records: vec![record], ..Default::default() }],
                ..Default::default()
            }],
        };
        let line = line("logs", serde_json::to_string(&request));
        assert_eq!(line["signal"], "logs");
        let record = &line["request"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["timeUnixNano"], "1700000000000000000");
        assert_eq!(record["severityNumber"], 13);
        assert_eq!(record["severityText"], "WARN");
        assert_eq!(record["body"], json!({"stringValue": "ring buffer lost 3 events"}));
        assert_eq!(record["attributes"][0], json!({"key": "lost", "value": {"intValue": "3"}}));
        assert_eq!(record["attributes"][1], json!({"key": "cpu", "value": {"stringValue": "0"}}));
        assert_eq!(record["attributes"][2], json!({"key": "ratio", "value": {"doubleValue": 0.5}}));
        assert_eq!(record["attributes"][3], json!({"key": "ok", "value": {"boolValue": true}}));
        assert_eq!(record["attributes"][4], json!({"key": "raw", "value": {"bytesValue": "AQID"}}));
        assert_eq!(
            record["attributes"][5],
            json!({"key": "list", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}})
        );
        assert_eq!(record["attributes"][6], json!({"key": "empty", "value": {}}));
        assert_eq!(record["attributes"][7], json!({"key": "absent", "value": null}));
        assert_eq!(record["traceId"], "11111111111111111111111111111111");
        assert_eq!(record["spanId"], "2222222222222222");
    }

    #[test]
    fn http_export_decodes_by_path() {
        let span =
            Span { trace_id: vec![0x11; 16], span_id: vec![0x22; 8], name: "GET /".into(), ..Default::default() };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans { scope: scope(), spans: vec![span], ..Default::default() }],
                ..Default::default()
            }],
        };
        let export = http_export("/v1/traces", &request.encode_to_vec()).unwrap();
        assert_eq!(export.signal, "traces");
        // The same line as a gRPC export of the request writes.
        assert_eq!(export.line, json_line("traces", &serde_json::to_string(&request).unwrap()));
        let line: serde_json::Value = serde_json::from_str(&export.line).unwrap();
        assert_eq!(line["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"], "2222222222222222");
        // Every field of a success response is at its default: it encodes to nothing.
        assert!(export.response.is_empty());

        // An empty body is an empty request, of the signal the path names.
        let export = http_export("/v1/metrics", &[]).unwrap();
        assert_eq!(
            (export.signal, export.line.as_str()),
            ("metrics", r#"{"signal":"metrics","request":{"resourceMetrics":[]}}"#)
        );
        let export = http_export("/v1/logs", &[]).unwrap();
        assert_eq!(
            (export.signal, export.line.as_str()),
            ("logs", r#"{"signal":"logs","request":{"resourceLogs":[]}}"#)
        );

        // Field 1 (resourceSpans), length-delimited, 5 bytes long, but only 2 follow.
        let (status, message) = http_export("/v1/traces", b"\x0a\x05ab").unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("decode traces request: "), "{message}");
        let (status, message) = http_export("/v1/profiles", &[]).unwrap_err();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(message.contains("/v1/profiles"), "{message}");
        assert_eq!(
            http_export("/opentelemetry.proto.collector.trace.v1.TraceService/Export", &[]).unwrap_err().0,
            StatusCode::NOT_FOUND
        );
    }
}
