//! PostgreSQL frontend/backend protocol, version 3.
//!
//! Wire: after the startup phase (messages of an int32 length and an int32 code), every message is
//! a type byte, an int32 length counting itself, and a body. The server answers an SSLRequest or
//! GSSENCRequest with a single byte. A response runs until ReadyForQuery (`Z`), except the answer
//! to an Execute followed by another one before the Sync (pipelines, below).
//!
//! Messages (key always [`MatchKey::Fifo`]):
//! - Startup: the StartupMessage is a request `CONNECT` (target = `database`, or the user name it
//!   defaults to; attribute `db.user`); everything the server sends up to the first ReadyForQuery
//!   (authentication, ParameterStatus, BackendKeyData) is its response, `OK` (or `ERR` with the
//!   ErrorResponse that ends the connection). SSLRequest answered `N` continues in clear text;
//!   `S` (TLS) or `G` (GSS encryption) ends parsing. CancelRequest emits nothing.
//! - Simple query `Q`: operation = SQL verb (`QUERY` when none), target = the statement (cut to
//!   4096 bytes); several statements in one `Q` are one request.
//! - Extended protocol (a batch: the messages up to a Sync): one request per Execute, since a batch
//!   may hold several (libpq's and psycopg's pipeline mode send many Parse/Bind/Execute before one
//!   Sync). Operation = verb of the query the Execute runs (through its portal to the statement
//!   bound, from a Parse in this batch or before), else of the last Parse of its request, else
//!   `EXECUTE` (statement not seen); target = that query; attribute `db.extended` = `true`. An
//!   Execute's request spans the client messages after the previous Execute up to its own; the
//!   last one's runs on to the Sync (so a batch of one Execute is one request from its first
//!   message to its Sync). A batch without Execute (Parse, Describe or Close, then Sync) is one
//!   request: verb of its last Parse, else `SYNC`.
//! - `F` function call: operation `FUNCTION_CALL`.
//! - Responses: status `OK` / `ERR`; `error` = `SQLSTATE <code>: <message>` from the first
//!   ErrorResponse; `db.rows` = DataRow count (when rows or a RowDescription came),
//!   `db.command_tag` = the last CommandComplete tag, `db.copy_messages` = CopyData messages of a
//!   COPY TO. Rows and copy data are skipped by length, never buffered.
//! - Responses in a batch: an Execute's response runs from the server's first message after the
//!   previous Execute's response (ParseComplete, BindComplete, RowDescription, ...) to the
//!   message that ends its execution: CommandComplete, EmptyQueryResponse, PortalSuspended or
//!   ErrorResponse. The last Execute's response runs on to the batch's ReadyForQuery (a batch of
//!   one Execute, or of none, is answered from its first reply to its ReadyForQuery, as a simple
//!   query is). After an ErrorResponse the server skips the rest of the batch up to the Sync: each
//!   Execute it skipped gets a response `ERR` with error [`PIPELINE_ABORTED`] when the
//!   ReadyForQuery comes (the first of them carries the ReadyForQuery's bytes, the others none),
//!   which is how libpq reports them to the application (`PGRES_PIPELINE_ABORTED`). So every
//!   request is answered exactly once, in order. (An Execute the server left unanswered without
//!   an error, because response bytes were lost, gets a partial response without status.)
//! - Terminate `X` emits nothing (it has no response; the FIFO matcher would pair it with the
//!   next one). Notifications, notices and ParameterStatus outside a response are skipped.
//!
//! Mid-stream start, gap or garbage: the side resynchronizes on the next plausible message (known
//! type byte, sane length, followed by another plausible message); a response cut by a gap is
//! reported partial when its ReadyForQuery arrives.

use std::collections::{HashMap, VecDeque};

use crate::framing::{Frame, Framer, Head, Header};
use crate::message::*;
use crate::sql;

/// Longer messages are garbage.
const MAX_LEN: usize = 1 << 30;
/// The server refuses longer startup packets.
const MAX_STARTUP: usize = 10_000;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Body bytes kept of a client message: the statement plus names.
const REQUEST_CAP: usize = sql::MAX_STATEMENT + 256;
/// Body bytes kept of an ErrorResponse.
const ERROR_CAP: usize = 2048;
/// Body bytes kept of a CommandComplete (its tag).
const TAG_CAP: usize = 256;
const MAX_PENDING: usize = 1024;
/// Named statements and portals remembered per connection.
const MAX_NAMES: usize = 1024;
/// The error of an Execute the server skipped because an earlier message of its batch failed.
pub const PIPELINE_ABORTED: &str = "pipeline aborted: not executed after an earlier error in the batch";

const CLIENT_TYPES: &[u8] = b"QPBEDCSHXFpdcf";
const SERVER_TYPES: &[u8] = b"RSKZECDTtn123sIGHWdcVvAN";

/// True when `first` (the first bytes one side sent) is very likely PostgreSQL from that side: a
/// StartupMessage, SSLRequest, GSSENCRequest or CancelRequest, or a simple query (`Q`) of a
/// connection that began before capture; from the server an authentication request (`R`) or the
/// one-byte answer to an SSLRequest.
pub fn detect(side: Side, first: &[u8]) -> bool {
    match side {
        Side::Request => detect_startup(first) || detect_query(first),
        Side::Response => {
            if first.len() == 1 {
                return first[0] == b'N' || first[0] == b'S';
            }
            if first.len() < 9 || first[0] != b'R' {
                return false;
            }
            let (len, code) = (be32(&first[1..]) as usize, be32(&first[5..]));
            // Ok, cleartext, MD5 (salt), GSS, SSPI, SASL (mechanisms), SASL continue / final.
            match code {
                0 | 2 | 3 | 7 | 9 => len == 8,
                5 => len == 12,
                8 | 10..=12 => (9..=4096).contains(&len),
                _ => false,
            }
        }
    }
}

fn detect_startup(first: &[u8]) -> bool {
    if first.len() < 8 {
        return false;
    }
    let (len, code) = (be32(first) as usize, be32(&first[4..]));
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        // Protocol 3.x: parameters start with a name (`user`, `database`, ...) and end with NUL.
        _ if code >> 16 == 3 && code & 0xffff <= 2 => {
            let params = &first[8..first.len().min(len)];
            (9..=MAX_STARTUP).contains(&len)
                && params.first().is_some_and(u8::is_ascii_lowercase)
                && (first.len() < len || first[len - 1] == 0)
        }
        _ => false,
    }
}

fn detect_query(first: &[u8]) -> bool {
    if first.len() < 6 || first[0] != b'Q' {
        return false;
    }
    let len = be32(&first[1..]) as usize;
    if !(5..=MAX_LEN).contains(&len) {
        return false;
    }
    let text = &first[5..first.len().min(len + 1)];
    let head = &text[..text.len().min(32)];
    let sql_like = head.first().is_some_and(|&c| c.is_ascii_alphabetic() || b"(/- \t\r\n".contains(&c));
    let end_ok = first.len() < len + 1 || first[len] == 0;
    sql_like && end_ok && head.iter().take_while(|&&c| c != 0).all(|&c| c >= 0x20 || b"\t\r\n".contains(&c))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The text up to the first NUL (or the end) and what follows the NUL.
fn cstring(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(n) => (&b[..n], &b[n + 1..]),
        None => (b, &[]),
    }
}

fn text(b: &[u8]) -> String {
    sql::statement(b)
}

fn known(side: Side, kind: u8) -> bool {
    match side {
        Side::Request => CLIENT_TYPES.contains(&kind),
        Side::Response => SERVER_TYPES.contains(&kind),
    }
}

