//! The Prometheus scrape endpoint: a minimal HTTP/1.1 server on one thread that answers
//! `GET /metrics` with the text exposition. Scrapes are rare and small; a full HTTP stack would
//! weigh more than the agent's exporter needs.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::agent_stats::AgentStats;
use super::store::MetricStore;

/// Binds `addr` and serves scrapes on a thread of its own until the process exits.
pub fn serve(addr: SocketAddr, store: Arc<Mutex<MetricStore>>, stats: Arc<AgentStats>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("strata-prometheus".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if let Err(e) = answer(conn, &store, &stats) {
                log::debug!("prometheus scrape: {e}");
            }
        }
    })?;
    Ok(bound)
}

fn answer(conn: TcpStream, store: &Mutex<MetricStore>, stats: &AgentStats) -> std::io::Result<()> {
    // A scraper that stalls must not hold the endpoint.
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(&conn);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers: nothing in them changes the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            let body = store.lock().unwrap_or_else(|e| e.into_inner()).render(stats);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        ("GET", _) => ("404 Not Found", "text/plain", "strata: metrics are at /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_string()),
    };
    let mut out = &conn;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body.as_bytes())?;
    out.flush()
}
