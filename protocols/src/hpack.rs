//! HPACK (RFC 7541): the header compression of HTTP/2. Decoding only: strata reads what peers
//! send, it never encodes.
//!
//! One [`Decoder`] per direction of a connection: the dynamic table is state shared by every
//! header block one side sends, so blocks must be fed in wire order. A decoder that joined a
//! connection late (or lost bytes) is *uncertain*: references to dynamic entries it never saw are
//! reported as unknown instead of failing the block.

use std::collections::VecDeque;

/// The dynamic table size a decoder starts with (SETTINGS_HEADER_TABLE_SIZE default, RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Largest dynamic table honoured, whatever size updates ask for: bounds memory per direction.
/// A peer using more gets some entries evicted early here, which shows up as unknown references.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;

/// Per-entry overhead the table size counts besides name and value (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Why a header block could not be decoded (HTTP/2 calls this a COMPRESSION_ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The block ended inside a representation.
    Truncated,
    /// An integer did not fit in 32 bits.
    IntegerOverflow,
    /// Index 0, or an index past the tables of a decoder that saw the whole connection.
    InvalidIndex(usize),
    /// A Huffman string held the EOS symbol.
    HuffmanEos,
    /// A Huffman string ended with more than 7 bits or bits that are not a prefix of EOS.
    HuffmanPadding,
    /// A dynamic table size update after the first header field of a block (RFC 7541 §4.2).
    LateSizeUpdate,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Truncated => f.write_str("header block truncated"),
            Error::IntegerOverflow => f.write_str("integer overflow"),
            Error::InvalidIndex(i) => write!(f, "invalid table index {i}"),
            Error::HuffmanEos => f.write_str("EOS in Huffman string"),
            Error::HuffmanPadding => f.write_str("bad Huffman padding"),
            Error::LateSizeUpdate => f.write_str("table size update after a header field"),
        }
    }
}

/// RFC 7541 Appendix A.
pub const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// One dynamic table entry. `name` is `None` when it came from a literal whose indexed name the
/// decoder did not know (joined mid-connection).
struct Entry {
    name: Option<Box<[u8]>>,
    value: Box<[u8]>,
}

impl Entry {
    fn size(&self) -> usize {
        self.name.as_ref().map_or(0, |n| n.len()) + self.value.len() + ENTRY_OVERHEAD
    }
}

/// A header name as a representation refers to it.
enum Name<'a> {
    Known(&'a [u8]),
    Unknown,
}

