//! DNS (RFC 1035) over UDP and TCP, paired by query id ([`MatchKey::QueryId`]).
//!
//! Over UDP every chunk is one datagram, hence one message. Over TCP (RFC 7766) every message has
//! a two-byte big-endian length prefix; messages may span chunks or share them. Only the first
//! [`PREFIX_CAP`] bytes of a TCP message are buffered (header, question, leading answers); the
//! rest, as in zone transfers, is counted and skipped.

use crate::framing::{Framer, Head, Header};
use crate::message::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes of a TCP message kept per side to read its header, question and first answers.
const PREFIX_CAP: usize = 16 * 1024;
const HEADER: usize = 12;
/// Smallest plausible message: a header and a question for the root name.
const MIN_QUERY: usize = HEADER + 5;
/// Compression pointers followed in one name: more is a loop (a real name needs a handful).
const MAX_JUMPS: usize = 16;
/// Longest name on the wire (RFC 1035 section 2.3.4).
const MAX_NAME: usize = 255;

const QR: u16 = 0x8000;
const TC: u16 = 0x0200;
const Z: u16 = 0x0040;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// True when `first` looks like a DNS message of `side` sent over UDP (no length prefix).
pub fn detect_udp(side: Side, first: &[u8]) -> bool {
    plausible(side, first)
}

/// True when `first` looks like a DNS message of `side` sent over TCP (two-byte length prefix).
pub fn detect_tcp(side: Side, first: &[u8]) -> bool {
    first.len() >= 2 && usize::from(be16(first, 0)) >= MIN_QUERY && plausible(side, &first[2..])
}

/// True when `first` looks like a DNS message of `side`, with or without a TCP length prefix.
pub fn detect(side: Side, first: &[u8]) -> bool {
    detect_udp(side, first) || detect_tcp(side, first)
}

/// A standard query or its response: opcode 0, the QR bit of `side`, a few questions, small
/// counts, and a first question of printable labels (no compression: nothing precedes it) with a
/// known class.
fn plausible(side: Side, m: &[u8]) -> bool {
    if m.len() < MIN_QUERY {
        return false;
    }
    let flags = be16(m, 2);
    let (qd, an, ns, ar) = (be16(m, 4), be16(m, 6), be16(m, 8), be16(m, 10));
    let counts_ok = match side {
        Side::Request => flags & QR == 0 && flags & 0x000f == 0 && an == 0 && ns == 0 && ar <= 2,
        Side::Response => flags & QR != 0 && an <= 512 && ns <= 64 && ar <= 64,
    };
    if !counts_ok || (flags >> 11) & 0xf != 0 || flags & Z != 0 || !(1..=4).contains(&qd) {
        return false;
    }
    let Some(end) = plain_name_end(m, HEADER) else {
        return false;
    };
    m.get(end..end + 4).is_some_and(|q| matches!(be16(q, 2) & 0x7fff, 1 | 3 | 4 | 254 | 255))
}

/// End of an uncompressed name of printable labels starting at `pos`.
fn plain_name_end(m: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = usize::from(*m.get(pos)?);
        if len == 0 {
            return Some(pos + 1);
        }
        if len & 0xc0 != 0 || pos + 1 + len - HEADER > MAX_NAME {
            return None;
        }
        let label = m.get(pos + 1..pos + 1 + len)?;
        if !label.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return None;
        }
        pos += 1 + len;
    }
}

/// Parses DNS messages. `operation` is the query type of the first question (`A`, `AAAA`,
/// `TYPE<n>`), `target` its name (lower-cased, no trailing dot; `.` for the root). Responses also
/// carry `status` (rcode name), `error` (rcode name unless NOERROR), `dns.answers` (answer count)
/// and `dns.answer` (the first A or AAAA address among the answers).
pub struct DnsParser {
    tcp: bool,
    request: TcpStream,
    response: TcpStream,
}

impl DnsParser {
    /// `tcp`: messages carry a two-byte length prefix and may span chunks (DNS over TCP);
    /// otherwise every chunk is one datagram.
    pub fn new(tcp: bool) -> Self {
        DnsParser { tcp, request: TcpStream::default(), response: TcpStream::default() }
    }
}

