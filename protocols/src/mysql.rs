//! MySQL / MariaDB client/server protocol (the classic protocol, uncompressed, in clear text).
//!
//! Wire: packets of a 3-byte little-endian payload length, a sequence id and the payload; a
//! payload of 0xffffff bytes continues in the next packet. A command starts with sequence id 0
//! and its response continues the count. The response format depends on the command, so the
//! parser keeps the commands waiting for an answer in order (MySQL answers in order).
//!
//! Messages (key always [`MatchKey::Fifo`]):
//! - Handshake: the server greeting emits nothing. The client's handshake response is a request
//!   `CONNECT` (target = the database asked for, attribute `db.user`); the end of the
//!   authentication exchange (OK or ERR, after any auth switch / more-data packets) is its
//!   response. A client asking for TLS or for compression ends parsing: the rest is opaque.
//! - `COM_QUERY`: operation = SQL verb (`QUERY` when none), target = statement (cut to 4096
//!   bytes). `COM_STMT_PREPARE`: `PREPARE` + statement; its OK gives `db.statement_id`, and the
//!   statement is remembered for `COM_STMT_EXECUTE`: `EXECUTE`, target = the prepared SQL when
//!   seen, `db.statement_id`. `COM_INIT_DB`: target = schema. Other commands by name without the
//!   `COM_` prefix (`PING`, `STMT_RESET`, `CHANGE_USER`, ...).
//! - Commands without a response (`COM_QUIT`, `COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA`) emit no
//!   message: the FIFO matcher would pair them with the next command's response.
//! - Responses: status `OK` / `ERR`; `error` = `<code> (<sqlstate>): <message>`; `db.rows` = rows
//!   of the result set(s), `db.rows_affected` = sum of the OK packets' affected rows. Rows are
//!   counted and skipped, never buffered. Multi-result responses (`SERVER_MORE_RESULTS_EXISTS`),
//!   `LOCAL INFILE` (the client's file packets are skipped) and cursors (`COM_STMT_FETCH`) are
//!   followed to their end.
//!
//! Mid-stream start (no greeting seen): `CLIENT_PROTOCOL_41` is assumed and `CLIENT_DEPRECATE_EOF`
//! off until a result set shows otherwise; commands are read from packets with sequence id 0.
//! After a gap, the request side waits for a chunk starting with a command packet; the response
//! side reports the response in progress partial and resumes with the next command's response.

use std::collections::{HashMap, VecDeque};

use crate::framing::{Frame, Framer, Head, Header};
use crate::message::*;
use crate::sql;

const HEADER: usize = 4;
/// A payload of this length continues in the next packet.
const CONTINUED: usize = 0xff_ffff;
/// Payload bytes kept per client packet: the statement plus the command's own fields.
const REQUEST_CAP: usize = sql::MAX_STATEMENT + 64;
/// Payload bytes kept per server packet: an ERR message is at most 512 bytes.
const RESPONSE_CAP: usize = 1024;
/// Commands waiting for a response; the oldest are forgotten beyond this.
const MAX_PENDING: usize = 1024;
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;
/// More columns than this in a result set means the bytes are not a column count.
const MAX_COLUMNS: u64 = 65_535;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_COMPRESS: u32 = 0x20;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC_DATA: u32 = 0x0020_0000;
const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
const CLIENT_ZSTD_COMPRESSION: u32 = 0x0400_0000;
const CLIENT_QUERY_ATTRIBUTES: u32 = 0x0800_0000;

const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_STATISTICS: u8 = 0x09;
const COM_PROCESS_INFO: u8 = 0x0a;
const COM_PING: u8 = 0x0e;
const COM_CHANGE_USER: u8 = 0x11;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1a;
const COM_STMT_FETCH: u8 = 0x1c;
const COM_RESET_CONNECTION: u8 = 0x1f;
/// MariaDB's bulk execute.
const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// Command names by command byte (0x00..=0x20), without the `COM_` prefix.
const COMMANDS: [&str; 0x21] = [
    "SLEEP",
    "QUIT",
    "INIT_DB",
    "QUERY",
    "FIELD_LIST",
    "CREATE_DB",
    "DROP_DB",
    "REFRESH",
    "SHUTDOWN",
    "STATISTICS",
    "PROCESS_INFO",
    "CONNECT",
    "PROCESS_KILL",
    "DEBUG",
    "PING",
    "TIME",
    "DELAYED_INSERT",
    "CHANGE_USER",
    "BINLOG_DUMP",
    "TABLE_DUMP",
    "CONNECT_OUT",
    "REGISTER_SLAVE",
    "STMT_PREPARE",
    "STMT_EXECUTE",
    "STMT_SEND_LONG_DATA",
    "STMT_CLOSE",
    "STMT_RESET",
    "SET_OPTION",
    "STMT_FETCH",
    "DAEMON",
    "BINLOG_DUMP_GTID",
    "RESET_CONNECTION",
    "CLONE",
];

fn command_name(cmd: u8) -> Option<&'static str> {
    match cmd {
        COM_STMT_BULK_EXECUTE => Some("STMT_BULK_EXECUTE"),
        _ => COMMANDS.get(cmd as usize).copied(),
    }
}

/// True when `first` (the first bytes one side sent) is very likely MySQL from that side: the
/// server greeting (protocol 10, printable version), or a client command packet with sequence id
/// 0 whose payload fits the command (a connection that began before capture).
pub fn detect(side: Side, first: &[u8]) -> bool {
    if first.len() < HEADER + 1 || first[3] != 0 {
        return false;
    }
    let len = le24(first);
    let payload = &first[HEADER..first.len().min(HEADER + len)];
    match side {
        Side::Response => detect_greeting(len, payload),
        Side::Request => detect_command(len, payload),
    }
}

fn detect_greeting(len: usize, payload: &[u8]) -> bool {
    if payload[0] != 10 || !(20..=1024).contains(&len) {
        return false;
    }
    let version = &payload[1..];
    let end = version.iter().position(|&c| c == 0);
    let text = &version[..end.unwrap_or(version.len())];
    // The version must be printable and end within reach (or the chunk ended first).
    let ends = end.is_some() || version.len() < 64;
    ends && text.len() >= 3
        && text.len() < 64
        && text[0].is_ascii_digit()
        && text.iter().all(|c| (0x20..0x7f).contains(c))
}

fn detect_command(len: usize, payload: &[u8]) -> bool {
    let body = &payload[1..];
    match payload[0] {
        COM_QUERY | COM_STMT_PREPARE => {
            // MySQL 8 query attributes: parameter count 0, one parameter set, then the text.
            let text = if body.starts_with(&[0, 1]) { &body[2..] } else { body };
            len >= 2 && looks_like_sql(text)
        }
        COM_PING | COM_QUIT | COM_STATISTICS | COM_RESET_CONNECTION => len == 1,
        COM_INIT_DB => (2..=257).contains(&len) && !body.is_empty() && body.iter().all(|c| c.is_ascii_graphic()),
        COM_STMT_CLOSE | COM_STMT_RESET => len == 5,
        COM_STMT_FETCH => len == 9,
        // Statement id, flags (cursor type), iteration count 1.
        COM_STMT_EXECUTE => len >= 10 && body.len() >= 9 && body[4] <= 0x0f && body[5..9] == [1, 0, 0, 0],
        _ => false,
    }
}