/// Whether `len` (counting itself) suits a message of type `kind` from `side`.
fn length_fits(side: Side, kind: u8, len: usize) -> bool {
    if !(4..=MAX_LEN).contains(&len) {
        return false;
    }
    match (side, kind) {
        (Side::Request, b'S' | b'H' | b'X' | b'c') => len == 4,
        (Side::Request, b'Q' | b'p' | b'f') => len >= 5,
        (Side::Request, b'D' | b'C') => len >= 6,
        (Side::Request, b'P') => len >= 8,
        (Side::Request, b'E') => len >= 9,
        (Side::Request, b'B') => len >= 12,
        (Side::Response, b'1' | b'2' | b'3' | b'n' | b's' | b'I' | b'c') => len == 4,
        (Side::Response, b'Z') => len == 5,
        (Side::Response, b'K') => len == 12,
        (Side::Response, b'R') => (8..=65_536).contains(&len),
        (Side::Response, b'C' | b'E' | b'N') => len >= 5,
        (Side::Response, b'S' | b'D' | b'T' | b't') => len >= 6,
        _ => true,
    }
}

/// Type and body length of a typed message header (5 bytes).
fn typed_header(side: Side, h: &[u8]) -> Result<(u8, usize), String> {
    let (kind, len) = (h[0], be32(&h[1..]) as usize);
    if !known(side, kind) {
        return Err(format!("unknown message type 0x{kind:02x}"));
    }
    if !length_fits(side, kind, len) {
        return Err(format!("bad length {len} for message '{}'", kind as char));
    }
    Ok((kind, len - 4))
}

/// Body length of a startup-phase message header (4 bytes).
fn startup_header(h: &[u8]) -> Result<(u8, usize), String> {
    let len = be32(h) as usize;
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(format!("bad startup message length {len}"));
    }
    Ok((0, len - 4))
}

/// Where a plausible message starts in `b`: a header that fits, followed by another one (or by
/// the end of the bytes we have).
fn find_boundary(side: Side, b: &[u8]) -> Option<usize> {
    let plausible = |at: usize| -> Option<usize> {
        let h = b.get(at..at + 5)?;
        let (kind, body) = typed_header(side, h).ok()?;
        if kind == b'Z' && b.get(at + 5).is_some_and(|s| !b"ITE".contains(s)) {
            return None;
        }
        Some(at + 5 + body)
    };
    (0..b.len()).find(|&at| match plausible(at) {
        Some(next) if next + 5 <= b.len() => plausible(next).is_some(),
        Some(_) => true,
        None => false,
    })
}

/// How the next message of a side is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Typed,
    /// Length and code, no type byte (client, before the StartupMessage).
    Startup,
    /// One byte: the answer to an SSLRequest or GSSENCRequest.
    Byte,
}

/// One message, as much of its body as was kept; its tag is the type byte (0 for startup-phase
/// messages, the byte itself for a one-byte answer).
type Msg<'a> = Frame<'a, u8>;

/// The header of a message from `side` framed as `mode`, and how much of each body is kept: the
/// statement and names of client messages, the tag of a CommandComplete, the text of an
/// ErrorResponse; rows and copy data are skipped.
struct Layout {
    side: Side,
    mode: Mode,
}

impl Header for Layout {
    type Tag = u8;
    type Error = String;

    fn header_len(&self) -> usize {
        match self.mode {
            Mode::Typed => 5,
            Mode::Startup => 4,
            Mode::Byte => 1,
        }
    }

    fn read(&self, h: &[u8]) -> Result<Head<u8>, String> {
        let (kind, body) = match self.mode {
            Mode::Typed => typed_header(self.side, h)?,
            Mode::Startup => startup_header(h)?,
            Mode::Byte => (h[0], 0),
        };
        let keep = match (self.side, kind) {
            (Side::Request, b'd' | b'p') => 0,
            (Side::Request, _) => REQUEST_CAP,
            (Side::Response, b'E') => ERROR_CAP,
            (Side::Response, b'C') => TAG_CAP,
            (Side::Response, b'Z') => 1,
            (Side::Response, _) => 0,
        };
        Ok(Head { tag: kind, body, keep, continued: false })
    }
}

/// What the server owes, in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owed {
    /// One byte answering an SSLRequest or GSSENCRequest.
    EncryptionAnswer,
    /// Messages until ReadyForQuery; `startup`: the answer to a StartupMessage.
    Reply { startup: bool },
    /// The answer to one Execute of extended batch `batch` (to the whole batch when it has no
    /// Execute): it ends with the Execute's end (CommandComplete, EmptyQueryResponse,
    /// PortalSuspended, ErrorResponse) when the batch owes another answer after it, else with
    /// the batch's ReadyForQuery.
    Execute { batch: u64 },
}

/// Client messages of an extended batch that make one request.
struct Part {
    start_ns: u64,
    end_ns: u64,
    size: u64,
    /// The last Parse's query.
    parsed: Option<String>,
    partial: bool,
}

impl Part {
    fn new(start_ns: u64, partial: bool) -> Self {
        Part { start_ns, end_ns: start_ns, size: 0, parsed: None, partial }
    }

    fn add(&mut self, m: &Msg) {
        self.size += m.size;
        self.end_ns = m.end_ns;
        self.partial |= m.partial;
    }

    /// The messages that followed (up to the Sync) belong to this request too.
    fn extend(&mut self, later: Part) {
        self.size += later.size;
        self.end_ns = later.end_ns;
        self.partial |= later.partial;
        if later.parsed.is_some() {
            self.parsed = later.parsed;
        }
    }

    /// The request: `executed` is the query of its Execute (`Some(None)`: executed, query not
    /// seen); `None` for a batch without Execute.
    fn request(self, executed: Option<Option<String>>) -> Message {
        let execute = executed.is_some();
        let query = executed.flatten().or(self.parsed);
        let op = match &query {
            Some(q) => sql::verb(q).unwrap_or_else(|| "QUERY".into()),
            None if execute => "EXECUTE".into(),
            None => "SYNC".into(),
        };
        Message {
            side: Some(Side::Request),
            key: Some(MatchKey::Fifo),
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            size: self.size,
            operation: Some(op),
            target: query,
            attributes: vec![("db.extended", "true".to_string())],
            partial: self.partial,
            ..Default::default()
        }
    }
}

/// An extended-protocol batch: the messages up to a Sync.
struct Batch {
    id: u64,
    /// The request of the batch's latest Execute and the query that Execute runs: held until the
    /// next Execute or the Sync shows whether the messages after it are its own.
    executed: Option<(Part, Option<String>)>,
    /// Messages since the latest Execute (or the batch's start).
    tail: Option<Part>,
}

struct Response {
    startup: bool,
    /// The extended batch this answers an Execute of.
    batch: Option<u64>,
    /// The Execute's end came (CommandComplete, EmptyQueryResponse, PortalSuspended or
    /// ErrorResponse).
    executed: bool,
    start_ns: u64,
    end_ns: u64,
    size: u64,
    rows: u64,
    described: bool,
    copy: u64,
    tag: Option<String>,
    error: Option<String>,
    partial: bool,
}

impl Response {
    fn finish(self) -> Message {
        let mut attributes = Vec::new();
        if self.rows > 0 || self.described {
            attributes.push(("db.rows", self.rows.to_string()));
        }
        if let Some(tag) = self.tag {
            attributes.push(("db.command_tag", tag));
        }
        if self.copy > 0 {
            attributes.push(("db.copy_messages", self.copy.to_string()));
        }
        Message {
            side: Some(Side::Response),
            key: Some(MatchKey::Fifo),
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            size: self.size,
            status: Some(if self.error.is_some() { "ERR" } else { "OK" }.into()),
            error: self.error,
            attributes,
            partial: self.partial,
            ..Default::default()
        }
    }
}

/// Whether a side's bytes are understood.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sync {
    /// Nothing read yet: the client may start with startup-phase messages.
    Fresh,
    Synced,
    /// After a gap or garbage: looking for a plausible message boundary.
    Lost,
}