impl Parser for DnsParser {
    fn feed(
        &mut self,
        side: Side,
        chunk: &[u8],
        ts_ns: u64,
        gap: bool,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError> {
        if !self.tcp {
            // A datagram stands alone: a lost one does not affect the next.
            let frame =
                Frame { side, size: chunk.len() as u64, start_ns: ts_ns, end_ns: ts_ns, cut: false, capped: false };
            out.push(parse(chunk, &frame)?);
            return Ok(());
        }
        match side {
            Side::Request => self.request.feed(side, chunk, ts_ns, gap, out),
            Side::Response => self.response.feed(side, chunk, ts_ns, gap, out),
        }
    }

    fn buffered(&self) -> usize {
        self.request.framer.held() + self.response.framer.held()
    }
}

/// The two-byte length prefix of a message over TCP; the first [`PREFIX_CAP`] bytes of each
/// message are kept.
struct Prefix;

impl Header for Prefix {
    type Tag = ();
    type Error = ParseError;

    fn header_len(&self) -> usize {
        2
    }

    fn read(&self, h: &[u8]) -> Result<Head<()>, ParseError> {
        let len = usize::from(u16::from_be_bytes([h[0], h[1]]));
        if len < HEADER {
            return Err(ParseError(format!("DNS message length {len} is shorter than a header")));
        }
        Ok(Head { tag: (), body: len, keep: PREFIX_CAP, continued: false })
    }
}

/// One direction of a DNS-over-TCP connection.
#[derive(Default)]
struct TcpStream {
    framer: Framer<()>,
    last_ts: u64,
    /// After a gap or an error: waiting for a chunk that starts with a plausible message.
    lost: bool,
}

impl TcpStream {
    fn feed(&mut self, side: Side, chunk: &[u8], ts: u64, gap: bool, out: &mut Vec<Message>) -> Result<(), ParseError> {
        if gap {
            self.cut(side, out);
            self.lost = true;
        }
        self.last_ts = ts;
        if self.lost {
            if !detect_tcp(side, chunk) {
                return Ok(());
            }
            self.lost = false;
        }
        let mut pos = 0;
        loop {
            let parsed = match self.framer.next(chunk, &mut pos, ts, &Prefix) {
                Ok(Some(m)) => {
                    let capped = m.body_len > PREFIX_CAP;
                    let frame = Frame { side, size: m.size, start_ns: m.start_ns, end_ns: ts, cut: false, capped };
                    parse(m.body, &frame)
                }
                Ok(None) => return Ok(()),
                Err(e) => Err(e),
            };
            match parsed {
                Ok(msg) => out.push(msg),
                Err(e) => {
                    self.framer.reset();
                    self.lost = true;
                    return Err(e);
                }
            }
        }
    }