/// The decoding context of one direction of a connection.
pub struct Decoder {
    /// Newest entry first: dynamic index 62 is `dynamic[0]`.
    dynamic: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    uncertain: bool,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of a connection: empty dynamic table of [`DEFAULT_TABLE_SIZE`].
    pub fn new() -> Self {
        Decoder {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            uncertain: false,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Forgets the dynamic table because earlier blocks were not (or not all) seen: later
    /// references to entries older than what is decoded from now on are reported unknown.
    ///
    /// Keeping only the entries inserted after this point stays exact: they are the newest
    /// entries of the peer's table, at the same indices, and the peer evicts them last.
    pub fn set_uncertain(&mut self) {
        self.dynamic.clear();
        self.size = 0;
        self.uncertain = true;
    }

    /// Current dynamic table size in RFC 7541 §4.1 terms.
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Number of dynamic table entries.
    pub fn table_len(&self) -> usize {
        self.dynamic.len()
    }

    /// Decodes one complete header block, calling `emit(name, value)` for each field in order.
    /// Returns `Ok(true)` when every field was resolved, `Ok(false)` when some referred to
    /// dynamic entries this (uncertain) decoder does not have; those fields are skipped.
    pub fn decode<F: FnMut(&[u8], &[u8])>(&mut self, block: &[u8], mut emit: F) -> Result<bool, Error> {
        let mut pos = 0;
        let mut complete = true;
        let mut fields_seen = false;
        while pos < block.len() {
            let b = block[pos];
            if b & 0x80 != 0 {
                let index = decode_int(block, &mut pos, 7)?;
                match self.lookup(index)? {
                    Some((Name::Known(name), value)) => emit(name, value),
                    _ => complete = false,
                }
                fields_seen = true;
            } else if b & 0xe0 == 0x20 {
                if fields_seen {
                    return Err(Error::LateSizeUpdate);
                }
                let size = decode_int(block, &mut pos, 5)?;
                self.max_size = size.min(MAX_TABLE_SIZE);
                self.evict_to(self.max_size);
            } else {
                // 01xxxxxx: with incremental indexing; 0000xxxx: without; 0001xxxx: never indexed.
                let (prefix, indexing) = if b & 0x40 != 0 { (6, true) } else { (4, false) };
                complete &= self.literal(block, &mut pos, prefix, indexing, &mut emit)?;
                fields_seen = true;
            }
        }
        Ok(complete)
    }

    /// Decodes a literal representation; returns whether its name was known.
    fn literal<F: FnMut(&[u8], &[u8])>(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        prefix: u8,
        indexing: bool,
        emit: &mut F,
    ) -> Result<bool, Error> {
        let name_index = decode_int(block, pos, prefix)?;
        let name = if name_index == 0 {
            Name::Known(read_string(block, pos, &mut self.name_buf)?)
        } else {
            match lookup(&self.dynamic, self.uncertain, name_index)? {
                Some((name, _)) => name,
                None => Name::Unknown,
            }
        };
        let value = read_string(block, pos, &mut self.value_buf)?;
        let known = match name {
            Name::Known(n) => {
                emit(n, value);
                Some(n)
            }
            Name::Unknown => None,
        };
        let complete = known.is_some();
        if indexing {
            let entry = Entry { name: known.map(Box::from), value: Box::from(value) };
            self.insert(entry);
        }
        Ok(complete)
    }

    fn lookup(&self, index: usize) -> Result<Option<(Name<'_>, &[u8])>, Error> {
        lookup(&self.dynamic, self.uncertain, index)
    }

    /// Adds an entry, evicting the oldest ones to make room (RFC 7541 §4.4): an entry larger than
    /// the whole table empties it and is not added.
    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        if size > self.max_size {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.dynamic.push_front(entry);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.dynamic.pop_back() {
                Some(old) => self.size -= old.size(),
                None => self.size = 0,
            }
        }
    }
}

/// Resolves a static or dynamic index. `Ok(None)`: an uncertain decoder does not have it.
fn lookup(dynamic: &VecDeque<Entry>, uncertain: bool, index: usize) -> Result<Option<(Name<'_>, &[u8])>, Error> {
    if index == 0 {
        return Err(Error::InvalidIndex(0));
    }
    if let Some(&(name, value)) = STATIC_TABLE.get(index - 1) {
        return Ok(Some((Name::Known(name.as_bytes()), value.as_bytes())));
    }
    match dynamic.get(index - STATIC_TABLE.len() - 1) {
        Some(entry) => {
            let name = entry.name.as_deref().map_or(Name::Unknown, Name::Known);
            Ok(Some((name, &entry.value)))
        }
        None if uncertain => Ok(None),
        None => Err(Error::InvalidIndex(index)),
    }
}

/// Reads an integer with an `prefix`-bit prefix (RFC 7541 §5.1), at most 32 bits.
pub fn decode_int(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, Error> {
    let mask = (1u32 << prefix) - 1;
    let first = *buf.get(*pos).ok_or(Error::Truncated)?;
    *pos += 1;
    let mut value = u64::from(first) & u64::from(mask);
    if value < u64::from(mask) {
        return Ok(value as usize);
    }
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos).ok_or(Error::Truncated)?;
        *pos += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(Error::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value as usize);
        }
        shift += 7;
        if shift > 28 {
            return Err(Error::IntegerOverflow);
        }
    }
}

/// Reads a string literal (RFC 7541 §5.2): a slice of `buf` when raw, of `scratch` when Huffman.
pub fn read_string<'a>(buf: &'a [u8], pos: &mut usize, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
    let huffman = buf.get(*pos).ok_or(Error::Truncated)? & 0x80 != 0;
    let len = decode_int(buf, pos, 7)?;
    let end = pos.checked_add(len).filter(|&e| e <= buf.len()).ok_or(Error::Truncated)?;
    let raw = &buf[*pos..end];
    *pos = end;
    if !huffman {
        return Ok(raw);
    }
    scratch.clear();
    huffman_decode(raw, scratch)?;
    Ok(scratch)
}

