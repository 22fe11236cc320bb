//! What a record becomes as a metric: the OpenTelemetry semantic-convention instrument for its
//! protocol and role, and its attributes after convergence (templated paths, obfuscated SQL, at
//! most `limit` values per label). docs/metrics.md lists the result.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;

use protocols::message::Protocol;
use strata_event::Role;

use super::converge::{obfuscate_sql, template_path, LabelLimiter, OVERFLOW};
use crate::pipeline::Record;

/// A duration instrument: its OpenTelemetry name (unit seconds) and its Prometheus name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instrument {
    pub otel: &'static str,
    pub prometheus: &'static str,
    pub description: &'static str,
}

macro_rules! instrument {
    ($otel:literal, $prom:literal, $desc:literal) => {
        Instrument { otel: $otel, prometheus: $prom, description: $desc }
    };
}

pub const HTTP_SERVER: Instrument = instrument!(
    "http.server.request.duration",
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests, as the server's process saw them"
);
pub const HTTP_CLIENT: Instrument = instrument!(
    "http.client.request.duration",
    "http_client_request_duration_seconds",
    "Duration of HTTP client requests, as the client's process saw them"
);
pub const RPC_SERVER: Instrument =
    instrument!("rpc.server.duration", "rpc_server_duration_seconds", "Duration of gRPC calls served");
pub const RPC_CLIENT: Instrument =
    instrument!("rpc.client.duration", "rpc_client_duration_seconds", "Duration of gRPC calls made");
pub const DB_CLIENT: Instrument = instrument!(
    "db.client.operation.duration",
    "db_client_operation_duration_seconds",
    "Duration of database operations (Redis, MySQL, PostgreSQL) seen from the client"
);
pub const DB_SERVER: Instrument = instrument!(
    "db.server.operation.duration",
    "db_server_operation_duration_seconds",
    "Duration of database operations seen from the database server's process"
);
pub const MESSAGING_CLIENT: Instrument = instrument!(
    "messaging.client.operation.duration",
    "messaging_client_operation_duration_seconds",
    "Duration of Kafka requests seen from the client"
);
pub const MESSAGING_SERVER: Instrument = instrument!(
    "messaging.server.operation.duration",
    "messaging_server_operation_duration_seconds",
    "Duration of Kafka requests seen from the broker's process"
);
pub const DNS_CLIENT: Instrument =
    instrument!("dns.lookup.duration", "dns_lookup_duration_seconds", "Duration of DNS queries seen from the client");
pub const DNS_SERVER: Instrument = instrument!(
    "dns.server.request.duration",
    "dns_server_request_duration_seconds",
    "Duration of DNS queries seen from the DNS server's process"
);

/// One record as a measurement: its series (shared by every record that converges alike) and
/// its duration. Reads as its series (`o.attributes`, `o.instrument`).
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub series: Arc<Series>,
    pub seconds: f64,
}

impl Deref for Observation {
    type Target = Series;
    fn deref(&self) -> &Series {
        &self.series
    }
}

/// What a record converges to: which instrument, with which attributes. Worked out once per
/// distinct record shape and shared (see [`Converger`]), so sinks may key on the `Arc`'s address.
#[derive(Debug, PartialEq)]
pub struct Series {
    pub instrument: Instrument,
    /// Client or server: whose process saw it.
    pub role: Role,
    pub attributes: Vec<(&'static str, String)>,
    pub error: bool,
    /// A short name for the operation (`GET /users/{id}`, `SELECT`, `Produce orders`): span
    /// names and the terminal table.
    pub operation: String,
    /// The service-graph edge this counts on: None for a server's record of a call whose client
    /// runs on this node (the client's record counts it).
    pub edge: Option<Edge>,
    /// Labels whose value folded into `*`: each observation of the series counts them again.
    folded: Vec<&'static str>,
}

/// A service-graph edge: who called whom.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    pub client: String,
    pub server: String,
    pub connection_type: &'static str,
    /// Which side's process observed the call (its latency is the client's or the server's).
    pub observed_by_client: bool,
}

/// The name of a process (by pid) as a service: its main thread's name. None when unknown (the
/// process is gone, or the records come from a capture file).
pub type ProcessNames = Box<dyn FnMut(u32) -> Option<String> + Send>;