    /// Reports the message in progress as partial (bytes were lost) and forgets it.
    fn cut(&mut self, side: Side, out: &mut Vec<Message>) {
        if let Some(m) = self.framer.cut(self.last_ts).filter(|m| m.body.len() >= HEADER) {
            let frame = Frame { side, size: m.size, start_ns: m.start_ns, end_ns: m.end_ns, cut: true, capped: false };
            out.extend(parse(m.body, &frame).ok());
        }
    }
}

/// Where a message sits on the wire.
struct Frame {
    side: Side,
    size: u64,
    start_ns: u64,
    end_ns: u64,
    /// Bytes of the message were lost.
    cut: bool,
    /// Only the first `PREFIX_CAP` bytes were kept: what lies past them was not read, not lost.
    capped: bool,
}

/// The message from `m` (the whole message, or its first bytes when cut or capped).
fn parse(m: &[u8], frame: &Frame) -> Result<Message, ParseError> {
    if m.len() < HEADER {
        return Err(ParseError(format!("DNS message of {} bytes is shorter than a header", m.len())));
    }
    let flags = be16(m, 2);
    if (flags & QR != 0) != (frame.side == Side::Response) {
        return Err(ParseError("DNS QR bit does not match the direction".into()));
    }
    let mut msg = Message {
        side: Some(frame.side),
        key: Some(MatchKey::QueryId(be16(m, 0))),
        start_ns: frame.start_ns,
        end_ns: frame.end_ns,
        size: frame.size,
        ..Message::default()
    };
    let body = Body::read(m)?;
    msg.operation = body.qtype.map(type_name);
    msg.target = body.qname;
    if frame.side == Side::Response {
        let rcode = rcode_name(flags & 0xf);
        msg.error = (flags & 0xf != 0).then(|| rcode.clone());
        msg.status = Some(rcode);
        msg.attributes.push(("dns.answers", be16(m, 6).to_string()));
        if let Some(address) = body.address {
            msg.attributes.push(("dns.answer", address));
        }
    }
    msg.partial = frame.cut || flags & TC != 0 || (!body.complete && !frame.capped);
    Ok(msg)
}

/// What is read past the header.
struct Body {
    qname: Option<String>,
    qtype: Option<u16>,
    /// The first A or AAAA address among the answers.
    address: Option<String>,
    /// The sections up to the first address (or all answers) were all there.
    complete: bool,
}

impl Body {
    fn read(m: &[u8]) -> Result<Body, ParseError> {
        let mut body = Body { qname: None, qtype: None, address: None, complete: false };
        let (qd, an) = (be16(m, 4), be16(m, 6));
        let mut pos = HEADER;
        if qd > 0 {
            let Some((name, end)) = read_name(m, pos)? else {
                return Ok(body);
            };
            body.qname = Some(name);
            if m.len() < end + 4 {
                return Ok(body);
            }
            body.qtype = Some(be16(m, end));
            pos = end + 4;
        }
        for _ in 1..qd {
            match skip_name(m, pos).filter(|&end| end + 4 <= m.len()) {
                Some(end) => pos = end + 4,
                None => return Ok(body),
            }
        }
        for _ in 0..an {
            let Some(end) = skip_name(m, pos).filter(|&end| end + 10 <= m.len()) else {
                return Ok(body);
            };
            let (rtype, rdlen) = (be16(m, end), usize::from(be16(m, end + 8)));
            let Some(rdata) = m.get(end + 10..end + 10 + rdlen) else {
                return Ok(body);
            };
            body.address = address(rtype, rdata);
            if body.address.is_some() {
                break;
            }
            pos = end + 10 + rdlen;
        }
        body.complete = true;
        Ok(body)
    }
}

/// The text of an A or AAAA record's data.
fn address(rtype: u16, rdata: &[u8]) -> Option<String> {
    match rtype {
        TYPE_A => <[u8; 4]>::try_from(rdata).ok().map(|a| Ipv4Addr::from(a).to_string()),
        TYPE_AAAA => <[u8; 16]>::try_from(rdata).ok().map(|a| Ipv6Addr::from(a).to_string()),
        _ => None,
    }
}

/// The name at `pos`, decompressed, and the offset after it where it was written. `None` when the
/// message ends inside it; an error for a compression loop, an overlong name or a reserved label
/// type.
fn read_name(m: &[u8], mut pos: usize) -> Result<Option<(String, usize)>, ParseError> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    let mut wire = 1;
    loop {
        let Some(&len) = m.get(pos) else {
            return Ok(None);
        };
        let len = usize::from(len);
        match len & 0xc0 {
            0x00 if len == 0 => break,
            0x00 => {
                wire += len + 1;
                if wire > MAX_NAME {
                    return Err(ParseError("DNS name longer than 255 bytes".into()));
                }
                let Some(label) = m.get(pos + 1..pos + 1 + len) else {
                    return Ok(None);
                };
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + len;
            }
            0xc0 => {
                let Some(&low) = m.get(pos + 1) else {
                    return Ok(None);
                };
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return Err(ParseError("DNS name compression loop".into()));
                }
                pos = (len & 0x3f) << 8 | usize::from(low);
            }
            _ => return Err(ParseError(format!("DNS label type 0x{:02x} is not supported", len & 0xc0))),
        }
    }
    if name.is_empty() {
        name.push('.');
    }
    Ok(Some((name, end.unwrap_or(pos + 1))))
}

