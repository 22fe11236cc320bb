//! Length-prefixed framing, shared by the parsers whose wire is a header announcing the length of
//! what follows: MySQL (3-byte little-endian length + sequence id), PostgreSQL (type byte +
//! 4-byte big-endian length counting itself; startup messages without the type byte), DNS over
//! TCP (2-byte big-endian length) and Kafka (4-byte big-endian size).
//!
//! A [`Framer`] cuts one direction of a connection into frames. What differs per protocol is how
//! a header is read, which a [`Header`] says: its length, and from its bytes the length of the
//! body that follows, how much of that body is worth keeping, and whether the payload goes on in
//! another frame (MySQL's 16 MiB packets). The framer does the rest, the same for all:
//!
//! - headers and kept bodies split across chunks are buffered until whole; a frame lying whole in
//!   one chunk is handed out in place, without copying;
//! - only the first `keep` bytes of a body are kept, the rest is counted and skipped, so what a
//!   side holds is bounded by the largest `keep` (plus a header), whatever the frame's length;
//!   how long a frame may be at all is the header reader's call (it rejects a header announcing
//!   more than its protocol allows, with the error its parser reports);
//! - a frame is handed out at its last byte with its kept bytes ([`Framer::next`]), or, for a
//!   parser that decodes a frame from its first bytes and must know early when they are garbage
//!   (Kafka), as soon as those bytes are in, then a [`Piece::End`] once the rest went by
//!   ([`Framer::next_piece`]);
//! - uncaptured bytes ([`Parser::skip`](crate::message::Parser::skip)) are counted when they fall
//!   in the skipped part of a body, as if they had been read ([`Framer::skip`]);
//! - after a gap, what was read of the frame in progress is handed back, marked partial
//!   ([`Framer::cut`]).
//!
//! Finding where frames start again after garbage or a gap stays with each parser: that is
//! where the protocols differ most.

use crate::message::MAX_BUFFERED;

/// The longest header a [`Header`] may declare.
pub const MAX_HEADER: usize = 8;

/// What a header says about its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<T> {
    /// What the parser wants to know of the header besides lengths: a type byte, a sequence id.
    pub tag: T,
    /// Bytes of the body, after the header.
    pub body: usize,
    /// Bytes of the body worth keeping (for a continued payload, the first part's counts for
    /// the whole payload); the rest is skipped. At most [`MAX_BUFFERED`] are kept.
    pub keep: usize,
    /// The payload goes on in the next frame (header and body), handed out as one frame.
    pub continued: bool,
}

/// How a protocol's frame header reads.
pub trait Header {
    type Tag: Copy + Default;
    type Error;
    /// Bytes of the header, from 1 to [`MAX_HEADER`].
    fn header_len(&self) -> usize;
    /// Reads `header` (exactly [`header_len`](Self::header_len) bytes); an error when it is not a
    /// plausible header of this protocol (unknown type, length out of range).
    fn read(&self, header: &[u8]) -> Result<Head<Self::Tag>, Self::Error>;
}

/// One frame, as much of its body as is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a, T> {
    /// The tag of the first header, and of the last one (they differ only for a payload
    /// continued over several frames).
    pub tag: T,
    pub last_tag: T,
    /// The first bytes of the body (of the whole payload when continued), up to `keep`.
    pub body: &'a [u8],
    /// Length of the body (the whole payload) on the wire.
    pub body_len: usize,
    /// Wire bytes read, headers included.
    pub size: u64,
    /// Time of the chunks that carried the first and the last byte read.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Body bytes still to come, not kept: non-zero only for the head of a frame handed out
    /// early by [`Framer::next_piece`].
    pub rest: u64,
    /// Cut short by a gap ([`Framer::cut`]).
    pub partial: bool,
}

/// What [`Framer::next_piece`] hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a, T> {
    /// A whole frame, or the head of one whose `rest` is still to come.
    Frame(Frame<'a, T>),
    /// The rest of the frame last handed out as a head went by: the frame ends at `end_ns`,
    /// `size` wire bytes in all.
    End { size: u64, end_ns: u64 },
}

/// Splits one direction of a connection into frames. See the [module](self) documentation.
#[derive(Debug, Default)]
pub struct Framer<T> {
    hdr: [u8; MAX_HEADER],
    hdr_have: usize,
    hdr_len: usize,
    in_body: bool,
    body_left: usize,
    /// The payload goes on in the next frame.
    continued: bool,
    /// The kept bytes were handed out ahead of the frame's end.
    head_out: bool,
    tag: T,
    last_tag: T,
    keep: usize,
    body_len: usize,
    size: u64,
    start_ns: u64,
    kept: Vec<u8>,
}

