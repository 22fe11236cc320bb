//! Redis serialization protocol (RESP2 and RESP3), paired in order ([`MatchKey::Fifo`]).
//!
//! A request is an array of bulk strings (`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n`) or an inline
//! command (`PING\r\n`). A response is one RESP value of any type, nested to any depth. Header
//! lines are parsed in place (or from a small line buffer when split across chunks); bulk payloads
//! are skipped by count, and only their first bytes are kept where a field needs them (command
//! name, subcommand, key, blob error).
//!
//! RESP3 push frames (`>`: pub/sub messages, client-tracking invalidations) answer no request and
//! are skipped without a message; attribute frames (`|`) annotate the reply that follows and count
//! toward its size.

use crate::message::*;

/// Deepest nesting of aggregates accepted (Redis itself never nests this deep in a reply).
const MAX_DEPTH: usize = 64;
/// Longest header line (or inline command) buffered per side.
const MAX_LINE: usize = 16 * 1024;
/// Bytes kept of a captured bulk argument (command name, subcommand, key).
const MAX_ARG: usize = 512;
/// Leading request arguments kept: command, subcommand, and the key of `EVAL script numkeys key`.
const CAPTURED_ARGS: usize = 4;
/// Bytes kept of an error reply.
const MAX_ERROR: usize = 1024;

/// How a command names its key.
#[derive(Debug, PartialEq)]
enum KeyAt {
    /// No key: the arguments are values, patterns, passwords...
    None,
    /// The word after the operation.
    Next,
    /// `CMD script numkeys key...`: the fourth word, when numkeys is not 0.
    Scripted,
}

/// Whether the second word of `command` names the operation (`CLIENT SETNAME`).
fn is_container(command: &str) -> bool {
    matches!(
        command,
        "CLIENT"
            | "CONFIG"
            | "CLUSTER"
            | "COMMAND"
            | "MEMORY"
            | "OBJECT"
            | "SCRIPT"
            | "XINFO"
            | "XGROUP"
            | "ACL"
            | "FUNCTION"
            | "MODULE"
            | "SLOWLOG"
            | "LATENCY"
            | "PUBSUB"
            | "DEBUG"
    )
}

/// Whether a container command's subcommand takes a key next (`OBJECT ENCODING key`).
fn subcommand_key(command: &str, sub: &str) -> KeyAt {
    let keyed = match command {
        "OBJECT" | "XINFO" | "XGROUP" => sub != "HELP",
        "MEMORY" => sub == "USAGE",
        "DEBUG" => sub == "OBJECT",
        _ => false,
    };
    if keyed {
        KeyAt::Next
    } else {
        KeyAt::None
    }
}

/// Where a (single-word) command names its key.
fn key_at(command: &str) -> KeyAt {
    match command {
        "PING" | "HELLO" | "AUTH" | "SELECT" | "INFO" | "MULTI" | "EXEC" | "DISCARD" | "FLUSHALL" | "FLUSHDB"
        | "DBSIZE" | "SCAN" | "QUIT" | "ECHO" | "SAVE" | "BGSAVE" | "BGREWRITEAOF" | "LASTSAVE" | "TIME"
        | "SHUTDOWN" | "RESET" | "WAIT" | "WAITAOF" | "ROLE" | "REPLICAOF" | "SLAVEOF" | "SWAPDB" | "MONITOR"
        | "SYNC" | "PSYNC" | "RANDOMKEY" | "KEYS" | "UNWATCH" | "READONLY" | "READWRITE" | "ASKING" | "FAILOVER"
        | "LOLWUT" | "XREAD" | "XREADGROUP" => KeyAt::None,
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => KeyAt::Scripted,
        _ => KeyAt::Next,
    }
}

/// True when `first` starts like a RESP command array: `*<n>\r\n$<n>\r\n` and a letter. Inline
/// commands are not detected (any text line would match); responses are too ambiguous.
pub fn detect(side: Side, first: &[u8]) -> bool {
    if side != Side::Request {
        return false;
    }
    let Some(rest) = first.strip_prefix(b"*").and_then(digits_crlf) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(b"$").and_then(digits_crlf) else {
        return false;
    };
    rest.first().is_some_and(u8::is_ascii_alphabetic)
}

/// The bytes after `<digits>\r\n`, if `s` starts so.
fn digits_crlf(s: &[u8]) -> Option<&[u8]> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 10 {
        return None;
    }
    s[n..].strip_prefix(b"\r\n")
}

