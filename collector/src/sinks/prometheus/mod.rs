//! Prometheus: the metric store the telemetry thread feeds, and the scrape endpoint that renders
//! it. The endpoint is hyper's HTTP/1.1 server on a thread of its own: connections are served
//! concurrently (an idle or slow client holds only its own connection), request heads are limited
//! in size and time, and besides `GET /metrics` it answers the Kubernetes probes `GET /healthz`
//! (the agent runs) and `GET /readyz` (a tier is capturing).

pub mod store;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::pipeline::Record;
use crate::telemetry::agent_stats::AgentStats;
use crate::telemetry::{Observation, TelemetrySink};
pub use store::MetricStore;

/// How long a client may take to send a request's head (an idle connection is closed then).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read; a longer one closes the connection (a scrape's is a few hundred
/// bytes).
pub const MAX_HEAD_BYTES: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
#[error("serving Prometheus metrics on {addr}: {error} (choose another with --prometheus-listen, or `off`)")]
pub struct PrometheusError {
    pub addr: SocketAddr,
    pub error: std::io::Error,
}

/// The store as a telemetry sink: one lock per batch.
pub struct PrometheusSink {
    store: Arc<Mutex<MetricStore>>,
}

impl TelemetrySink for PrometheusSink {
    fn observe(&mut self, batch: &[(Record, Observation)]) {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        for (_, o) in batch {
            store.observe(o);
        }
    }
}

/// Binds `addr` and serves scrapes until the process exits; returns the sink that feeds what it
/// serves, and the bound address.
pub fn serve(addr: SocketAddr, stats: Arc<AgentStats>) -> Result<(PrometheusSink, SocketAddr), PrometheusError> {
    let err = |error| PrometheusError { addr, error };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let store = Arc::new(Mutex::new(MetricStore::default()));
    let served = store.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(err)?;
    std::thread::Builder::new()
        .name("strata-prometheus".into())
        .spawn(move || runtime.block_on(accept_loop(listener, served, stats)))
        .map_err(err)?;
    Ok((PrometheusSink { store }, bound))
}

async fn accept_loop(listener: std::net::TcpListener, store: Arc<Mutex<MetricStore>>, stats: Arc<AgentStats>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("the Prometheus endpoint stopped: {e}");
            return;
        }
    };
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                log::warn!("accepting a Prometheus scrape: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (store, stats) = (store.clone(), stats.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, store.clone(), stats.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                log::debug!("prometheus connection: {e}");
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    store: Arc<Mutex<MetricStore>>,
    stats: Arc<AgentStats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("a valid header value"));
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into()));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let body = store.lock().unwrap_or_else(|e| e.into_inner()).render(&stats);
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match stats.tier() {
            "" => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not capturing yet\n".into()),
            tier => reply(StatusCode::OK, "text/plain", format!("capturing with tier {tier}\n")),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "strata: metrics are at /metrics\n".into()),
    })
}
