//! HTTP/1.0 and HTTP/1.1 (RFC 9112): request and response heads, bodies skipped by count.
//!
//! Each side is a small state machine: resynchronizing, reading a head (start line and header
//! fields, the only thing ever buffered), skipping a body (by `Content-Length`, by chunked
//! framing, or to the connection's close). Requests and responses pair in order
//! ([`MatchKey::Fifo`]); the parser keeps the FIFO of request methods it has seen because a
//! response to `HEAD` has no body whatever its headers say, and a 2xx to `CONNECT` turns the
//! connection into a tunnel.
//!
//! Choices worth knowing:
//! - A response with neither `Content-Length` nor chunked framing runs to the connection's
//!   close. It is emitted at once, `partial = true`, its size being the head plus the rest of the
//!   chunk that carried the head's end; later bytes of that side are counted nowhere.
//! - `100 Continue` and the other interim 1xx responses (except 101) are not emitted and do not
//!   consume a request. `101 Switching Protocols`, and a 2xx answering `CONNECT`, are emitted and
//!   end parsing of the whole connection: later bytes of both sides are ignored.
//! - A side that starts mid-stream, or follows a gap, is resynchronized: bytes are skipped until a
//!   line (or chunk) that starts like a start line (`HTTP/1.` or a known method and a space);
//!   skipped bytes yield nothing.
//! - A gap inside a `Content-Length` body emits the message as partial; if the chunk after the
//!   gap does not itself begin with a start line, the rest of the body is skipped by count (the
//!   lost bytes are assumed to be the message's own) before resynchronizing. A gap inside a
//!   chunked body emits the partial message and resynchronizes; a gap inside a head drops it.
//! - One side holds at most `MAX_BUFFERED / 2` bytes of head, so that [`Parser::buffered`] (both
//!   sides) never exceeds `MAX_BUFFERED`. A longer head is given up on: emitted partial when its
//!   start line was valid.

use crate::message::*;
use std::collections::VecDeque;

/// Request methods recognised by [`detect`] and when resynchronizing (each followed by a space).
const METHODS: [&[u8]; 9] =
    [b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];

/// Head bytes one side may hold: half the budget, so both sides together stay within it.
const HEAD_LIMIT: usize = MAX_BUFFERED / 2;
/// Longest chunk-size or trailer line accepted (sizes with extensions are short).
const LINE_LIMIT: usize = 4096;
/// Requests remembered while their responses are outstanding (deep pipelines are rare).
const MAX_PENDING: usize = 1024;
/// Longest method token accepted in a request line.
const MAX_METHOD: usize = 32;

/// True when `first`, the first bytes one side of a connection sent, is HTTP/1.x from that side.
///
/// Requests must begin with one of the common methods and a space (so at least that many bytes
/// are needed); when more is there, the target must look like one (`/`, `*`, an absolute URI, or
/// anything after `CONNECT`) and a complete first line must end in `HTTP/1.x`, which keeps Redis
/// inline commands such as `GET key` out. Responses must begin with `HTTP/1.`.
pub fn detect(side: Side, first: &[u8]) -> bool {
    match side {
        Side::Response => first.starts_with(b"HTTP/1.") && first.get(7).is_none_or(u8::is_ascii_digit),
        Side::Request => {
            let Some(method) = METHODS.iter().find(|m| first.starts_with(m)) else {
                return false;
            };
            let rest = &first[method.len()..];
            let target_ok = match rest.first() {
                None => true,
                Some(b'/' | b'*') => true,
                Some(_) if *method == b"CONNECT " => true,
                Some(_) => {
                    let n = rest.len().min(4);
                    rest[..n].eq_ignore_ascii_case(&b"http"[..n])
                }
            };
            let line_ok = match find_byte(first, b'\n') {
                Some(i) => is_version(strip_cr(&first[..i]).rsplit(|&b| b == b' ').next().unwrap_or(b"")),
                None => true,
            };
            target_ok && line_ok
        }
    }
}

/// What a request asked, remembered until its response arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqKind {
    Head,
    Connect,
    Other,
}

/// Which line of chunked framing is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkLine {
    /// The chunk-size line (hex size, optional extensions).
    Size,
    /// The CRLF that closes chunk data.
    DataEnd,
    /// A trailer line; the empty one ends the message.
    Trailer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for a start line; `at_line_start` when the next byte begins a line.
    Resync {
        at_line_start: bool,
    },
    /// Expecting or accumulating a head.
    Head,
    /// Skipping this many bytes of a `Content-Length` body.
    Body(u64),
    ChunkLine(ChunkLine),
    /// Skipping this many bytes of chunk data.
    ChunkData(u64),
    /// Just after a gap inside a body with this many bytes left.
    GapBody(u64),
    /// Skipping this many bytes of a body already reported, then resynchronizing.
    Skip(u64),
    /// The body runs to the connection's close: nothing more to parse on this side.
    ToClose,
}

/// State shared by both sides.
#[derive(Debug, Default)]
struct Conn {
    /// Methods of requests whose responses have not been seen yet, oldest first.
    pending: VecDeque<ReqKind>,
    /// Set after `101` or a 2xx to `CONNECT`: the connection no longer speaks HTTP.
    tunneled: bool,
}

/// One direction of the connection.
#[derive(Debug)]
struct Half {
    side: Side,
    state: State,
    /// Head bytes (or a short resync probe, or a chunk-size/trailer line).
    buf: Vec<u8>,
    /// Where to resume searching `buf` for the end of the head.
    scanned: usize,
    /// The start line in `buf` was checked and is valid.
    line_ok: bool,
    /// Time of the chunk holding the current message's first byte.
    start_ns: u64,
    /// The message whose body is being skipped.
    msg: Option<Message>,
    /// First error of the current `feed`, returned when it ends.
    err: Option<ParseError>,
}

/// Streaming HTTP/1.x parser of one connection.
#[derive(Debug)]
pub struct Http1Parser {
    req: Half,
    resp: Half,
    conn: Conn,
}

impl Default for Http1Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Http1Parser {
    /// A parser for one connection; it takes no arguments (each side starts by resynchronizing,
    /// so a capture that begins mid-stream is fine).
    pub fn new() -> Self {
        Http1Parser { req: Half::new(Side::Request), resp: Half::new(Side::Response), conn: Conn::default() }
    }
}