/// Connection state shared by both directions.
struct Conn {
    client: Sync,
    server: Sync,
    /// The client has not sent its StartupMessage yet.
    client_startup: bool,
    /// The next request / response began after a resync: it may lack its start.
    resumed: [bool; 2],
    /// No message parsed since the start, a gap or a resync: garbage is expected, not an error.
    quiet: [bool; 2],
    /// TLS or GSS encryption: nothing more is parsed.
    opaque: bool,
    owed: VecDeque<Owed>,
    batch: Option<Batch>,
    /// Extended batches begun: the id of the latest.
    batches: u64,
    resp: Option<Response>,
    /// The latest batch with an Execute that failed: the server skips the rest of it.
    failed_batch: Option<u64>,
    statements: HashMap<Vec<u8>, String>,
    portals: HashMap<Vec<u8>, Option<String>>,
    error: Option<ParseError>,
}

/// Parser of one PostgreSQL connection (both directions). `PostgresParser::new()` takes no
/// arguments.
pub struct PostgresParser {
    framers: [Framer<u8>; 2],
    conn: Conn,
}

impl Default for PostgresParser {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresParser {
    pub fn new() -> Self {
        PostgresParser {
            framers: [Framer::new(), Framer::new()],
            conn: Conn {
                client: Sync::Fresh,
                server: Sync::Fresh,
                client_startup: true,
                resumed: [false; 2],
                quiet: [true; 2],
                opaque: false,
                owed: VecDeque::new(),
                batch: None,
                batches: 0,
                resp: None,
                failed_batch: None,
                statements: HashMap::new(),
                portals: HashMap::new(),
                error: None,
            },
        }
    }

    fn gap(&mut self, side: Side, ts: u64, out: &mut Vec<Message>) {
        let conn = &mut self.conn;
        let cut = self.framers[side as usize].cut(ts);
        match side {
            Side::Request => {
                if let Some(m) = cut.filter(|m| m.tag != 0) {
                    conn.client_message(&m, false, out);
                }
                if let Some(b) = conn.batch.as_mut() {
                    b.tail.get_or_insert_with(|| Part::new(ts, false)).partial = true;
                }
                conn.client = Sync::Lost;
                conn.quiet[0] = true;
            }
            Side::Response => {
                // The response goes on until its ReadyForQuery, reported partial.
                if let Some(r) = conn.resp.as_mut() {
                    r.partial = true;
                }
                conn.server = Sync::Lost;
                conn.quiet[1] = true;
            }
        }
    }
}

impl Parser for PostgresParser {
    fn feed(
        &mut self,
        side: Side,
        chunk: &[u8],
        ts_ns: u64,
        gap: bool,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError> {
        if self.conn.opaque {
            return Ok(());
        }
        if gap {
            self.gap(side, ts_ns, out);
        }
        let i = side as usize;
        let mut pos = 0;
        while pos < chunk.len() && !self.conn.opaque {
            if self.conn.sync(side) == Sync::Lost {
                let Some(at) = find_boundary(side, &chunk[pos..]) else { break };
                pos += at;
                self.conn.resume(side);
            }
            let mode = self.conn.mode(side, chunk[pos]);
            let before = pos;
            match self.framers[i].next(chunk, &mut pos, ts_ns, &Layout { side, mode }) {
                Ok(Some(m)) => self.conn.message(side, &m, out),
                Ok(None) => break,
                Err(reason) => {
                    self.conn.fail(side, reason);
                    // Look for the next boundary past the bad header's first byte.
                    pos = (before + 1).min(chunk.len());
                }
            }
        }
        self.conn.error.take().map_or(Ok(()), Err)
    }

    fn skip(&mut self, side: Side, n: u64, ts_ns: u64, out: &mut Vec<Message>) -> bool {
        if self.conn.opaque {
            // Nothing is parsed any more: there is no step to keep.
            return true;
        }
        match self.framers[side as usize].skip_frame(n, ts_ns) {
            None => false,
            Some(None) => true,
            Some(Some(m)) => {
                self.conn.message(side, &m, out);
                true
            }
        }
    }

    fn buffered(&self) -> usize {
        self.framers.iter().map(Framer::held).sum()
    }
}

impl Conn {
    fn sync(&self, side: Side) -> Sync {
        match side {
            Side::Request => self.client,
            Side::Response => self.server,
        }
    }

    fn resume(&mut self, side: Side) {
        match side {
            Side::Request => {
                self.client = Sync::Synced;
                self.client_startup = false;
            }
            Side::Response => self.server = Sync::Synced,
        }
        self.quiet[side as usize] = true;
        // What is in progress is already marked partial; what starts next may lack its start.
        self.resumed[side as usize] = match side {
            Side::Request => self.batch.is_none(),
            Side::Response => self.resp.is_none(),
        };
    }

    fn fail(&mut self, side: Side, reason: String) {
        match side {
            Side::Request => self.client = Sync::Lost,
            Side::Response => self.server = Sync::Lost,
        }
        if !self.quiet[side as usize] {
            self.error.get_or_insert(ParseError(format!("postgres: {reason}")));
        }
    }

    /// How the next message of `side`, whose first byte is `first`, is framed.
    fn mode(&mut self, side: Side, first: u8) -> Mode {
        match side {
            Side::Request => {
                if self.client == Sync::Fresh {
                    // Startup-phase lengths start with a zero byte; type bytes never are zero.
                    self.client = Sync::Synced;
                    self.client_startup = first == 0;
                }
                if self.client_startup {
                    Mode::Startup
                } else {
                    Mode::Typed
                }
            }
            Side::Response => {
                self.server = Sync::Synced;
                if self.resp.is_none() && self.owed.front() == Some(&Owed::EncryptionAnswer) {
                    Mode::Byte
                } else {
                    Mode::Typed
                }
            }
        }
    }

    fn message(&mut self, side: Side, m: &Msg, out: &mut Vec<Message>) {
        self.quiet[side as usize] = false;
        // Only the message right after a resync may belong to something begun before it.
        let resumed = std::mem::take(&mut self.resumed[side as usize]);
        match side {
            Side::Request if m.tag == 0 => self.startup_message(m, out),
            Side::Request => self.client_message(m, resumed, out),
            Side::Response => self.server_message(m, resumed, out),
        }
    }

    fn owe(&mut self, owed: Owed) {
        if self.owed.len() >= MAX_PENDING {
            self.owed.pop_front();
        }
        self.owed.push_back(owed);
    }

    fn startup_message(&mut self, m: &Msg, out: &mut Vec<Message>) {
        let Some(code) = m.body.get(..4).map(be32) else { return };
        match code {
            SSL_REQUEST | GSSENC_REQUEST => self.owe(Owed::EncryptionAnswer),
            CANCEL_REQUEST => {}
            _ if code >> 16 == 3 => {
                self.client_startup = false;
                let (mut user, mut database) = (None, None);
                let mut rest = &m.body[4..];
                while !rest.is_empty() && rest[0] != 0 {
                    let (key, after) = cstring(rest);
                    let (value, after) = cstring(after);
                    match key {
                        b"user" => user = Some(text(value)),
                        b"database" => database = Some(text(value)),
                        _ => {}
                    }
                    rest = after;
                }
                let mut r = request(m, "CONNECT".into(), database.or_else(|| user.clone()));
                r.attributes.extend(user.map(|u| ("db.user", u)));
                out.push(r);
                self.owe(Owed::Reply { startup: true });
            }
            _ => self.fail(Side::Request, format!("unsupported protocol version {}.{}", code >> 16, code & 0xffff)),
        }
    }

    fn client_message(&mut self, m: &Msg, resumed: bool, out: &mut Vec<Message>) {
        let body = m.body;
        match m.tag {
            b'Q' => {
                let sql = text(cstring(body).0);
                let op = sql::verb(&sql).unwrap_or_else(|| "QUERY".into());
                out.push(request(m, op, Some(sql)));
                self.owe(Owed::Reply { startup: false });
            }
            b'F' => {
                out.push(request(m, "FUNCTION_CALL".into(), None));
                self.owe(Owed::Reply { startup: false });
            }
            // A batch cut short by Terminate gets no answer.
            b'X' if self.batch.take().is_some() => {
                self.owed.pop_back();
            }
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' | b'S' => self.extended(m, resumed, out),
            // Password / SASL responses and COPY data belong to an exchange already counted.
            _ => {}
        }
    }