/// Appends a label lower-cased, escaping dots, backslashes and unprintable bytes as `dig` does.
fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                name.push('\\');
                name.push(char::from(b));
            }
            0x21..=0x7e => name.push(char::from(b.to_ascii_lowercase())),
            _ => name.push_str(&format!("\\{b:03}")),
        }
    }
}

/// The offset after the name at `pos`, without following pointers.
fn skip_name(m: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = usize::from(*m.get(pos)?);
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + len,
            0xc0 => return Some(pos + 2),
            _ => return None,
        }
    }
}

fn be16(m: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([m[at], m[at + 1]])
}

/// Query type mnemonic (RFC 1035, 3596, 2782, 3403, 6891, 4034, 9460, 8659).
fn type_name(t: u16) -> String {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    name.to_string()
}

/// Response code mnemonic (RFC 1035, 2136).
fn rcode_name(rcode: u16) -> String {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
        "NOTZONE",
    ];
    NAMES.get(usize::from(rcode)).map_or_else(|| format!("RCODE{rcode}"), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `dig e2e.strata.test A`: RD and AD set, an EDNS OPT record (UDP size 1232) with a cookie.
    const QUERY_A: [u8; 56] = [
        0x1a, 0x2b, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // header
        0x03, b'e', b'2', b'e', 0x06, b's', b't', b'r', b'a', b't', b'a', 0x04, b't', b'e', b's', b't', 0x00, 0x00,
        0x01, 0x00, 0x01, // A IN
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, // OPT, rdlen 12
        0x00, 0x0a, 0x00, 0x08, 0x5e, 0x2b, 0x91, 0x0c, 0x77, 0x3a, 0x10, 0xe4, // COOKIE
    ];

    /// Its answer: QR RD RA, e2e.strata.test 300 IN A 192.0.2.7 (name compressed), OPT.
    const ANSWER_A: [u8; 60] = [
        0x1a, 0x2b, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, // header
        0x03, b'e', b'2', b'e', 0x06, b's', b't', b'r', b'a', b't', b'a', 0x04, b't', b'e', b's', b't', 0x00, 0x00,
        0x01, 0x00, 0x01, // A IN
        0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x04, 192, 0, 2, 7, // answer
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // OPT
    ];

    /// `E2E.Strata.Test AAAA`, RD set, no EDNS.
    const QUERY_AAAA: [u8; 33] = [
        0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
        0x03, b'E', b'2', b'E', 0x06, b'S', b't', b'r', b'a', b't', b'a', 0x04, b'T', b'e', b's', b't', 0x00, 0x00,
        0x1c, 0x00, 0x01, // AAAA IN
    ];

    /// Its answer: a CNAME to web.strata.test, then web.strata.test AAAA 2001:db8::7.
    const ANSWER_AAAA: [u8; 79] = [
        0xbe, 0xef, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, // header
        0x03, b'E', b'2', b'E', 0x06, b'S', b't', b'r', b'a', b't', b'a', 0x04, b'T', b'e', b's', b't', 0x00, 0x00,
        0x1c, 0x00, 0x01, // AAAA IN
        0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x06, 0x03, b'w', b'e', b'b', 0xc0, 0x10,
        0xc0, 0x2d, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x10, // AAAA at offset 51
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
    ];

    /// nx.strata.test A: NXDOMAIN with the zone's SOA in the authority section.
    const NXDOMAIN: [u8; 83] = [
        0x4e, 0x58, 0x81, 0x83, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // header
        0x02, b'n', b'x', 0x06, b's', b't', b'r', b'a', b't', b'a', 0x04, b't', b'e', b's', b't', 0x00, // name
        0x00, 0x01, 0x00, 0x01, // A IN
        0xc0, 0x0f, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x27, // strata.test SOA, rdlen 39
        0x03, b'n', b's', b'1', 0xc0, 0x0f, // mname
        0x0a, b'h', b'o', b's', b't', b'm', b'a', b's', b't', b'e', b'r', 0xc0, 0x0f, // rname
        0x78, 0x9a, 0xbc, 0xde, 0x00, 0x00, 0x1c, 0x20, 0x00, 0x00, 0x0e, 0x10, // serial refresh retry
        0x00, 0x12, 0x75, 0x00, 0x00, 0x00, 0x01, 0x2c, // expire minimum
    ];

    fn tcp(message: &[u8]) -> Vec<u8> {
        [&(message.len() as u16).to_be_bytes()[..], message].concat()
    }

    fn run(parser_tcp: bool, side: Side, chunks: &[&[u8]]) -> Vec<Message> {
        let mut parser = DnsParser::new(parser_tcp);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(side, chunk, 7, false, &mut out).expect("valid DNS");
            assert!(parser.buffered() <= MAX_BUFFERED);
        }
        out
    }

    fn udp(side: Side, datagram: &[u8]) -> Message {
        let mut msgs = run(false, side, &[datagram]);
        assert_eq!(msgs.len(), 1);
        msgs.remove(0)
    }

    fn attr<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
        m.attributes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn detects_queries_and_answers_with_and_without_length() {
        assert!(detect_udp(Side::Request, &QUERY_A) && !detect_tcp(Side::Request, &QUERY_A));
        assert!(detect_tcp(Side::Request, &tcp(&QUERY_A)) && !detect_udp(Side::Request, &tcp(&QUERY_A)));
        assert!(detect(Side::Response, &ANSWER_A) && detect(Side::Response, &tcp(&ANSWER_AAAA)));
        assert!(detect(Side::Response, &NXDOMAIN) && detect(Side::Request, &QUERY_AAAA));
        assert!(!detect(Side::Response, &QUERY_A) && !detect(Side::Request, &ANSWER_A));
        assert!(!detect(Side::Request, &QUERY_A[..20]));
        for other in [
            &b"*1\r\n$4\r\nPING\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            b"",
        ] {
            assert!(!detect(Side::Request, other) && !detect(Side::Response, other));
        }
    }

    #[test]
    fn a_query_and_answer() {
        let q = udp(Side::Request, &QUERY_A);
        assert_eq!(q.key, Some(MatchKey::QueryId(0x1a2b)));
        assert_eq!((q.operation.as_deref(), q.target.as_deref()), (Some("A"), Some("e2e.strata.test")));
        assert_eq!((q.status.as_ref(), q.error.as_ref(), q.partial, q.size), (None, None, false, 56));
        assert!(q.attributes.is_empty());
        let a = udp(Side::Response, &ANSWER_A);
        assert_eq!(a.key, Some(MatchKey::QueryId(0x1a2b)));
        assert_eq!((a.operation.as_deref(), a.target.as_deref()), (Some("A"), Some("e2e.strata.test")));
        assert_eq!((a.status.as_deref(), a.error.as_ref(), a.partial), (Some("NOERROR"), None, false));
        assert_eq!((attr(&a, "dns.answers"), attr(&a, "dns.answer")), (Some("1"), Some("192.0.2.7")));
    }

    #[test]
    fn aaaa_behind_a_cname() {
        let q = udp(Side::Request, &QUERY_AAAA);
        assert_eq!((q.operation.as_deref(), q.target.as_deref()), (Some("AAAA"), Some("e2e.strata.test")));
        let a = udp(Side::Response, &ANSWER_AAAA);
        assert_eq!((attr(&a, "dns.answers"), attr(&a, "dns.answer")), (Some("2"), Some("2001:db8::7")));
        assert!(!a.partial);
    }

    #[test]
    fn nxdomain() {
        let a = udp(Side::Response, &NXDOMAIN);
        assert_eq!(a.target.as_deref(), Some("nx.strata.test"));
        assert_eq!((a.status.as_deref(), a.error.as_deref()), (Some("NXDOMAIN"), Some("NXDOMAIN")));
        assert_eq!((attr(&a, "dns.answers"), attr(&a, "dns.answer")), (Some("0"), None));
        assert!(!a.partial);
    }

    #[test]
    fn names_and_codes() {
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(99), "TYPE99");
        assert_eq!(rcode_name(5), "REFUSED");
        assert_eq!(rcode_name(12), "RCODE12");
        let mut query = QUERY_AAAA;
        query[29] = 0x00;
        query[30] = 0x41;
        let m = udp(Side::Request, &query);
        assert_eq!(m.operation.as_deref(), Some("HTTPS"));
        // The root name, and labels with bytes a hostname does not have.
        let root = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
        assert_eq!(udp(Side::Request, &root).target.as_deref(), Some("."));
        let odd = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'.', 0, 1, b'B', 0, 0, 1, 0, 1];
        assert_eq!(udp(Side::Request, &odd).target.as_deref(), Some("a\\.\\000.b"));
    }

    #[test]
    fn truncated_answers_are_partial() {
        let mut tc = ANSWER_A;
        tc[2] |= 0x02;
        let m = udp(Side::Response, &tc);
        assert!(m.partial && attr(&m, "dns.answer") == Some("192.0.2.7"));
        let short = udp(Side::Response, &ANSWER_A[..40]);
        assert!(short.partial);
        assert_eq!((short.target.as_deref(), attr(&short, "dns.answer")), (Some("e2e.strata.test"), None));
        let mid_name = udp(Side::Response, &ANSWER_A[..20]);
        assert!(mid_name.partial && mid_name.target.is_none() && mid_name.status.as_deref() == Some("NOERROR"));
        let mut out = Vec::new();
        assert!(DnsParser::new(false).feed(Side::Response, &ANSWER_A[..11], 1, false, &mut out).is_err());
    }

    #[test]
    fn malformed_names_are_errors() {
        let mut looping = ANSWER_A;
        looping[12] = 0xc0;
        looping[13] = 0x0c;
        let mut out = Vec::new();
        let err = DnsParser::new(false).feed(Side::Response, &looping, 1, false, &mut out).unwrap_err();
        assert!(err.0.contains("loop"), "{err}");
        let mut long = QUERY_AAAA[..12].to_vec();
        long.extend(b"\x01a".repeat(130));
        long.extend([0, 0, 1, 0, 1]);
        assert!(DnsParser::new(false).feed(Side::Request, &long, 1, false, &mut out).is_err());
        assert!(DnsParser::new(false).feed(Side::Request, &ANSWER_A, 1, false, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn tcp_framing_split_everywhere() {
        let stream = [tcp(&QUERY_A), tcp(&QUERY_AAAA)].concat();
        let replies = [tcp(&ANSWER_A), tcp(&ANSWER_AAAA), tcp(&NXDOMAIN)].concat();
        for (side, bytes) in [(Side::Request, stream), (Side::Response, replies)] {
            let whole = run(true, side, &[&bytes]);
            let count = if side == Side::Request { 2 } else { 3 };
            assert_eq!(whole.len(), count);
            assert_eq!(whole.iter().map(|m| m.size).sum::<u64>(), bytes.len() as u64);
            assert_eq!(run(true, side, &bytes.chunks(1).collect::<Vec<_>>()), whole);
            for cut in 0..=bytes.len() {
                assert_eq!(run(true, side, &[&bytes[..cut], &bytes[cut..]]), whole, "split at {cut}");
            }
        }
        let reply = tcp(&ANSWER_A);
        let udp_reply = udp(Side::Response, &ANSWER_A);
        let tcp_reply = &run(true, Side::Response, &[&reply])[0];
        assert_eq!((tcp_reply.size, &tcp_reply.attributes), (62, &udp_reply.attributes));
    }

    #[test]
    fn tcp_times_span_chunks() {
        let bytes = tcp(&ANSWER_A);
        let mut parser = DnsParser::new(true);
        let mut out = Vec::new();
        parser.feed(Side::Response, &bytes[..1], 10, false, &mut out).unwrap();
        parser.feed(Side::Response, &bytes[1..30], 20, false, &mut out).unwrap();
        assert!(out.is_empty() && parser.buffered() == 28);
        parser.feed(Side::Response, &bytes[30..], 30, false, &mut out).unwrap();
        assert_eq!((out[0].start_ns, out[0].end_ns), (10, 30));
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn tcp_gap_gives_partial_then_resyncs() {
        let mut parser = DnsParser::new(true);
        let mut out = Vec::new();
        let first = tcp(&ANSWER_AAAA);
        parser.feed(Side::Response, &first[..40], 1, false, &mut out).unwrap();
        // Lost bytes, and a chunk from the middle of a message: skipped.
        parser.feed(Side::Response, &first[50..], 2, true, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].partial);
        assert_eq!(out[0].key, Some(MatchKey::QueryId(0xbeef)));
        assert_eq!(out[0].target.as_deref(), Some("e2e.strata.test"));
        parser.feed(Side::Response, &tcp(&NXDOMAIN), 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].status.as_deref(), Some("NXDOMAIN"));
        assert!(!out[1].partial);
    }

    #[test]
    fn large_tcp_message_is_capped_not_buffered() {
        let mut big = ANSWER_A[..12].to_vec();
        big[11] = 0;
        big[7] = 0xff;
        big.extend_from_slice(&ANSWER_A[12..33]);
        let record = &ANSWER_A[33..49];
        while big.len() + record.len() <= 60_000 {
            big.extend_from_slice(record);
        }
        let bytes = tcp(&big);
        let mut parser = DnsParser::new(true);
        let mut out = Vec::new();
        for chunk in bytes.chunks(1000) {
            parser.feed(Side::Response, chunk, 1, false, &mut out).unwrap();
            assert!(parser.buffered() <= PREFIX_CAP);
        }
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].size, out[0].partial), (bytes.len() as u64, false));
        assert_eq!(attr(&out[0], "dns.answer"), Some("192.0.2.7"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..1024),
            cuts in proptest::collection::vec(0usize..1024, 0..8),
            gap_every in 0usize..5,
        ) {
            for (tcp_mode, side) in [(true, Side::Request), (true, Side::Response), (false, Side::Response)] {
                let _ = detect(side, &data);
                let mut parser = DnsParser::new(tcp_mode);
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
                prop_assert!(out.len() <= cuts.len() + data.len() / 12);
            }
        }

        #[test]
        fn any_split_of_a_tcp_stream_gives_the_same_messages(
            cuts in proptest::collection::vec(0usize..230, 0..10),
        ) {
            let bytes = [tcp(&ANSWER_A), tcp(&ANSWER_AAAA), tcp(&NXDOMAIN)].concat();
            let whole = run(true, Side::Response, &[&bytes]);
            let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                pieces.push(&bytes[start..cut]);
                start = cut;
            }
            prop_assert_eq!(run(true, Side::Response, &pieces), whole);
        }

        #[test]
        fn mutated_messages_never_panic(
            flips in proptest::collection::vec((0usize..230, any::<u8>()), 1..4),
            cuts in proptest::collection::vec(0usize..230, 0..6),
        ) {
            let mut bytes = [tcp(&ANSWER_A), tcp(&ANSWER_AAAA), tcp(&NXDOMAIN)].concat();
            for &(at, byte) in &flips {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            for datagram in [&ANSWER_A[..], &ANSWER_AAAA, &NXDOMAIN] {
                let mut datagram = datagram.to_vec();
                for &(at, byte) in &flips {
                    let at = at % datagram.len();
                    datagram[at] = byte;
                }
                let _ = DnsParser::new(false).feed(Side::Response, &datagram, 1, false, &mut Vec::new());
            }
            let mut parser = DnsParser::new(true);
            let mut out = Vec::new();
            let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                let _ = parser.feed(Side::Response, &bytes[start..cut], 1, false, &mut out);
                prop_assert!(parser.buffered() <= MAX_BUFFERED);
                start = cut;
            }
            prop_assert!(out.len() <= bytes.len() / 14);
        }
    }
}