impl Parser for Http1Parser {
    fn feed(
        &mut self,
        side: Side,
        chunk: &[u8],
        ts_ns: u64,
        gap: bool,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError> {
        if self.conn.tunneled {
            return Ok(());
        }
        let half = match side {
            Side::Request => &mut self.req,
            Side::Response => &mut self.resp,
        };
        if gap {
            half.on_gap(out);
        }
        if let State::Resync { .. } = half.state {
            // Writes usually start messages, and a body need not end in a newline: when
            // resynchronizing, a chunk's first byte is worth probing as a line start too.
            half.state = State::Resync { at_line_start: true };
        }
        half.run(chunk, ts_ns, &mut self.conn, out);
        match half.err.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn skip(&mut self, side: Side, n: u64, ts_ns: u64, out: &mut Vec<Message>) -> bool {
        if self.conn.tunneled {
            return true;
        }
        let half = match side {
            Side::Request => &mut self.req,
            Side::Response => &mut self.resp,
        };
        half.skip(n, ts_ns, &mut self.conn, out)
    }

    fn buffered(&self) -> usize {
        self.req.buf.len() + self.resp.buf.len()
    }
}

impl Half {
    fn new(side: Side) -> Self {
        Half {
            side,
            state: State::Resync { at_line_start: true },
            buf: Vec::new(),
            scanned: 0,
            line_ok: false,
            start_ns: 0,
            msg: None,
            err: None,
        }
    }

    fn run(&mut self, chunk: &[u8], ts: u64, conn: &mut Conn, out: &mut Vec<Message>) {
        let mut pos = 0;
        // Every arm either consumes bytes or changes state to one that will, so this ends.
        while pos < chunk.len() && !conn.tunneled {
            pos = match self.state {
                State::Resync { at_line_start } => self.resync(chunk, pos, at_line_start, ts),
                State::Head => self.head(chunk, pos, ts, conn, out),
                State::Body(left) => self.body(chunk, pos, left, ts, out),
                State::ChunkLine(line) => self.chunk_line(line, chunk, pos, ts, out),
                State::ChunkData(left) => {
                    let n = left.min((chunk.len() - pos) as u64);
                    self.count(n as usize, ts);
                    self.state =
                        if n == left { State::ChunkLine(ChunkLine::DataEnd) } else { State::ChunkData(left - n) };
                    pos + n as usize
                }
                State::GapBody(left) => {
                    let after_gap = &chunk[pos..];
                    self.state = match strict_start(self.side, after_gap) {
                        Start::Yes => State::Head,
                        Start::Maybe | Start::No => State::Skip(left),
                    };
                    pos
                }
                State::Skip(left) => {
                    let n = left.min((chunk.len() - pos) as u64);
                    self.state = if n == left { State::Resync { at_line_start: true } } else { State::Skip(left - n) };
                    pos + n as usize
                }
                State::ToClose => chunk.len(),
            };
        }
    }

    /// Uncaptured bytes inside a body of known length are counted as if read; anywhere else
    /// (a head, chunk framing, more than the body holds) they cannot be accounted for. A head the
    /// capture cut short (its size cap is below the head's length) still says what it was: its
    /// start line goes out as a partial message, so the exchange is not reported unanswered.
    fn skip(&mut self, n: u64, ts: u64, conn: &mut Conn, out: &mut Vec<Message>) -> bool {
        match self.state {
            State::Head if !self.buf.is_empty() => {
                // A line cut short would name a wrong path: only a whole one is reported.
                self.start_line_only(self.buf.len() as u64 + n, ts, false, conn, out);
                self.reset_buf();
                self.state = State::Resync { at_line_start: true };
                false
            }
            State::Body(left) if n <= left => {
                self.count(n as usize, ts);
                if n == left {
                    self.finish(out);
                } else {
                    self.state = State::Body(left - n);
                }
                true
            }
            State::ChunkData(left) if n <= left => {
                self.count(n as usize, ts);
                self.state = if n == left { State::ChunkLine(ChunkLine::DataEnd) } else { State::ChunkData(left - n) };
                true
            }
            State::ToClose => true,
            _ => false,
        }
    }

    /// Bytes were lost before the coming chunk: report what was cut, forget half-read heads.
    fn on_gap(&mut self, out: &mut Vec<Message>) {
        self.reset_buf();
        self.state = match self.state {
            State::Body(left) => {
                self.emit_partial(out);
                State::GapBody(left)
            }
            State::ChunkLine(_) | State::ChunkData(_) => {
                self.emit_partial(out);
                State::Resync { at_line_start: true }
            }
            State::ToClose => State::ToClose,
            State::Resync { .. } | State::Head | State::GapBody(_) | State::Skip(_) => {
                State::Resync { at_line_start: true }
            }
        };
    }

    fn reset_buf(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.line_ok = false;
    }

    fn error(&mut self, reason: String) {
        if self.err.is_none() {
            self.err = Some(ParseError(reason));
        }
    }

    /// Gives up on the current message: what is known is emitted partial; then resynchronize.
    fn fail(&mut self, reason: String, out: &mut Vec<Message>) {
        self.emit_partial(out);
        self.reset_buf();
        self.error(reason);
        self.state = State::Resync { at_line_start: false };
    }

    fn emit_partial(&mut self, out: &mut Vec<Message>) {
        if let Some(mut msg) = self.msg.take() {
            msg.partial = true;
            out.push(msg);
        }
    }

    /// The message's last byte came: emit it and expect the next head.
    fn finish(&mut self, out: &mut Vec<Message>) {
        if let Some(msg) = self.msg.take() {
            out.push(msg);
        }
        self.state = State::Head;
    }

    /// Adds `n` body bytes carried by the chunk at `ts` to the current message.
    fn count(&mut self, n: usize, ts: u64) {
        if let Some(msg) = self.msg.as_mut() {
            msg.size += n as u64;
            msg.end_ns = ts;
        }
    }

    fn resync(&mut self, chunk: &[u8], pos: usize, at_line_start: bool, ts: u64) -> usize {
        if at_line_start {
            // A start line may straddle chunks: probe the few held bytes plus the new ones.
            let mut probe = [0u8; 16];
            let held = self.buf.len().min(probe.len());
            let take = (probe.len() - held).min(chunk.len() - pos);
            probe[..held].copy_from_slice(&self.buf[..held]);
            probe[held..held + take].copy_from_slice(&chunk[pos..pos + take]);
            match strict_start(self.side, &probe[..held + take]) {
                Start::Yes => {
                    self.state = State::Head;
                    return pos;
                }
                Start::Maybe => {
                    // Fewer bytes than the longest method: the whole rest fits in the probe.
                    if self.buf.is_empty() {
                        self.start_ns = ts;
                    }
                    self.buf.extend_from_slice(&chunk[pos..]);
                    return chunk.len();
                }
                Start::No => self.reset_buf(),
            }
        }
        match find_byte(&chunk[pos..], b'\n') {
            Some(i) => {
                self.state = State::Resync { at_line_start: true };
                pos + i + 1
            }
            None => {
                self.state = State::Resync { at_line_start: false };
                chunk.len()
            }
        }
    }

    fn head(&mut self, chunk: &[u8], mut pos: usize, ts: u64, conn: &mut Conn, out: &mut Vec<Message>) -> usize {
        if self.buf.is_empty() {
            // Stray CRLFs between messages are allowed (RFC 9112 §2.2).
            while pos < chunk.len() && matches!(chunk[pos], b'\r' | b'\n') {
                pos += 1;
            }
            if pos == chunk.len() {
                return pos;
            }
            self.start_ns = ts;
            // Fast path: the whole head is in this chunk, parse it in place.
            let rest = &chunk[pos..];
            match parse_head(self.side, rest) {
                Ok(Some((parsed, end))) => {
                    return pos + end + self.complete(&parsed, end, rest.len() - end, ts, conn, out)
                }
                Ok(None) => {}
                Err(reason) => return self.bad_head(reason, pos),
            }
        }
        let rest = &chunk[pos..];
        let old = self.buf.len();
        let take = rest.len().min(HEAD_LIMIT.saturating_sub(old));
        self.buf.extend_from_slice(&rest[..take]);
        if !self.line_ok {
            match check_first_line(self.side, &self.buf, old) {
                Line::Bad => {
                    let shown = String::from_utf8_lossy(&self.buf[..self.buf.len().min(32)]).into_owned();
                    self.reset_buf();
                    self.error(format!("http1: expected {:?} start line, got {shown:?}", self.side));
                    // The same bytes are scanned again for a later start line.
                    self.state = State::Resync { at_line_start: false };
                    return pos;
                }
                Line::Valid => self.line_ok = true,
                Line::Pending => {}
            }
        }
        match find_head_end(&self.buf, self.scanned) {
            Ok(end) => {
                let head = std::mem::take(&mut self.buf);
                let used = end - old;
                let next = match parse_head(self.side, &head[..end]) {
                    Ok(Some((parsed, _))) => pos + used + self.complete(&parsed, end, rest.len() - used, ts, conn, out),
                    Ok(None) => self.bad_head("head ended early".into(), pos),
                    Err(reason) => self.bad_head(reason, pos),
                };
                // Keep the allocation for the next head.
                self.buf = head;
                self.reset_buf();
                next
            }
            Err(resume) => {
                self.scanned = resume;
                if self.buf.len() >= HEAD_LIMIT {
                    self.oversize(ts, conn, out);
                }
                pos + take
            }
        }
    }

    /// A head that does not parse: report it, and look for a start line from `pos` on.
    fn bad_head(&mut self, reason: String, pos: usize) -> usize {
        self.reset_buf();
        self.error(format!("http1: {reason}"));
        self.state = State::Resync { at_line_start: false };
        pos
    }

    /// The head outgrew its budget: report its start line, if valid, as a partial message.
    fn oversize(&mut self, ts: u64, conn: &mut Conn, out: &mut Vec<Message>) {
        // A start line longer than the budget is taken as far as it goes.
        self.start_line_only(self.buf.len() as u64, ts, true, conn, out);
        let len = self.buf.len();
        self.reset_buf();
        self.error(format!("http1: head longer than {len} bytes"));
        self.state = State::Resync { at_line_start: false };
    }

    /// Emits the held head's start line, when valid, as a partial message of `size` bytes: the
    /// head itself will not be complete. Without a line end, the whole buffer is the line if
    /// `unended` allows, else nothing is emitted.
    fn start_line_only(&mut self, size: u64, ts: u64, unended: bool, conn: &mut Conn, out: &mut Vec<Message>) {
        let line_end = match find_byte(&self.buf, b'\n') {
            Some(i) => i,
            None if unended => self.buf.len(),
            None => return,
        };
        if let Some(line) = parse_start_line(self.side, strip_cr(&self.buf[..line_end])) {
            let mut msg = self.new_msg(ts, 0);
            msg.size = size;
            msg.partial = true;
            match line {
                StartLine::Request { method, target } => {
                    remember(conn, method);
                    msg.operation = Some(lossy(method));
                    msg.target = Some(lossy(split_query(target).0));
                }
                StartLine::Response { code, .. } => {
                    conn.pending.pop_front();
                    msg.status = Some(code.to_string());
                }
            }
            out.push(msg);
        }
    }

    fn new_msg(&self, ts: u64, size: usize) -> Message {
        Message {
            side: Some(self.side),
            key: Some(MatchKey::Fifo),
            start_ns: self.start_ns,
            end_ns: ts,
            size: size as u64,
            ..Message::default()
        }
    }

    /// A whole head of `len` bytes arrived (`rest` bytes of the chunk follow it). Emits or holds
    /// the message and sets the body state; returns how many of the following bytes it consumed.
    fn complete(
        &mut self,
        parsed: &Head,
        len: usize,
        rest: usize,
        ts: u64,
        conn: &mut Conn,
        out: &mut Vec<Message>,
    ) -> usize {
        let msg = self.new_msg(ts, len);
        match parsed.line {
            StartLine::Request { method, target } => {
                self.request(method, target, parsed, msg, conn, out);
                0
            }
            StartLine::Response { code, reason } => {
                if (100..200).contains(&code) && code != 101 {
                    // Interim: the final response to the same request follows.
                    self.state = State::Head;
                    return 0;
                }
                let mut msg = msg;
                msg.status = Some(code.to_string());
                if (500..600).contains(&code) {
                    msg.error = Some(if reason.is_empty() { code.to_string() } else { lossy(reason) });
                }
                self.response(code, parsed, msg, rest, conn, out)
            }
        }
    }

    fn request(
        &mut self,
        method: &[u8],
        target: &[u8],
        parsed: &Head,
        mut msg: Message,
        conn: &mut Conn,
        out: &mut Vec<Message>,
    ) {
        let kind = remember(conn, method);
        let (path, query) = split_query(target);
        msg.operation = Some(lossy(method));
        msg.target = Some(lossy(path));
        msg.attributes = parsed.request_attributes(query);
        self.msg = Some(msg);
        self.state = self.body_state(parsed, out);
        if kind == ReqKind::Connect && self.state == State::Head {
            // What follows is tunnel data, or a retried CONNECT if the proxy refused.
            self.state = State::Resync { at_line_start: true };
        }
    }

    /// Handles a response head; returns how many of the `rest` bytes after it were consumed.
    fn response(
        &mut self,
        code: u16,
        parsed: &Head,
        mut msg: Message,
        rest: usize,
        conn: &mut Conn,
        out: &mut Vec<Message>,
    ) -> usize {
        let kind = conn.pending.pop_front().unwrap_or(ReqKind::Other);
        if let Some(ct) = parsed.fields[CONTENT_TYPE] {
            msg.attributes.push(("http.content_type", lossy(ct)));
        }
        if code == 101 || (kind == ReqKind::Connect && (200..300).contains(&code)) {
            out.push(msg);
            conn.tunneled = true;
            return 0;
        }
        if kind == ReqKind::Head || code == 204 || code == 304 {
            out.push(msg);
            self.state = State::Head;
            return 0;
        }
        if parsed.chunked || parsed.content_length.is_some() {
            self.msg = Some(msg);
            self.state = self.body_state(parsed, out);
            return 0;
        }
        // Delimited by the connection's close: report now with what this chunk holds.
        msg.size += rest as u64;
        msg.partial = true;
        out.push(msg);
        self.state = State::ToClose;
        rest
    }

    /// The state after a head whose body is framed by `parsed` (no body when unframed).
    fn body_state(&mut self, parsed: &Head, out: &mut Vec<Message>) -> State {
        if parsed.chunked {
            return State::ChunkLine(ChunkLine::Size);
        }
        match parsed.content_length {
            Some(n) if n > 0 => State::Body(n),
            _ => {
                self.finish(out);
                State::Head
            }
        }
    }

    fn body(&mut self, chunk: &[u8], pos: usize, left: u64, ts: u64, out: &mut Vec<Message>) -> usize {
        let n = left.min((chunk.len() - pos) as u64);
        self.count(n as usize, ts);
        if n == left {
            self.finish(out);
        } else {
            self.state = State::Body(left - n);
        }
        pos + n as usize
    }

    /// Reads one line of chunked framing (buffered: they are short) and acts on it when whole.
    fn chunk_line(&mut self, kind: ChunkLine, chunk: &[u8], pos: usize, ts: u64, out: &mut Vec<Message>) -> usize {
        let rest = &chunk[pos..];
        let (used, whole) = match find_byte(rest, b'\n') {
            Some(i) => (i + 1, true),
            None => (rest.len(), false),
        };
        self.count(used, ts);
        if self.buf.len() + used > LINE_LIMIT {
            self.fail(format!("http1: chunked framing line longer than {LINE_LIMIT} bytes"), out);
            return pos + used;
        }
        self.buf.extend_from_slice(&rest[..used]);
        if !whole {
            return pos + used;
        }
        let line = strip_cr(&self.buf[..self.buf.len() - 1]);
        let next = match kind {
            ChunkLine::Size => match parse_chunk_size(line) {
                Some(0) => Ok(State::ChunkLine(ChunkLine::Trailer)),
                Some(n) => Ok(State::ChunkData(n)),
                None => Err("bad chunk size line"),
            },
            ChunkLine::DataEnd if line.is_empty() => Ok(State::ChunkLine(ChunkLine::Size)),
            ChunkLine::DataEnd => Err("chunk data longer than its size"),
            ChunkLine::Trailer if line.is_empty() => Ok(State::Head),
            ChunkLine::Trailer => Ok(State::ChunkLine(ChunkLine::Trailer)),
        };
        self.reset_buf();
        match next {
            Ok(State::Head) => self.finish(out),
            Ok(next) => self.state = next,
            Err(reason) => self.fail(format!("http1: {reason}"), out),
        }
        pos + used
    }
}

/// Remembers a request's method for its response; an overlong pipeline stops being tracked.
fn remember(conn: &mut Conn, method: &[u8]) -> ReqKind {
    let kind = match method {
        b"HEAD" => ReqKind::Head,
        b"CONNECT" => ReqKind::Connect,
        _ => ReqKind::Other,
    };
    if conn.pending.len() < MAX_PENDING {
        conn.pending.push_back(kind);
    }
    kind
}

/// How a byte string compares to a start line.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    Yes,
    /// Too short to say, but could become one.
    Maybe,
    No,
}

/// Resynchronization test: `HTTP/1.` for responses, a known method and a space for requests.
fn strict_start(side: Side, b: &[u8]) -> Start {
    let candidates: &[&[u8]] = match side {
        Side::Response => &[b"HTTP/1."],
        Side::Request => &METHODS,
    };
    let mut maybe = false;
    for c in candidates {
        if b.len() >= c.len() {
            if b.starts_with(c) {
                return Start::Yes;
            }
        } else if c.starts_with(b) {
            maybe = true;
        }
    }
    if maybe {
        Start::Maybe
    } else {
        Start::No
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Line {
    Valid,
    Pending,
    Bad,
}

/// Checks the start line held in `b` as early as possible, so garbage is not buffered; `from`
/// is where new bytes begin (no line ended before it).
fn check_first_line(side: Side, b: &[u8], from: usize) -> Line {
    if let Some(i) = find_byte(&b[from..], b'\n') {
        return match parse_start_line(side, strip_cr(&b[..from + i])) {
            Some(_) => Line::Valid,
            None => Line::Bad,
        };
    }
    let plausible = match side {
        Side::Response => {
            let n = b.len().min(7);
            b[..n] == b"HTTP/1."[..n]
        }
        Side::Request => {
            // Only the method matters here; looking no further keeps byte-by-byte feeding linear.
            let method = &b[..b.len().min(MAX_METHOD + 1)];
            match method.iter().position(|&c| c == b' ') {
                Some(sp) => sp > 0 && method[..sp].iter().all(|&c| is_tchar(c)),
                None => method.len() <= MAX_METHOD && method.iter().all(|&c| is_tchar(c)),
            }
        }
    };
    if plausible {
        Line::Pending
    } else {
        Line::Bad
    }
}

enum StartLine<'a> {
    Request { method: &'a [u8], target: &'a [u8] },
    Response { code: u16, reason: &'a [u8] },
}

/// Parses `method SP target SP HTTP/1.x` or `HTTP/1.x SP 3DIGIT [SP reason]` (no line end).
fn parse_start_line(side: Side, line: &[u8]) -> Option<StartLine<'_>> {
    match side {
        Side::Request => {
            let sp1 = line.iter().position(|&c| c == b' ')?;
            let sp2 = line.iter().rposition(|&c| c == b' ')?;
            let (method, target, version) = (&line[..sp1], &line[sp1 + 1..sp2.max(sp1 + 1)], &line[sp2 + 1..]);
            let method_ok = (1..=MAX_METHOD).contains(&method.len()) && method.iter().all(|&c| is_tchar(c));
            let target_ok = !target.is_empty() && !target.contains(&b' ');
            (method_ok && target_ok && sp2 > sp1 && is_version(version))
                .then_some(StartLine::Request { method, target })
        }
        Side::Response => {
            if line.len() < 12 || !is_version(&line[..8]) || line[8] != b' ' {
                return None;
            }
            let digits = &line[9..12];
            if !digits.iter().all(u8::is_ascii_digit) || line.get(12).is_some_and(|&c| c != b' ') {
                return None;
            }
            let code = digits.iter().fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
            let reason = line.get(13..).unwrap_or(b"");
            Some(StartLine::Response { code, reason })
        }
    }
}

fn is_version(v: &[u8]) -> bool {
    v.len() == 8 && v.starts_with(b"HTTP/1.") && v[7].is_ascii_digit()
}

/// Token characters of RFC 9110 §5.6.2 (method names).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Header fields reported as attributes, by slot: (lower-case name, attribute name).
const FIELDS: [(&[u8], &str); 9] = [
    (b"host", "http.host"),
    (b"user-agent", "http.user_agent"),
    (b"traceparent", "traceparent"),
    (b"tracestate", "tracestate"),
    (b"b3", "b3"),
    (b"x-b3-traceid", "x-b3-traceid"),
    (b"x-b3-spanid", "x-b3-spanid"),
    (b"x-b3-sampled", "x-b3-sampled"),
    (b"content-type", "http.content_type"),
];
const HOST: usize = 0;
const CONTENT_TYPE: usize = 8;

/// A parsed head; slices borrow the head bytes.
struct Head<'a> {
    line: StartLine<'a>,
    content_length: Option<u64>,
    /// `Transfer-Encoding` ends in `chunked`.
    chunked: bool,
    /// Values of [`FIELDS`], first occurrence of each.
    fields: [Option<&'a [u8]>; FIELDS.len()],
}

impl Head<'_> {
    /// Request attributes in a fixed order: host, query, user agent, trace context.
    fn request_attributes(&self, query: Option<&[u8]>) -> Vec<(&'static str, String)> {
        let mut attrs = Vec::new();
        if let Some(host) = self.fields[HOST] {
            attrs.push((FIELDS[HOST].1, lossy(host)));
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            attrs.push(("http.query", lossy(q)));
        }
        for (slot, &(_, name)) in FIELDS.iter().enumerate().take(CONTENT_TYPE).skip(HOST + 1) {
            if let Some(v) = self.fields[slot] {
                attrs.push((name, lossy(v)));
            }
        }
        attrs
    }
}

/// Parses a head (start line, fields, empty line) at the start of `b`: `Ok(None)` while its end
/// has not arrived, else the head and its length. A bad complete line is an error at once.
fn parse_head(side: Side, b: &[u8]) -> Result<Option<(Head<'_>, usize)>, String> {
    let Some(nl) = find_byte(b, b'\n') else {
        return Ok(None);
    };
    let first = strip_cr(&b[..nl]);
    let line = parse_start_line(side, first)
        .ok_or_else(|| format!("bad {side:?} start line {:?}", String::from_utf8_lossy(first)))?;
    let mut head = Head { line, content_length: None, chunked: false, fields: [None; FIELDS.len()] };
    let mut pos = nl + 1;
    while let Some(i) = find_byte(&b[pos..], b'\n') {
        let line = strip_cr(&b[pos..pos + i]);
        pos += i + 1;
        if line.is_empty() {
            return Ok(Some((head, pos)));
        }
        head.field(line)?;
    }
    Ok(None)
}

impl<'a> Head<'a> {
    /// Takes note of one header field line.
    fn field(&mut self, line: &'a [u8]) -> Result<(), String> {
        if line[0] == b' ' || line[0] == b'\t' {
            // An obsolete folded continuation: nothing we report.
            return Ok(());
        }
        let colon = find_byte(line, b':').ok_or_else(|| "header line without ':'".to_string())?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(value).ok_or_else(|| "bad Content-Length".to_string())?;
            if self.content_length.is_some_and(|old| old != n) {
                return Err("conflicting Content-Length".into());
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&c| c == b',').next().map(trim).unwrap_or(b"");
            self.chunked = last.eq_ignore_ascii_case(b"chunked");
        } else if let Some(slot) = FIELDS.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)) {
            self.fields[slot].get_or_insert(value);
        }
        Ok(())
    }
}