/// Parses a Redis connection. Requests carry `operation` (upper-cased command, two words for
/// container commands such as `CLIENT SETNAME`), `target` (the first key, when the command has
/// one) and `db.redis.args` (number of words in the command, its name included, as Redis's argc).
/// Responses carry `status` `OK` or `ERR` and `error` (the error line or blob error).
pub struct RedisParser {
    request: Stream,
    response: Stream,
}

impl RedisParser {
    /// A parser for a connection whose first bytes (on either side) are the start of a message.
    pub fn new() -> Self {
        RedisParser { request: Stream::new(Side::Request), response: Stream::new(Side::Response) }
    }
}

impl Default for RedisParser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser for RedisParser {
    fn feed(
        &mut self,
        side: Side,
        chunk: &[u8],
        ts_ns: u64,
        gap: bool,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError> {
        match side {
            Side::Request => self.request.feed(chunk, ts_ns, gap, out),
            Side::Response => self.response.feed(chunk, ts_ns, gap, out),
        }
    }

    fn skip(&mut self, side: Side, n: u64, ts_ns: u64, out: &mut Vec<Message>) -> bool {
        match side {
            Side::Request => self.request.skip(n, ts_ns, out),
            Side::Response => self.response.skip(n, ts_ns, out),
        }
    }

    fn buffered(&self) -> usize {
        self.request.buffered() + self.response.buffered()
    }
}

/// An aggregate being read: how many values it still holds.
struct Frame {
    total: u64,
    remaining: u64,
    /// Attribute frames (`|`) are not values of their parent: completing one counts for nothing.
    attribute: bool,
}

/// Where the payload of the bulk string being read goes.
#[derive(Clone, Copy, PartialEq)]
enum Capture {
    Skip,
    Arg,
    Error,
}

/// The top-level value being read. Captured bytes (leading arguments of a request, the error text
/// of a reply) live in [`Stream::captured`], reused from message to message.
#[derive(Clone, Copy, Default)]
struct Pending {
    start_ns: u64,
    size: u64,
    /// Type byte of the top-level value (attributes aside), once seen.
    kind: Option<u8>,
    /// Elements of a request array (or words of an inline command).
    argc: u64,
    /// Where each captured argument ends in `captured`.
    arg_ends: [usize; CAPTURED_ARGS],
    nargs: usize,
    /// `captured` holds the error text of the reply.
    error: bool,
}

/// One direction of the connection.
struct Stream {
    side: Side,
    /// A header line split across chunks.
    line: Vec<u8>,
    /// Time of the chunk that carried the first byte of the current line.
    line_ts: u64,
    last_ts: u64,
    /// Bytes of the current bulk string still to come: payload and its CRLF.
    bulk_left: u64,
    capture: Capture,
    /// Where the bulk being captured starts in `captured`.
    capture_start: usize,
    captured: Vec<u8>,
    stack: Vec<Frame>,
    msg: Option<Pending>,
    /// After a gap or an error: waiting for a chunk that starts a message.
    lost: bool,
}

impl Stream {
    fn new(side: Side) -> Self {
        Stream {
            side,
            line: Vec::new(),
            line_ts: 0,
            last_ts: 0,
            bulk_left: 0,
            capture: Capture::Skip,
            capture_start: 0,
            captured: Vec::new(),
            stack: Vec::new(),
            msg: None,
            lost: false,
        }
    }

    fn buffered(&self) -> usize {
        self.line.len() + self.captured.len()
    }