/// The start of a SQL text: printable (or UTF-8), beginning with a keyword, parenthesis, comment
/// or whitespace.
fn looks_like_sql(text: &[u8]) -> bool {
    let head = &text[..text.len().min(32)];
    let starts = head.first().is_some_and(|&c| c.is_ascii_alphabetic() || b"(/-# \t\r\n".contains(&c));
    starts && head.iter().all(|&c| c >= 0x20 || c == b'\t' || c == b'\r' || c == b'\n')
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le24(b: &[u8]) -> usize {
    b[0] as usize | (b[1] as usize) << 8 | (b[2] as usize) << 16
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A length-encoded integer and its width; `None` for 0xfb/0xff or too few bytes.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let width = match *b.first()? {
        x @ 0..=0xfa => return Some((x as u64, 1)),
        0xfc => 3,
        0xfd => 4,
        0xfe => 9,
        _ => return None,
    };
    let bytes = b.get(1..width)?;
    Some((bytes.iter().rev().fold(0, |n, &c| n << 8 | c as u64), width))
}

/// The text up to the first NUL (or the end).
fn cstring(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

fn text(b: &[u8]) -> String {
    sql::statement(b)
}

/// One logical packet (continuation packets joined), as much of its payload as was kept: its
/// tag is the sequence id of the first packet, `last_tag` of the last (a continued payload spans
/// several), `body_len` the payload's length on the wire.
type Packet<'a> = Frame<'a, u8>;

/// The packet header: payload length and sequence id. A payload of [`CONTINUED`] bytes goes on
/// in the next packet; at most `keep` payload bytes of each logical packet are kept.
struct Layout {
    keep: usize,
}

impl Layout {
    fn of(side: Side) -> Self {
        let keep = match side {
            Side::Request => REQUEST_CAP,
            Side::Response => RESPONSE_CAP,
        };
        Layout { keep }
    }
}

impl Header for Layout {
    type Tag = u8;
    type Error = std::convert::Infallible;

    fn header_len(&self) -> usize {
        HEADER
    }

    fn read(&self, h: &[u8]) -> Result<Head<u8>, Self::Error> {
        let len = le24(h);
        Ok(Head { tag: h[3], body: len, keep: self.keep, continued: len == CONTINUED })
    }
}

/// Whether a side's bytes are understood.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sync {
    /// Nothing read yet: the first packet may be the handshake.
    Fresh,
    Synced,
    /// Lost after a gap or garbage: waiting for a chunk that starts at a packet boundary.
    Lost,
}

/// The shape of the response a command gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Authentication exchange: packets until OK or ERR.
    Auth,
    /// OK, ERR, LOCAL INFILE or result set(s).
    Query,
    /// COM_STMT_PREPARE_OK and its definitions, or ERR.
    Prepare,
    /// Rows until EOF (a cursor's fetch).
    Fetch,
    /// Column definitions until EOF.
    FieldList,
    /// One string packet.
    Statistics,
    /// One packet: OK, ERR or EOF.
    Simple,
}

struct Pending {
    kind: Kind,
    seq: u8,
    /// The statement of a COM_STMT_PREPARE, remembered under the id its answer gives.
    sql: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    /// Definitions after a COM_STMT_PREPARE_OK.
    Skip(u64),
    UntilEof,
    /// Packets alternate with the client's (auth, LOCAL INFILE) until OK or ERR.
    UntilOkErr,
}

struct Response {
    kind: Kind,
    stage: Stage,
    start_ns: u64,
    end_ns: u64,
    size: u64,
    /// The sequence id the next packet must carry, when the server sends alone.
    next_seq: Option<u8>,
    rows: Option<u64>,
    affected: Option<u64>,
    stmt_id: Option<u32>,
    sql: Option<String>,
    error: Option<String>,
    partial: bool,
}

impl Response {
    fn new(p: Pending, start_ns: u64) -> Self {
        let stage = match p.kind {
            Kind::Auth => Stage::UntilOkErr,
            Kind::Fetch => Stage::Rows,
            Kind::FieldList => Stage::UntilEof,
            _ => Stage::First,
        };
        Response {
            kind: p.kind,
            stage,
            start_ns,
            end_ns: start_ns,
            size: 0,
            next_seq: Some(p.seq.wrapping_add(1)),
            rows: None,
            affected: None,
            stmt_id: None,
            sql: p.sql,
            error: None,
            partial: false,
        }
    }

    fn finish(self, status: Option<&'static str>) -> Message {
        let mut attributes = Vec::new();
        if let Some(n) = self.rows {
            attributes.push(("db.rows", n.to_string()));
        }
        if let Some(n) = self.affected {
            attributes.push(("db.rows_affected", n.to_string()));
        }
        if let Some(id) = self.stmt_id {
            attributes.push(("db.statement_id", id.to_string()));
        }
        Message {
            side: Some(Side::Response),
            key: Some(MatchKey::Fifo),
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            size: self.size,
            status: status.map(str::to_string),
            error: self.error,
            attributes,
            partial: self.partial,
            ..Default::default()
        }
    }
}