/// Code lengths of the HPACK Huffman code, symbols 0..=255 then EOS (RFC 7541 Appendix B). The
/// code is canonical (codes of one length are consecutive, in symbol order, and each length
/// starts where the shorter ones left off), so the lengths alone determine every code.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const EOS: u16 = 256;
const MIN_LEN: usize = 5;
const MAX_LEN: usize = 30;
/// Bits looked up at once by the fast path: 16 KiB of table, one or two symbols per lookup.
const PAIR_BITS: usize = 12;

/// Canonical decoding tables, computed at compile time from [`CODE_LENGTHS`].
struct Canonical {
    /// Symbols sorted by (code length, symbol): the order codes are assigned in.
    sorted: [u16; 257],
    /// Index in `sorted` of the first symbol of each length.
    offset: [u16; MAX_LEN + 1],
    /// First code of each length.
    first: [u32; MAX_LEN + 1],
    /// Every code of length <= L, left-aligned in 32 bits, is below `limit[L]`; longer ones are not.
    limit: [u64; MAX_LEN + 1],
    /// For the next [`PAIR_BITS`] bits of input: the one or two whole codes they start with, as
    /// `bits << 24 | count << 16 | second << 8 | first` (count 0: the first code is longer).
    pairs: [u32; 1 << PAIR_BITS],
}

const fn build_canonical() -> Canonical {
    let mut c = Canonical {
        sorted: [0; 257],
        offset: [0; MAX_LEN + 1],
        first: [0; MAX_LEN + 1],
        limit: [0; MAX_LEN + 1],
        pairs: [0; 1 << PAIR_BITS],
    };
    let mut n = 0;
    let mut code: u32 = 0;
    let mut len = 1;
    while len <= MAX_LEN {
        c.offset[len] = n as u16;
        c.first[len] = code;
        let mut sym = 0;
        while sym < 257 {
            if CODE_LENGTHS[sym] as usize == len {
                c.sorted[n] = sym as u16;
                n += 1;
                code += 1;
            }
            sym += 1;
        }
        c.limit[len] = (code as u64) << (32 - len);
        code <<= 1;
        len += 1;
    }
    let mut top = 0;
    while top < 1 << PAIR_BITS {
        // The code at the top of `peek` is known when it is no longer than the known bits: whether
        // `peek < limit[L]` depends only on its top L bits.
        let peek = (top as u64) << (32 - PAIR_BITS);
        let (len1, sym1) = code_at(&c, peek);
        if len1 <= PAIR_BITS {
            let (len2, sym2) = code_at(&c, (peek << len1) & 0xffff_ffff);
            c.pairs[top] = if len1 + len2 <= PAIR_BITS {
                (((len1 + len2) as u32) << 24) | (2 << 16) | ((sym2 as u32) << 8) | sym1 as u32
            } else {
                ((len1 as u32) << 24) | (1 << 16) | sym1 as u32
            };
        }
        top += 1;
    }
    c
}

/// The length and symbol of the code at the top of `peek` (32 bits, left-aligned).
const fn code_at(c: &Canonical, peek: u64) -> (usize, u16) {
    let mut len = MIN_LEN;
    // limit[MAX_LEN] is 2^32, above any peek: the loop ends by MAX_LEN.
    while len < MAX_LEN && peek >= c.limit[len] {
        len += 1;
    }
    let idx = c.offset[len] as u32 + ((peek >> (32 - len)) as u32 - c.first[len]);
    (len, c.sorted[idx as usize])
}

static CANONICAL: Canonical = build_canonical();

