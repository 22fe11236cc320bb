//! What every parser produces: requests and responses, each with the key that pairs them.
//!
//! Parsers are pure: bytes in, messages out. No I/O, no clock (times come with the bytes), no
//! kernel. One file per protocol, each implementing [`Parser`].

/// Which way bytes flow on a connection, from the point of view of the protocol: the client sends
/// requests, the server responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Request,
    Response,
}

/// How a response finds its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchKey {
    /// In order: the n-th response answers the n-th request (HTTP/1.x, Redis, MySQL, PostgreSQL).
    Fifo,
    /// HTTP/2 stream id.
    Stream(u32),
    /// Kafka correlation id.
    Correlation(i32),
    /// DNS query id.
    QueryId(u16),
}

/// The protocols strata parses. `name()` is what records carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Redis,
    Mysql,
    Postgres,
    Dns,
    Kafka,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Redis => "redis",
            Protocol::Mysql => "mysql",
            Protocol::Postgres => "postgres",
            Protocol::Dns => "dns",
            Protocol::Kafka => "kafka",
        }
    }
}

/// One request or response, as complete as the bytes allowed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub side: Option<Side>,
    pub key: Option<MatchKey>,
    /// Time of the chunk that carried the first and the last byte.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Bytes on the wire, headers included.
    pub size: u64,
    /// What was asked: HTTP method, Redis command, SQL verb or `COM_STMT_EXECUTE`, Kafka API
    /// name, DNS query type.
    pub operation: Option<String>,
    /// What it was asked of: HTTP path, SQL statement, Redis key, Kafka topic, DNS name, gRPC
    /// method (`/pkg.Service/Method`).
    pub target: Option<String>,
    /// The outcome as the protocol says it: HTTP status, grpc-status, DNS rcode name, `OK`/`ERR`.
    pub status: Option<String>,
    /// The error text or code, when the response is a failure.
    pub error: Option<String>,
    /// Set when the bytes turned out to be a more specific protocol (HTTP/2 carrying gRPC).
    pub protocol: Option<Protocol>,
    /// Further attributes by name (e.g. `http.host`, `db.name`, `dns.answers`); those named in
    /// [`COUNT_ATTRIBUTES`] hold a number.
    pub attributes: Vec<(&'static str, String)>,
    /// The message was cut short (the capture was truncated or began mid-stream): what is here
    /// is right, but fields may be missing.
    pub partial: bool,
}

/// Why bytes could not be parsed. The parser stays usable: it resynchronizes or gives up on the
/// connection (then `Parser::feed` keeps returning the same error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// A streaming parser of one connection: bytes of either side arrive in order per side, in chunks
/// of any size (a message may span chunks; a chunk may hold several messages).
pub trait Parser: Send {
    /// Feeds one chunk that `side` sent at `ts_ns`. Complete messages are appended to `out`.
    /// `gap` says bytes were lost before this chunk (the capture truncated the previous one): the
    /// parser must not stitch across it.
    fn feed(
        &mut self,
        side: Side,
        chunk: &[u8],
        ts_ns: u64,
        gap: bool,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError>;

    /// `n` more bytes that `side` sent at `ts_ns` were not captured (a capture keeps only a prefix
    /// of each syscall's bytes; sendfile keeps none). A parser skipping a body, rows or a record
    /// batch of known length stays in step by counting them; it returns false when it cannot, and
    /// the next chunk of that side then comes with `gap`.
    fn skip(&mut self, side: Side, n: u64, ts_ns: u64, out: &mut Vec<Message>) -> bool {
        let _ = (side, n, ts_ns, out);
        false
    }

    /// Bytes held while waiting for the rest of a message (bounded by the parser).
    fn buffered(&self) -> usize;
}

/// How much a parser may hold per side while waiting for the rest of a message. A message whose
/// header part alone exceeds this is given up on (reported partial).
pub const MAX_BUFFERED: usize = 64 * 1024;

/// Attributes whose values are counts or ids: records write them as numbers, not text.
pub const COUNT_ATTRIBUTES: [&str; 5] =
    ["db.rows", "db.rows_affected", "db.statement_id", "db.redis.args", "dns.answers"];
/// Attributes that are yes-or-no: records write them as booleans.
pub const FLAG_ATTRIBUTES: [&str; 1] = ["db.extended"];

/// An attribute's value as the type it has, where it is not text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed {
    Count(u64),
    Flag(bool),
}

/// `value` as the number or boolean it is, when attribute `name` is one of [`COUNT_ATTRIBUTES`]
/// or [`FLAG_ATTRIBUTES`] (and the text is one).
pub fn typed_value(name: &str, value: &str) -> Option<Typed> {
    if COUNT_ATTRIBUTES.contains(&name) {
        return value.parse().ok().map(Typed::Count);
    }
    if FLAG_ATTRIBUTES.contains(&name) {
        return value.parse().ok().map(Typed::Flag);
    }
    None
}
