//! A stand-in for the Kubernetes API server: recorded API responses (JSON files under
//! tests/fixtures/kube/) served over plain HTTP/1.1 on loopback. No API server can run on these
//! machines; this serves what one answers, in its wire format, for the requests strata makes:
//!
//! - `GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>&...` (a list): the next of the
//!   recorded lists, the last one again once they are used up;
//! - the same with `watch=true`: a chunked stream of watch events (one JSON object a line, as the
//!   API server sends them) that the test feeds line by line with [`FakeApiServer::send`], and
//!   ends with [`FakeApiServer::end_watch`] (after a `410 Gone` ERROR event, say);
//! - any other `GET` path: the recorded object at that path, else a `404 NotFound` Status.
//!
//! Every request's target is kept, so a test can check what was asked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the watch streams carry: an event line, or the end of the current stream.
enum WatchItem {
    Line(String),
    End,
}

struct Shared {
    lists: Vec<String>,
    lists_served: usize,
    objects: HashMap<String, String>,
    requests: Vec<String>,
    /// Paths answered with this status and body instead (a failing API server).
    failing: Option<(u16, String)>,
}

pub struct FakeApiServer {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    watch: Sender<WatchItem>,
}

/// The recorded responses' directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/kube")
}

/// A recorded response, by file name.
pub fn fixture(name: &str) -> String {
    let path = fixtures().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A recorded response as one line (watch events are one JSON object per line).
pub fn fixture_line(name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&fixture(name)).unwrap();
    v.to_string()
}

impl FakeApiServer {
    /// Serves `lists` (in turn) for the pod list and `objects` by path.
    pub fn start(lists: Vec<String>, objects: Vec<(&str, String)>) -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared {
            lists,
            lists_served: 0,
            objects: objects.into_iter().map(|(p, o)| (p.to_string(), o)).collect(),
            requests: Vec::new(),
            failing: None,
        }));
        let (tx, rx) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, rx) = (s.clone(), rx.clone());
                std::thread::spawn(move || serve(conn, &s, &rx));
            }
        });
        FakeApiServer { port, shared, watch: tx }
    }

    /// The server's URL (plain HTTP).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig pointing at this server, written to `path` (for KUBECONFIG).
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: recorded\n  cluster:\n    server: {}\n\
             users:\n- name: strata\n  user: {{}}\ncontexts:\n- name: recorded\n  context:\n    cluster: recorded\n    user: strata\n\
             current-context: recorded\n",
            self.url()
        );
        std::fs::write(path, config).unwrap();
    }

    /// Sends one watch event on the open (or next) watch stream.
    pub fn send(&self, event_line: String) {
        self.watch.send(WatchItem::Line(event_line)).unwrap();
    }

    /// Ends the current watch stream (the client opens another, or lists again).
    pub fn end_watch(&self) {
        self.watch.send(WatchItem::End).unwrap();
    }

    /// Answers every request with this status and body from now on.
    pub fn fail_with(&self, status: u16, body: &str) {
        self.shared.lock().unwrap().failing = Some((status, body.to_string()));
    }

    /// Answers as recorded again.
    pub fn recover(&self) {
        self.shared.lock().unwrap().failing = None;
    }

    /// The request targets (path and query) served so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// How many pod lists were served.
    pub fn lists_served(&self) -> usize {
        self.shared.lock().unwrap().lists_served
    }
}

fn not_found(path: &str) -> String {
    format!(
        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\"message\":\"{path} not found\",\"reason\":\"NotFound\",\"code\":404}}"
    )
}

/// One connection: requests in turn (keep-alive) until the client closes it.
fn serve(conn: TcpStream, shared: &Mutex<Shared>, watch: &Mutex<Receiver<WatchItem>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        // Headers, until the empty line (no request of the client's has a body).
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let watching = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
        let answer = {
            let mut s = shared.lock().unwrap();
            s.requests.push(target.clone());
            if let Some((status, body)) = &s.failing {
                Some((*status, body.clone()))
            } else if watching {
                None
            } else if path == "/api/v1/pods" {
                let i = s.lists_served.min(s.lists.len().saturating_sub(1));
                s.lists_served += 1;
                Some((200, s.lists.get(i).cloned().unwrap_or_else(|| not_found(path))))
            } else {
                Some(s.objects.get(path).map_or_else(|| (404, not_found(path)), |o| (200, o.clone())))
            }
        };
        match answer {
            Some((status, body)) => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    if status == 200 { "OK" } else { "Error" },
                    body.len()
                );
                if out.write_all(head.as_bytes()).and_then(|_| out.write_all(body.as_bytes())).is_err() {
                    return;
                }
            }
            None => {
                stream_watch(&mut out, watch);
                return;
            }
        }
    }
}

/// A watch response: chunks of event lines as the test sends them, until it ends the stream (or
/// the client goes away).
fn stream_watch(out: &mut TcpStream, watch: &Mutex<Receiver<WatchItem>>) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let rx = watch.lock().unwrap();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(WatchItem::Line(l)) => {
                let chunk = format!("{}\n", l.trim_end());
                let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                if out.write_all(framed.as_bytes()).and_then(|_| out.flush()).is_err() {
                    return;
                }
            }
            Ok(WatchItem::End) | Err(RecvTimeoutError::Disconnected) => {
                let _ = out.write_all(b"0\r\n\r\n");
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                // A client that went away: a zero-length write does not tell, peek does.
                let mut b = [0u8; 1];
                out.set_nonblocking(true).ok();
                let gone = matches!(out.peek(&mut b), Ok(0));
                out.set_nonblocking(false).ok();
                if gone {
                    return;
                }
            }
        }
    }
}