    fn extended(&mut self, m: &Msg, resumed: bool, out: &mut Vec<Message>) {
        let mut batch = match self.batch.take() {
            Some(b) => b,
            None => {
                self.batches += 1;
                self.owe(Owed::Execute { batch: self.batches });
                Batch { id: self.batches, executed: None, tail: None }
            }
        };
        let mut tail = batch.tail.take().unwrap_or_else(|| Part::new(m.start_ns, resumed));
        tail.add(m);
        let (name, rest) = cstring(m.body);
        match m.tag {
            b'P' => {
                let query = text(cstring(rest).0);
                remember(&mut self.statements, name, query.clone());
                tail.parsed = Some(query);
            }
            b'B' => {
                let statement = self.statements.get(cstring(rest).0).cloned();
                remember(&mut self.portals, name, statement);
            }
            b'E' => {
                let query = self.portals.get(name).cloned().flatten();
                // Another Execute: the previous one's request ends where this one's began, and
                // the batch owes one more answer.
                if let Some((part, query)) = batch.executed.replace((tail, query)) {
                    out.push(part.request(Some(query)));
                    self.owe(Owed::Execute { batch: batch.id });
                    // The server may have answered the previous one already (after a Flush).
                    self.end_executed(out);
                }
                self.batch = Some(batch);
                return;
            }
            b'C' => {
                let (which, name) = m.body.split_first().map_or((0, &[][..]), |(w, r)| (*w, cstring(r).0));
                match which {
                    b'S' => self.statements.remove(name),
                    _ => self.portals.remove(name).flatten(),
                };
            }
            b'S' => {
                let request = match batch.executed {
                    Some((mut part, query)) => {
                        part.extend(tail);
                        part.request(Some(query))
                    }
                    None => tail.request(None),
                };
                out.push(request);
                return;
            }
            _ => {}
        }
        batch.tail = Some(tail);
        self.batch = Some(batch);
    }

    /// The answer in progress ends when it is an Execute's, that Execute's end came, and its
    /// batch owes another answer after it. Otherwise what follows is its own, up to the
    /// ReadyForQuery: notices, a CloseComplete, the error of the Sync's implicit COMMIT.
    fn end_executed(&mut self, out: &mut Vec<Message>) {
        let Some(r) = &self.resp else { return };
        let next = r.batch.map(|batch| Owed::Execute { batch });
        if r.executed && next.is_some() && self.owed.front() == next.as_ref() {
            out.extend(self.resp.take().map(Response::finish));
        }
    }

    fn server_message(&mut self, m: &Msg, resumed: bool, out: &mut Vec<Message>) {
        if self.resp.is_none() {
            let (startup, batch) = match self.owed.front() {
                Some(Owed::EncryptionAnswer) => return self.encryption_answer(m.tag),
                Some(&Owed::Reply { startup }) => (startup, None),
                Some(&Owed::Execute { batch }) => (false, Some(batch)),
                // Asynchronous messages, or a response sent before capture began.
                None => return,
            };
            self.owed.pop_front();
            self.resp = Some(Response {
                startup,
                batch,
                executed: false,
                start_ns: m.start_ns,
                end_ns: m.start_ns,
                size: 0,
                rows: 0,
                described: false,
                copy: 0,
                tag: None,
                error: None,
                partial: resumed,
            });
        }
        let Some(r) = self.resp.as_mut() else { return };
        r.size += m.size;
        r.end_ns = m.end_ns;
        r.partial |= m.partial;
        match m.tag {
            b'D' => r.rows += 1,
            b'T' => r.described = true,
            b'd' => r.copy += 1,
            b'C' => {
                r.tag = Some(text(cstring(m.body).0));
                self.executed(out);
            }
            b'I' | b's' => self.executed(out),
            b'E' => {
                r.error.get_or_insert_with(|| error_text(m.body));
                // An error during startup ends the connection: no ReadyForQuery follows.
                if r.startup {
                    out.extend(self.resp.take().map(Response::finish));
                } else {
                    self.executed(out);
                }
            }
            b'Z' => self.ready(m, out),
            _ => {}
        }
    }

    /// The message that ends an Execute came. (A simple query's answer, of one statement or
    /// several, runs to its ReadyForQuery.)
    fn executed(&mut self, out: &mut Vec<Message>) {
        let Some(r) = self.resp.as_mut() else { return };
        let Some(batch) = r.batch else { return };
        r.executed = true;
        if r.error.is_some() {
            self.failed_batch = Some(batch);
        }
        self.end_executed(out);
    }

    /// ReadyForQuery `z` ends the answer in progress and its batch: the Executes of the batch
    /// still owed an answer were skipped after an error.
    fn ready(&mut self, z: &Msg, out: &mut Vec<Message>) {
        let Some(mut r) = self.resp.take() else { return };
        let batch = r.batch;
        let aborted = batch.is_some() && self.failed_batch == batch;
        if aborted && !r.executed {
            r.error = Some(PIPELINE_ABORTED.into());
        }
        out.push(r.finish());
        let Some(batch) = batch else { return };
        while self.owed.front() == Some(&Owed::Execute { batch }) {
            self.owed.pop_front();
            out.push(Message {
                side: Some(Side::Response),
                key: Some(MatchKey::Fifo),
                start_ns: z.end_ns,
                end_ns: z.end_ns,
                status: aborted.then(|| "ERR".into()),
                error: aborted.then(|| PIPELINE_ABORTED.into()),
                partial: !aborted,
                ..Default::default()
            });
        }
    }

    fn encryption_answer(&mut self, answer: u8) {
        match answer {
            b'N' => {
                self.owed.pop_front();
            }
            b'S' | b'G' => self.opaque = true,
            _ => {
                self.owed.pop_front();
                self.fail(Side::Response, format!("bad answer 0x{answer:02x} to an encryption request"));
            }
        }
    }
}

/// Remembers `name` -> `value`, forgetting all when too many names pile up.
fn remember<V>(map: &mut HashMap<Vec<u8>, V>, name: &[u8], value: V) {
    if map.len() >= MAX_NAMES && !map.contains_key(name) {
        map.clear();
    }
    map.insert(name.to_vec(), value);
}

/// `SQLSTATE <code>: <message>` from the fields of an ErrorResponse.
fn error_text(mut body: &[u8]) -> String {
    let (mut code, mut message) = (None, None);
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            break;
        }
        let (value, after) = cstring(rest);
        match field {
            b'C' => code = Some(String::from_utf8_lossy(value)),
            b'M' => message = Some(String::from_utf8_lossy(value)),
            _ => {}
        }
        body = after;
    }
    format!("SQLSTATE {}: {}", code.unwrap_or_default(), message.unwrap_or_default())
}