impl<T: Copy + Default> Framer<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame is in progress: part of a header, of a body, or of a continued payload was read.
    pub fn busy(&self) -> bool {
        self.hdr_have > 0 || self.in_body || self.continued
    }

    /// Bytes held while waiting for the rest of a header or of a kept body.
    pub fn held(&self) -> usize {
        if self.busy() && !self.head_out {
            self.hdr_have + self.kept.len()
        } else {
            0
        }
    }

    /// Time of the chunk that carried the first byte of the frame in progress (or of the last
    /// one, or of a rejected header).
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The bytes of the last header [`Header::read`] was given (a rejected one included).
    pub fn last_header(&self) -> &[u8] {
        &self.hdr[..self.hdr_len]
    }

    /// The next complete frame in `chunk[*pos..]`, `Ok(None)` once the chunk is used up (what
    /// is left of a frame is held for the next chunk). On a header error the framer drops what
    /// it held and `*pos` is past the bad header.
    pub fn next<'a, H: Header<Tag = T>>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
        ts: u64,
        header: &H,
    ) -> Result<Option<Frame<'a, T>>, H::Error> {
        match self.step(chunk, pos, ts, header, false)? {
            Some(Piece::Frame(f)) => Ok(Some(f)),
            // Only heads handed out early have an end of their own.
            Some(Piece::End { .. }) | None => Ok(None),
        }
    }

    /// As [`next`](Self::next), but a frame longer than its kept bytes is handed out as soon as
    /// they are in (`rest` > 0), then its [`Piece::End`] once the rest went by. A parser that
    /// finds the head to be garbage calls [`reset`](Self::reset) and looks at `*pos`, right after
    /// the head.
    pub fn next_piece<'a, H: Header<Tag = T>>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
        ts: u64,
        header: &H,
    ) -> Result<Option<Piece<'a, T>>, H::Error> {
        self.step(chunk, pos, ts, header, true)
    }

    fn step<'a, H: Header<Tag = T>>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
        ts: u64,
        header: &H,
        head_first: bool,
    ) -> Result<Option<Piece<'a, T>>, H::Error> {
        loop {
            if !self.in_body {
                let rest = &chunk[*pos..];
                if rest.is_empty() {
                    return Ok(None);
                }
                let need = header.header_len();
                debug_assert!((1..=MAX_HEADER).contains(&need));
                if !self.busy() {
                    self.start_ns = ts;
                    self.kept.clear();
                    self.body_len = 0;
                    self.size = 0;
                    self.head_out = false;
                    if rest.len() >= need {
                        // Fast path: the header read in place, and the frame too when it is
                        // whole in the chunk.
                        *pos += need;
                        let head = self.read(&rest[..need], header)?;
                        let keep = head.keep.min(MAX_BUFFERED);
                        if !head.continued && rest.len() - need >= head.body && !(head_first && head.body > keep) {
                            *pos += head.body;
                            let keep = keep.min(head.body);
                            return Ok(Some(Piece::Frame(Frame {
                                tag: head.tag,
                                last_tag: head.tag,
                                body: &rest[need..need + keep],
                                body_len: head.body,
                                size: (need + head.body) as u64,
                                start_ns: ts,
                                end_ns: ts,
                                rest: 0,
                                partial: false,
                            })));
                        }
                        self.begin(head, need);
                        continue;
                    }
                }
                let take = (need - self.hdr_have).min(rest.len());
                self.hdr[self.hdr_have..self.hdr_have + take].copy_from_slice(&rest[..take]);
                self.hdr_have += take;
                *pos += take;
                if self.hdr_have < need {
                    return Ok(None);
                }
                self.hdr_have = 0;
                let hdr = self.hdr;
                let head = self.read(&hdr[..need], header)?;
                self.begin(head, need);
            }
            let room = self.keep - self.kept.len();
            let mut take = self.body_left.min(chunk.len() - *pos);
            if head_first && !self.head_out {
                take = take.min(room);
            }
            let kept = take.min(room);
            self.kept.extend_from_slice(&chunk[*pos..*pos + kept]);
            *pos += take;
            self.size += take as u64;
            self.body_left -= take;
            if head_first && !self.head_out && self.kept.len() == self.keep && self.body_left > 0 {
                self.head_out = true;
                return Ok(Some(Piece::Frame(self.frame(ts, self.body_left as u64, false))));
            }
            if self.body_left > 0 {
                return Ok(None);
            }
            self.in_body = false;
            if self.continued {
                // The payload goes on: the next frame's header comes next.
                continue;
            }
            return Ok(Some(self.ended(ts)));
        }
    }

    fn read<H: Header<Tag = T>>(&mut self, bytes: &[u8], header: &H) -> Result<Head<T>, H::Error> {
        self.hdr[..bytes.len()].copy_from_slice(bytes);
        self.hdr_len = bytes.len();
        header.read(bytes).inspect_err(|_| self.reset())
    }

    /// A header was read: its body comes next.
    fn begin(&mut self, head: Head<T>, header_len: usize) {
        if !self.continued {
            self.tag = head.tag;
            self.keep = head.keep.min(MAX_BUFFERED);
        }
        self.last_tag = head.tag;
        self.size += header_len as u64;
        self.body_len += head.body;
        self.body_left = head.body;
        self.continued = head.continued;
        self.in_body = true;
    }

    fn frame(&self, end_ns: u64, rest: u64, partial: bool) -> Frame<'_, T> {
        Frame {
            tag: self.tag,
            last_tag: self.last_tag,
            body: &self.kept,
            body_len: self.body_len,
            size: self.size,
            start_ns: self.start_ns,
            end_ns,
            rest,
            partial,
        }
    }

    /// The frame's last byte was read at `ts`.
    fn ended(&self, ts: u64) -> Piece<'_, T> {
        if self.head_out {
            Piece::End { size: self.size, end_ns: ts }
        } else {
            Piece::Frame(self.frame(ts, 0, false))
        }
    }

    /// Counts `n` uncaptured bytes at `ts` as if they had been read. `None` when they cannot be
    /// placed: in a header, in the kept part of a body (its fields are needed), or past the
    /// frame's end. `Some(Some(frame))` when they end a frame ([`Piece::End`] for a frame whose
    /// head was handed out; a [`Piece::Frame`] otherwise).
    pub fn skip(&mut self, n: u64, ts: u64) -> Option<Option<Piece<'_, T>>> {
        let n = usize::try_from(n).ok()?;
        if !self.in_body || self.kept.len() < self.keep || n > self.body_left {
            return None;
        }
        self.size += n as u64;
        self.body_left -= n;
        if self.body_left > 0 {
            return Some(None);
        }
        self.in_body = false;
        if self.continued {
            // The payload continues in the next frame, whose header comes next.
            return Some(None);
        }
        Some(Some(self.ended(ts)))
    }

    /// [`skip`](Self::skip) for a parser that takes frames from [`next`](Self::next).
    pub fn skip_frame(&mut self, n: u64, ts: u64) -> Option<Option<Frame<'_, T>>> {
        match self.skip(n, ts)? {
            Some(Piece::Frame(f)) => Some(Some(f)),
            Some(Piece::End { .. }) | None => Some(None),
        }
    }

    /// Drops the frame in progress (bytes were lost); returns what was read of it, marked
    /// partial and ending at `ts`, when its header was complete.
    pub fn cut(&mut self, ts: u64) -> Option<Frame<'_, T>> {
        let had = self.in_body || self.continued;
        self.reset();
        had.then(|| self.frame(ts, 0, true))
    }

    /// Drops the frame in progress; the next byte starts a header.
    pub fn reset(&mut self) {
        self.hdr_have = 0;
        self.in_body = false;
        self.continued = false;
        self.body_left = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test protocol: a type byte and a 2-byte big-endian body length; type `c` continues the
    /// payload in the next frame, type `!` is rejected; 4 body bytes kept.
    struct Tlv;

    impl Header for Tlv {
        type Tag = u8;
        type Error = String;
        fn header_len(&self) -> usize {
            3
        }
        fn read(&self, h: &[u8]) -> Result<Head<u8>, String> {
            if h[0] == b'!' {
                return Err(format!("bad type {}", h[0] as char));
            }
            let body = u16::from_be_bytes([h[1], h[2]]) as usize;
            Ok(Head { tag: h[0], body, keep: 4, continued: h[0] == b'c' })
        }
    }

    fn tlv(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// (tag, last tag, kept body, body length, size, start, end) of every frame.
    type Row = (char, char, String, usize, u64, u64, u64);

    /// Frames of `stream` fed in pieces cut at `cuts` (piece i at time i).
    fn frames(stream: &[u8], cuts: &[usize]) -> Vec<Row> {
        let mut f = Framer::new();
        let mut out = Vec::new();
        let mut at = 0;
        for (i, end) in cuts.iter().copied().chain([stream.len()]).enumerate() {
            let end = end.clamp(at, stream.len());
            let chunk = &stream[at..end];
            let mut pos = 0;
            while let Some(fr) = f.next(chunk, &mut pos, i as u64, &Tlv).unwrap() {
                assert!(!fr.partial && fr.rest == 0);
                let body = String::from_utf8(fr.body.to_vec()).unwrap();
                out.push((fr.tag as char, fr.last_tag as char, body, fr.body_len, fr.size, fr.start_ns, fr.end_ns));
            }
            assert_eq!(pos, chunk.len());
            assert!(f.held() <= 3 + 4);
            at = end;
        }
        assert!(!f.busy());
        out
    }

    fn stream() -> Vec<u8> {
        [tlv(b'a', b"xy"), tlv(b'b', b"0123456789"), tlv(b'c', b"ABCDE"), tlv(b'd', b"FG"), tlv(b'e', b"")].concat()
    }

    #[test]
    fn frames_whole_capped_and_continued() {
        let row = |t: char, l: char, body: &str, len, size| (t, l, body.to_string(), len, size, 0, 0);
        assert_eq!(
            frames(&stream(), &[]),
            [
                row('a', 'a', "xy", 2, 5),
                row('b', 'b', "0123", 10, 13),
                // A continued payload: one frame, its kept bytes taken across both parts.
                row('c', 'd', "ABCD", 7, 13),
                row('e', 'e', "", 0, 3),
            ]
        );
        // Times: from the chunk of the first byte to the chunk of the last.
        let times: Vec<(u64, u64)> = frames(&stream(), &[1, 6, 20]).iter().map(|r| (r.5, r.6)).collect();
        assert_eq!(times, [(0, 1), (1, 2), (2, 3), (3, 3)]);
    }

    #[test]
    fn header_errors_drop_the_frame() {
        let mut f: Framer<u8> = Framer::new();
        let bad = [b'!', 0, 1, b'z'];
        let mut pos = 0;
        assert!(f.next(&bad[..2], &mut pos, 0, &Tlv).unwrap().is_none());
        assert_eq!((pos, f.held()), (2, 2));
        pos = 0;
        assert_eq!(f.next(&bad[2..], &mut pos, 1, &Tlv).unwrap_err(), "bad type !");
        assert_eq!((pos, f.held(), f.last_header()), (1, 0, &bad[..3]));
        // Read in place, too; then the framer starts afresh.
        pos = 0;
        assert!(f.next(&bad, &mut pos, 2, &Tlv).is_err());
        assert_eq!((pos, f.last_header(), f.busy()), (3, &bad[..3], false));
        let good = tlv(b'a', b"q");
        pos = 0;
        assert_eq!(f.next(&good, &mut pos, 3, &Tlv).unwrap().map(|fr| fr.body), Some(&b"q"[..]));
    }

    #[test]
    fn heads_first_then_end() {
        let bytes = [tlv(b'b', b"0123456789"), tlv(b'a', b"xy")].concat();
        for cut in 0..=bytes.len() {
            let mut f = Framer::new();
            let mut got = Vec::new();
            for (i, chunk) in [&bytes[..cut], &bytes[cut..]].into_iter().enumerate() {
                let mut pos = 0;
                let offset = if i == 0 { 0 } else { cut };
                while let Some(p) = f.next_piece(chunk, &mut pos, i as u64, &Tlv).unwrap() {
                    got.push(match p {
                        Piece::Frame(fr) => {
                            format!("{} {} {} {}", fr.tag as char, fr.body.escape_ascii(), fr.size, fr.rest)
                        }
                        Piece::End { size, end_ns } => format!("end {size} {end_ns}"),
                    });
                    if got.len() == 1 {
                        // The head is handed out right after its last kept byte.
                        assert_eq!(offset + pos, 7, "cut at {cut}");
                    }
                }
                assert!(f.held() <= 3 + 4);
            }
            let end = u64::from(cut < 13);
            assert_eq!(got, ["b 0123 7 6".to_string(), format!("end 13 {end}"), "a xy 5 0".into()], "cut at {cut}");
        }
    }

    #[test]
    fn uncaptured_bytes_count_only_where_they_can_be_placed() {
        let big = tlv(b'b', b"0123456789");
        let mut f = Framer::new();
        let mut pos = 0;
        // In the header: no.
        assert!(f.next(&big[..2], &mut pos, 0, &Tlv).unwrap().is_none());
        assert!(f.skip(1, 1).is_none());
        // In the kept part: no.
        pos = 0;
        assert!(f.next(&big[2..5], &mut pos, 1, &Tlv).unwrap().is_none());
        assert!(f.skip(1, 1).is_none());
        pos = 0;
        assert!(f.next(&big[5..9], &mut pos, 2, &Tlv).unwrap().is_none());
        assert_eq!(f.held(), 4);
        // Past the end: no. In the skipped part: yes, and they can end the frame.
        assert!(f.skip(5, 3).is_none());
        assert!(matches!(f.skip(3, 3), Some(None)));
        match f.skip_frame(1, 4) {
            Some(Some(fr)) => assert_eq!((fr.body, fr.size, fr.start_ns, fr.end_ns), (&b"0123"[..], 13, 0, 4)),
            other => panic!("{other:?}"),
        }
        assert!(!f.busy());
        // After a head handed out: the frame's end, and nothing is held meanwhile.
        let mut f = Framer::new();
        pos = 0;
        assert!(matches!(f.next_piece(&big[..9], &mut pos, 0, &Tlv), Ok(Some(Piece::Frame(_)))));
        assert_eq!(f.held(), 0);
        assert_eq!(f.skip(6, 5), Some(Some(Piece::End { size: 13, end_ns: 5 })));
        // Between the parts of a continued payload (a header comes next): no.
        let mut f = Framer::new();
        pos = 0;
        let continued = tlv(b'c', b"ABCDE");
        assert!(f.next(&continued, &mut pos, 0, &Tlv).unwrap().is_none());
        assert!(f.busy() && f.skip(1, 1).is_none());
    }

    #[test]
    fn cut_hands_back_what_was_read() {
        let big = tlv(b'c', b"ABCDE");
        let mut f = Framer::new();
        let mut pos = 0;
        assert!(f.next(&big[..2], &mut pos, 0, &Tlv).unwrap().is_none());
        assert!(f.cut(1).is_none(), "no header yet");
        pos = 0;
        assert!(f.next(&big[..6], &mut pos, 2, &Tlv).unwrap().is_none());
        let fr = f.cut(3).unwrap();
        assert_eq!((fr.tag, fr.body, fr.size, fr.start_ns, fr.end_ns, fr.partial), (b'c', &b"ABC"[..], 6, 2, 3, true));
        assert_eq!(f.held(), 0);
        // A continued payload between its parts is in progress too.
        pos = 0;
        assert!(f.next(&big, &mut pos, 4, &Tlv).unwrap().is_none());
        assert!(f.busy() && f.cut(5).is_some_and(|fr| fr.body == b"ABCD" && fr.size == 8));
    }

    proptest! {
        #[test]
        fn any_cuts_give_the_same_frames(cuts in prop::collection::vec(0usize..40, 0..12)) {
            let bytes = stream();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let untimed = |rows: Vec<Row>| rows.into_iter().map(|r| (r.0, r.1, r.2, r.3, r.4)).collect::<Vec<_>>();
            let split = frames(&bytes, &cuts);
            prop_assert!(split.iter().all(|r| r.5 <= r.6));
            prop_assert_eq!(untimed(split), untimed(frames(&bytes, &[])));
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16), head_first: bool) {
            let mut f = Framer::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut pos = 0;
                loop {
                    let before = pos;
                    let r = if head_first {
                        f.next_piece(chunk, &mut pos, i as u64, &Tlv).map(|p| p.is_some())
                    } else {
                        f.next(chunk, &mut pos, i as u64, &Tlv).map(|p| p.is_some())
                    };
                    prop_assert!(pos <= chunk.len());
                    match r {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(_) => prop_assert!(pos > before),
                    }
                }
                prop_assert!(f.held() <= 3 + 4);
                if i % 3 == 2 {
                    let _ = f.skip(i as u64, i as u64);
                }
            }
        }
    }
}