/// What a server packet did to the response in progress.
enum Step {
    More,
    Done(&'static str),
    /// The packet does not fit the response: the framing or a guess was wrong.
    Bad(&'static str),
}

/// Connection state shared by both directions.
struct Conn {
    server_caps: Option<u32>,
    client_caps: Option<u32>,
    deprecate_eof: bool,
    query_attributes: bool,
    /// Compression was agreed: it starts after authentication.
    compress: bool,
    /// TLS or compression: nothing more is parsed.
    opaque: bool,
    client: Sync,
    server: Sync,
    pending: VecDeque<Pending>,
    resp: Option<Response>,
    statements: HashMap<u32, String>,
    error: Option<ParseError>,
}

/// Parser of one MySQL connection (both directions). `MysqlParser::new()` takes no arguments: the
/// capabilities come from the handshake when it is seen.
pub struct MysqlParser {
    framers: [Framer<u8>; 2],
    conn: Conn,
}

impl Default for MysqlParser {
    fn default() -> Self {
        Self::new()
    }
}

impl MysqlParser {
    pub fn new() -> Self {
        MysqlParser {
            framers: [Framer::new(), Framer::new()],
            conn: Conn {
                server_caps: None,
                client_caps: None,
                deprecate_eof: false,
                query_attributes: false,
                compress: false,
                opaque: false,
                client: Sync::Fresh,
                server: Sync::Fresh,
                pending: VecDeque::new(),
                resp: None,
                statements: HashMap::new(),
                error: None,
            },
        }
    }

    fn gap(&mut self, side: Side, ts: u64, out: &mut Vec<Message>) {
        let conn = &mut self.conn;
        match side {
            Side::Request => {
                let cut = self.framers[0].cut(ts);
                if let Some(p) = cut.filter(|p| p.tag == 0 && !p.body.is_empty() && conn.client != Sync::Lost) {
                    conn.command(&p, out);
                }
                conn.client = Sync::Lost;
            }
            Side::Response => {
                self.framers[1].cut(ts);
                if let Some(mut r) = conn.resp.take() {
                    r.partial = true;
                    out.push(r.finish(None));
                }
                conn.server = Sync::Lost;
            }
        }
    }
}

impl Parser for MysqlParser {
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
        if self.conn.sync(side) == Sync::Lost && !self.conn.resync(side, chunk) {
            return Ok(());
        }
        let i = side as usize;
        let mut pos = 0;
        let layout = Layout::of(side);
        while let Ok(Some(p)) = self.framers[i].next(chunk, &mut pos, ts_ns, &layout) {
            self.conn.packet(side, &p, out);
            if self.conn.opaque {
                break;
            }
            if self.conn.sync(side) == Sync::Lost {
                self.framers[i].cut(ts_ns);
                break;
            }
        }
        self.conn.error.take().map_or(Ok(()), Err)
    }

    fn skip(&mut self, side: Side, n: u64, ts_ns: u64, out: &mut Vec<Message>) -> bool {
        if self.conn.opaque {
            // Nothing is parsed any more: there is no step to keep.
            return true;
        }
        let i = side as usize;
        match self.framers[i].skip_frame(n, ts_ns) {
            None => false,
            Some(None) => true,
            Some(Some(p)) => {
                self.conn.packet(side, &p, out);
                // As in `feed`: a packet that loses the side drops whatever is in progress.
                if !self.conn.opaque && self.conn.sync(side) == Sync::Lost {
                    self.framers[i].cut(ts_ns);
                }
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

    /// Whether a lost side can resume at the start of `chunk`.
    fn resync(&mut self, side: Side, chunk: &[u8]) -> bool {
        match side {
            Side::Request => {
                let ok = chunk.len() > HEADER && chunk[3] == 0 && command_name(chunk[4]).is_some();
                if ok {
                    self.client = Sync::Synced;
                }
                ok
            }
            // Sequence ids check the guess on the response's first packet.
            Side::Response => {
                let ok = !self.pending.is_empty();
                if ok {
                    self.server = Sync::Synced;
                }
                ok
            }
        }
    }

    fn fail(&mut self, side: Side, reason: String) {
        match side {
            Side::Request => self.client = Sync::Lost,
            Side::Response => self.server = Sync::Lost,
        }
        self.error.get_or_insert(ParseError(format!("mysql: {reason}")));
    }

    fn packet(&mut self, side: Side, p: &Packet, out: &mut Vec<Message>) {
        match side {
            Side::Request => self.client_packet(p, out),
            Side::Response => self.server_packet(p, out),
        }
    }

    fn client_packet(&mut self, p: &Packet, out: &mut Vec<Message>) {
        if self.client == Sync::Fresh {
            self.client = Sync::Synced;
            if p.tag == 1 {
                return self.handshake_response(p, out);
            }
        }
        // Other sequence ids continue an exchange: auth data, LOCAL INFILE contents.
        if p.tag == 0 && !p.body.is_empty() {
            self.command(p, out);
        }
    }

    fn handshake_response(&mut self, p: &Packet, out: &mut Vec<Message>) {
        let pl = p.body;
        if pl.len() < 4 {
            return;
        }
        let caps = if le16(pl) as u32 & CLIENT_PROTOCOL_41 != 0 { le32(pl) } else { le16(pl) as u32 };
        if caps & CLIENT_SSL != 0 {
            self.opaque = true;
            return;
        }
        let agreed = caps & self.server_caps.unwrap_or(caps);
        self.client_caps = Some(caps);
        self.deprecate_eof = agreed & CLIENT_DEPRECATE_EOF != 0;
        self.query_attributes = agreed & CLIENT_QUERY_ATTRIBUTES != 0;
        self.compress = agreed & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION) != 0;
        let (user, db) = if caps & CLIENT_PROTOCOL_41 != 0 {
            let user = cstring(pl.get(32..).unwrap_or_default());
            (user, handshake_database(caps, pl.get(33 + user.len()..).unwrap_or_default()))
        } else {
            // HandshakeResponse320: capabilities (2), max packet size (3), user.
            (cstring(pl.get(5..).unwrap_or_default()), None)
        };
        let mut m = request(p, "CONNECT".into());
        m.target = db.filter(|d| !d.is_empty()).map(text);
        m.attributes.push(("db.user", text(user)));
        out.push(m);
        self.expect(Kind::Auth, p.last_tag, None);
    }

    fn expect(&mut self, kind: Kind, seq: u8, sql: Option<String>) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending { kind, seq, sql });
    }

    fn command(&mut self, p: &Packet, out: &mut Vec<Message>) {
        let pl = p.body;
        let cmd = pl[0];
        let stmt_id = pl.get(1..5).map(le32);
        let (kind, op) = match cmd {
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return,
            COM_STMT_CLOSE => {
                if let Some(id) = stmt_id {
                    self.statements.remove(&id);
                }
                return;
            }
            COM_QUERY => {
                let sql = self.query_text(pl).map(text);
                let op = sql.as_deref().and_then(sql::verb).unwrap_or_else(|| "QUERY".into());
                let mut m = request(p, op);
                m.target = sql;
                out.push(m);
                return self.expect(Kind::Query, p.last_tag, None);
            }
            COM_STMT_PREPARE => {
                let sql = text(&pl[1..]);
                let mut m = request(p, "PREPARE".into());
                m.target = Some(sql.clone());
                out.push(m);
                return self.expect(Kind::Prepare, p.last_tag, Some(sql));
            }
            COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE => {
                (Kind::Query, if cmd == COM_STMT_EXECUTE { "EXECUTE" } else { "STMT_BULK_EXECUTE" })
            }
            COM_STMT_FETCH => (Kind::Fetch, "STMT_FETCH"),
            COM_FIELD_LIST => (Kind::FieldList, "FIELD_LIST"),
            COM_STATISTICS => (Kind::Statistics, "STATISTICS"),
            COM_CHANGE_USER => (Kind::Auth, "CHANGE_USER"),
            COM_PROCESS_INFO => (Kind::Query, "PROCESS_INFO"),
            _ => match command_name(cmd) {
                Some(name) => (Kind::Simple, name),
                None => return self.fail(Side::Request, format!("unknown command 0x{cmd:02x}")),
            },
        };
        let mut m = request(p, op.into());
        match cmd {
            COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE | COM_STMT_FETCH | COM_STMT_RESET => {
                if let Some(id) = stmt_id {
                    m.target = self.statements.get(&id).cloned();
                    m.attributes.push(("db.statement_id", id.to_string()));
                }
            }
            COM_INIT_DB | COM_FIELD_LIST => m.target = Some(text(cstring(&pl[1..]))),
            COM_CHANGE_USER => m.attributes.push(("db.user", text(cstring(&pl[1..])))),
            _ => {}
        }
        out.push(m);
        self.expect(kind, p.last_tag, None);
    }

    /// The statement of a COM_QUERY, after the query attributes when there are any (only an
    /// attribute-free prefix is skipped: bound attribute values are not decoded).
    fn query_text<'a>(&self, pl: &'a [u8]) -> Option<&'a [u8]> {
        let rest = &pl[1..];
        let attributes = self.query_attributes || (self.client_caps.is_none() && rest.first() == Some(&0));
        if !attributes {
            return Some(rest);
        }
        let (count, a) = lenenc(rest)?;
        let (_sets, b) = lenenc(&rest[a..])?;
        (count == 0).then(|| &rest[a + b..])
    }

    fn greeting(&mut self, pl: &[u8]) {
        let Some(nul) = pl[1..].iter().position(|&c| c == 0) else { return };
        // Version, connection id (4), auth data part 1 (8), filler (1), capabilities low (2),
        // charset (1), status (2), capabilities high (2).
        let at = 1 + nul + 1 + 4 + 8 + 1;
        let Some(low) = pl.get(at..at + 2).map(le16) else { return };
        let high = pl.get(at + 5..at + 7).map_or(0, le16);
        self.server_caps = Some(low as u32 | (high as u32) << 16);
    }

    fn server_packet(&mut self, p: &Packet, out: &mut Vec<Message>) {
        let mut r = match self.resp.take() {
            Some(r) => r,
            None => {
                if self.server == Sync::Fresh {
                    self.server = Sync::Synced;
                    if p.tag == 0 && p.body.first() == Some(&10) {
                        return self.greeting(p.body);
                    }
                }
                // A response with no command waiting began before capture: skipped.
                let Some(pending) = self.pending.pop_front() else { return };
                Response::new(pending, p.start_ns)
            }
        };
        if r.next_seq.is_some_and(|s| s != p.tag) {
            return self.out_of_sequence(r, p, out);
        }
        r.size += p.size;
        r.end_ns = p.end_ns;
        r.partial |= p.partial;
        match self.step(&mut r, p) {
            Step::More => {
                r.next_seq = (r.stage != Stage::UntilOkErr).then(|| p.tag.wrapping_add(1));
                self.resp = Some(r);
            }
            Step::Done(status) => {
                if r.kind == Kind::Auth && status == "OK" && self.compress {
                    self.opaque = true;
                }
                out.push(r.finish(Some(status)));
            }
            Step::Bad(reason) => {
                r.partial = true;
                out.push(r.finish(None));
                self.fail(Side::Response, reason.into());
            }
        }
    }

    /// A packet that does not continue the response: report the response partial, and start the
    /// next one with this packet when it fits (a wrong guess about EOF packets), else resync.
    fn out_of_sequence(&mut self, mut r: Response, p: &Packet, out: &mut Vec<Message>) {
        // Only a prepare's definitions follow a header that already said OK.
        let status = matches!(r.stage, Stage::Skip(_)).then_some("OK");
        r.partial = true;
        out.push(r.finish(status));
        if self.pending.front().is_some_and(|n| n.seq.wrapping_add(1) == p.tag) {
            return self.server_packet(p, out);
        }
        self.fail(Side::Response, format!("packet out of sequence ({})", p.tag));
    }

    fn step(&mut self, r: &mut Response, p: &Packet) -> Step {
        let pl = p.body;
        let first = pl.first().copied();
        // Definitions never start with 0xff; anywhere else it is an ERR ending the response.
        if first == Some(0xff) && !matches!(r.stage, Stage::Columns(_) | Stage::Skip(_)) {
            r.error = Some(error_text(pl));
            return Step::Done("ERR");
        }
        match r.stage {
            Stage::UntilOkErr => match first {
                Some(0x00) if r.kind == Kind::Auth => Step::Done("OK"),
                Some(0x00) => self.ok(r, pl),
                _ => Step::More,
            },
            Stage::First => self.first(r, p),
            Stage::Columns(n) => {
                r.stage = if n > 1 {
                    Stage::Columns(n - 1)
                } else if self.deprecate_eof {
                    Stage::Rows
                } else {
                    Stage::ColumnsEof
                };
                Step::More
            }
            Stage::ColumnsEof if first == Some(0xfe) && p.body_len < 9 => {
                if eof_status(pl) & SERVER_STATUS_CURSOR_EXISTS != 0 {
                    return Step::Done("OK");
                }
                r.stage = Stage::Rows;
                Step::More
            }
            Stage::ColumnsEof if self.client_caps.is_none() => {
                // Joined mid-stream: the server does not send EOF packets after all.
                self.deprecate_eof = true;
                r.stage = Stage::Rows;
                self.row(r, p)
            }
            Stage::ColumnsEof => Step::Bad("EOF expected after column definitions"),
            Stage::Rows => self.row(r, p),
            Stage::Skip(n) => {
                r.stage = Stage::Skip(n - 1);
                if n > 1 {
                    Step::More
                } else {
                    Step::Done("OK")
                }
            }
            Stage::UntilEof if first == Some(0xfe) && p.body_len < 9 => Step::Done("OK"),
            Stage::UntilEof => Step::More,
        }
    }

    /// The first packet of a response (or of the next result in a multi-result response).
    fn first(&mut self, r: &mut Response, p: &Packet) -> Step {
        let pl = p.body;
        match (r.kind, pl.first().copied()) {
            (Kind::Statistics, _) => Step::Done("OK"),
            (Kind::Simple | Kind::Query, Some(0x00)) => self.ok(r, pl),
            (Kind::Simple, _) => Step::Done("OK"),
            (Kind::Prepare, Some(0x00)) if pl.len() >= 9 => self.prepare_ok(r, pl),
            (Kind::Query, Some(0xfb)) => {
                // LOCAL INFILE: the client sends the file, then the server its OK or ERR.
                r.stage = Stage::UntilOkErr;
                Step::More
            }
            (Kind::Query, _) => match lenenc(pl) {
                Some((n, _)) if (1..=MAX_COLUMNS).contains(&n) => {
                    r.rows.get_or_insert(0);
                    r.stage = Stage::Columns(n);
                    Step::More
                }
                _ => Step::Bad("bad column count"),
            },
            _ => Step::Bad("unexpected response"),
        }
    }

    fn ok(&mut self, r: &mut Response, pl: &[u8]) -> Step {
        let (affected, status) = ok_fields(pl);
        *r.affected.get_or_insert(0) += affected;
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            r.stage = Stage::First;
            return Step::More;
        }
        Step::Done("OK")
    }

    fn prepare_ok(&mut self, r: &mut Response, pl: &[u8]) -> Step {
        let id = le32(&pl[1..]);
        let (columns, params) = (le16(&pl[5..]) as u64, le16(&pl[7..]) as u64);
        r.stmt_id = Some(id);
        if let Some(sql) = r.sql.take() {
            if self.statements.len() >= MAX_STATEMENTS && !self.statements.contains_key(&id) {
                self.statements.clear();
            }
            self.statements.insert(id, sql);
        }
        let eofs = if self.deprecate_eof { 0 } else { (params > 0) as u64 + (columns > 0) as u64 };
        let n = params + columns + eofs;
        if n == 0 {
            return Step::Done("OK");
        }
        r.stage = Stage::Skip(n);
        Step::More
    }

    fn row(&mut self, r: &mut Response, p: &Packet) -> Step {
        let limit = if self.deprecate_eof { CONTINUED } else { 9 };
        if p.body.first() != Some(&0xfe) || p.body_len >= limit {
            *r.rows.get_or_insert(0) += 1;
            return Step::More;
        }
        // EOF, or OK with a 0xfe header: its status flags sit at the same offset when the
        // affected rows and insert id are small, and ok_fields reads them either way.
        let status = if self.deprecate_eof { ok_fields(p.body).1 } else { eof_status(p.body) };
        if r.kind != Kind::Fetch && status & SERVER_MORE_RESULTS_EXISTS != 0 {
            r.stage = Stage::First;
            return Step::More;
        }
        Step::Done("OK")
    }
}

