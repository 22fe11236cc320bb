//! `Record`: one request and its response (or the lack of one), with who exchanged them.

use std::net::SocketAddr;
use std::sync::Arc;

use protocols::message::{Message, Protocol, Typed};
use serde::Serialize;
use strata_event::{Role, Transport};

use crate::metadata::{Attribution, Peer};

/// The process and connection a record was seen on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Endpoint {
    pub pid: u32,
    pub comm: strata_event::Comm,
    /// Whether this process was the client or the server of the exchange.
    pub role: Role,
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The process's container, pod and workload, when it runs in one (docs/records.md: written
    /// as `container.id`, `k8s.pod.name`, ...). Filled in by the attribution step after the
    /// pipeline.
    #[serde(flatten)]
    pub attribution: Option<Arc<Attribution>>,
    /// The other end's pod, when the Kubernetes API knows its address (`peer.k8s.pod.name`, ...).
    #[serde(flatten)]
    pub peer: Option<Peer>,
}

/// A request matched with its response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    #[serde(serialize_with = "protocol_name")]
    pub protocol: Protocol,
    pub operation: Option<String>,
    pub target: Option<String>,
    pub status: Option<String>,
    pub error: Option<String>,
    /// CLOCK_MONOTONIC time the request began (its first byte sent or received).
    pub start_ns: u64,
    /// From the request's first byte to the response's last, as this process saw them. None when
    /// no response came.
    pub latency_ns: Option<u64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Some bytes were missing (truncated capture, or a connection joined mid-stream).
    pub partial: bool,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Protocol attributes, written as top-level keys (`http.host`, `db.rows`, ...).
    #[serde(flatten)]
    pub attributes: Attributes,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes(pub Vec<(&'static str, String)>);

impl Attributes {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

impl Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            match protocols::message::typed_value(k, v) {
                Some(Typed::Count(n)) => m.serialize_entry(k, &n)?,
                Some(Typed::Flag(b)) => m.serialize_entry(k, &b)?,
                None => m.serialize_entry(k, v)?,
            }
        }
        m.end()
    }
}

fn protocol_name<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

impl Record {
    /// Joins a request with its response (`None`: none came before the connection ended).
    pub fn new(protocol: Protocol, request: Message, response: Option<Message>, endpoint: Endpoint) -> Record {
        // A response may name a more specific protocol than detection did (HTTP/2 carrying gRPC).
        let protocol = response.as_ref().and_then(|r| r.protocol).or(request.protocol).unwrap_or(protocol);
        let mut attributes = request.attributes;
        let (status, error, latency_ns, response_bytes, response_partial) = match response {
            Some(r) => {
                attributes.extend(r.attributes);
                let latency = r.end_ns.saturating_sub(request.start_ns);
                (r.status, r.error, Some(latency), r.size, r.partial)
            }
            None => (None, None, None, 0, false),
        };
        Record {
            protocol,
            operation: request.operation,
            target: request.target,
            status,
            error,
            start_ns: request.start_ns,
            latency_ns,
            request_bytes: request.size,
            response_bytes,
            partial: request.partial || response_partial,
            endpoint,
            attributes: Attributes(attributes),
        }
    }

    /// A response whose request was never seen (capture began after it was sent).
    pub fn orphan(protocol: Protocol, response: Message, endpoint: Endpoint) -> Record {
        let protocol = response.protocol.unwrap_or(protocol);
        Record {
            protocol,
            operation: response.operation,
            target: response.target,
            status: response.status,
            error: response.error,
            start_ns: response.start_ns,
            latency_ns: None,
            request_bytes: 0,
            response_bytes: response.size,
            partial: true,
            endpoint,
            attributes: Attributes(response.attributes),
        }
    }
}

#[cfg(test)]
mod attribute_tests {
    use super::Attributes;

    #[test]
    fn counts_are_numbers_flags_booleans_and_the_rest_text() {
        let a = Attributes(vec![
            ("db.rows", "3".into()),
            ("dns.answers", "2".into()),
            ("db.extended", "true".into()),
            ("http.host", "42".into()),
            // Not a number after all (a parser's bug): kept as the text it is, not lost.
            ("db.statement_id", "x".into()),
        ]);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"db.rows": 3, "dns.answers": 2, "db.extended": true, "http.host": "42", "db.statement_id": "x"})
        );
    }
}
