//! Which protocol a connection speaks, from the first bytes each side sent. Ports are not
//! consulted: services run anywhere, and the first bytes of these protocols are distinctive.

use protocols::message::{Parser, Protocol, Side};
use protocols::{dns, http1, http2, kafka, mysql, postgres, redis};
use strata_event::Transport;

/// A protocol's test of a side's first bytes.
type LooksLike = fn(Side, &[u8]) -> bool;

/// The first protocol whose opening bytes `first` could be, sent by `side`. Order matters where
/// openings overlap: the HTTP/2 preface starts like an HTTP/1 request line.
pub fn detect(transport: Transport, side: Side, first: &[u8]) -> Option<Protocol> {
    if transport == Transport::Udp {
        return dns::detect_udp(side, first).then_some(Protocol::Dns);
    }
    let candidates: [(Protocol, LooksLike); 7] = [
        (Protocol::Http2, http2::detect),
        (Protocol::Http, http1::detect),
        (Protocol::Postgres, postgres::detect),
        (Protocol::Mysql, mysql::detect),
        (Protocol::Kafka, kafka::detect),
        (Protocol::Redis, redis::detect),
        (Protocol::Dns, dns::detect_tcp),
    ];
    candidates.iter().find(|(_, looks_like)| looks_like(side, first)).map(|(p, _)| *p)
}

/// A fresh parser for a connection speaking `protocol`.
pub fn parser(protocol: Protocol, transport: Transport) -> Box<dyn Parser> {
    match protocol {
        Protocol::Http => Box::new(http1::Http1Parser::new()),
        Protocol::Http2 | Protocol::Grpc => Box::new(http2::Http2Parser::new()),
        Protocol::Redis => Box::new(redis::RedisParser::new()),
        Protocol::Mysql => Box::new(mysql::MysqlParser::new()),
        Protocol::Postgres => Box::new(postgres::PostgresParser::new()),
        Protocol::Dns => Box::new(dns::DnsParser::new(transport == Transport::Tcp)),
        Protocol::Kafka => Box::new(kafka::KafkaParser::new()),
    }
}