    fn feed(&mut self, chunk: &[u8], ts: u64, gap: bool, out: &mut Vec<Message>) -> Result<(), ParseError> {
        if gap {
            self.cut(out);
            self.lost = true;
        }
        self.last_ts = ts;
        let mut pos = 0;
        if self.lost {
            match self.resync_point(chunk) {
                Some(p) => {
                    self.lost = false;
                    pos = p;
                }
                None => return Ok(()),
            }
        }
        while pos < chunk.len() {
            let step = if self.bulk_left > 0 {
                Ok(self.bulk(&chunk[pos..], ts, out))
            } else {
                self.header(&chunk[pos..], ts, out)
            };
            match step {
                Ok(n) => pos += n,
                Err(e) => {
                    self.reset();
                    self.lost = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Where a message plausibly starts in a chunk after lost bytes: a command array at a line
    /// start for requests; for responses only a chunk that begins with a type byte (a reply is
    /// usually written whole, and a byte inside a payload cannot be told from a type byte).
    fn resync_point(&self, chunk: &[u8]) -> Option<usize> {
        match self.side {
            Side::Request => (0..chunk.len())
                .filter(|&p| chunk[p] == b'*' && (p == 0 || chunk[p - 1] == b'\n'))
                .find(|&p| detect(Side::Request, &chunk[p..])),
            Side::Response => chunk.first().filter(|b| b"+-:$*_,#!=(%~>|".contains(b)).map(|_| 0),
        }
    }

    /// Reports the message in progress as partial (bytes were lost) and forgets it.
    fn cut(&mut self, out: &mut Vec<Message>) {
        self.end_capture();
        if let Some(m) = self.msg.take() {
            out.extend(self.build(&m, self.last_ts, true));
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.line.clear();
        self.bulk_left = 0;
        self.capture = Capture::Skip;
        self.captured.clear();
        self.stack.clear();
        self.msg = None;
    }

    /// Consumes bulk payload (and its CRLF) from `data`, keeping the first bytes if captured.
    fn bulk(&mut self, data: &[u8], ts: u64, out: &mut Vec<Message>) -> usize {
        let take = self.bulk_left.min(data.len() as u64) as usize;
        if self.capture != Capture::Skip {
            let payload = self.bulk_left.saturating_sub(2).min(take as u64) as usize;
            let limit = if self.capture == Capture::Arg { MAX_ARG } else { MAX_ERROR };
            let room = limit.saturating_sub(self.captured.len() - self.capture_start);
            self.captured.extend_from_slice(&data[..payload.min(room)]);
        }
        self.bulk_left -= take as u64;
        if let Some(m) = self.msg.as_mut() {
            m.size += take as u64;
        }
        if self.bulk_left == 0 {
            self.end_capture();
            self.value_done(ts, out);
        }
        take
    }

    /// Counts `n` uncaptured bytes of the bulk string being read, as [`bulk`](Self::bulk) would
    /// had they been read. Refused (false, nothing changed) in a header line, past the bulk's
    /// end, or where the bytes would have been kept (a command name, key or error text still
    /// short of its limit: a hole in it would make it wrong).
    fn skip(&mut self, n: u64, ts: u64, out: &mut Vec<Message>) -> bool {
        if self.lost || self.bulk_left == 0 || n > self.bulk_left {
            return false;
        }
        if self.capture != Capture::Skip {
            let limit = if self.capture == Capture::Arg { MAX_ARG } else { MAX_ERROR };
            let room = limit.saturating_sub(self.captured.len() - self.capture_start);
            if room > 0 && self.bulk_left > 2 {
                return false;
            }
        }
        self.last_ts = ts;
        self.bulk_left -= n;
        if let Some(m) = self.msg.as_mut() {
            m.size += n;
        }
        if self.bulk_left == 0 {
            self.end_capture();
            self.value_done(ts, out);
        }
        true
    }

    /// Records the bulk payload captured so far as the message field it belongs to.
    fn end_capture(&mut self) {
        let end = self.captured.len();
        let capture = std::mem::replace(&mut self.capture, Capture::Skip);
        let Some(m) = self.msg.as_mut() else {
            return;
        };
        match capture {
            Capture::Skip => {}
            Capture::Arg => {
                m.arg_ends[m.nargs] = end;
                m.nargs += 1;
            }
            Capture::Error => m.error = true,
        }
    }

    /// Consumes one header line from `data` (or buffers it when it is not complete yet).
    fn header(&mut self, data: &[u8], ts: u64, out: &mut Vec<Message>) -> Result<usize, ParseError> {
        if self.line.is_empty() {
            self.line_ts = ts;
        }
        let Some(nl) = data.iter().position(|&b| b == b'\n') else {
            if self.line.len() + data.len() > MAX_LINE {
                return Err(ParseError(format!("RESP line longer than {MAX_LINE} bytes")));
            }
            self.line.extend_from_slice(data);
            return Ok(data.len());
        };
        if self.line.is_empty() {
            self.line_done(&data[..nl], nl as u64 + 1, ts, out)?;
        } else {
            if self.line.len() + nl > MAX_LINE {
                return Err(ParseError(format!("RESP line longer than {MAX_LINE} bytes")));
            }
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(&data[..nl]);
            let wire = line.len() as u64 + 1;
            let done = self.line_done(&line, wire, ts, out);
            line.clear();
            self.line = line;
            done?;
        }
        Ok(nl + 1)
    }

    /// Handles a complete line (`raw` without its `\n`; `wire` bytes on the wire).
    fn line_done(&mut self, raw: &[u8], wire: u64, ts: u64, out: &mut Vec<Message>) -> Result<(), ParseError> {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let top = self.stack.is_empty();
        if top && self.msg.is_none() {
            self.captured.clear();
            if self.side == Side::Request && line.first() != Some(&b'*') {
                return self.inline(line, wire, ts, out);
            }
            self.msg = Some(Pending { start_ns: self.line_ts, ..Pending::default() });
        }
        let Some((&kind, rest)) = line.split_first() else {
            return Err(ParseError("empty line where a RESP value was expected".into()));
        };
        let msg = self.msg.as_mut().expect("a message is in progress");
        msg.size += wire;
        if top && kind != b'|' {
            msg.kind = Some(kind);
        }
        match kind {
            b'+' | b':' | b'_' | b',' | b'#' | b'(' => self.value_done(ts, out),
            b'-' => {
                if top {
                    msg.error = true;
                    self.captured.extend_from_slice(&rest[..rest.len().min(MAX_ERROR)]);
                }
                self.value_done(ts, out);
            }
            b'$' | b'!' | b'=' => self.bulk_header(kind, number(rest)?, ts, out),
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number(rest)?;
                if top && kind == b'*' {
                    msg.argc = n.max(0) as u64;
                }
                self.aggregate_header(kind, n, ts, out)?;
            }
            _ => return Err(ParseError(format!("unknown RESP type byte 0x{kind:02x}"))),
        }
        Ok(())
    }

    /// Starts a bulk string of `len` bytes (`-1`: null, a complete value).
    fn bulk_header(&mut self, kind: u8, len: i64, ts: u64, out: &mut Vec<Message>) {
        if len < 0 {
            self.value_done(ts, out);
            return;
        }
        self.bulk_left = len as u64 + 2;
        let wanted_arg = match (self.side, self.stack.as_slice(), self.msg.as_ref()) {
            (Side::Request, [f], Some(m)) => {
                !f.attribute && f.total - f.remaining == m.nargs as u64 && m.nargs < CAPTURED_ARGS
            }
            _ => false,
        };
        self.capture_start = self.captured.len();
        self.capture = if self.stack.is_empty() && kind == b'!' {
            Capture::Error
        } else if wanted_arg {
            Capture::Arg
        } else {
            Capture::Skip
        };
    }

    /// Starts an aggregate of `n` elements (`n` pairs for maps and attributes).
    fn aggregate_header(&mut self, kind: u8, n: i64, ts: u64, out: &mut Vec<Message>) -> Result<(), ParseError> {
        if n <= 0 {
            // An empty attribute annotates nothing: the reply it precedes is still to come.
            if kind != b'|' {
                self.value_done(ts, out);
            }
            return Ok(());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseError(format!("RESP aggregates nested deeper than {MAX_DEPTH}")));
        }
        let per = if kind == b'%' || kind == b'|' { 2 } else { 1 };
        let count = n as u64 * per;
        self.stack.push(Frame { total: count, remaining: count, attribute: kind == b'|' });
        Ok(())
    }

    /// A value is complete: count it in its aggregate, completing those it fills; a complete
    /// top-level value is a message.
    fn value_done(&mut self, ts: u64, out: &mut Vec<Message>) {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                if let Some(m) = self.msg.take() {
                    out.extend(self.build(&m, ts, false));
                }
                return;
            };
            frame.remaining -= 1;
            if frame.remaining > 0 {
                return;
            }
            let attribute = frame.attribute;
            self.stack.pop();
            if attribute {
                return;
            }
        }
    }

    /// An inline command: words separated by spaces on one line. Blank lines are ignored, as
    /// Redis does.
    fn inline(&mut self, line: &[u8], wire: u64, ts: u64, out: &mut Vec<Message>) -> Result<(), ParseError> {
        let mut words = line.split(|&b| b == b' ' || b == b'\t').filter(|w| !w.is_empty());
        let Some(first) = words.next() else {
            return Ok(());
        };
        let plausible = first[0].is_ascii_alphabetic()
            && first.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'|'));
        if !plausible {
            return Err(ParseError("request is neither a RESP array nor an inline command".into()));
        }
        let mut m = Pending { start_ns: self.line_ts, size: wire, ..Pending::default() };
        for word in std::iter::once(first).chain(words) {
            if m.nargs < CAPTURED_ARGS {
                self.captured.extend_from_slice(&word[..word.len().min(MAX_ARG)]);
                m.arg_ends[m.nargs] = self.captured.len();
                m.nargs += 1;
            }
            m.argc += 1;
        }
        out.extend(self.build(&m, ts, false));
        Ok(())
    }