/// Affected rows and status flags of an OK packet (0 when cut short).
fn ok_fields(pl: &[u8]) -> (u64, u16) {
    let Some((affected, a)) = pl.get(1..).and_then(lenenc) else { return (0, 0) };
    let Some((_, b)) = pl.get(1 + a..).and_then(lenenc) else { return (affected, 0) };
    (affected, pl.get(1 + a + b..3 + a + b).map_or(0, le16))
}

fn eof_status(pl: &[u8]) -> u16 {
    pl.get(3..5).map_or(0, le16)
}

/// `<code> (<sqlstate>): <message>` from an ERR packet.
fn error_text(pl: &[u8]) -> String {
    let code = pl.get(1..3).map_or(0, le16);
    match pl.get(3) {
        Some(b'#') if pl.len() >= 9 => {
            format!("{code} ({}): {}", String::from_utf8_lossy(&pl[4..9]), String::from_utf8_lossy(&pl[9..]))
        }
        _ => format!("{code}: {}", String::from_utf8_lossy(pl.get(3..).unwrap_or_default())),
    }
}

/// The database a HandshakeResponse41 asks for, from the bytes after the user name.
fn handshake_database(caps: u32, rest: &[u8]) -> Option<&[u8]> {
    if caps & CLIENT_CONNECT_WITH_DB == 0 {
        return None;
    }
    let skip = if caps & CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
        let (n, w) = lenenc(rest)?;
        w + usize::try_from(n).ok()?
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        1 + *rest.first()? as usize
    } else {
        cstring(rest).len() + 1
    };
    Some(cstring(rest.get(skip..)?))
}