/// Splits a request target at `?`.
fn split_query(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    match find_byte(target, b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    }
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')))
}

/// Parses a chunk-size line: hex digits, then optional whitespace and `;extensions`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|c| !c.is_ascii_hexdigit()).unwrap_or(line.len());
    let (hex, tail) = line.split_at(end);
    let tail = trim(tail);
    if hex.is_empty() || hex.len() > 15 || !(tail.is_empty() || tail[0] == b';') {
        return None;
    }
    Some(hex.iter().fold(0u64, |acc, &d| acc * 16 + u64::from((d as char).to_digit(16).unwrap_or(0))))
}

/// Finds the end of a head in `b` (just past its empty line), looking at lines from `from`;
/// `Err(resume)` says where to look again once more bytes have arrived.
fn find_head_end(b: &[u8], mut from: usize) -> Result<usize, usize> {
    while let Some(i) = find_byte(&b[from..], b'\n').map(|i| from + i) {
        match (b.get(i + 1), b.get(i + 2)) {
            (Some(b'\n'), _) => return Ok(i + 2),
            (Some(b'\r'), Some(b'\n')) => return Ok(i + 3),
            (None, _) | (Some(b'\r'), None) => return Err(i),
            _ => from = i + 1,
        }
    }
    Err(b.len())
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Field text as a `String`; header values are nearly always ASCII, which `from_utf8` checks fast.
fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Position of the first `needle` in `hay`, eight bytes at a time (head scanning is the hot loop).
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut words = hay.chunks_exact(8);
    for (n, word) in words.by_ref().enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ pattern;
        // A zero byte in x is a match; the lowest flagged byte is always a true one.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(n * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let tail = words.remainder();
    tail.iter().position(|&c| c == needle).map(|i| hay.len() - tail.len() + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REQ: Side = Side::Request;
    const RESP: Side = Side::Response;

    /// One write of a conversation: who sent it and the bytes.
    type Segment = (Side, Vec<u8>);

    /// Feeds each segment (at ts = its index) cut by `cuts(len)` into chunk lengths; returns the
    /// messages and the number of errors.
    fn feed_split(segments: &[Segment], mut cuts: impl FnMut(usize) -> Vec<usize>) -> (Vec<Message>, usize) {
        let mut p = Http1Parser::new();
        let (mut out, mut errors) = (Vec::new(), 0);
        for (i, (side, bytes)) in segments.iter().enumerate() {
            let mut pos = 0;
            for n in cuts(bytes.len()) {
                errors += usize::from(p.feed(*side, &bytes[pos..pos + n], i as u64, false, &mut out).is_err());
                assert!(p.buffered() <= MAX_BUFFERED);
                pos += n;
            }
            assert_eq!(pos, bytes.len());
        }
        (out, errors)
    }

    fn whole(segments: &[Segment]) -> Vec<Message> {
        let (msgs, errors) = feed_split(segments, |n| vec![n]);
        assert_eq!(errors, 0);
        msgs
    }

    fn byte_by_byte(segments: &[Segment]) -> Vec<Message> {
        feed_split(segments, |n| vec![1; n]).0
    }

    /// Deterministic pseudo-random cuts (a small LCG) from `seed`.
    fn random_splits(segments: &[Segment], seed: u64) -> Vec<Message> {
        let mut state = seed;
        feed_split(segments, |mut n| {
            let mut cuts = Vec::new();
            while n > 0 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let c = ((state >> 33) as usize % 23 + 1).min(n);
                cuts.push(c);
                n -= c;
            }
            cuts
        })
        .0
    }

    /// Parses a conversation whole, byte by byte and in random splits; all must agree.
    fn parse(segments: &[Segment]) -> Vec<Message> {
        let msgs = whole(segments);
        assert_eq!(byte_by_byte(segments), msgs, "byte by byte");
        for seed in 0..8 {
            assert_eq!(random_splits(segments, seed), msgs, "random splits, seed {seed}");
        }
        msgs
    }

    fn seg(side: Side, bytes: &[u8]) -> Segment {
        (side, bytes.to_vec())
    }

    fn attr<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
        m.attributes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn sides(msgs: &[Message]) -> Vec<Side> {
        msgs.iter().map(|m| m.side.unwrap()).collect()
    }

    const GET: &[u8] = b"GET /api/users?id=7&sort=asc HTTP/1.1\r\n\
        Host: example.com:8080\r\n\
        User-Agent: curl/8.5.0\r\n\
        Accept: */*\r\n\
        TraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
        tracestate: congo=t61rcWkgMzE\r\n\
        \r\n";
    const OK_JSON: &[u8] = b"HTTP/1.1 200 OK\r\n\
        Content-Type: application/json\r\n\
        Content-Length: 14\r\n\
        \r\n\
        {\"id\":7,\"a\":1}";

    #[test]
    fn detects_requests_and_responses() {
        assert!(detect(REQ, GET));
        assert!(detect(REQ, b"GET "));
        assert!(detect(REQ, b"POST /v1/items HTTP/1.1\r\nHost: x\r\n"));
        assert!(detect(REQ, b"OPTIONS * HTTP/1.1\r\n"));
        assert!(detect(REQ, b"CONNECT example.com:443 HTTP/1.1\r\n"));
        assert!(detect(REQ, b"GET http://example.com/ HTTP/1.1\r\n"));
        assert!(detect(RESP, OK_JSON));
        assert!(detect(RESP, b"HTTP/1.0 404 Not Found\r\n"));
        // HTTP/2 preface, Redis (RESP and inline), PostgreSQL startup, TLS, too short.
        assert!(!detect(REQ, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!detect(REQ, b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"));
        assert!(!detect(REQ, b"GET key\r\n"));
        assert!(!detect(REQ, b"GET ke"));
        assert!(detect(REQ, b"GET ht"));
        assert!(!detect(REQ, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"));
        assert!(!detect(REQ, b"\x16\x03\x01\x02\x00\x01"));
        assert!(!detect(REQ, b"GE"));
        assert!(!detect(REQ, b"get / HTTP/1.1\r\n"));
        assert!(!detect(RESP, b"HTTP/2 200\r\n"));
        assert!(!detect(RESP, b"+OK\r\n"));
        assert!(!detect(RESP, b""));
        assert!(!detect(RESP, GET));
        assert!(!detect(REQ, OK_JSON));
    }

    #[test]
    fn request_fields_and_attributes() {
        let msgs = parse(&[seg(REQ, GET), seg(RESP, OK_JSON)]);
        assert_eq!(msgs.len(), 2);
        let (req, resp) = (&msgs[0], &msgs[1]);
        assert_eq!(req.side, Some(REQ));
        assert_eq!(req.key, Some(MatchKey::Fifo));
        assert_eq!(req.operation.as_deref(), Some("GET"));
        assert_eq!(req.target.as_deref(), Some("/api/users"));
        assert_eq!(req.size, GET.len() as u64);
        assert!(!req.partial);
        assert_eq!(
            req.attributes,
            vec![
                ("http.host", "example.com:8080".to_string()),
                ("http.query", "id=7&sort=asc".to_string()),
                ("http.user_agent", "curl/8.5.0".to_string()),
                ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string()),
                ("tracestate", "congo=t61rcWkgMzE".to_string()),
            ]
        );
        assert_eq!(resp.side, Some(RESP));
        assert_eq!(resp.key, Some(MatchKey::Fifo));
        assert_eq!(resp.status.as_deref(), Some("200"));
        assert_eq!(resp.error, None);
        assert_eq!(resp.size, OK_JSON.len() as u64);
        assert_eq!(attr(resp, "http.content_type"), Some("application/json"));
        assert_eq!((resp.start_ns, resp.end_ns), (1, 1));
    }

    #[test]
    fn b3_headers_case_insensitive_and_no_query() {
        let req = b"POST /orders HTTP/1.1\r\nHOST: shop\r\nX-B3-TraceId: 463ac35c9f6413ad48485a3953bb6124\r\n\
            x-b3-spanid: a2fb4a1d1a96d312\r\nX-B3-Sampled: 1\r\nB3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n\
            Content-Length: 2\r\n\r\n{}";
        let msgs = parse(&[seg(REQ, req)]);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].target.as_deref(), Some("/orders"));
        assert_eq!(attr(&msgs[0], "http.query"), None);
        assert_eq!(attr(&msgs[0], "http.host"), Some("shop"));
        assert_eq!(attr(&msgs[0], "x-b3-traceid"), Some("463ac35c9f6413ad48485a3953bb6124"));
        assert_eq!(attr(&msgs[0], "x-b3-spanid"), Some("a2fb4a1d1a96d312"));
        assert_eq!(attr(&msgs[0], "x-b3-sampled"), Some("1"));
        assert_eq!(attr(&msgs[0], "b3"), Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"));
        assert_eq!(msgs[0].size, req.len() as u64);
    }

    #[test]
    fn keep_alive_and_pipelining() {
        let post =
            b"POST /items HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world";
        let delete = b"DELETE /items/3 HTTP/1.1\r\nHost: a\r\n\r\n";
        let requests = [GET, &post[..], &delete[..]].concat();
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        let responses = [OK_JSON, &not_found[..], &no_content[..]].concat();
        // Pipelined: all requests in one write, all responses in one; then keep-alive reuse.
        let msgs = parse(&[seg(REQ, &requests), seg(RESP, &responses), seg(REQ, delete), seg(RESP, no_content)]);
        let ops: Vec<_> = msgs.iter().map(|m| m.operation.clone().or(m.status.clone()).unwrap()).collect();
        assert_eq!(ops, ["GET", "POST", "DELETE", "200", "404", "204", "DELETE", "204"]);
        let sizes: Vec<_> = msgs.iter().map(|m| m.size).collect();
        let expect = [GET.len(), post.len(), delete.len(), OK_JSON.len(), not_found.len(), no_content.len()];
        assert_eq!(sizes[..6], expect.map(|n| n as u64));
        assert!(msgs.iter().all(|m| !m.partial));
    }

    #[test]
    fn chunked_request_and_response_with_extensions_and_trailers() {
        let req = b"POST /upload HTTP/1.1\r\nHost: files\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;name=value\r\nhello\r\n6 ; ext\r\n world\r\n0\r\nChecksum: 9f2c\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            1A\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        let next = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let msgs = parse(&[seg(REQ, req), seg(REQ, GET), seg(RESP, &[&resp[..], &next[..]].concat())]);
        assert_eq!(sides(&msgs), [REQ, REQ, RESP, RESP]);
        assert_eq!(msgs[0].size, req.len() as u64);
        assert_eq!(msgs[0].operation.as_deref(), Some("POST"));
        assert_eq!(msgs[2].size, resp.len() as u64);
        assert_eq!(attr(&msgs[2], "http.content_type"), Some("text/plain"));
        assert_eq!(msgs[3].size, next.len() as u64);
        assert!(msgs.iter().all(|m| !m.partial));
    }

    #[test]
    fn uncaptured_body_bytes_are_counted_and_keep_the_stream_in_step() {
        let mut p = Http1Parser::new();
        let mut out = vec![];
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
        p.feed(
            Side::Request,
            b"GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
            1,
            false,
            &mut out,
        )
        .unwrap();
        // The capture kept the head and 100 body bytes; 9900 more went by uncaptured.
        let mut first = head.to_vec();
        first.extend_from_slice(&[b'x'; 100]);
        p.feed(Side::Response, &first, 2, false, &mut out).unwrap();
        assert!(p.skip(Side::Response, 9_900, 3, &mut out));
        p.feed(Side::Response, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 4, false, &mut out).unwrap();
        let responses: Vec<_> = out.iter().filter(|m| m.side == Some(Side::Response)).collect();
        assert_eq!(responses.len(), 2);
        assert_eq!(
            (responses[0].size, responses[0].end_ns, responses[0].partial),
            (head.len() as u64 + 10_000, 3, false)
        );
        assert_eq!(responses[1].status.as_deref(), Some("404"));
        // In a head, uncaptured bytes cannot be placed.
        assert!(!p.skip(Side::Response, 10, 5, &mut out));
    }

    /// A capture cap below the head's length (`--capture-bytes 64`): each response's first 64 bytes
    /// arrive, the rest is skipped. The start line still says the status, so every request is
    /// answered, partial; before, none was (the heads never completed).
    #[test]
    fn a_head_cut_by_the_capture_is_a_partial_message_from_its_start_line() {
        let response = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 30 Nov 2026 15:28:27 GMT\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\nhello from nginx\n";
        let mut p = Http1Parser::new();
        let mut out = vec![];
        for i in 0..3u64 {
            let gap = i > 0;
            p.feed(Side::Request, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 10 * i + 1, false, &mut out).unwrap();
            p.feed(Side::Response, &response[..64], 10 * i + 2, gap, &mut out).unwrap();
            assert!(
                !p.skip(Side::Response, response.len() as u64 - 64, 10 * i + 2, &mut out),
                "a head cannot be counted"
            );
        }
        let responses: Vec<_> = out.iter().filter(|m| m.side == Some(Side::Response)).collect();
        assert_eq!(responses.len(), 3, "{out:?}");
        for (i, r) in responses.iter().enumerate() {
            assert_eq!(
                (r.status.as_deref(), r.partial, r.size, r.end_ns),
                (Some("200"), true, response.len() as u64, 10 * i as u64 + 2)
            );
        }
        // Cut inside the start line: nothing is made up; the next whole response parses.
        let mut p = Http1Parser::new();
        out.clear();
        p.feed(Side::Response, b"HTTP/1.1 2", 1, false, &mut out).unwrap();
        assert!(!p.skip(Side::Response, 100, 1, &mut out));
        p.feed(Side::Response, b"HTTP/1.1 204 No Content\r\n\r\n", 2, true, &mut out).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].status.as_deref(), out[0].partial), (Some("204"), false));
    }

    #[test]
    fn large_body_is_skipped_without_buffering() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n";
        let mut p = Http1Parser::new();
        let mut out = Vec::new();
        p.feed(RESP, head, 10, false, &mut out).unwrap();
        let block = [0x42u8; 1000];
        for i in 0..1000 {
            p.feed(RESP, &block, 11 + i, false, &mut out).unwrap();
            assert_eq!(p.buffered(), 0);
            assert_eq!(out.len(), usize::from(i == 999));
        }
        assert_eq!(out[0].size, head.len() as u64 + 1_000_000);
        assert_eq!((out[0].start_ns, out[0].end_ns), (10, 1010));
        // A chunked body with big chunks is skipped the same way.
        let mut p = Http1Parser::new();
        out.clear();
        p.feed(RESP, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nF4240\r\n", 0, false, &mut out).unwrap();
        for _ in 0..1000 {
            p.feed(RESP, &block, 1, false, &mut out).unwrap();
            assert_eq!(p.buffered(), 0);
        }
        p.feed(RESP, b"\r\n0\r\n\r\n", 2, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].size, 47 + 7 + 1_000_000 + 7);
    }

    #[test]
    fn continue_is_not_a_response() {
        let req = b"PUT /blob HTTP/1.1\r\nHost: s3\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
        let created = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        let msgs = parse(&[
            seg(REQ, req),
            seg(RESP, b"HTTP/1.1 100 Continue\r\n\r\n"),
            seg(REQ, b"data"),
            seg(RESP, created),
            seg(REQ, GET),
            seg(RESP, OK_JSON),
        ]);
        let got: Vec<_> = msgs.iter().map(|m| m.operation.clone().or(m.status.clone()).unwrap()).collect();
        assert_eq!(got, ["PUT", "201", "GET", "200"]);
        assert_eq!(msgs[0].size, req.len() as u64 + 4);
        assert_eq!((msgs[0].start_ns, msgs[0].end_ns), (0, 2));
        assert_eq!((msgs[1].size, msgs[1].start_ns), (created.len() as u64, 3));
    }

    #[test]
    fn switching_protocols_stops_parsing() {
        let upgrade = b"GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let frame = b"\x81\x05Hello";
        let msgs = parse(&[
            seg(REQ, upgrade),
            seg(RESP, &[&switching[..], &frame[..]].concat()),
            seg(REQ, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
            seg(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            seg(REQ, GET),
        ]);
        assert_eq!(sides(&msgs), [REQ, RESP]);
        assert_eq!(msgs[1].status.as_deref(), Some("101"));
        assert_eq!(msgs[1].size, switching.len() as u64);
    }

    #[test]
    fn connect_tunnel_stops_parsing() {
        let msgs = parse(&[
            seg(REQ, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            seg(RESP, b"HTTP/1.1 200 Connection established\r\n\r\n"),
            seg(REQ, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03GET / HTTP/1.1\r\n\r\n"),
            seg(RESP, b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03"),
        ]);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].target.as_deref(), Some("example.com:443"));
        assert_eq!(msgs[1].status.as_deref(), Some("200"));
    }

    #[test]
    fn bodiless_responses_by_rule() {
        let head = b"HEAD /big.iso HTTP/1.1\r\nHost: mirror\r\n\r\n";
        let head_resp =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-iso9660-image\r\nContent-Length: 734003200\r\n\r\n";
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\nContent-Length: 512\r\n\r\n";
        let no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        let requests = [&head[..], GET, GET, GET].concat();
        let responses = [&head_resp[..], &not_modified[..], &no_content[..], OK_JSON].concat();
        let msgs = parse(&[seg(REQ, &requests), seg(RESP, &responses)]);
        let got: Vec<_> = msgs[4..].iter().map(|m| (m.status.clone().unwrap(), m.size)).collect();
        let expect = [("200", head_resp.len()), ("304", not_modified.len()), ("204", no_content.len())];
        assert_eq!(got[..3], expect.map(|(s, n)| (s.to_string(), n as u64)));
        assert_eq!(got[3], ("200".to_string(), OK_JSON.len() as u64));
    }

    #[test]
    fn body_to_close_is_partial() {
        let head = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n";
        let mut p = Http1Parser::new();
        let mut out = Vec::new();
        p.feed(REQ, b"GET / HTTP/1.0\r\n\r\n", 1, false, &mut out).unwrap();
        p.feed(RESP, &[&head[..], b"<html>"].concat(), 2, false, &mut out).unwrap();
        p.feed(RESP, b"</html>\nHTTP/1.1 200 OK\r\n\r\n", 3, false, &mut out).unwrap();
        p.feed(RESP, b"more", 4, true, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].status.as_deref(), Some("200"));
        assert!(out[1].partial);
        assert_eq!(out[1].size, head.len() as u64 + 6);
        assert_eq!((out[1].start_ns, out[1].end_ns), (2, 2));
    }

    #[test]
    fn server_errors_carry_reason() {
        let msgs = parse(&[
            seg(REQ, &[GET, GET].concat()),
            seg(
                RESP,
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\nHTTP/1.1 500\r\n\r\n",
            ),
        ]);
        assert_eq!(msgs[2].status.as_deref(), Some("503"));
        assert_eq!(msgs[2].error.as_deref(), Some("Service Unavailable"));
        assert_eq!(msgs[3].error.as_deref(), Some("500"));
    }

    #[test]
    fn bare_lf_lines_are_accepted() {
        let msgs =
            parse(&[seg(REQ, b"GET /x HTTP/1.0\nHost: h\n\n"), seg(RESP, b"HTTP/1.0 200 OK\nContent-Length: 1\n\nx")]);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].size, 36);
    }

    #[test]
    fn mid_stream_start_resyncs() {
        // The capture starts inside a POST body (no newline before the next request) and inside a
        // response body; chunk-start and line-start probes find the next messages.
        let msgs = parse(&[
            seg(REQ, b"ss\":\"x\"}"),
            seg(REQ, GET),
            seg(RESP, b"ing\": 3}\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
            seg(RESP, OK_JSON),
        ]);
        assert_eq!(sides(&msgs), [REQ, RESP, RESP]);
        assert!(msgs.iter().all(|m| !m.partial));
        assert_eq!(msgs[1].status.as_deref(), Some("201"));
        // A start line split right after the first bytes of a method is still found.
        let mut p = Http1Parser::new();
        let mut out = Vec::new();
        p.feed(REQ, b"tail of body\r\nDEL", 0, false, &mut out).unwrap();
        p.feed(REQ, b"ETE /x HTTP/1.1\r\n\r\n", 1, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].operation.as_deref(), out[0].size, out[0].start_ns), (Some("DELETE"), 22, 0));
    }

    #[test]
    fn gap_mid_body() {
        let post = b"POST /p HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
        let mut p = Http1Parser::new();
        let mut out = Vec::new();
        p.feed(REQ, &[&post[..], &[b'a'; 40]].concat(), 1, false, &mut out).unwrap();
        // The rest of the body was lost; the next chunk is a new request.
        p.feed(REQ, GET, 2, true, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].partial);
        assert_eq!((out[0].size, out[0].end_ns), (post.len() as u64 + 40, 1));
        assert!(!out[1].partial);
        assert_eq!(out[1].target.as_deref(), Some("/api/users"));
        // The chunk after the gap continues the body: its remaining count is skipped.
        out.clear();
        p.feed(REQ, &[&post[..], &[b'a'; 10]].concat(), 3, false, &mut out).unwrap();
        p.feed(REQ, &[&[b'b'; 90][..], GET].concat(), 4, true, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].partial && !out[1].partial);
        assert_eq!(out[1].operation.as_deref(), Some("GET"));
        // A chunked body cut by a gap: partial, then resync.
        out.clear();
        p.feed(RESP, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\nabc", 5, false, &mut out).unwrap();
        p.feed(RESP, b"xyz\r\n0\r\n\r\n", 6, true, &mut out).unwrap();
        p.feed(RESP, OK_JSON, 7, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].partial);
        assert_eq!(out[0].size, 55);
        assert!(!out[1].partial);
    }

    #[test]
    fn gap_mid_headers_drops_the_message() {
        let mut p = Http1Parser::new();
        let mut out = Vec::new();
        p.feed(REQ, &GET[..20], 1, false, &mut out).unwrap();
        p.feed(REQ, &GET[60..], 2, true, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(p.buffered(), 0);
        p.feed(REQ, GET, 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(!out[0].partial);
        assert_eq!(out[0].start_ns, 3);
    }

    #[test]
    fn garbage_is_an_error_then_resync() {
        let mut p = Http1Parser::new();
        let mut out = Vec::new();
        p.feed(REQ, GET, 1, false, &mut out).unwrap();
        let err = p.feed(REQ, b"\x00\x01\x02\xff binary junk\n", 2, false, &mut out).unwrap_err();
        assert!(err.0.contains("start line"), "{err}");
        // Resynchronized: later junk is skipped quietly, a real request is parsed.
        p.feed(REQ, b"more junk", 3, false, &mut out).unwrap();
        p.feed(REQ, GET, 4, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        // Broken framing: reported, message partial.
        let mut p = Http1Parser::new();
        out.clear();
        p.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n", 1, false, &mut out).unwrap_err();
        p.feed(RESP, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 2, false, &mut out).unwrap_err();
        assert_eq!(out.len(), 1);
        assert!(out[0].partial);
        p.feed(RESP, OK_JSON, 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn oversized_head_is_partial_and_bounded() {
        let mut p = Http1Parser::new();
        let mut out = Vec::new();
        let mut errors = 0;
        p.feed(REQ, b"GET /huge HTTP/1.1\r\nCookie: ", 1, false, &mut out).unwrap();
        for _ in 0..100 {
            errors += usize::from(p.feed(REQ, &[b'c'; 1000], 2, false, &mut out).is_err());
            assert!(p.buffered() <= HEAD_LIMIT);
        }
        assert_eq!(errors, 1);
        assert_eq!(out.len(), 1);
        assert!(out[0].partial);
        assert_eq!(out[0].operation.as_deref(), Some("GET"));
        assert_eq!(out[0].target.as_deref(), Some("/huge"));
        p.feed(REQ, b"\r\n\r\n", 3, false, &mut out).unwrap();
        p.feed(REQ, GET, 4, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    /// A conversation using every feature, for the split and fuzz tests.
    fn conversation() -> Vec<Segment> {
        vec![
            seg(REQ, GET),
            seg(RESP, OK_JSON),
            seg(REQ, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"),
            seg(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"),
            seg(REQ, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            seg(RESP, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
        ]
    }

    #[test]
    fn conversation_parses_identically_however_split() {
        let msgs = parse(&conversation());
        let got: Vec<_> = msgs.iter().map(|m| m.operation.clone().or(m.status.clone()).unwrap()).collect();
        assert_eq!(got, ["GET", "200", "HEAD", "POST", "200", "502", "GET", "101"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(feeds in prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), any::<bool>()), 0..20)) {
            let mut p = Http1Parser::new();
            let mut out = Vec::new();
            let mut total = 0;
            for (i, (request, bytes, gap)) in feeds.iter().enumerate() {
                let side = if *request { REQ } else { RESP };
                let _ = p.feed(side, bytes, i as u64, *gap, &mut out);
                total += bytes.len();
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
            prop_assert!(out.len() <= total / 10 + feeds.len());
        }

        #[test]
        fn http_like_bytes_never_panic(parts in prop::collection::vec(prop::sample::select(vec![
            &b"GET / HTTP/1.1\r\n"[..], b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n", b"\r\n",
            b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"5\r\n", b"0\r\n", b"abc", b"HEAD ",
            b"Host: x\r\n", b"\n", b"HTTP/1.1 101 S\r\n", b"HTTP/1.1 304 N\r\n", b"CONNECT a:1 HTTP/1.1\r\n",
        ]), 0..60), sides in prop::collection::vec(any::<bool>(), 60)) {
            let mut p = Http1Parser::new();
            let mut out = Vec::new();
            for (part, request) in parts.iter().zip(&sides) {
                let _ = p.feed(if *request { REQ } else { RESP }, part, 0, false, &mut out);
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
            prop_assert!(out.len() <= parts.len());
        }

        #[test]
        fn valid_streams_split_anywhere_match_whole(seed in any::<u64>()) {
            let segments = conversation();
            prop_assert_eq!(random_splits(&segments, seed), whole(&segments));
        }
    }
}