/// Turns records into observations, and learns which process serves which address, so a
/// client's peer gets a name.
///
/// Templating a path, obfuscating SQL and admitting each label cost far more than the record
/// itself, and a busy service repeats the same few shapes: the series a record converges to is
/// kept by everything it depends on (process, role, protocol, peer, operation, target, status,
/// error, and the container, pod and workload of the process and of its peer, by their
/// attribution's serial) and reused. Admission only ever grows, so a kept series stays right;
/// what the converger learns (a server's name, a local client, a process name) starts the memo
/// over.
pub struct Converger {
    limiter: LabelLimiter,
    /// Resolves a pid to its process's name, cached: the comm a record carries is the thread's,
    /// and thread names (`tokio-rt-worker`, `http-nio-8080-exec-3`) are no service's name.
    process_names: Option<ProcessNames>,
    names: HashMap<u32, Arc<str>>,
    /// Listening address → the serving process, from server-side records.
    servers: HashMap<SocketAddr, Arc<str>>,
    /// Addresses of this node's clients, from client-side records: a server-side record from one
    /// of them is the same call already counted on the client's side.
    local_clients: HashSet<IpAddr>,
    memo: Memo,
}

/// Bounds on what the converger learns (it sees every record for the agent's lifetime).
const MAX_SERVERS: usize = 4096;
const MAX_CLIENT_IPS: usize = 4096;
/// Process names cached; past it the cache starts over (pids are reused, names go stale).
const MAX_NAMES: usize = 8192;
/// Series remembered; past it the memo starts over.
const MAX_MEMO: usize = 65536;

/// Series by a hash of what they depend on; a bucket holds the (rare) collisions.
#[derive(Default)]
struct Memo {
    hasher: foldhash::fast::RandomState,
    buckets: foldhash::HashMap<u64, Vec<(MemoKey, Arc<Series>)>>,
    len: usize,
}

/// What a series depends on, beyond what the converger has learnt.
#[derive(Debug, PartialEq, Eq)]
struct MemoKey {
    pid: u32,
    /// The thread's name: the service's name where process names are not looked up.
    comm: strata_event::Comm,
    role: Role,
    protocol: Protocol,
    /// The peer: the whole address for a client (it names the server), only the address for a
    /// server (a client's port changes with every connection).
    peer: SocketAddr,
    operation: Option<Box<str>>,
    target: Option<Box<str>>,
    status: Option<Box<str>>,
    error: Option<Box<str>>,
    /// The process's and the peer's attribution (their serials; 0 for none): a container whose
    /// pod names appear later, or a pod whose workload the API reports, converges anew.
    attribution: (u64, u64),
}

impl MemoKey {
    fn peer(r: &Record) -> SocketAddr {
        match r.endpoint.role {
            Role::Client => r.endpoint.remote,
            _ => SocketAddr::new(r.endpoint.remote.ip(), 0),
        }
    }

    fn attribution(r: &Record) -> (u64, u64) {
        let e = &r.endpoint;
        (e.attribution.as_ref().map_or(0, |a| a.serial), e.peer.as_ref().map_or(0, |p| p.0.serial))
    }

    fn hash_of(r: &Record, hasher: &impl BuildHasher) -> u64 {
        let mut h = hasher.build_hasher();
        (r.endpoint.pid, r.endpoint.comm, r.endpoint.role, r.protocol, Self::peer(r), Self::attribution(r))
            .hash(&mut h);
        (r.operation.as_deref(), r.target.as_deref(), r.status.as_deref(), r.error.as_deref()).hash(&mut h);
        h.finish()
    }

    fn of(r: &Record) -> MemoKey {
        MemoKey {
            pid: r.endpoint.pid,
            comm: r.endpoint.comm,
            role: r.endpoint.role,
            protocol: r.protocol,
            peer: Self::peer(r),
            operation: r.operation.as_deref().map(Into::into),
            target: r.target.as_deref().map(Into::into),
            status: r.status.as_deref().map(Into::into),
            error: r.error.as_deref().map(Into::into),
            attribution: Self::attribution(r),
        }
    }

    fn matches(&self, r: &Record) -> bool {
        self.pid == r.endpoint.pid
            && self.comm == r.endpoint.comm
            && self.role == r.endpoint.role
            && self.protocol == r.protocol
            && self.peer == Self::peer(r)
            && self.operation.as_deref() == r.operation.as_deref()
            && self.target.as_deref() == r.target.as_deref()
            && self.status.as_deref() == r.status.as_deref()
            && self.error.as_deref() == r.error.as_deref()
            && self.attribution == Self::attribution(r)
    }
}

impl Memo {
    fn get(&self, hash: u64, r: &Record) -> Option<&Arc<Series>> {
        self.buckets.get(&hash)?.iter().find(|(k, _)| k.matches(r)).map(|(_, s)| s)
    }

    fn insert(&mut self, hash: u64, r: &Record, series: Arc<Series>) {
        if self.len >= MAX_MEMO {
            self.clear();
        }
        self.buckets.entry(hash).or_default().push((MemoKey::of(r), series));
        self.len += 1;
    }

    fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
    }
}

impl Converger {
    pub fn new(label_limit: usize) -> Converger {
        Converger {
            limiter: LabelLimiter::new(label_limit),
            process_names: None,
            names: HashMap::new(),
            servers: HashMap::new(),
            local_clients: HashSet::new(),
            memo: Memo::default(),
        }
    }

    /// Names services after their process (see [`ProcessNames`]) rather than the thread seen.
    pub fn with_process_names(mut self, names: ProcessNames) -> Converger {
        self.process_names = Some(names);
        self
    }

    /// The service a record's process is: its workload (or container) when attributed to one, else
    /// its process name, else the thread's comm.
    fn service(&mut self, r: &Record) -> Arc<str> {
        if let Some(name) = r.endpoint.attribution.as_ref().and_then(|a| a.service.clone()) {
            return name;
        }
        let Some(resolve) = self.process_names.as_mut() else { return r.endpoint.comm.as_str().into() };
        if let Some(name) = self.names.get(&r.endpoint.pid) {
            return name.clone();
        }
        let name: Arc<str> =
            resolve(r.endpoint.pid).filter(|n| !n.is_empty()).unwrap_or_else(|| r.endpoint.comm.to_string()).into();
        if self.names.len() >= MAX_NAMES {
            // A pid seen again may now be another process: nothing kept by pid holds.
            self.names.clear();
            self.memo.clear();
        }
        self.names.insert(r.endpoint.pid, name.clone());
        name
    }

    pub fn limiter(&self) -> &LabelLimiter {
        &self.limiter
    }

    /// The name a peer goes by: the local process serving that address, else the pod at that
    /// address (its workload), else the address.
    fn peer_name(&self, r: &Record) -> String {
        let pod = r.endpoint.peer.as_ref().and_then(|p| p.0.service.as_deref());
        match r.endpoint.role {
            Role::Client => match (self.servers.get(&r.endpoint.remote), pod) {
                (Some(name), _) => name.to_string(),
                (None, Some(pod)) => pod.to_string(),
                (None, None) => r.endpoint.remote.to_string(),
            },
            // A client's port changes with every connection: only its address says who it is.
            _ => pod.map_or_else(|| r.endpoint.remote.ip().to_string(), str::to_string),
        }
    }

    /// Learns from the record; anything new starts the memo over (a client's peer may now have
    /// a name, a server's caller may now be local).
    fn learn(&mut self, r: &Record) {
        match r.endpoint.role {
            Role::Server if self.servers.len() < MAX_SERVERS || self.servers.contains_key(&r.endpoint.local) => {
                let service = self.service(r);
                if self.servers.get(&r.endpoint.local) != Some(&service) {
                    self.servers.insert(r.endpoint.local, service);
                    self.memo.clear();
                }
            }
            Role::Client
                if self.local_clients.len() < MAX_CLIENT_IPS && self.local_clients.insert(r.endpoint.local.ip()) =>
            {
                self.memo.clear();
            }
            _ => {}
        }
    }

    /// The record as a measurement; None when it has no duration (no response came) or no role.
    pub fn observe(&mut self, r: &Record) -> Option<Observation> {
        self.learn(r);
        let latency = r.latency_ns?;
        if r.endpoint.role == Role::Unknown {
            return None;
        }
        let hash = MemoKey::hash_of(r, &self.memo.hasher);
        let series = match self.memo.get(hash, r) {
            Some(series) => {
                for label in &series.folded {
                    self.limiter.count_folded(label);
                }
                series.clone()
            }
            None => {
                let series = Arc::new(self.converge(r));
                self.memo.insert(hash, r, series.clone());
                series
            }
        };
        Some(Observation { series, seconds: latency as f64 / 1e9 })
    }