    /// The message for a top-level value, if it is one: pushes and empty commands are not.
    fn build(&self, m: &Pending, end_ns: u64, partial: bool) -> Option<Message> {
        let mut msg = Message {
            side: Some(self.side),
            key: Some(MatchKey::Fifo),
            start_ns: m.start_ns,
            end_ns,
            size: m.size,
            partial,
            ..Message::default()
        };
        match self.side {
            Side::Request => {
                let mut args: [&[u8]; CAPTURED_ARGS] = [&[]; CAPTURED_ARGS];
                let mut start = 0;
                for (arg, &end) in args.iter_mut().zip(&m.arg_ends[..m.nargs]) {
                    *arg = &self.captured[start..end];
                    start = end;
                }
                let (operation, target) = describe_command(&args[..m.nargs])?;
                msg.operation = Some(operation);
                msg.target = target;
                msg.attributes = vec![("db.redis.args", m.argc.to_string())];
            }
            Side::Response => {
                let kind = m.kind?;
                if kind == b'>' {
                    return None;
                }
                let failed = kind == b'-' || kind == b'!';
                msg.status = Some(if failed { "ERR" } else { "OK" }.to_string());
                if failed && m.error {
                    msg.error = Some(String::from_utf8_lossy(&self.captured).into_owned());
                }
            }
        }
        Some(msg)
    }
}