fn request(m: &Msg, operation: String, target: Option<String>) -> Message {
    Message {
        side: Some(Side::Request),
        key: Some(MatchKey::Fifo),
        start_ns: m.start_ns,
        end_ns: m.end_ns,
        size: m.size,
        operation: Some(operation),
        target,
        partial: m.partial,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, brief, feed_cuts, Split};
    use proptest::prelude::*;

    const REQ: Side = Side::Request;
    const RESP: Side = Side::Response;

    /// A typed message: type byte, int32 length counting itself, body.
    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut v = (body.len() as u32 + 4).to_be_bytes().to_vec();
        v.extend(body);
        v
    }

    const SSL: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";
    const AUTH_OK: &[u8] = b"R\x00\x00\x00\x08\x00\x00\x00\x00";
    const IDLE: &[u8] = b"Z\x00\x00\x00\x05I";
    const PARSE_COMPLETE: &[u8] = b"1\x00\x00\x00\x04";
    const BIND_COMPLETE: &[u8] = b"2\x00\x00\x00\x04";
    const CLOSE_COMPLETE: &[u8] = b"3\x00\x00\x00\x04";
    const SYNC: &[u8] = b"S\x00\x00\x00\x04";
    const FLUSH: &[u8] = b"H\x00\x00\x00\x04";

    fn param(name: &str, value: &str) -> Vec<u8> {
        msg(b'S', format!("{name}\0{value}\0").as_bytes())
    }

    fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', format!("{sql}\0").as_bytes())
    }

    /// RowDescription of one int4 column.
    fn row_description(name: &str) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0]);
        msg(b'T', &b)
    }

    /// DataRow of one text column.
    fn data_row(value: &str) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend_from_slice(&(value.len() as u32).to_be_bytes());
        b.extend_from_slice(value.as_bytes());
        msg(b'D', &b)
    }

    fn complete(tag: &str) -> Vec<u8> {
        msg(b'C', format!("{tag}\0").as_bytes())
    }

    fn error(severity: &str, code: &str, message: &str) -> Vec<u8> {
        let body = format!("S{severity}\0V{severity}\0C{code}\0M{message}\0Fpostgres.c\0L1392\0Rfn\0\0");
        msg(b'E', body.as_bytes())
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = format!("{name}\0{sql}\0").into_bytes();
        b.extend_from_slice(&[0, 1, 0, 0, 0, 23]);
        msg(b'P', &b)
    }

    fn bind(portal: &str, statement: &str) -> Vec<u8> {
        let mut b = format!("{portal}\0{statement}\0").into_bytes();
        // One text parameter "42", results in text.
        b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, b'4', b'2', 0, 0]);
        msg(b'B', &b)
    }

    fn describe(which: u8, name: &str) -> Vec<u8> {
        msg(b'D', &cat(&[&[which], name.as_bytes(), &[0]]))
    }

    fn execute(portal: &str) -> Vec<u8> {
        msg(b'E', &cat(&[portal.as_bytes(), &[0, 0, 0, 0, 0]]))
    }

    fn run(turns: &[(Side, Vec<u8>)], split: Split) -> Vec<Message> {
        testkit::run(PostgresParser::new, turns, split)
    }

    fn run_all(turns: &[(Side, Vec<u8>)]) -> Vec<Message> {
        testkit::run_all(PostgresParser::new, turns)
    }

    fn briefs(out: &[Message]) -> Vec<String> {
        out.iter().map(brief).collect()
    }

    fn session() -> Vec<(Side, Vec<u8>)> {
        vec![
            (REQ, SSL.to_vec()),
            (RESP, b"N".to_vec()),
            (
                REQ,
                startup(&[
                    ("user", "app"),
                    ("database", "shop"),
                    ("application_name", "psql"),
                    ("client_encoding", "UTF8"),
                ]),
            ),
            (RESP, msg(b'R', b"\x00\x00\x00\x05\x9a\x1b\x2c\x3d")),
            (REQ, msg(b'p', b"md5a3556571e93b0d20722ba62be61e8c2d\0")),
            (
                RESP,
                cat(&[
                    AUTH_OK,
                    &param("server_version", "16.2"),
                    &param("client_encoding", "UTF8"),
                    b"K\x00\x00\x00\x0c\x00\x00\x30\x39\x12\x34\x56\x78",
                    IDLE,
                ]),
            ),
            (REQ, query("SELECT 1;")),
            (RESP, cat(&[&row_description("?column?"), &data_row("1"), &complete("SELECT 1"), IDLE])),
            (REQ, query("select * from nope")),
            (RESP, cat(&[&error("ERROR", "42P01", "relation \"nope\" does not exist"), IDLE])),
            (REQ, query("BEGIN; INSERT INTO t VALUES (1); COMMIT")),
            (RESP, cat(&[&complete("BEGIN"), &complete("INSERT 0 1"), &complete("COMMIT"), IDLE])),
            // Idle notification: skipped.
            (RESP, msg(b'A', b"\x00\x00\x30\x39jobs\0new\0")),
            (
                REQ,
                cat(&[
                    &parse("", "SELECT name FROM users WHERE id = $1"),
                    &bind("", ""),
                    &describe(b'P', ""),
                    &execute(""),
                    SYNC,
                ]),
            ),
            (
                RESP,
                cat(&[
                    PARSE_COMPLETE,
                    BIND_COMPLETE,
                    &row_description("name"),
                    &data_row("bob"),
                    &complete("SELECT 1"),
                    IDLE,
                ]),
            ),
            (REQ, cat(&[&parse("S_1", "UPDATE t SET a = $1 WHERE id = $2"), SYNC])),
            (RESP, cat(&[PARSE_COMPLETE, IDLE])),
            (REQ, cat(&[&bind("", "S_1"), &execute(""), SYNC])),
            (RESP, cat(&[BIND_COMPLETE, &msg(b'N', b"SNOTICE\0C00000\0Mhello\0\0"), &complete("UPDATE 1"), IDLE])),
            (REQ, cat(&[&msg(b'C', b"SS_1\0"), SYNC])),
            (RESP, cat(&[CLOSE_COMPLETE, IDLE])),
            // Flush: the server answers before the Sync.
            (REQ, cat(&[&parse("", "SELECT 2"), &describe(b'S', ""), FLUSH])),
            (RESP, cat(&[PARSE_COMPLETE, &msg(b't', b"\x00\x00"), &row_description("?column?")])),
            (REQ, cat(&[&bind("", ""), &execute(""), SYNC])),
            (RESP, cat(&[BIND_COMPLETE, &data_row("2"), &complete("SELECT 1"), IDLE])),
            (REQ, query("COPY t TO STDOUT")),
            (
                RESP,
                cat(&[
                    &msg(b'H', b"\x00\x00\x01\x00\x00"),
                    &msg(b'd', b"1\n"),
                    &msg(b'd', b"2\n"),
                    b"c\x00\x00\x00\x04",
                    &complete("COPY 2"),
                    IDLE,
                ]),
            ),
            (REQ, query("COPY t FROM STDIN")),
            (RESP, msg(b'G', b"\x00\x00\x01\x00\x00")),
            (REQ, cat(&[&msg(b'd', b"3\n"), &msg(b'd', b"4\n"), b"c\x00\x00\x00\x04"])),
            (RESP, cat(&[&complete("COPY 2"), IDLE])),
            (REQ, query("")),
            (RESP, cat(&[b"I\x00\x00\x00\x04", IDLE])),
            (REQ, b"X\x00\x00\x00\x04".to_vec()),
        ]
    }

    #[test]
    fn full_session() {
        let out = run_all(&session());
        assert_eq!(
            briefs(&out),
            [
                "> CONNECT shop - - [db.user=app]",
                "< - - OK - []",
                "> SELECT SELECT 1; - - []",
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
                "> SELECT select * from nope - - []",
                "< - - ERR SQLSTATE 42P01: relation \"nope\" does not exist []",
                "> BEGIN BEGIN; INSERT INTO t VALUES (1); COMMIT - - []",
                "< - - OK - [db.command_tag=COMMIT]",
                "> SELECT SELECT name FROM users WHERE id = $1 - - [db.extended=true]",
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
                "> UPDATE UPDATE t SET a = $1 WHERE id = $2 - - [db.extended=true]",
                "< - - OK - []",
                "> UPDATE UPDATE t SET a = $1 WHERE id = $2 - - [db.extended=true]",
                "< - - OK - [db.command_tag=UPDATE 1]",
                "> SYNC - - - [db.extended=true]",
                "< - - OK - []",
                "> SELECT SELECT 2 - - [db.extended=true]",
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
                "> COPY COPY t TO STDOUT - - []",
                "< - - OK - [db.command_tag=COPY 2 db.copy_messages=2]",
                "> COPY COPY t FROM STDIN - - []",
                "< - - OK - [db.command_tag=COPY 2]",
                "> QUERY  - - []",
                "< - - OK - []",
            ]
        );
        assert!(out.iter().all(|m| m.key == Some(MatchKey::Fifo) && !m.partial));
        // CONNECT: the StartupMessage; its response from the auth request to ReadyForQuery.
        assert_eq!(out[0].size as usize, session()[2].1.len());
        assert_eq!((out[1].start_ns, out[1].end_ns), (3, 5));
        assert_eq!(out[1].size as usize, session()[3].1.len() + session()[5].1.len());
        // Extended batch with Flush: from the Parse to the Sync, the response from ParseComplete.
        assert_eq!((out[16].start_ns, out[16].end_ns), (21, 23));
        assert_eq!((out[17].start_ns, out[17].end_ns), (22, 24));
        assert_eq!(out[2].size, 15);
    }

    #[test]
    fn scram_auth_failure() {
        let turns = vec![
            (REQ, startup(&[("user", "app")])),
            (RESP, msg(b'R', b"\x00\x00\x00\x0aSCRAM-SHA-256\0\0")),
            (REQ, msg(b'p', b"SCRAM-SHA-256\0\x00\x00\x00\x20n,,n=,r=rOprNGfwEbeRWgbNEkqO%hvYD")),
            (RESP, msg(b'R', b"\x00\x00\x00\x0br=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")),
            (REQ, msg(b'p', b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")),
            (RESP, error("FATAL", "28P01", "password authentication failed for user \"app\"")),
        ];
        assert_eq!(
            briefs(&run_all(&turns)),
            [
                "> CONNECT app - - [db.user=app]",
                "< - - ERR SQLSTATE 28P01: password authentication failed for user \"app\" []"
            ]
        );
    }

    #[test]
    fn tls_and_gss_stop_parsing_cancel_emits_nothing() {
        let tls = vec![
            (REQ, SSL.to_vec()),
            (RESP, b"S".to_vec()),
            (REQ, b"\x16\x03\x01\x02\x00\x01".to_vec()),
            (RESP, b"\x16\x03\x03\x00\x7a".to_vec()),
        ];
        assert!(run_all(&tls).is_empty());
        let gss = vec![
            (REQ, b"\x00\x00\x00\x08\x04\xd2\x16\x30".to_vec()),
            (RESP, b"G".to_vec()),
            (REQ, b"\x60\x82\x02\x00".to_vec()),
        ];
        assert!(run_all(&gss).is_empty());
        let cancel = vec![(REQ, b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x30\x39\x12\x34\x56\x78".to_vec())];
        assert!(run_all(&cancel).is_empty());
    }

    #[test]
    fn error_in_extended_batch_and_terminate() {
        let turns = vec![
            (REQ, cat(&[&parse("", "SELEC 1"), &bind("", ""), &execute(""), SYNC])),
            (RESP, cat(&[&error("ERROR", "42601", "syntax error at or near \"SELEC\""), IDLE])),
            // A batch cut short by Terminate gets no answer: no message.
            (REQ, cat(&[&parse("", "SELECT 3"), b"X\x00\x00\x00\x04"])),
        ];
        assert_eq!(
            briefs(&run_all(&turns)),
            [
                "> SELEC SELEC 1 - - [db.extended=true]",
                "< - - ERR SQLSTATE 42601: syntax error at or near \"SELEC\" []"
            ]
        );
    }

    #[test]
    fn mid_stream_start_resyncs() {
        let rows: Vec<u8> = (0..5).flat_map(|i| data_row(&format!("row{i}"))).collect();
        let turns = vec![
            // The server side starts inside a DataRow of a response sent before capture.
            (RESP, cat(&[&rows[7..], &complete("SELECT 5"), IDLE])),
            (REQ, query("SELECT x FROM t")),
            (RESP, cat(&[&row_description("x"), &rows, &complete("SELECT 5"), IDLE])),
            // An execute of a statement prepared before capture.
            (REQ, cat(&[&bind("", "S_9"), &execute(""), SYNC])),
            (RESP, cat(&[BIND_COMPLETE, &complete("DELETE 2"), IDLE])),
        ];
        // Resynchronizing looks at one chunk: chunks are whole send() calls here.
        assert_eq!(
            briefs(&run(&turns, Split::Whole)),
            [
                "> SELECT SELECT x FROM t - - []",
                "< - - OK - [db.rows=5 db.command_tag=SELECT 5]",
                "> EXECUTE - - - [db.extended=true]",
                "< - - OK - [db.command_tag=DELETE 2]",
            ]
        );
        // The client side starting mid-message resyncs too.
        let turns = vec![
            (REQ, cat(&[&query("SELECT 1")[3..], &query("SELECT 2")])),
            (RESP, cat(&[&complete("SELECT 1"), IDLE])),
        ];
        assert_eq!(
            briefs(&run(&turns, Split::Whole)),
            ["> SELECT SELECT 2 - - []", "< - - OK - [db.command_tag=SELECT 1]"]
        );
    }

    #[test]
    fn gaps_give_partial_messages() {
        let mut p = PostgresParser::new();
        let mut out = Vec::new();
        let q = query("SELECT a, b, c FROM some_table");
        p.feed(REQ, &q[..12], 1, false, &mut out).unwrap();
        assert_eq!(p.buffered(), 7);
        p.feed(REQ, &query("SELECT 2"), 2, true, &mut out).unwrap();
        let rows: Vec<u8> = (0..4).flat_map(|i| data_row(&format!("r{i}"))).collect();
        p.feed(RESP, &cat(&[&row_description("a"), &rows[..10]]), 3, false, &mut out).unwrap();
        p.feed(RESP, &cat(&[&rows[20..], &complete("SELECT 4"), IDLE]), 4, true, &mut out).unwrap();
        p.feed(RESP, &cat(&[&complete("SELECT 1"), IDLE]), 5, false, &mut out).unwrap();
        assert_eq!(
            briefs(&out),
            [
                "> SELECT SELECT  - - [] partial",
                "> SELECT SELECT 2 - - []",
                "< - - OK - [db.rows=2 db.command_tag=SELECT 4] partial",
                "< - - OK - [db.command_tag=SELECT 1]",
            ]
        );
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn garbage_is_an_error_and_resyncs() {
        let mut p = PostgresParser::new();
        let mut out = Vec::new();
        p.feed(REQ, &query("SELECT 1"), 1, false, &mut out).unwrap();
        let err = p.feed(REQ, b"\x01\x02\x03\x04\x05\x06", 2, false, &mut out).unwrap_err();
        assert!(err.0.contains("unknown message type"), "{err}");
        p.feed(REQ, &query("SELECT 2"), 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        // Lengths over 1 GiB are garbage.
        let err = p.feed(REQ, b"Q\x7f\xff\xff\xffSELECT", 4, false, &mut out).unwrap_err();
        assert!(err.0.contains("bad length"), "{err}");
        assert_eq!(p.buffered(), 0);
    }

    /// libpq / psycopg pipeline mode: three queries, one Sync; the second fails when executed,
    /// so the server skips the third up to the Sync. Each chunk is one send() (turn).
    fn pipeline() -> Vec<(Side, Vec<u8>)> {
        vec![
            (REQ, cat(&[&parse("", "SELECT 1"), &bind("", ""), &describe(b'P', ""), &execute("")])),
            (REQ, cat(&[&parse("", "SELECT 1/0"), &bind("", ""), &describe(b'P', ""), &execute("")])),
            (
                REQ,
                cat(&[&parse("", "INSERT INTO t VALUES (1)"), &bind("", ""), &describe(b'P', ""), &execute(""), SYNC]),
            ),
            (
                RESP,
                cat(&[
                    PARSE_COMPLETE,
                    BIND_COMPLETE,
                    &row_description("?column?"),
                    &data_row("1"),
                    &complete("SELECT 1"),
                ]),
            ),
            (
                RESP,
                cat(&[
                    PARSE_COMPLETE,
                    BIND_COMPLETE,
                    &row_description("?column?"),
                    &error("ERROR", "22012", "division by zero"),
                    IDLE,
                ]),
            ),
            // FIFO pairing stays in step: the next query gets the next answer.
            (REQ, query("SELECT 2")),
            (RESP, cat(&[&row_description("?column?"), &data_row("2"), &complete("SELECT 1"), IDLE])),
        ]
    }

    #[test]
    fn pipelined_batch_answers_each_execute() {
        let turns = pipeline();
        let out = run_all(&turns);
        assert_eq!(
            briefs(&out),
            [
                "> SELECT SELECT 1 - - [db.extended=true]",
                "> SELECT SELECT 1/0 - - [db.extended=true]",
                "> INSERT INSERT INTO t VALUES (1) - - [db.extended=true]",
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
                "< - - ERR SQLSTATE 22012: division by zero [db.rows=0]",
                &format!("< - - ERR {PIPELINE_ABORTED} []"),
                "> SELECT SELECT 2 - - []",
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
            ]
        );
        assert!(out.iter().all(|m| m.key == Some(MatchKey::Fifo) && !m.partial));
        // Each request from its first message to its Execute (the last one to the Sync); each
        // answer from its first message to its CommandComplete or ErrorResponse; the skipped
        // third carries the ReadyForQuery. Nothing is counted twice or lost.
        let span = |m: &Message| (m.start_ns, m.end_ns, m.size as usize);
        let len = |i: usize| turns[i].1.len();
        assert_eq!([span(&out[0]), span(&out[1]), span(&out[2])], [(0, 0, len(0)), (1, 1, len(1)), (2, 2, len(2))]);
        assert_eq!([span(&out[3]), span(&out[4])], [(3, 3, len(3)), (4, 4, len(4) - IDLE.len())]);
        assert_eq!(span(&out[5]), (4, 4, IDLE.len()));
    }

    #[test]
    fn pipeline_answered_before_its_sync() {
        // The client flushes after its first query and reads the answer before sending the rest:
        // an empty query, and a portal fetched one row at a time (PortalSuspended).
        let turns = vec![
            (REQ, cat(&[&parse("", "SELECT 1"), &bind("", ""), &execute(""), FLUSH])),
            (RESP, cat(&[PARSE_COMPLETE, BIND_COMPLETE, &data_row("1"), &complete("SELECT 1")])),
            (
                REQ,
                cat(&[
                    &parse("", ""),
                    &bind("", ""),
                    &execute(""),
                    &parse("S_2", "SELECT x FROM t"),
                    &bind("p", "S_2"),
                    &execute("p"),
                    &execute("p"),
                    SYNC,
                ]),
            ),
            (
                RESP,
                cat(&[
                    PARSE_COMPLETE,
                    BIND_COMPLETE,
                    b"I\x00\x00\x00\x04",
                    PARSE_COMPLETE,
                    BIND_COMPLETE,
                    &data_row("1"),
                    b"s\x00\x00\x00\x04",
                    &data_row("2"),
                    &complete("SELECT 1"),
                    IDLE,
                ]),
            ),
        ];
        let out = run_all(&turns);
        assert_eq!(
            briefs(&out),
            [
                "> SELECT SELECT 1 - - [db.extended=true]",
                // Answered by its CommandComplete once the next Execute shows it is not the last.
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
                "> QUERY  - - [db.extended=true]",
                "> SELECT SELECT x FROM t - - [db.extended=true]",
                "> SELECT SELECT x FROM t - - [db.extended=true]",
                "< - - OK - []",
                "< - - OK - [db.rows=1]",
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
            ]
        );
        assert_eq!((out[0].start_ns, out[0].end_ns, out[0].size as usize), (0, 0, turns[0].1.len() - FLUSH.len()));
        assert_eq!((out[1].start_ns, out[1].end_ns, out[1].size as usize), (1, 1, turns[1].1.len()));
        let size = |ids: &[usize]| ids.iter().map(|&i| out[i].size as usize).sum::<usize>();
        assert_eq!(size(&[0, 2, 3, 4]), turns[0].1.len() + turns[2].1.len());
        assert_eq!(size(&[1, 5, 6, 7]), turns[1].1.len() + turns[3].1.len());
    }

    #[test]
    fn pipeline_errors_at_a_parse_and_in_the_last_execute() {
        let ok = |tag: &str| cat(&[PARSE_COMPLETE, BIND_COMPLETE, &complete(tag)]);
        let turns = vec![
            // The second statement does not parse: the server skips the third up to the Sync.
            (
                REQ,
                cat(&[
                    &parse("", "INSERT INTO t VALUES (1)"),
                    &bind("", ""),
                    &execute(""),
                    &parse("", "SELEC 2"),
                    &bind("", ""),
                    &execute(""),
                    &parse("", "DELETE FROM t"),
                    &bind("", ""),
                    &execute(""),
                    SYNC,
                ]),
            ),
            (RESP, cat(&[&ok("INSERT 0 1"), &error("ERROR", "42601", "syntax error at or near \"SELEC\""), IDLE])),
            // The last one fails: its answer runs to the ReadyForQuery, nothing is skipped.
            (REQ, cat(&[&parse("", "UPDATE t SET a = 1"), &bind("", ""), &execute(""), &execute(""), SYNC])),
            (RESP, cat(&[&ok("UPDATE 3"), &error("ERROR", "34000", "portal \"\" does not exist"), IDLE])),
            // A pipeline cut short by Terminate: the Executes sent before the last one were
            // executed (and the server may answer them); the last one gets no answer.
            (REQ, cat(&[&parse("", "SELECT 5"), &bind("", ""), &execute(""), &execute(""), b"X\x00\x00\x00\x04"])),
        ];
        let out = run_all(&turns);
        assert_eq!(
            briefs(&out),
            [
                "> INSERT INSERT INTO t VALUES (1) - - [db.extended=true]",
                "> SELEC SELEC 2 - - [db.extended=true]",
                "> DELETE DELETE FROM t - - [db.extended=true]",
                "< - - OK - [db.command_tag=INSERT 0 1]",
                "< - - ERR SQLSTATE 42601: syntax error at or near \"SELEC\" []",
                &format!("< - - ERR {PIPELINE_ABORTED} []"),
                "> UPDATE UPDATE t SET a = 1 - - [db.extended=true]",
                "> UPDATE UPDATE t SET a = 1 - - [db.extended=true]",
                "< - - OK - [db.command_tag=UPDATE 3]",
                "< - - ERR SQLSTATE 34000: portal \"\" does not exist []",
                "> SELECT SELECT 5 - - [db.extended=true]",
            ]
        );
        assert_eq!(out[9].size as usize, turns[3].1.len() - ok("UPDATE 3").len());
    }

    #[test]
    fn pipeline_answers_lost_in_a_gap_keep_the_pairing_in_step() {
        let mut p = PostgresParser::new();
        let mut out = Vec::new();
        let batch: Vec<u8> = ["SELECT 1", "SELECT 2", "SELECT 3"]
            .iter()
            .flat_map(|q| cat(&[&parse("", q), &bind("", ""), &execute("")]))
            .chain(SYNC.iter().copied())
            .collect();
        p.feed(REQ, &batch, 1, false, &mut out).unwrap();
        let first = cat(&[PARSE_COMPLETE, BIND_COMPLETE, &data_row("1"), &complete("SELECT 1")]);
        p.feed(RESP, &cat(&[&first, PARSE_COMPLETE, BIND_COMPLETE, &data_row("2")]), 2, false, &mut out).unwrap();
        // The rest of the second answer and all of the third were not captured.
        p.feed(RESP, IDLE, 3, true, &mut out).unwrap();
        p.feed(REQ, &query("SELECT 4"), 4, false, &mut out).unwrap();
        p.feed(RESP, &cat(&[&complete("SELECT 1"), IDLE]), 5, false, &mut out).unwrap();
        assert_eq!(
            briefs(&out),
            [
                "> SELECT SELECT 1 - - [db.extended=true]",
                "> SELECT SELECT 2 - - [db.extended=true]",
                "> SELECT SELECT 3 - - [db.extended=true]",
                "< - - OK - [db.rows=1 db.command_tag=SELECT 1]",
                "< - - OK - [db.rows=1] partial",
                // Not seen: no status.
                "< - - - - [] partial",
                "> SELECT SELECT 4 - - []",
                "< - - OK - [db.command_tag=SELECT 1]",
            ]
        );
        assert_eq!((out[5].start_ns, out[5].end_ns, out[5].size), (3, 3, 0));
    }

    #[test]
    fn long_statement_is_cut_and_not_buffered_beyond_cap() {
        let sql = format!("INSERT INTO t VALUES ('{}')", "x".repeat(200_000));
        let turns = vec![(REQ, query(&sql)), (RESP, cat(&[&complete("INSERT 0 1"), IDLE]))];
        let out = run(&turns, Split::Random(3));
        assert_eq!(out[0].target.as_ref().map(String::len), Some(sql::MAX_STATEMENT));
        assert_eq!(out[0].size as usize, sql.len() + 6);
        assert_eq!(out, run(&turns, Split::Whole));
    }

    #[test]
    fn detection() {
        assert!(detect(REQ, &startup(&[("user", "app"), ("database", "shop")])));
        assert!(detect(REQ, &startup(&[("user", "app")])[..10]));
        assert!(detect(REQ, SSL));
        assert!(detect(REQ, b"\x00\x00\x00\x08\x04\xd2\x16\x30"));
        assert!(detect(REQ, b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x30\x39\x12\x34\x56\x78"));
        assert!(detect(REQ, &query("SELECT 1")));
        assert!(detect(REQ, &query("  begin")[..8]));
        assert!(detect(RESP, AUTH_OK));
        assert!(detect(RESP, &msg(b'R', b"\x00\x00\x00\x05\x9a\x1b\x2c\x3d")));
        assert!(detect(RESP, &msg(b'R', b"\x00\x00\x00\x0aSCRAM-SHA-256\0\0")));
        assert!(detect(RESP, b"N"));
        assert!(detect(RESP, b"S"));
        for other in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"*1\r\n$4\r\nPING\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x09\x00\x00\x00\x03SELECT 1",
            b"\x4a\x00\x00\x00\x0a8.0.36\x00\x0d\x00\x00\x00",
            // Kafka Metadata v0 (api key 3, version 0).
            b"\x00\x00\x00\x1d\x00\x03\x00\x00\x00\x00\x00\x01\x00\x07client1",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www",
            b"Q\x00\x00\x00\x02\x01",
            b"Q\x00\x00\x00\x09\x01\x02\x03\x04\x00",
            b"QUIT\r\n",
        ] {
            assert!(!detect(REQ, other), "{other:?}");
            assert!(!detect(RESP, other), "{other:?}");
        }
        assert!(!detect(RESP, b"R\x00\x00\x00\x08\x00\x00\x00\x63"));
        assert!(!detect(RESP, b"X"));
    }

    #[test]
    fn uncaptured_row_bytes_are_counted_and_keep_the_stream_in_step() {
        let mut p = PostgresParser::new();
        let mut out = vec![];
        p.feed(REQ, &cat(&[&query("SELECT big FROM t"), &query("SELECT 2")]), 1, false, &mut out).unwrap();
        let head = row_description("big");
        let row = data_row(&"x".repeat(10_000));
        // The capture kept the RowDescription and 100 bytes of the DataRow; the rest went by
        // uncaptured.
        p.feed(RESP, &cat(&[&head, &row[..100]]), 2, false, &mut out).unwrap();
        let rest = (row.len() - 100) as u64;
        // More than the row holds cannot be placed.
        assert!(!p.skip(RESP, rest + 1, 3, &mut out));
        assert!(p.skip(RESP, rest, 3, &mut out));
        let tail = cat(&[&complete("SELECT 1"), IDLE]);
        p.feed(RESP, &tail, 4, false, &mut out).unwrap();
        let second = cat(&[&row_description("?column?"), &data_row("2"), &complete("SELECT 1"), IDLE]);
        p.feed(RESP, &second, 5, false, &mut out).unwrap();
        let responses: Vec<_> = out.iter().filter(|m| m.side == Some(RESP)).collect();
        assert_eq!(responses.len(), 2);
        let size = (head.len() + row.len() + tail.len()) as u64;
        assert_eq!((responses[0].size, responses[0].end_ns, responses[0].partial), (size, 4, false));
        assert_eq!(briefs(&out[2..]), ["< - - OK - [db.rows=1 db.command_tag=SELECT 1]"; 2]);
        // In a message header, uncaptured bytes cannot be placed.
        assert!(!p.skip(RESP, 10, 6, &mut out));

        // A statement longer than what is kept of it: the uncaptured rest ends it at its time.
        let mut p = PostgresParser::new();
        out.clear();
        let long = query(&format!("SELECT '{}'", "y".repeat(REQUEST_CAP)));
        p.feed(REQ, &long[..5 + REQUEST_CAP], 1, false, &mut out).unwrap();
        assert!(p.skip(REQ, (long.len() - 5 - REQUEST_CAP) as u64, 2, &mut out));
        p.feed(REQ, &query("SELECT 2"), 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].operation.as_deref(), out[0].size, out[0].end_ns), (Some("SELECT"), long.len() as u64, 2));
        assert_eq!(out[1].target.as_deref(), Some("SELECT 2"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(feeds in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), any::<bool>()), 0..40)) {
            let mut p = PostgresParser::new();
            let mut out = Vec::new();
            let mut total = 0;
            for (req, bytes, gap) in &feeds {
                let side = if *req { REQ } else { RESP };
                let _ = p.feed(side, bytes, 0, *gap, &mut out);
                total += bytes.len();
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
            prop_assert!(out.len() <= total / 4 + feeds.len());
        }

        #[test]
        fn plausible_bytes_never_panic(feeds in prop::collection::vec((any::<bool>(), prop::collection::vec((prop::sample::select(b"QPBEDCSHXFpdcfRKZTtn123sIGWVvAN".to_vec()), 0u32..40, prop::collection::vec(any::<u8>(), 0..40)), 0..8), any::<bool>()), 0..20)) {
            // Messages with known types and small lengths (often wrong), to reach deeper states.
            let mut p = PostgresParser::new();
            let mut out = Vec::new();
            for (req, msgs, gap) in &feeds {
                let side = if *req { REQ } else { RESP };
                let mut bytes = Vec::new();
                for (kind, len, body) in msgs {
                    bytes.push(*kind);
                    bytes.extend_from_slice(&len.to_be_bytes());
                    bytes.extend_from_slice(body);
                }
                let _ = p.feed(side, &bytes, 0, *gap, &mut out);
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
        }

        #[test]
        fn arbitrary_splits_of_a_pipeline(cuts in prop::collection::vec(1usize..64, 1..200), gaps in prop::collection::vec(any::<bool>(), 200)) {
            let turns = pipeline();
            let whole = run(&turns, Split::Whole);
            prop_assert_eq!(&feed_cuts(PostgresParser::new(), &turns, &cuts, None), &whole);
            let out = feed_cuts(PostgresParser::new(), &turns, &cuts, Some(&gaps));
            prop_assert!(out.len() <= 2 * whole.len());
        }

        #[test]
        fn arbitrary_splits_of_a_session(cuts in prop::collection::vec(1usize..64, 1..200), gaps in prop::collection::vec(any::<bool>(), 200)) {
            let turns = session();
            let whole = run(&turns, Split::Whole);
            // Without gaps: identical messages.
            prop_assert_eq!(&feed_cuts(PostgresParser::new(), &turns, &cuts, None), &whole);
            // With gaps (chunks lost): no panic, bounded.
            let out = feed_cuts(PostgresParser::new(), &turns, &cuts, Some(&gaps));
            prop_assert!(out.len() <= 2 * whole.len());
        }
    }
}