fn request(p: &Packet, operation: String) -> Message {
    Message {
        side: Some(Side::Request),
        key: Some(MatchKey::Fifo),
        start_ns: p.start_ns,
        end_ns: p.end_ns,
        size: p.size,
        operation: Some(operation),
        partial: p.partial,
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

    /// Client capabilities of a MySQL 8 client: LONG_PASSWORD, FOUND_ROWS, LONG_FLAG,
    /// CONNECT_WITH_DB, LOCAL_FILES, PROTOCOL_41, TRANSACTIONS, SECURE_CONNECTION,
    /// MULTI_STATEMENTS, MULTI_RESULTS, PS_MULTI_RESULTS, PLUGIN_AUTH, CONNECT_ATTRS,
    /// PLUGIN_AUTH_LENENC_CLIENT_DATA, SESSION_TRACK, DEPRECATE_EOF.
    const CLIENT_CAPS: u32 = 0x01bf_a28f;

    fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        v.extend_from_slice(payload);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Protocol-10 greeting as MySQL 8.0 / MariaDB send it.
    fn greeting(version: &str, caps: u32) -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(version.as_bytes());
        p.push(0);
        p.extend_from_slice(&[0x0d, 0, 0, 0]); // connection id
        p.extend_from_slice(b"\x1a\x2b\x3c\x4d\x5e\x6f\x70\x01"); // auth data part 1
        p.push(0); // filler
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(0xff); // utf8mb4_0900_ai_ci
        p.extend_from_slice(&[0x02, 0x00]); // SERVER_STATUS_AUTOCOMMIT
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21); // auth data length
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"\x11\x22\x33\x44\x55\x66\x77\x08\x09\x0a\x0b\x0c\x00");
        p.extend_from_slice(b"caching_sha2_password\0");
        pkt(0, &p)
    }

    /// HandshakeResponse41 with lenenc auth data, a database and connection attributes.
    fn handshake_response(caps: u32, user: &str, db: &str) -> Vec<u8> {
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 1]); // max packet 16 MiB
        p.push(0xff);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(32);
        p.extend_from_slice(&[0xa5; 32]);
        p.extend_from_slice(db.as_bytes());
        p.push(0);
        p.extend_from_slice(b"caching_sha2_password\0");
        p.extend_from_slice(b"\x0a\x04_pid\x041234");
        pkt(1, &p)
    }

    fn lenenc_str(s: &str) -> Vec<u8> {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// Column definition (Protocol::ColumnDefinition41) of a BIGINT column.
    fn coldef(name: &str) -> Vec<u8> {
        let mut p = Vec::new();
        for s in ["def", "shop", "t", "t", name, name] {
            p.extend(lenenc_str(s));
        }
        p.extend_from_slice(&[0x0c, 0x3f, 0x00, 0x14, 0, 0, 0, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00]);
        p
    }

    const OK: &[u8] = &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    const OK_FE: &[u8] = &[0xfe, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    const EOF: &[u8] = &[0xfe, 0x00, 0x00, 0x02, 0x00];

    fn err(code: u16, state: &str, msg: &str) -> Vec<u8> {
        cat(&[&[0xff], &code.to_le_bytes(), b"#", state.as_bytes(), msg.as_bytes()])
    }

    fn query(sql: &str) -> Vec<u8> {
        pkt(0, &cat(&[&[COM_QUERY], sql.as_bytes()]))
    }

    fn run(turns: &[(Side, Vec<u8>)], split: Split) -> Vec<Message> {
        testkit::run(MysqlParser::new, turns, split)
    }

    fn run_all(turns: &[(Side, Vec<u8>)]) -> Vec<Message> {
        testkit::run_all(MysqlParser::new, turns)
    }

    fn mysql8_session() -> Vec<(Side, Vec<u8>)> {
        let execute =
            [&[COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0x08, 0x00][..], &42u64.to_le_bytes()].concat();
        vec![
            (RESP, greeting("8.0.36", 0xdfff_ffff)),
            (REQ, handshake_response(CLIENT_CAPS, "app", "shop")),
            // caching_sha2_password fast auth success, then OK.
            (RESP, cat(&[&pkt(2, &[0x01, 0x03]), &pkt(3, OK)])),
            (REQ, query("SELECT 1")),
            (RESP, cat(&[&pkt(1, &[1]), &pkt(2, &coldef("1")), &pkt(3, b"\x011"), &pkt(4, OK_FE)])),
            (REQ, query("select * from x.y")),
            (RESP, pkt(1, &err(1146, "42S02", "Table 'x.y' doesn't exist"))),
            (REQ, query("INSERT INTO t VALUES (1),(2),(3)")),
            (RESP, pkt(1, &[0x00, 0x03, 0x05, 0x02, 0x00, 0x00, 0x00])),
            (REQ, pkt(0, b"\x16SELECT name FROM users WHERE id = ?")),
            (
                RESP,
                cat(&[
                    &pkt(1, &[0x00, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]),
                    &pkt(2, &coldef("?")),
                    &pkt(3, &coldef("name")),
                ]),
            ),
            (REQ, pkt(0, &execute)),
            (RESP, cat(&[&pkt(1, &[1]), &pkt(2, &coldef("name")), &pkt(3, b"\x00\x00\x03bob"), &pkt(4, OK_FE)])),
            (REQ, pkt(0, &[COM_STMT_CLOSE, 1, 0, 0, 0])),
            (REQ, pkt(0, &[COM_PING])),
            (RESP, pkt(1, OK)),
            (REQ, pkt(0, b"\x02other")),
            (RESP, pkt(1, OK)),
            (REQ, pkt(0, &[COM_QUIT])),
        ]
    }

    #[test]
    fn mysql8_session_with_deprecate_eof() {
        let out = run_all(&mysql8_session());
        let got: Vec<String> = out.iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> CONNECT shop - - [db.user=app]",
                "< - - OK - []",
                "> SELECT SELECT 1 - - []",
                "< - - OK - [db.rows=1]",
                "> SELECT select * from x.y - - []",
                "< - - ERR 1146 (42S02): Table 'x.y' doesn't exist []",
                "> INSERT INSERT INTO t VALUES (1),(2),(3) - - []",
                "< - - OK - [db.rows_affected=3]",
                "> PREPARE SELECT name FROM users WHERE id = ? - - []",
                "< - - OK - [db.statement_id=1]",
                "> EXECUTE SELECT name FROM users WHERE id = ? - - [db.statement_id=1]",
                "< - - OK - [db.rows=1]",
                "> PING - - - []",
                "< - - OK - [db.rows_affected=0]",
                "> INIT_DB other - - []",
                "< - - OK - [db.rows_affected=0]",
            ]
        );
        // Sizes, keys and times.
        assert!(out.iter().all(|m| m.key == Some(MatchKey::Fifo)));
        assert_eq!(out[1].size, 6 + 11);
        assert_eq!((out[1].start_ns, out[1].end_ns), (2, 2));
        assert_eq!(out[2].size, 13);
        assert_eq!(out[3].size as usize, 5 + 4 + coldef("1").len() + 6 + 11);
        assert_eq!((out[4].start_ns, out[5].start_ns), (5, 6));
    }

    #[test]
    fn auth_switch_and_access_denied() {
        let mut switch = vec![0xfe];
        switch.extend_from_slice(b"mysql_native_password\0");
        switch.extend_from_slice(&[0x3a; 20]);
        switch.push(0);
        let turns = vec![
            (RESP, greeting("8.0.36", 0xdfff_ffff)),
            (REQ, handshake_response(CLIENT_CAPS, "app", "shop")),
            (RESP, pkt(2, &switch)),
            (REQ, pkt(3, &[0x5c; 20])),
            (RESP, pkt(4, &err(1045, "28000", "Access denied for user 'app'@'10.0.0.1' (using password: YES)"))),
        ];
        let out = run_all(&turns);
        let got: Vec<String> = out.iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> CONNECT shop - - [db.user=app]",
                "< - - ERR 1045 (28000): Access denied for user 'app'@'10.0.0.1' (using password: YES) []"
            ]
        );
        assert_eq!((out[1].start_ns, out[1].end_ns), (2, 4));
    }

    /// MariaDB without CLIENT_DEPRECATE_EOF: EOF packets, multi-results, prepare definitions
    /// with EOFs, ERR inside a result set, LOCAL INFILE, cursors, statistics.
    #[test]
    fn mariadb_session_with_eof_packets() {
        let caps = 0x00ff_f7ff & !CLIENT_DEPRECATE_EOF;
        let client = CLIENT_CAPS & !CLIENT_DEPRECATE_EOF;
        let more = [0xfe, 0x00, 0x00, 0x0a, 0x00];
        let cursor = [0xfe, 0x00, 0x00, 0x42, 0x00];
        let last = [0xfe, 0x00, 0x00, 0x82, 0x00];
        let turns = vec![
            (RESP, greeting("5.5.5-10.6.12-MariaDB", caps)),
            (REQ, handshake_response(client, "app", "")),
            (RESP, pkt(2, OK)),
            (REQ, query("SELECT id, name FROM t")),
            (
                RESP,
                cat(&[
                    &pkt(1, &[2]),
                    &pkt(2, &coldef("id")),
                    &pkt(3, &coldef("name")),
                    &pkt(4, EOF),
                    &pkt(5, b"\x011\x03ann"),
                    &pkt(6, b"\x012\x03bob"),
                    &pkt(7, EOF),
                ]),
            ),
            (REQ, query("CALL p()")),
            (
                RESP,
                cat(&[
                    &pkt(1, &[1]),
                    &pkt(2, &coldef("a")),
                    &pkt(3, EOF),
                    &pkt(4, b"\x017"),
                    &pkt(5, &more),
                    &pkt(6, OK),
                ]),
            ),
            (REQ, pkt(0, b"\x16SELECT a, b FROM t WHERE c = ?")),
            (
                RESP,
                cat(&[
                    &pkt(1, &[0x00, 7, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0]),
                    &pkt(2, &coldef("?")),
                    &pkt(3, EOF),
                    &pkt(4, &coldef("a")),
                    &pkt(5, &coldef("b")),
                    &pkt(6, EOF),
                ]),
            ),
            (REQ, query("SELECT SLEEP(10)")),
            (
                RESP,
                cat(&[
                    &pkt(1, &[1]),
                    &pkt(2, &coldef("s")),
                    &pkt(3, EOF),
                    &pkt(4, &err(1317, "70100", "Query execution was interrupted")),
                ]),
            ),
            (REQ, query("LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t")),
            (RESP, pkt(1, b"\xfb/tmp/x")),
            (REQ, cat(&[&pkt(2, b"1\n2\n"), &pkt(3, b"")])),
            (RESP, pkt(4, &[0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00])),
            (REQ, pkt(0, &[COM_STMT_EXECUTE, 7, 0, 0, 0, 0x01, 1, 0, 0, 0, 0, 1, 0x03, 0x00, 5, 0, 0, 0])),
            (RESP, cat(&[&pkt(1, &[1]), &pkt(2, &coldef("a")), &pkt(3, &cursor)])),
            (REQ, pkt(0, &[COM_STMT_FETCH, 7, 0, 0, 0, 2, 0, 0, 0])),
            (RESP, cat(&[&pkt(1, b"\x00\x00\x01\x00\x00\x00"), &pkt(2, b"\x00\x00\x02\x00\x00\x00"), &pkt(3, &last)])),
            (REQ, pkt(0, &[COM_STATISTICS])),
            (RESP, pkt(1, b"Uptime: 100  Threads: 1  Questions: 9")),
        ];
        let got: Vec<String> = run_all(&turns).iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> CONNECT - - - [db.user=app]",
                "< - - OK - []",
                "> SELECT SELECT id, name FROM t - - []",
                "< - - OK - [db.rows=2]",
                "> CALL CALL p() - - []",
                "< - - OK - [db.rows=1 db.rows_affected=0]",
                "> PREPARE SELECT a, b FROM t WHERE c = ? - - []",
                "< - - OK - [db.statement_id=7]",
                "> SELECT SELECT SLEEP(10) - - []",
                "< - - ERR 1317 (70100): Query execution was interrupted [db.rows=0]",
                "> LOAD LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t - - []",
                "< - - OK - [db.rows_affected=2]",
                "> EXECUTE SELECT a, b FROM t WHERE c = ? - - [db.statement_id=7]",
                "< - - OK - [db.rows=0]",
                "> STMT_FETCH SELECT a, b FROM t WHERE c = ? - - [db.statement_id=7]",
                "< - - OK - [db.rows=2]",
                "> STATISTICS - - - []",
                "< - - OK - []",
            ]
        );
    }

    #[test]
    fn ssl_request_stops_parsing() {
        let mut ssl = CLIENT_CAPS | CLIENT_SSL;
        ssl &= !CLIENT_CONNECT_WITH_DB;
        let mut payload = ssl.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 1, 0xff]);
        payload.extend_from_slice(&[0; 23]);
        let turns = vec![
            (RESP, greeting("8.0.36", 0xdfff_ffff)),
            (REQ, pkt(1, &payload)),
            (REQ, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
            (RESP, b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03".to_vec()),
            (REQ, query("SELECT 1")),
        ];
        assert!(run_all(&turns).is_empty());
    }

    #[test]
    fn compression_stops_after_authentication() {
        let turns = vec![
            (RESP, greeting("8.0.36", 0xdfff_ffff)),
            (REQ, handshake_response(CLIENT_CAPS | CLIENT_COMPRESS, "app", "shop")),
            (RESP, pkt(2, OK)),
            (REQ, b"\x0d\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x03SELECT 1".to_vec()),
        ];
        assert_eq!(run_all(&turns).len(), 2);
    }

    #[test]
    fn mid_stream_start_adapts_to_deprecate_eof() {
        let turns = vec![
            // The tail of a response to a command sent before capture: skipped.
            (RESP, cat(&[&pkt(5, b"\x011"), &pkt(6, OK_FE)])),
            (REQ, query("SELECT a FROM t")),
            // The server has DEPRECATE_EOF on: no EOF after the column definitions.
            (RESP, cat(&[&pkt(1, &[1]), &pkt(2, &coldef("a")), &pkt(3, b"\x011"), &pkt(4, b"\x012"), &pkt(5, OK_FE)])),
            // MySQL 8 query attributes: no parameters, one parameter set.
            (REQ, pkt(0, b"\x03\x00\x01UPDATE t SET a = 1")),
            (RESP, pkt(1, &[0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00])),
            (REQ, pkt(0, &[COM_STMT_EXECUTE, 9, 0, 0, 0, 0, 1, 0, 0, 0])),
            (RESP, pkt(1, OK)),
        ];
        let got: Vec<String> = run_all(&turns).iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> SELECT SELECT a FROM t - - []",
                "< - - OK - [db.rows=2]",
                "> UPDATE UPDATE t SET a = 1 - - []",
                "< - - OK - [db.rows_affected=1]",
                "> EXECUTE - - - [db.statement_id=9]",
                "< - - OK - [db.rows_affected=0]",
            ]
        );
    }

    #[test]
    fn mid_stream_prepare_guess_corrected_by_sequence_ids() {
        // Joined mid-stream, EOFs assumed; the server sends none: the next response's first
        // packet (seq 1) ends the prepare response early (partial) and starts the next.
        let turns = vec![
            (REQ, pkt(0, b"\x16SELECT ?")),
            (
                RESP,
                cat(&[&pkt(1, &[0x00, 3, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]), &pkt(2, &coldef("?")), &pkt(3, &coldef("?"))]),
            ),
            (REQ, pkt(0, &[COM_PING])),
            (RESP, pkt(1, OK)),
        ];
        let got: Vec<String> = run_all(&turns).iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> PREPARE SELECT ? - - []",
                "> PING - - - []",
                "< - - OK - [db.statement_id=3] partial",
                "< - - OK - [db.rows_affected=0]",
            ]
        );
    }

    #[test]
    fn continued_payload_is_joined_and_statement_cut() {
        let total = CONTINUED + 10;
        let mut payload = vec![COM_QUERY];
        payload.extend_from_slice(b"SELECT '");
        payload.resize(total - 1, b'a');
        payload.push(b'\'');
        let mut wire = vec![0xff, 0xff, 0xff, 0];
        wire.extend_from_slice(&payload[..CONTINUED]);
        wire.extend_from_slice(&[10, 0, 0, 1]);
        wire.extend_from_slice(&payload[CONTINUED..]);
        let turns = vec![(REQ, wire), (RESP, pkt(2, OK))];
        for split in [Split::Whole, Split::Random(7)] {
            let out = run(&turns, split);
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].operation.as_deref(), Some("SELECT"));
            assert_eq!(out[0].target.as_ref().map(String::len), Some(sql::MAX_STATEMENT));
            assert_eq!(out[0].size as usize, 8 + total);
            assert_eq!(out[1].status.as_deref(), Some("OK"));
        }
    }

    #[test]
    fn gap_in_response_reports_partial_and_resumes() {
        let mut p = MysqlParser::new();
        let mut out = Vec::new();
        let head = cat(&[&pkt(1, &[1]), &pkt(2, &coldef("a")), &pkt(3, b"\x011"), &pkt(4, b"\x012")]);
        p.feed(REQ, &query("SELECT a FROM t"), 1, false, &mut out).unwrap();
        p.feed(RESP, &head[..head.len() - 2], 2, false, &mut out).unwrap();
        // Lost bytes, then the rest of the rows: nothing waits for them.
        p.feed(RESP, &cat(&[&pkt(9, b"\x019"), &pkt(10, EOF)]), 3, true, &mut out).unwrap();
        p.feed(REQ, &pkt(0, &[COM_PING]), 4, false, &mut out).unwrap();
        p.feed(RESP, &pkt(1, OK), 5, false, &mut out).unwrap();
        let got: Vec<String> = out.iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> SELECT SELECT a FROM t - - []",
                "< - - - - [db.rows=1] partial",
                "> PING - - - []",
                "< - - OK - [db.rows_affected=0]"
            ]
        );
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn uncaptured_row_bytes_are_counted_and_keep_the_stream_in_step() {
        let mut p = MysqlParser::new();
        let mut out = Vec::new();
        p.feed(REQ, &query("SELECT big FROM t"), 1, false, &mut out).unwrap();
        let mut row = vec![0xfc, 0x10, 0x27]; // lenenc length 10000
        row.resize(3 + 10_000, b'x');
        let first = cat(&[&pkt(1, &[1]), &pkt(2, &coldef("big")), &pkt(3, &row)]);
        // The capture kept the first 4 KiB of the write; the rest of the row went by uncaptured.
        p.feed(RESP, &first[..4096], 2, false, &mut out).unwrap();
        let rest = (first.len() - 4096) as u64;
        // More than the packet holds cannot be placed.
        assert!(!p.skip(RESP, rest + 1, 3, &mut out));
        assert!(p.skip(RESP, rest, 3, &mut out));
        let end = pkt(4, OK_FE);
        p.feed(RESP, &end, 4, false, &mut out).unwrap();
        p.feed(REQ, &pkt(0, &[COM_PING]), 5, false, &mut out).unwrap();
        p.feed(RESP, &pkt(1, OK), 6, false, &mut out).unwrap();
        let got: Vec<String> = out.iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> SELECT SELECT big FROM t - - []",
                "< - - OK - [db.rows=1]",
                "> PING - - - []",
                "< - - OK - [db.rows_affected=0]"
            ]
        );
        assert_eq!((out[1].size, out[1].end_ns, out[1].partial), ((first.len() + end.len()) as u64, 4, false));
        // In a packet header, or in the part of a payload that is kept, uncaptured bytes cannot be
        // placed.
        assert!(!p.skip(RESP, 10, 7, &mut out));
        p.feed(RESP, &pkt(1, &[0; 100])[..50], 8, false, &mut out).unwrap();
        assert!(!p.skip(RESP, 10, 9, &mut out));

        // A statement longer than what is kept of it: the uncaptured rest ends it at its time.
        let mut p = MysqlParser::new();
        out.clear();
        let long = query(&format!("SELECT '{}'", "y".repeat(REQUEST_CAP)));
        p.feed(REQ, &long[..4 + REQUEST_CAP], 1, false, &mut out).unwrap();
        assert!(p.skip(REQ, (long.len() - 4 - REQUEST_CAP) as u64, 2, &mut out));
        p.feed(REQ, &pkt(0, &[COM_PING]), 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].operation.as_deref(), out[0].size, out[0].end_ns), (Some("SELECT"), long.len() as u64, 2));
        assert_eq!(out[1].operation.as_deref(), Some("PING"));
    }

    #[test]
    fn gap_in_request_reports_partial_command() {
        let mut p = MysqlParser::new();
        let mut out = Vec::new();
        let q = query("SELECT a, b, c FROM some_table WHERE x = 1");
        p.feed(REQ, &q[..20], 1, false, &mut out).unwrap();
        assert_eq!(p.buffered(), 16); // the header is parsed, the payload held
                                      // A chunk that is not at a packet boundary is skipped; the next command is read.
        p.feed(REQ, b"ERE x = 1", 2, true, &mut out).unwrap();
        p.feed(RESP, &pkt(1, &err(1064, "42000", "You have an error in your SQL syntax")), 3, false, &mut out).unwrap();
        p.feed(REQ, &query("COMMIT"), 4, false, &mut out).unwrap();
        p.feed(RESP, &pkt(1, OK), 5, false, &mut out).unwrap();
        let got: Vec<String> = out.iter().map(brief).collect();
        assert_eq!(
            got,
            [
                "> SELECT SELECT a, b, c  - - [] partial",
                "< - - ERR 1064 (42000): You have an error in your SQL syntax []",
                "> COMMIT COMMIT - - []",
                "< - - OK - [db.rows_affected=0]",
            ]
        );
        assert_eq!(out[0].size, 20);
    }

    #[test]
    fn unknown_command_is_an_error_then_resyncs() {
        let mut p = MysqlParser::new();
        let mut out = Vec::new();
        assert!(p.feed(REQ, &pkt(0, b"\x77junk"), 1, false, &mut out).is_err());
        p.feed(REQ, &query("BEGIN"), 2, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].operation.as_deref(), Some("BEGIN"));
    }

    #[test]
    fn detects_greeting_and_commands() {
        assert!(detect(RESP, &greeting("8.0.36", 0xdfff_ffff)));
        assert!(detect(RESP, &greeting("5.5.5-10.6.12-MariaDB", 0xf7fe)));
        assert!(detect(RESP, &greeting("8.0.36", 0xdfff_ffff)[..12]));
        assert!(detect(REQ, &query("SELECT 1")));
        assert!(detect(REQ, &query("  select 1")[..7]));
        assert!(detect(REQ, &pkt(0, b"\x03\x00\x01SELECT 1")));
        assert!(detect(REQ, &pkt(0, b"\x16INSERT INTO t VALUES (?)")));
        assert!(detect(REQ, &pkt(0, &[COM_PING])));
        assert!(detect(REQ, &pkt(0, b"\x02shop")));
        assert!(detect(REQ, &pkt(0, &[COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0])));
        for other in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"*1\r\n$4\r\nPING\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
            b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00app\x00",
            b"Q\x00\x00\x00\x0dSELECT 1\x00",
            b"\x00\x00\x00\x1d\x00\x03\x00\x00\x00\x00\x00\x01\x00\x07client1",
            b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
            b"\x01\x00\x00\x00",
            &pkt(0, b"\x03\x01\x02\x03"),
            &pkt(1, &[COM_PING]),
            &pkt(0, &[COM_PING, 0]),
        ] {
            assert!(!detect(REQ, other), "{other:?}");
            assert!(!detect(RESP, other), "{other:?}");
        }
        assert!(!detect(RESP, &pkt(0, b"\x0afoo\x00")));
        assert!(!detect(RESP, b"HTTP/1.1 200 OK\r\n"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(feeds in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), any::<bool>()), 0..40)) {
            let mut p = MysqlParser::new();
            let mut out = Vec::new();
            let mut total = 0;
            for (req, bytes, gap) in &feeds {
                let side = if *req { REQ } else { RESP };
                let _ = p.feed(side, bytes, 0, *gap, &mut out);
                total += bytes.len();
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
            prop_assert!(out.len() <= total / 2 + feeds.len());
        }

        #[test]
        fn arbitrary_splits_of_a_session(cuts in prop::collection::vec(1usize..64, 1..200), gaps in prop::collection::vec(any::<bool>(), 200)) {
            let turns = mysql8_session();
            let whole = run(&turns, Split::Whole);
            // Without gaps: identical messages.
            prop_assert_eq!(&feed_cuts(MysqlParser::new(), &turns, &cuts, None), &whole);
            // With gaps (chunks lost): no panic, bounded.
            let out = feed_cuts(MysqlParser::new(), &turns, &cuts, Some(&gaps));
            prop_assert!(out.len() <= 2 * whole.len());
        }
    }
}