/// Operation and key of a command from its leading words; `None` without a command name.
fn describe_command(args: &[&[u8]]) -> Option<(String, Option<String>)> {
    let mut operation = String::from_utf8_lossy(args.first()?).into_owned();
    operation.make_ascii_uppercase();
    let word = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
    let (key_at, key_index) = match args.get(1).filter(|_| is_container(&operation)) {
        Some(sub) => {
            let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
            let key_at = subcommand_key(&operation, &sub);
            operation.push(' ');
            operation.push_str(&sub);
            (key_at, 2)
        }
        None => (key_at(&operation), 1),
    };
    let target = match key_at {
        KeyAt::None => None,
        KeyAt::Next => word(key_index),
        KeyAt::Scripted => word(3).filter(|_| args.get(2).is_some_and(|n| *n != b"0")),
    };
    Some((operation, target))
}

/// The signed decimal of a RESP header (`-1` for nulls).
fn number(s: &[u8]) -> Result<i64, ParseError> {
    let (negative, digits) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError(format!("bad RESP length {:?}", String::from_utf8_lossy(s))));
    }
    let n = digits.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    Ok(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` of one side (all at `ts` 7) and returns the messages.
    fn run(side: Side, chunks: &[&[u8]]) -> Vec<Message> {
        let mut parser = RedisParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(side, chunk, 7, false, &mut out).expect("valid RESP");
            assert!(parser.buffered() <= MAX_BUFFERED);
        }
        out
    }

    /// Messages from `bytes` fed whole, byte by byte, and split at every offset: all must agree.
    fn parse_all_ways(side: Side, bytes: &[u8]) -> Vec<Message> {
        let whole = run(side, &[bytes]);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(side, &bytewise), whole, "byte by byte");
        for cut in 0..=bytes.len() {
            assert_eq!(run(side, &[&bytes[..cut], &bytes[cut..]]), whole, "split at {cut}");
        }
        whole
    }

    fn attr<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
        m.attributes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn op_target(m: &Message) -> (Option<&str>, Option<&str>) {
        (m.operation.as_deref(), m.target.as_deref())
    }

    #[test]
    fn detects_command_arrays_only() {
        assert!(detect(Side::Request, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"));
        assert!(detect(Side::Request, b"*1\r\n$4\r\nping\r\n"));
        assert!(!detect(Side::Request, b"*1\r\n$4\r\n"));
        assert!(!detect(Side::Request, b"PING\r\n"));
        assert!(!detect(Side::Request, b"GET / HTTP/1.1\r\n"));
        assert!(!detect(Side::Request, b"*3\r\n:1\r\n"));
        assert!(!detect(Side::Response, b"+OK\r\n"));
        assert!(!detect(Side::Request, b""));
    }

    #[test]
    fn pipelined_commands() {
        let bytes = b"*3\r\n$3\r\nSET\r\n$5\r\nmykey\r\n$5\r\nhello\r\n\
*2\r\n$3\r\nGET\r\n$5\r\nmykey\r\n\
*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$4\r\nconn\r\n\
*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n\
*1\r\n$4\r\nping\r\n\
*3\r\n$6\r\nOBJECT\r\n$8\r\nENCODING\r\n$5\r\nmykey\r\n\
*5\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n$3\r\nk:1\r\n$1\r\nx\r\n\
*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n";
        let msgs = parse_all_ways(Side::Request, bytes);
        let got: Vec<_> = msgs.iter().map(op_target).collect();
        assert_eq!(
            got,
            vec![
                (Some("SET"), Some("mykey")),
                (Some("GET"), Some("mykey")),
                (Some("CLIENT SETNAME"), None),
                (Some("HELLO"), None),
                (Some("PING"), None),
                (Some("OBJECT ENCODING"), Some("mykey")),
                (Some("EVAL"), Some("k:1")),
                (Some("SELECT"), None),
            ]
        );
        assert_eq!(attr(&msgs[0], "db.redis.args"), Some("3"));
        assert_eq!(attr(&msgs[4], "db.redis.args"), Some("1"));
        assert_eq!(msgs[0].size, 35);
        assert_eq!(msgs.iter().map(|m| m.size).sum::<u64>(), bytes.len() as u64);
        assert!(msgs.iter().all(|m| m.key == Some(MatchKey::Fifo) && m.side == Some(Side::Request) && !m.partial));
    }

    #[test]
    fn key_positions() {
        let bytes = b"*3\r\n$6\r\nmemory\r\n$5\r\nusage\r\n$3\r\nk:9\r\n\
*2\r\n$6\r\nMEMORY\r\n$5\r\nSTATS\r\n\
*5\r\n$6\r\nXGROUP\r\n$6\r\nCREATE\r\n$6\r\nevents\r\n$7\r\nworkers\r\n$1\r\n$\r\n\
*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n\
*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\nmaxmemory*\r\n\
*1\r\n$6\r\nCLIENT\r\n\
*2\r\n$4\r\nKEYS\r\n$6\r\nuser:*\r\n";
        let msgs = parse_all_ways(Side::Request, bytes);
        let got: Vec<_> = msgs.iter().map(op_target).collect();
        assert_eq!(
            got,
            vec![
                (Some("MEMORY USAGE"), Some("k:9")),
                (Some("MEMORY STATS"), None),
                (Some("XGROUP CREATE"), Some("events")),
                (Some("EVAL"), None),
                (Some("CONFIG GET"), None),
                (Some("CLIENT"), None),
                (Some("KEYS"), None),
            ]
        );
        assert_eq!(attr(&msgs[2], "db.redis.args"), Some("5"));
    }

    #[test]
    fn inline_commands() {
        let bytes = b"PING\r\n\r\nset  greeting hi\r\nclient setname x\n";
        let msgs = parse_all_ways(Side::Request, bytes);
        let got: Vec<_> = msgs.iter().map(op_target).collect();
        assert_eq!(got, vec![(Some("PING"), None), (Some("SET"), Some("greeting")), (Some("CLIENT SETNAME"), None)]);
        assert_eq!(attr(&msgs[1], "db.redis.args"), Some("3"));
        assert_eq!(msgs[1].size, 18);
    }

    #[test]
    fn empty_command_array_is_no_message() {
        let msgs = parse_all_ways(Side::Request, b"*0\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].size, 14);
    }

    #[test]
    fn resp2_replies() {
        let bytes = b"+OK\r\n$5\r\nhello\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n\
:1\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*0\r\n";
        let msgs = parse_all_ways(Side::Response, bytes);
        let status: Vec<_> = msgs.iter().map(|m| m.status.as_deref().unwrap()).collect();
        assert_eq!(status, ["OK", "OK", "ERR", "OK", "OK", "OK", "OK", "OK"]);
        assert_eq!(msgs[2].error.as_deref(), Some("WRONGTYPE Operation against a key holding the wrong kind of value"));
        assert!(msgs.iter().enumerate().all(|(i, m)| (i == 2) == m.error.is_some()));
        let sizes: Vec<u64> = msgs.iter().map(|m| m.size).collect();
        assert_eq!(sizes, [5, 11, 68, 4, 5, 5, 19, 4]);
    }

    #[test]
    fn resp3_replies() {
        let hello = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n$5\r\nproto\r\n:3\r\n\
$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        let others = b"_\r\n,3.14\r\n#t\r\n(3492890328409238509324850943850943825024385\r\n=15\r\ntxt:Some string\r\n\
~2\r\n+a\r\n+b\r\n!21\r\nSYNTAX invalid syntax\r\n";
        let bytes = [&hello[..], others].concat();
        let msgs = parse_all_ways(Side::Response, &bytes);
        assert_eq!(msgs.len(), 8);
        assert_eq!(msgs[0].size, hello.len() as u64);
        assert_eq!(msgs[7].status.as_deref(), Some("ERR"));
        assert_eq!(msgs[7].error.as_deref(), Some("SYNTAX invalid syntax"));
        assert!(msgs[..7].iter().all(|m| m.status.as_deref() == Some("OK") && m.error.is_none()));
    }

    #[test]
    fn push_frames_are_skipped_and_attributes_belong_to_their_reply() {
        let push = b">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n";
        let invalidate = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nfoo\r\n";
        let attributed = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n\
*2\r\n:2039123\r\n:9543892\r\n";
        let nested_attribute = b"*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n:7\r\n";
        let bytes = [&push[..], b"+OK\r\n", invalidate, attributed, nested_attribute].concat();
        let msgs = parse_all_ways(Side::Response, &bytes);
        let sizes: Vec<u64> = msgs.iter().map(|m| m.size).collect();
        assert_eq!(sizes, [5, attributed.len() as u64, nested_attribute.len() as u64]);
    }

    #[test]
    fn large_bulk_is_skipped_not_buffered() {
        let value = vec![b'x'; 300_000];
        let mut request = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$300000\r\n".to_vec();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
        let mut parser = RedisParser::new();
        let mut out = Vec::new();
        for (i, chunk) in request.chunks(4096).enumerate() {
            parser.feed(Side::Request, chunk, i as u64, false, &mut out).unwrap();
            assert!(parser.buffered() < 1024);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(op_target(&out[0]), (Some("SET"), Some("big")));
        assert_eq!((out[0].start_ns, out[0].end_ns), (0, (request.len() as u64 - 16) / 4096));
        let mut reply = b"$300000\r\n".to_vec();
        reply.extend_from_slice(&value);
        reply.extend_from_slice(b"\r\n");
        let msgs = run(Side::Response, &reply.chunks(1000).collect::<Vec<_>>());
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].size, reply.len() as u64);
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let mut parser = RedisParser::new();
        let mut out = Vec::new();
        let ok = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        parser.feed(Side::Response, &ok, 1, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let deep = [b"*1\r\n".repeat(MAX_DEPTH + 1), b":1\r\n".to_vec()].concat();
        assert!(parser.feed(Side::Response, &deep, 2, false, &mut out).is_err());
        // The parser resynchronizes on a chunk that starts a reply.
        parser.feed(Side::Response, b"+OK\r\n", 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut parser = RedisParser::new();
        let mut out = Vec::new();
        assert!(parser.feed(Side::Response, b"HTTP/1.1 200 OK\r\n", 1, false, &mut out).is_err());
        assert!(parser.feed(Side::Request, b"\x16\x03\x01\x02\x00\x01\x00\r\n", 1, false, &mut out).is_err());
        assert!(parser.feed(Side::Response, b"$abc\r\n", 1, false, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn gap_mid_message_gives_partial_and_resyncs() {
        let mut parser = RedisParser::new();
        let mut out = Vec::new();
        parser.feed(Side::Request, b"*3\r\n$3\r\nSET\r\n$5\r\nmykey\r\n$100\r\nabc", 1, false, &mut out).unwrap();
        parser.feed(Side::Request, b"ef\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 2, true, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].partial);
        assert_eq!(op_target(&out[0]), (Some("SET"), Some("mykey")));
        assert_eq!((out[0].start_ns, out[0].end_ns), (1, 1));
        assert_eq!(op_target(&out[1]), (Some("GET"), Some("k")));
        assert!(!out[1].partial);

        parser.feed(Side::Response, b"*2\r\n$1\r\na\r\n", 1, false, &mut out).unwrap();
        parser.feed(Side::Response, b"lo world\r\n", 2, true, &mut out).unwrap();
        parser.feed(Side::Response, b"-ERR unknown command\r\n", 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out[2].partial && out[2].status.as_deref() == Some("OK"));
        assert_eq!(out[3].error.as_deref(), Some("ERR unknown command"));
    }

    #[test]
    fn mid_stream_start_skips_to_a_command() {
        let mut out = Vec::new();
        let mut parser = RedisParser::new();
        let middle = b"\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        parser.feed(Side::Request, middle, 1, true, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(op_target(&out[0]), (Some("GET"), Some("k")));
    }

    /// A request stream and a reply stream covering every feature.
    fn sample_streams() -> (Vec<u8>, Vec<u8>) {
        let requests = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec();
        let replies =
            b"+OK\r\n>2\r\n$1\r\na\r\n:1\r\n|1\r\n+a\r\n:1\r\n$5\r\nhello\r\n%1\r\n+k\r\n~1\r\n_\r\n-ERR x\r\n"
                .to_vec();
        (requests, replies)
    }

    #[test]
    fn uncaptured_bulk_bytes_are_counted_and_keep_the_stream_in_step() {
        let mut p = RedisParser::new();
        let mut out = Vec::new();
        let head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000\r\n";
        // The capture kept the header lines and 1000 bytes of the value (more than the parser
        // keeps of an argument); the other 9000 and the CRLF went by uncaptured.
        let first = [&head[..], &[b'v'; 1000]].concat();
        p.feed(Side::Request, &first, 1, false, &mut out).unwrap();
        // More than the bulk string holds cannot be placed.
        assert!(!p.skip(Side::Request, 9_003, 2, &mut out));
        assert!(p.skip(Side::Request, 9_002, 2, &mut out));
        p.feed(Side::Request, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(op_target(&out[0]), (Some("SET"), Some("k")));
        assert_eq!((out[0].size, out[0].end_ns, out[0].partial), (head.len() as u64 + 10_002, 2, false));
        assert_eq!(op_target(&out[1]), (Some("GET"), Some("k")));
        // In a header line, uncaptured bytes cannot be placed; nor in a key still being kept.
        assert!(!p.skip(Side::Request, 10, 4, &mut out));
        p.feed(Side::Request, b"*2\r\n$3\r\nGET\r\n$600\r\nkey", 5, false, &mut out).unwrap();
        assert!(!p.skip(Side::Request, 10, 6, &mut out));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(0usize..2048, 0..8),
            gap_every in 0usize..5,
        ) {
            for side in [Side::Request, Side::Response] {
                let mut parser = RedisParser::new();
                let mut out = Vec::new();
                let mut cuts = cuts.clone();
                cuts.push(data.len());
                cuts.sort_unstable();
                let mut start = 0;
                for (i, &cut) in cuts.iter().enumerate() {
                    let cut = cut.min(data.len()).max(start);
                    let gap = gap_every != 0 && i % gap_every == 0;
                    let _ = parser.feed(side, &data[start..cut], i as u64, gap, &mut out);
                    prop_assert!(parser.buffered() <= MAX_BUFFERED);
                    start = cut;
                }
                prop_assert!(out.len() <= data.len() + cuts.len());
            }
        }

        #[test]
        fn any_split_of_valid_streams_gives_the_same_messages(
            cuts in proptest::collection::vec(0usize..200, 0..10),
        ) {
            let (requests, replies) = sample_streams();
            for (side, bytes) in [(Side::Request, requests), (Side::Response, replies)] {
                let whole = run(side, &[&bytes]);
                let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
                cuts.sort_unstable();
                let mut pieces = Vec::new();
                let mut start = 0;
                for cut in cuts.into_iter().chain([bytes.len()]) {
                    pieces.push(&bytes[start..cut]);
                    start = cut;
                }
                prop_assert_eq!(run(side, &pieces), whole);
            }
        }

        #[test]
        fn mutated_streams_never_panic(
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..4),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let (requests, replies) = sample_streams();
            for (side, mut bytes) in [(Side::Request, requests), (Side::Response, replies)] {
                for &(at, byte) in &flips {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
                let mut parser = RedisParser::new();
                let mut out = Vec::new();
                let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
                cuts.sort_unstable();
                let mut start = 0;
                for cut in cuts.into_iter().chain([bytes.len()]) {
                    let _ = parser.feed(side, &bytes[start..cut], 1, false, &mut out);
                    prop_assert!(parser.buffered() <= MAX_BUFFERED);
                    start = cut;
                }
                prop_assert!(out.len() <= bytes.len());
            }
        }
    }
}