/// Decodes a Huffman string (RFC 7541 §5.2) onto `out`: rejects EOS, padding longer than 7 bits
/// and padding that is not all ones.
pub fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let c = &CANONICAL;
    // Codes are at least 5 bits; the fast path writes 2 bytes at a time.
    let start = out.len();
    out.resize(start + src.len() * 8 / 5 + 2, 0);
    let buf = &mut out[start..];
    let mut o = 0;
    // `acc` holds `bits` unread bits, left-aligned.
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    let mut i = 0;
    let result = loop {
        if let Some(word) = src.get(i..i + 8) {
            let word = u64::from_be_bytes(word.try_into().unwrap_or_default());
            acc |= word >> bits;
            let take = (63 - bits) / 8;
            i += take as usize;
            bits += take * 8;
        } else {
            while bits <= 56 && i < src.len() {
                acc |= u64::from(src[i]) << (56 - bits);
                bits += 8;
                i += 1;
            }
        }
        if bits >= PAIR_BITS as u32 {
            let e = c.pairs[(acc >> (64 - PAIR_BITS)) as usize];
            let count = (e >> 16) & 3;
            if count != 0 {
                buf[o] = e as u8;
                buf[o + 1] = (e >> 8) as u8;
                o += count as usize;
                acc <<= e >> 24;
                bits -= e >> 24;
                continue;
            }
        }
        if bits == 0 {
            break Ok(());
        }
        // A long code, or the tail. Missing bits read as ones, so padding looks like EOS's start.
        let fill = if bits >= 32 { 0 } else { u32::MAX >> bits };
        let (len, sym) = code_at(c, u64::from((acc >> 32) as u32 | fill));
        let len = len as u32;
        if len > bits {
            let all_ones = acc >> (64 - bits) == (1u64 << bits) - 1;
            break if bits < 8 && all_ones { Ok(()) } else { Err(Error::HuffmanPadding) };
        }
        if sym == EOS {
            break Err(Error::HuffmanEos);
        }
        buf[o] = sym as u8;
        o += 1;
        acc <<= len;
        bits -= len;
    };
    out.truncate(start + o);
    result
}

