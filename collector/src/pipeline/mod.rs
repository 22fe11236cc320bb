//! The shared pipeline: normalized events in, request/response records out. Every tier and the
//! replay of a capture file feed the same code.
//!
//! event ─► conntrack (pid, fd, generation) ─► protocol detection ─► parser ─► matcher ─► Record

pub mod conntrack;
pub mod detect;
pub mod matcher;
pub mod record;
pub mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use strata_event::{Connection, Event, EventKind, Role};

use conntrack::{ConnKey, Conntrack, Evictions, Limits, Tracked};
use record::Endpoint;
pub use record::Record;
use session::Output;

/// Sweep for idle connections and memory every this many events.
const SWEEP_EVERY: u64 = 4096;

/// What the pipeline counted, for the agent's own telemetry and for tests.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub events: u64,
    pub records: u64,
    /// Records whose request got no response (connection closed or evicted first).
    pub unanswered: u64,
    /// Responses whose request was never seen.
    pub orphans: u64,
    pub parse_errors: u64,
    /// Connections whose protocol was recognized, by protocol name.
    pub detected: HashMap<&'static str, u64>,
    /// Connections with traffic that no parser recognized.
    pub unrecognized: u64,
    /// Records the capture reported lost (any source).
    pub lost_events: u64,
    pub evictions: Evictions,
    /// Requests dropped because too many waited on one connection.
    pub matcher_overflow: u64,
}

pub struct Pipeline {
    conns: Conntrack,
    stats: Stats,
    last_sweep: u64,
    outputs: Vec<Output>,
}

impl Pipeline {
    pub fn new(limits: Limits) -> Pipeline {
        Pipeline { conns: Conntrack::new(limits), stats: Stats::default(), last_sweep: 0, outputs: vec![] }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.evictions = self.conns.evictions;
        s
    }

    /// Chunks a parser rejected so far (cheaper than [`Pipeline::stats`]).
    pub fn parse_errors(&self) -> u64 {
        self.stats.parse_errors
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn push(&mut self, ev: &Event, out: &mut Vec<Record>) {
        self.stats.events += 1;
        let own = ConnKey { pid: ev.pid, fd: ev.fd };
        let key = self.conns.resolve(ev.pid, ev.fd, ev.sock_id);
        match &ev.kind {
            EventKind::Open(o) => {
                let gone = self.conns.insert(own, ev.sock_id, o.conn, &ev.comm, ev.ts_ns);
                self.finish_all(gone, out);
            }
            EventKind::Data(d) => {
                let reused = self.conns.get_mut(key).is_some_and(|t| fd_reused(t, ev.sock_id));
                if reused || self.conns.get_mut(key).is_none() {
                    // Seen mid-stream (opened before capture began) or behind a reused fd.
                    let gone = self.conns.insert(key, ev.sock_id, unknown_role(d.conn), &ev.comm, ev.ts_ns);
                    self.finish_all(gone, out);
                }
                let t = self.conns.get_mut(key).expect("inserted above");
                t.last_seen_ns = ev.ts_ns;
                // Unconnected UDP: each datagram names its own peer.
                let mut conn = t.conn;
                if d.peer_from_msg {
                    conn.remote = d.conn.remote;
                }
                let ts = match d.direction {
                    // The app handed the bytes over at enter; it had them at exit.
                    strata_event::Direction::Egress => d.enter_ns,
                    strata_event::Direction::Ingress => d.exit_ns,
                };
                let fed = t.session.feed(
                    conn.transport,
                    conn.role,
                    d.direction,
                    &d.payload.0,
                    d.byte_count,
                    ts,
                    &mut self.outputs,
                );
                if let Some(p) = fed.detected {
                    *self.stats.detected.entry(p.name()).or_default() += 1;
                }
                self.stats.unrecognized += fed.gave_up as u64;
                if let Some(e) = fed.parse_error {
                    self.stats.parse_errors += 1;
                    log::debug!("pid {} fd {}: {e}", ev.pid, ev.fd);
                }
                // Most chunks complete nothing: build the endpoint (a comm copy) only for records.
                if !self.outputs.is_empty() {
                    let endpoint = endpoint(t, conn);
                    self.emit(&endpoint, out);
                }
            }
            // Closing a duplicate fd leaves the socket open under the one it was first seen on.
            EventKind::Close(_) if key != own => {}
            EventKind::Close(_) => {
                if let Some(t) = self.conns.remove(key) {
                    self.finish_all(vec![t], out);
                }
            }
            EventKind::Loss(l) => {
                self.stats.lost_events += l.count;
                // Somewhere bytes are missing: no connection may stitch across the hole.
                self.conns.mark_all_gap();
            }
            EventKind::State(_) => {}
        }
        if self.stats.events - self.last_sweep >= SWEEP_EVERY {
            self.sweep(ev.ts_ns, out);
        }
    }

    /// Drops connections idle since before `now` less the idle limit, and the biggest ones when
    /// over the memory limit. Runs every few thousand events by itself.
    pub fn sweep(&mut self, now: u64, out: &mut Vec<Record>) {
        self.last_sweep = self.stats.events;
        let gone = self.conns.sweep(now);
        self.finish_all(gone, out);
    }

    /// The source ended: every request still waiting is reported unanswered.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        let all = self.conns.drain();
        self.finish_all(all, out);
    }

    fn finish_all(&mut self, gone: Vec<Tracked>, out: &mut Vec<Record>) {
        for mut t in gone {
            self.stats.matcher_overflow += t.session.overflow();
            t.session.finish(&mut self.outputs);
            if !self.outputs.is_empty() {
                let endpoint = endpoint(&t, t.conn);
                self.emit(&endpoint, out);
            }
        }
    }

    fn emit(&mut self, endpoint: &Endpoint, out: &mut Vec<Record>) {
        for o in self.outputs.drain(..) {
            let r = match o {
                Output::Pair(p, req, resp) => Record::new(p, req, Some(resp), endpoint.clone()),
                Output::Orphan(p, resp) => {
                    self.stats.orphans += 1;
                    Record::orphan(p, resp, endpoint.clone())
                }
                Output::Unanswered(p, req) => {
                    self.stats.unanswered += 1;
                    Record::new(p, req, None, endpoint.clone())
                }
            };
            self.stats.records += 1;
            out.push(r);
        }
    }
}

fn fd_reused(t: &Tracked, sock_id: u64) -> bool {
    t.sock_id != 0 && sock_id != 0 && t.sock_id != sock_id
}

fn unknown_role(mut c: Connection) -> Connection {
    // A data event's role is what the capture knew; keep it when it knew.
    if c.role != Role::Client && c.role != Role::Server {
        c.role = Role::Unknown;
    }
    c
}

fn endpoint(t: &Tracked, conn: Connection) -> Endpoint {
    // Seen mid-stream, the role is what the protocol says: whoever sends requests is the client.
    let role = match conn.role {
        Role::Unknown => t.session.role().unwrap_or(Role::Unknown),
        r => r,
    };
    Endpoint {
        pid: t.pid,
        comm: t.comm,
        role,
        transport: conn.transport,
        local: conn.local,
        remote: conn.remote,
        attribution: None,
        peer: None,
    }
}