    /// What the record converges to (a record with a client or server role).
    fn converge(&mut self, r: &Record) -> Series {
        let server = r.endpoint.role == Role::Server;
        let service = self.service(r).to_string();
        let peer = self.peer_name(r);
        let target = r.target.as_deref().unwrap_or("");
        let op = r.operation.as_deref().unwrap_or("");
        let status = r.status.as_deref().unwrap_or("");
        let mut attrs: Vec<(&'static str, String)> = vec![
            ("service.name", service),
            ("peer.service", peer.clone()),
            ("network.protocol.name", r.protocol.name().to_string()),
        ];
        let (instrument, error, error_type, class, operation, connection_type);
        match r.protocol {
            Protocol::Http | Protocol::Http2 => {
                let code: u16 = status.parse().unwrap_or(0);
                instrument = if server { HTTP_SERVER } else { HTTP_CLIENT };
                // Semantic conventions: 5xx is a server's error; a client also counts 4xx. A
                // response whose status was not captured is not called an error.
                error = code >= 500 || (!server && code >= 400);
                error_type = error.then(|| code.to_string());
                class = if code == 0 { "none".to_string() } else { format!("{}xx", code / 100) };
                let route = template_path(target);
                operation = format!("{op} {route}");
                attrs.push(("http.request.method", op.to_string()));
                attrs.push(("http.route", route));
                connection_type = "";
            }
            Protocol::Grpc => {
                instrument = if server { RPC_SERVER } else { RPC_CLIENT };
                error = status != "0";
                error_type = error.then(|| if status.is_empty() { "no_status".into() } else { status.to_string() });
                class = ok_or_error(error);
                operation = target.to_string();
                attrs.push(("rpc.system", "grpc".into()));
                attrs.push(("rpc.method", target.to_string()));
                connection_type = "";
            }
            Protocol::Redis | Protocol::Mysql | Protocol::Postgres => {
                instrument = if server { DB_SERVER } else { DB_CLIENT };
                error = status != "OK";
                error_type = error.then(|| first_word(r.error.as_deref().unwrap_or(status)));
                class = ok_or_error(error);
                let system = if r.protocol == Protocol::Postgres { "postgresql" } else { r.protocol.name() };
                attrs.push(("db.system.name", system.into()));
                attrs.push(("db.operation.name", op.to_string()));
                if r.protocol == Protocol::Redis {
                    // A Redis target is a key: never a label.
                    operation = op.to_string();
                } else {
                    let query = obfuscate_sql(target);
                    operation = query.clone();
                    attrs.push(("db.query.text", query));
                }
                connection_type = "database";
            }
            Protocol::Kafka => {
                instrument = if server { MESSAGING_SERVER } else { MESSAGING_CLIENT };
                error = status != "OK";
                error_type = error.then(|| first_word(r.error.as_deref().unwrap_or(status)));
                class = ok_or_error(error);
                operation = if target.is_empty() { op.to_string() } else { format!("{op} {target}") };
                attrs.push(("messaging.system", "kafka".into()));
                attrs.push(("messaging.operation.name", op.to_string()));
                attrs.push(("messaging.destination.name", target.to_string()));
                connection_type = "messaging_system";
            }
            Protocol::Dns => {
                instrument = if server { DNS_SERVER } else { DNS_CLIENT };
                error = status != "NOERROR";
                error_type = error.then(|| if status.is_empty() { "no_status".into() } else { status.to_string() });
                class = ok_or_error(error);
                operation = format!("{op} {target}");
                attrs.push(("dns.question.name", target.to_string()));
                attrs.push(("dns.question.type", op.to_string()));
                connection_type = "";
            }
        }
        attrs.push(("status.class", class));
        if let Some(e) = error_type {
            attrs.push(("error.type", e));
        }
        // The container, pod and workload, when known (docs/telemetry.md): converged like the rest.
        if let Some(a) = &r.endpoint.attribution {
            attrs.extend(a.metric_attributes().map(|(k, v)| (k, v.to_string())));
        }
        let mut folded = Vec::new();
        for (k, v) in attrs.iter_mut() {
            if self.limiter.admit(k, v) == OVERFLOW {
                *v = OVERFLOW.to_string();
                folded.push(*k);
            }
        }
        let service = attrs[0].1.clone();
        let peer_label = attrs[1].1.clone();
        let edge = if !server {
            Some(Edge { client: service, server: peer_label, connection_type, observed_by_client: true })
        } else if r.endpoint.remote.ip().is_loopback() || self.local_clients.contains(&r.endpoint.remote.ip()) {
            None
        } else {
            Some(Edge { client: peer_label, server: service, connection_type, observed_by_client: false })
        };
        Series { instrument, role: r.endpoint.role, attributes: attrs, error, operation, edge, folded }
    }
}

fn ok_or_error(error: bool) -> String {
    if error { "error" } else { "ok" }.to_string()
}

/// An error's code: `1146 (42S02) Table ...` → `1146`, `SQLSTATE 42P01 ...` → `42P01`,
/// `WRONGTYPE Operation ...` → `WRONGTYPE`.
fn first_word(error: &str) -> String {
    let mut words = error.split_whitespace();
    match words.next() {
        Some("SQLSTATE") => words.next().unwrap_or("SQLSTATE").to_string(),
        Some(w) => w.chars().take(32).collect(),
        None => "error".to_string(),
    }
}