#[cfg(test)]
/// Test-only encoder, to check the decoder over every symbol.
pub(crate) fn huffman_encode(src: &[u8]) -> Vec<u8> {
    let c = &CANONICAL;
    let mut codes = [0u32; 257];
    for (rank, &sym) in c.sorted.iter().enumerate() {
        let len = CODE_LENGTHS[sym as usize] as usize;
        codes[sym as usize] = c.first[len] + (rank as u32 - u32::from(c.offset[len]));
    }
    let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for &b in src {
        let len = u32::from(CODE_LENGTHS[b as usize]);
        acc = (acc << len) | u64::from(codes[b as usize]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut v = Vec::new();
        let complete = d
            .decode(block, |n, val| {
                v.push((String::from_utf8(n.to_vec()).unwrap(), String::from_utf8(val.to_vec()).unwrap()))
            })
            .unwrap();
        assert!(complete);
        v
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// The dynamic table, newest first, as (name, value, size).
    fn table(d: &Decoder) -> Vec<(String, String, usize)> {
        d.dynamic
            .iter()
            .map(|e| {
                let n = String::from_utf8(e.name.as_deref().unwrap().to_vec()).unwrap();
                (n, String::from_utf8(e.value.to_vec()).unwrap(), e.size())
            })
            .collect()
    }

    #[test]
    fn huffman_codes_match_rfc_appendix_b() {
        // (symbol, code, length) straight from the RFC table.
        let rows: [(usize, u32, u8); 9] = [
            (0, 0x1ff8, 13),
            (b' ' as usize, 0x14, 6),
            (b'0' as usize, 0x0, 5),
            (b'a' as usize, 0x3, 5),
            (b'|' as usize, 0x7fc, 11),
            (b'{' as usize, 0x7ffe, 15),
            (200, 0x3ffffe2, 26),
            (255, 0x3ffffee, 26),
            (256, 0x3fffffff, 30),
        ];
        let c = &CANONICAL;
        for (sym, code, len) in rows {
            assert_eq!(CODE_LENGTHS[sym], len);
            let rank = c.sorted.iter().position(|&s| s as usize == sym).unwrap() as u32;
            assert_eq!(c.first[len as usize] + rank - u32::from(c.offset[len as usize]), code, "symbol {sym}");
        }
        // Kraft equality: the code is complete.
        let kraft: u64 = CODE_LENGTHS.iter().map(|&l| 1u64 << (30 - l)).sum();
        assert_eq!(kraft, 1 << 30);
    }

    #[test]
    fn huffman_rfc_strings() {
        let cases = [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            ("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3", "https://www.example.com"),
            ("9bd9 ab", "gzip"),
            (
                "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 \
                 b106 3d50 07",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ];
        for (hex, want) in cases {
            let mut out = Vec::new();
            huffman_decode(&unhex(hex), &mut out).unwrap();
            assert_eq!(out, want.as_bytes());
            assert_eq!(huffman_encode(want.as_bytes()), unhex(hex));
        }
    }

    #[test]
    fn huffman_rejects_eos_and_bad_padding() {
        let mut out = Vec::new();
        // EOS (30 ones) then padding: a decoder must not accept it.
        assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xff], &mut out), Err(Error::HuffmanEos));
        // 8 bits of padding.
        assert_eq!(huffman_decode(&[0xff], &mut out), Err(Error::HuffmanPadding));
        // "0" is 00000; padding 000 is not a prefix of EOS.
        assert_eq!(huffman_decode(&[0x00], &mut out), Err(Error::HuffmanPadding));
        // "0" + 111 padding is fine.
        out.clear();
        huffman_decode(&[0x07], &mut out).unwrap();
        assert_eq!(out, b"0");
        // An incomplete long code (first 16 bits of a 28-bit code) is not padding either.
        assert_eq!(huffman_decode(&[0xff, 0xfe], &mut out), Err(Error::HuffmanPadding));
    }

    #[test]
    fn integers() {
        let mut pos = 0;
        assert_eq!(decode_int(&[0x0a], &mut pos, 5), Ok(10)); // C.1.1
        pos = 0;
        assert_eq!(decode_int(&[0x1f, 0x9a, 0x0a], &mut pos, 5), Ok(1337)); // C.1.2
        assert_eq!(pos, 3);
        pos = 0;
        assert_eq!(decode_int(&[0x2a], &mut pos, 8), Ok(42)); // C.1.3
        pos = 0;
        assert_eq!(decode_int(&[0x1f, 0x9a], &mut pos, 5), Err(Error::Truncated));
        pos = 0;
        let huge = [0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_int(&huge, &mut pos, 5), Err(Error::IntegerOverflow));
    }

    #[test]
    fn rfc_c2_literals_and_indexed() {
        let mut d = Decoder::new();
        let got = fields(&mut d, &unhex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
        assert_eq!(got, pairs(&[("custom-key", "custom-header")]));
        assert_eq!(table(&d), vec![("custom-key".into(), "custom-header".into(), 55)]);

        let mut d = Decoder::new();
        let got = fields(&mut d, &unhex("040c 2f73 616d 706c 652f 7061 7468"));
        assert_eq!(got, pairs(&[(":path", "/sample/path")]));
        assert_eq!(d.table_len(), 0);

        let mut d = Decoder::new();
        let got = fields(&mut d, &unhex("1008 7061 7373 776f 7264 0673 6563 7265 74"));
        assert_eq!(got, pairs(&[("password", "secret")]));
        assert_eq!(d.table_len(), 0);

        let mut d = Decoder::new();
        assert_eq!(fields(&mut d, &[0x82]), pairs(&[(":method", "GET")]));
        assert_eq!(d.table_len(), 0);
    }

    fn requests(blocks: [&str; 3]) {
        let mut d = Decoder::new();
        let r1 = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
        assert_eq!(fields(&mut d, &unhex(blocks[0])), pairs(&r1));
        assert_eq!(d.table_size(), 57);
        let mut r2 = r1.to_vec();
        r2.push(("cache-control", "no-cache"));
        assert_eq!(fields(&mut d, &unhex(blocks[1])), pairs(&r2));
        assert_eq!(d.table_size(), 110);
        let r3 = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        assert_eq!(fields(&mut d, &unhex(blocks[2])), pairs(&r3));
        let want = vec![
            ("custom-key".into(), "custom-value".into(), 54),
            ("cache-control".into(), "no-cache".into(), 53),
            (":authority".into(), "www.example.com".into(), 57),
        ];
        assert_eq!(table(&d), want);
        assert_eq!(d.table_size(), 164);
    }

    #[test]
    fn rfc_c3_requests_without_huffman() {
        requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
    }

    #[test]
    fn rfc_c4_requests_with_huffman() {
        requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    fn responses(blocks: [&str; 3]) {
        let mut d = Decoder::new();
        // SETTINGS_HEADER_TABLE_SIZE = 256, announced by a size update as an encoder would.
        assert!(d.decode(&[0x3f, 0xe1, 0x01], |_, _| ()).unwrap());
        let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
        let loc = "https://www.example.com";
        let r1 = [(":status", "302"), ("cache-control", "private"), ("date", date1), ("location", loc)];
        assert_eq!(fields(&mut d, &unhex(blocks[0])), pairs(&r1));
        let t1 = vec![
            ("location".into(), loc.into(), 63),
            ("date".into(), date1.into(), 65),
            ("cache-control".into(), "private".into(), 52),
            (":status".into(), "302".into(), 42),
        ];
        assert_eq!(table(&d), t1);
        assert_eq!(d.table_size(), 222);
        let r2 = [(":status", "307"), ("cache-control", "private"), ("date", date1), ("location", loc)];
        assert_eq!(fields(&mut d, &unhex(blocks[1])), pairs(&r2));
        let mut t2 = vec![(":status".into(), "307".into(), 42)];
        t2.extend(t1[..3].iter().cloned());
        assert_eq!(table(&d), t2);
        assert_eq!(d.table_size(), 222);
        let date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
        let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        let r3 = [
            (":status", "200"),
            ("cache-control", "private"),
            ("date", date2),
            ("location", loc),
            ("content-encoding", "gzip"),
            ("set-cookie", cookie),
        ];
        assert_eq!(fields(&mut d, &unhex(blocks[2])), pairs(&r3));
        let t3 = vec![
            ("set-cookie".into(), cookie.into(), 98),
            ("content-encoding".into(), "gzip".into(), 52),
            ("date".into(), date2.into(), 65),
        ];
        assert_eq!(table(&d), t3);
        assert_eq!(d.table_size(), 215);
    }

    #[test]
    fn rfc_c5_responses_without_huffman() {
        responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 \
             3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 \
             7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 \
             6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
        ]);
    }

    #[test]
    fn rfc_c6_responses_with_huffman() {
        responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad \
             1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 \
             e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]);
    }

    #[test]
    fn size_updates_and_errors() {
        let mut d = Decoder::new();
        fields(&mut d, &unhex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
        // Size update to 0 empties the table; then back to 4096.
        assert!(d.decode(&[0x20, 0x3f, 0xe1, 0x1f], |_, _| ()).unwrap());
        assert_eq!(d.table_len(), 0);
        assert_eq!(d.decode(&[0x82, 0x20], |_, _| ()), Err(Error::LateSizeUpdate));
        assert_eq!(d.decode(&[0xbe], |_, _| ()), Err(Error::InvalidIndex(62)));
        assert_eq!(d.decode(&[0x80], |_, _| ()), Err(Error::InvalidIndex(0)));
        assert_eq!(d.decode(&[0x41, 0x05, b'a'], |_, _| ()), Err(Error::Truncated));
        // An entry bigger than the table empties it and is not added.
        let mut d = Decoder::new();
        assert!(d.decode(&[0x3f, 0x11], |_, _| ()).unwrap()); // max size 48
        fields(&mut d, &[0x41, 0x03, b'a', b'b', b'c']); // 10 + 3 + 32 = 45
        assert_eq!(d.table_size(), 45);
        fields(&mut d, &[0x41, 0x07, b'a', b'b', b'c', b'd', b'e', b'f', b'g']); // 10 + 7 + 32 > 48
        assert_eq!(d.table_len(), 0);
    }

    #[test]
    fn uncertain_decoder_reports_unknown_entries() {
        let mut d = Decoder::new();
        d.set_uncertain();
        // :method GET, unknown dynamic 62, :path "/x" with name from unknown 63 added to the table.
        let mut got = Vec::new();
        let complete = d.decode(&[0x82, 0xbe, 0x7f, 0x00, 0x01, b'x'], |n, v| got.push((n.to_vec(), v.to_vec())));
        assert_eq!(complete, Ok(false));
        assert_eq!(got, vec![(b":method".to_vec(), b"GET".to_vec())]);
        assert_eq!(d.table_len(), 1);
        // Now index 62 is the entry with the unknown name: still incomplete, no panic.
        assert_eq!(d.decode(&[0xbe], |_, _| ()), Ok(false));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn huffman_round_trips(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            huffman_decode(&huffman_encode(&data), &mut out).unwrap();
            prop_assert_eq!(out, data);
        }

        #[test]
        fn arbitrary_blocks_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), uncertain: bool) {
            let mut d = Decoder::new();
            if uncertain {
                d.set_uncertain();
            }
            let _ = d.decode(&data, |_, _| ());
            prop_assert!(d.table_size() <= MAX_TABLE_SIZE);
        }
    }
}
