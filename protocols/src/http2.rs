//! HTTP/2 (RFC 9113) and gRPC over it: frames in, one [`Message`] per stream per side out.
//!
//! Each side is a sequence of 9-byte-header frames (the client's starts with the connection
//! preface). Header blocks (HEADERS / PUSH_PROMISE + CONTINUATION) are buffered up to a bound and
//! decoded with one HPACK context per direction; DATA is counted, never buffered. A side's message
//! on a stream is emitted when that side ends the stream (END_STREAM) or the stream is reset.
//!
//! Joining a connection late (no preface) or losing bytes (gap) desynchronizes both the framing and
//! the HPACK dynamic table: the parser scans for a plausible chain of frame headers, decodes with an
//! uncertain dynamic table, and marks what it could not fully see `partial`.

use crate::hpack;
use crate::message::*;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// What every client connection starts with (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams tracked at once; opening more drops the oldest (counted in [`Http2Parser::dropped_streams`]).
pub const MAX_STREAMS: usize = 1024;

const FRAME_HEADER_LEN: usize = 9;
/// Bytes one side may hold. Half of [`MAX_BUFFERED`] so that both sides together stay within it.
const SIDE_BUDGET: usize = MAX_BUFFERED / 2;
/// Largest frame accepted while looking for frame boundaries (SETTINGS_MAX_FRAME_SIZE default).
const SYNC_MAX_FRAME: usize = 16_384;
/// Bytes scanned in a row without finding a frame boundary before giving up on the connection.
const RESYNC_LIMIT: usize = 1 << 20;
/// Closed stream ids remembered, so frames still in flight after a reset do not reopen them.
const RECENTLY_CLOSED: usize = 64;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Whether `first` (the first bytes a side sent) looks like HTTP/2: the client preface (at least 8
/// bytes of it) from the client, an initial SETTINGS frame from the server.
pub fn detect(side: Side, first: &[u8]) -> bool {
    match side {
        Side::Request => {
            let n = first.len().min(PREFACE.len());
            n >= 8 && first[..n] == PREFACE[..n]
        }
        Side::Response => {
            if first.len() < FRAME_HEADER_LEN {
                return false;
            }
            let h = FrameHeader::parse(first);
            // A server preface is a non-ACK SETTINGS of a few 6-byte parameters.
            h.ty == SETTINGS && h.flags == 0 && first[5..9] == [0; 4] && h.len.is_multiple_of(6) && h.len <= 6 * 16
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct FrameHeader {
    len: usize,
    ty: u8,
    flags: u8,
    stream: u32,
}

impl FrameHeader {
    /// Reads the first 9 bytes of `b` (the caller checks there are 9).
    fn parse(b: &[u8]) -> Self {
        FrameHeader {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            ty: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// RFC 9113 rules a frame header can be checked against on its own: which frames belong to a
    /// stream and fixed payload sizes. Unknown frame types are allowed (they are ignored).
    fn check(&self) -> Result<(), &'static str> {
        let on_stream = matches!(self.ty, DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION);
        if on_stream && self.stream == 0 {
            return Err("stream frame on stream 0");
        }
        if matches!(self.ty, SETTINGS | PING | GOAWAY) && self.stream != 0 {
            return Err("connection frame on a stream");
        }
        let size_ok = match self.ty {
            PRIORITY => self.len == 5,
            RST_STREAM | WINDOW_UPDATE => self.len == 4,
            SETTINGS => self.len.is_multiple_of(6) && (self.flags & FLAG_ACK == 0 || self.len == 0),
            PING => self.len == 8,
            GOAWAY => self.len >= 8,
            _ => true,
        };
        if size_ok {
            Ok(())
        } else {
            Err("bad frame length")
        }
    }

    /// Stricter than [`check`](Self::check), to find frame boundaries in unknown bytes: a known
    /// type, only that type's flags, a default-sized payload.
    fn plausible(&self) -> bool {
        let flags = match self.ty {
            DATA => FLAG_END_STREAM | FLAG_PADDED,
            HEADERS => FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            SETTINGS | PING => FLAG_ACK,
            PUSH_PROMISE => FLAG_END_HEADERS | FLAG_PADDED,
            CONTINUATION => FLAG_END_HEADERS,
            PRIORITY | RST_STREAM | GOAWAY | WINDOW_UPDATE => 0,
            _ => return false,
        };
        self.flags & !flags == 0 && self.len <= SYNC_MAX_FRAME && self.check().is_ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Matching the client preface; the number is how many bytes matched so far.
    Preface(usize),
    /// Reading a frame header.
    Header,
    /// Reading the payload of `SideState::frame`.
    Payload,
    /// Looking for a frame boundary.
    Sync,
}

/// A header block waiting for CONTINUATION frames.
#[derive(Clone, Copy)]
struct Pending {
    stream: u32,
    end_stream: bool,
    /// Decoded only to keep the HPACK context right (PUSH_PROMISE, closed stream).
    discard: bool,
    /// Too big to buffer: it is skipped.
    lost: bool,
}

struct SideState {
    phase: Phase,
    /// The next frame header must be a server preface to trust the HPACK context.
    first_frame: bool,
    /// While in [`Phase::Sync`]: the scan starts where a frame likely starts (after a gap, or at
    /// the first byte of a connection joined late).
    at_boundary: bool,
    hdr: [u8; FRAME_HEADER_LEN],
    hdr_len: usize,
    frame: FrameHeader,
    frame_start_ns: u64,
    remaining: usize,
    /// Whether the current payload is kept (header blocks, RST_STREAM) or skipped.
    keep: bool,
    payload: Vec<u8>,
    block: Vec<u8>,
    pending: Option<Pending>,
    hpack: hpack::Decoder,
    /// Bytes being scanned for a frame boundary, from `sync_start` on.
    sync: Vec<u8>,
    sync_start: usize,
    skipped: usize,
}

impl SideState {
    fn new(phase: Phase, first_frame: bool) -> Self {
        SideState {
            phase,
            first_frame,
            at_boundary: false,
            hdr: [0; FRAME_HEADER_LEN],
            hdr_len: 0,
            frame: FrameHeader::default(),
            frame_start_ns: 0,
            remaining: 0,
            keep: false,
            payload: Vec::new(),
            block: Vec::new(),
            pending: None,
            hpack: hpack::Decoder::new(),
            sync: Vec::new(),
            sync_start: 0,
            skipped: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.hdr_len + self.payload.len() + self.block.len() + self.sync.len() - self.sync_start
    }

    /// Drops everything half-read and starts looking for a frame boundary with an HPACK context
    /// that no longer knows what came before. `at_boundary`: the next byte likely starts a frame.
    fn lose_sync(&mut self, at_boundary: bool) {
        self.phase = Phase::Sync;
        self.at_boundary = at_boundary;
        self.first_frame = false;
        self.hdr_len = 0;
        self.remaining = 0;
        self.payload.clear();
        self.block.clear();
        self.pending = None;
        self.sync.clear();
        self.sync_start = 0;
        self.hpack.set_uncertain();
    }

    /// Scans the sync buffer for a frame header followed by another plausible one. Returns the
    /// bytes from that boundary on, or `None` when more bytes are needed. The decision at each
    /// offset depends only on the bytes, so any split of the input gives the same result.
    fn find_boundary(&mut self) -> Option<Vec<u8>> {
        loop {
            let rest = &self.sync[self.sync_start..];
            if rest.len() < FRAME_HEADER_LEN {
                break;
            }
            let h = FrameHeader::parse(rest);
            if h.plausible() {
                let next = FRAME_HEADER_LEN + h.len;
                // Where a frame likely starts, one plausible header is enough: the frame is not
                // held back waiting for the next one.
                let trusted = self.at_boundary && self.sync_start == 0;
                if !trusted && rest.len() < next + FRAME_HEADER_LEN {
                    break;
                }
                if trusted || FrameHeader::parse(&rest[next..]).plausible() {
                    let found = rest.to_vec();
                    self.sync.clear();
                    self.sync_start = 0;
                    return Some(found);
                }
            }
            self.at_boundary = false;
            self.sync_start += 1;
            self.skipped += 1;
        }
        self.sync.drain(..self.sync_start);
        self.sync_start = 0;
        None
    }
}

/// What one side of one stream has shown so far.
#[derive(Default)]
struct Half {
    started: bool,
    done: bool,
    start_ns: u64,
    size: u64,
    partial: bool,
    blocks: u32,
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    status: Option<String>,
    grpc: bool,
    grpc_status: Option<String>,
    grpc_message: Option<String>,
    trace: Vec<(&'static str, String)>,
}

impl Half {
    /// Records the fields strata reports; everything else is ignored.
    fn apply(&mut self, name: &[u8], value: &[u8]) {
        let text = || match std::str::from_utf8(value) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(value).into_owned(),
        };
        match name {
            b":method" => self.method = Some(text()),
            b":path" => self.path = Some(text()),
            b":authority" => self.authority = Some(text()),
            b"host" if self.authority.is_none() => self.authority = Some(text()),
            // A 1xx response is followed by the final status.
            b":status" if self.status.as_ref().is_none_or(|s| s.starts_with('1')) => self.status = Some(text()),
            b"content-type" => self.grpc = value.starts_with(b"application/grpc"),
            b"grpc-status" => self.grpc_status = Some(text()),
            b"grpc-message" => self.grpc_message = Some(percent_decode(value)),
            _ => {
                if let Some(attr) = trace_attribute(name) {
                    self.trace.push((attr, text()));
                }
            }
        }
    }
}

fn trace_attribute(name: &[u8]) -> Option<&'static str> {
    Some(match name {
        b"traceparent" => "traceparent",
        b"tracestate" => "tracestate",
        b"b3" => "b3",
        b"x-b3-traceid" => "x-b3-traceid",
        b"x-b3-spanid" => "x-b3-spanid",
        _ => return None,
    })
}

struct Stream {
    /// Creation order, to drop the oldest stream when too many are open.
    seq: u64,
    halves: [Half; 2],
}

/// Hashes stream ids with one multiplication: the map is bounded to [`MAX_STREAMS`] entries, so
/// even colliding ids chosen by a peer cost at most that per lookup.
#[derive(Default)]
struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type StreamMap = HashMap<u32, Stream, BuildHasherDefault<StreamIdHasher>>;

fn idx(side: Side) -> usize {
    match side {
        Side::Request => 0,
        Side::Response => 1,
    }
}

/// Streaming parser of one HTTP/2 connection (cleartext h2c or decrypted h2), gRPC included.
pub struct Http2Parser {
    sides: [SideState; 2],
    streams: StreamMap,
    closed: VecDeque<u32>,
    seq: u64,
    dropped_streams: u64,
    failed: Option<ParseError>,
}

impl Default for Http2Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Http2Parser {
    /// A parser for a connection seen from its first byte or joined later (no preface): both work.
    pub fn new() -> Self {
        Http2Parser {
            sides: [SideState::new(Phase::Preface(0), false), SideState::new(Phase::Header, true)],
            streams: StreamMap::default(),
            closed: VecDeque::new(),
            seq: 0,
            dropped_streams: 0,
            failed: None,
        }
    }

    /// Streams dropped untracked because more than [`MAX_STREAMS`] were open.
    pub fn dropped_streams(&self) -> u64 {
        self.dropped_streams
    }

    /// Runs `input` through the side's state machine. Returns bytes to run again when a frame
    /// boundary was found in scanned bytes.
    fn process(&mut self, side: Side, input: &[u8], ts: u64, ctx: &mut Ctx) -> Option<Vec<u8>> {
        let i = idx(side);
        let mut pos = 0;
        while pos < input.len() {
            let s = &mut self.sides[i];
            match s.phase {
                Phase::Preface(matched) => {
                    let n = (PREFACE.len() - matched).min(input.len() - pos);
                    if input[pos..pos + n] == PREFACE[matched..matched + n] {
                        pos += n;
                        s.phase =
                            if matched + n == PREFACE.len() { Phase::Header } else { Phase::Preface(matched + n) };
                    } else {
                        // Joined mid-connection: look for frames from here.
                        s.lose_sync(matched == 0);
                    }
                }
                Phase::Sync => {
                    s.sync.extend_from_slice(&input[pos..]);
                    pos = input.len();
                    let found = s.find_boundary();
                    if s.skipped > RESYNC_LIMIT {
                        ctx.fail("no HTTP/2 frame boundary found after losing sync");
                        return None;
                    }
                    if found.is_some() {
                        s.phase = Phase::Header;
                        s.skipped = 0;
                        return found;
                    }
                }
                Phase::Header => {
                    if s.hdr_len == 0 {
                        s.frame_start_ns = ts;
                        if let Some(hdr) = input.get(pos..pos + FRAME_HEADER_LEN) {
                            // The common case: the whole header is here, no need to hold it.
                            pos += FRAME_HEADER_LEN;
                            self.begin_frame(side, FrameHeader::parse(hdr), ts, ctx);
                            continue;
                        }
                    }
                    let n = (FRAME_HEADER_LEN - s.hdr_len).min(input.len() - pos);
                    s.hdr[s.hdr_len..s.hdr_len + n].copy_from_slice(&input[pos..pos + n]);
                    s.hdr_len += n;
                    pos += n;
                    if s.hdr_len == FRAME_HEADER_LEN {
                        s.hdr_len = 0;
                        let h = FrameHeader::parse(&s.hdr);
                        self.begin_frame(side, h, ts, ctx);
                    }
                }
                Phase::Payload => {
                    let n = s.remaining.min(input.len() - pos);
                    let chunk = &input[pos..pos + n];
                    pos += n;
                    s.remaining -= n;
                    if !s.keep {
                        if s.remaining == 0 {
                            self.end_frame(side, None, ts, ctx);
                        }
                    } else if s.remaining == 0 && s.payload.is_empty() {
                        // The whole payload is in this chunk: no copy.
                        self.end_frame(side, Some(chunk), ts, ctx);
                    } else {
                        s.payload.extend_from_slice(chunk);
                        if s.remaining == 0 {
                            let payload = std::mem::take(&mut s.payload);
                            self.end_frame(side, Some(&payload), ts, ctx);
                            self.sides[i].payload = payload;
                            self.sides[i].payload.clear();
                        }
                    }
                }
            }
        }
        None
    }

    /// A frame header was read: validate it and set up reading its payload.
    fn begin_frame(&mut self, side: Side, h: FrameHeader, ts: u64, ctx: &mut Ctx) {
        let s = &mut self.sides[idx(side)];
        if s.first_frame {
            s.first_frame = false;
            // Anything but a server preface: the connection was joined late.
            if h.ty != SETTINGS || h.flags != 0 || !h.plausible() {
                s.hpack.set_uncertain();
                if !h.plausible() {
                    self.lose_sync(side, false);
                    return;
                }
            }
        }
        let expected = s.pending.map(|p| p.stream);
        let bad = match h.check() {
            Err(reason) => Some(reason),
            Ok(()) if expected.is_some() && (h.ty != CONTINUATION || Some(h.stream) != expected) => {
                Some("header block not followed by its CONTINUATION")
            }
            Ok(()) => None,
        };
        if let Some(reason) = bad {
            ctx.error(format!("HTTP/2 {reason} (type {}, length {}, stream {})", h.ty, h.len, h.stream));
            self.lose_sync(side, false);
            return;
        }
        s.frame = h;
        s.remaining = h.len;
        let wanted = matches!(h.ty, HEADERS | CONTINUATION | PUSH_PROMISE | RST_STREAM);
        // A header block too big to hold is skipped (and reported partial).
        s.keep = wanted && h.len + s.block.len() <= SIDE_BUDGET;
        s.phase = Phase::Payload;
        if h.len == 0 {
            let empty: Option<&[u8]> = if s.keep { Some(&[]) } else { None };
            self.end_frame(side, empty, ts, ctx);
        }
    }

    /// Bytes were lost or made no sense: resynchronize, and mark this side of every open stream
    /// partial since any of them may have lost frames.
    fn lose_sync(&mut self, side: Side, at_boundary: bool) {
        let i = idx(side);
        self.sides[i].lose_sync(at_boundary);
        for st in self.streams.values_mut() {
            let half = &mut st.halves[i];
            half.partial |= half.started && !half.done;
        }
    }

    /// A frame's payload is complete (`payload` is `None` when it was skipped).
    fn end_frame(&mut self, side: Side, payload: Option<&[u8]>, ts: u64, ctx: &mut Ctx) {
        let s = &mut self.sides[idx(side)];
        s.phase = Phase::Header;
        let h = s.frame;
        let start_ns = s.frame_start_ns;
        match h.ty {
            DATA => {
                if let Some(half) = self.half(h.stream, side, start_ns, h.len) {
                    // A body without the headers that opened it: joined mid-stream.
                    half.partial |= half.blocks == 0;
                    if h.flags & FLAG_END_STREAM != 0 {
                        self.end_half(h.stream, side, ts, ctx);
                    }
                }
            }
            HEADERS => {
                let tracked = self.half(h.stream, side, start_ns, h.len).is_some();
                let end_stream = h.flags & FLAG_END_STREAM != 0;
                let pending = Pending { stream: h.stream, end_stream, discard: !tracked, lost: false };
                let fragment = payload.and_then(|p| headers_fragment(p, h.flags));
                if payload.is_some() && fragment.is_none() {
                    ctx.error(format!("HTTP/2 HEADERS padding longer than the frame (stream {})", h.stream));
                }
                self.header_fragment(side, h.flags, fragment, pending, ts, ctx);
            }
            PUSH_PROMISE => {
                // Decoded only to keep the HPACK context in step.
                let pending = Pending { stream: h.stream, end_stream: false, discard: true, lost: false };
                let fragment = payload.and_then(|p| push_fragment(p, h.flags));
                self.header_fragment(side, h.flags, fragment, pending, ts, ctx);
            }
            CONTINUATION => self.continuation(side, h, payload, start_ns, ts, ctx),
            RST_STREAM => {
                if let Some(&[a, b, c, d]) = payload {
                    self.reset(h.stream, side, u32::from_be_bytes([a, b, c, d]), start_ns, ts, ctx);
                }
            }
            _ => {}
        }
    }

    /// The first fragment of a header block: decoded now if complete, else held for CONTINUATION.
    fn header_fragment(
        &mut self,
        side: Side,
        flags: u8,
        fragment: Option<&[u8]>,
        mut p: Pending,
        ts: u64,
        ctx: &mut Ctx,
    ) {
        if flags & FLAG_END_HEADERS != 0 {
            self.finish_block(side, p, fragment, ts, ctx);
            return;
        }
        let s = &mut self.sides[idx(side)];
        s.block.clear();
        match fragment {
            Some(f) => s.block.extend_from_slice(f),
            None => p.lost = true,
        }
        s.pending = Some(p);
    }

    fn continuation(
        &mut self,
        side: Side,
        h: FrameHeader,
        payload: Option<&[u8]>,
        start_ns: u64,
        ts: u64,
        ctx: &mut Ctx,
    ) {
        let i = idx(side);
        let Some(mut p) = self.sides[i].pending.take() else {
            // Only after losing sync: the block's start is gone.
            if let Some(half) = self.half(h.stream, side, start_ns, h.len) {
                half.partial = true;
            }
            return;
        };
        if !p.discard {
            self.half(h.stream, side, start_ns, h.len);
        }
        let s = &mut self.sides[i];
        match payload {
            Some(f) if !p.lost => s.block.extend_from_slice(f),
            _ => {
                p.lost = true;
                s.block.clear();
            }
        }
        if h.flags & FLAG_END_HEADERS == 0 {
            s.pending = Some(p);
            return;
        }
        let block = std::mem::take(&mut s.block);
        self.finish_block(side, p, (!p.lost).then_some(&block[..]), ts, ctx);
        // Keep the allocation for the next block.
        self.sides[i].block = block;
        self.sides[i].block.clear();
    }

    /// A whole header block arrived (`None`: it could not be kept): decode it into its stream.
    fn finish_block(&mut self, side: Side, p: Pending, block: Option<&[u8]>, ts: u64, ctx: &mut Ctx) {
        let i = idx(side);
        let s = &mut self.sides[i];
        let half = if p.discard { None } else { self.streams.get_mut(&p.stream).map(|st| &mut st.halves[i]) };
        match (block, half) {
            (None, half) => {
                // Its dynamic table updates are lost with it.
                s.hpack.set_uncertain();
                if let Some(half) = half {
                    half.partial = true;
                }
            }
            (Some(b), Some(half)) => {
                let first = half.blocks == 0;
                half.blocks += 1;
                match s.hpack.decode(b, |n, v| half.apply(n, v)) {
                    Ok(complete) => half.partial |= !complete,
                    Err(e) => {
                        half.partial = true;
                        s.hpack.set_uncertain();
                        ctx.error(format!("HPACK: {e} (stream {})", p.stream));
                    }
                }
                // The first block of a message carries its pseudo-headers; trailers alone are partial.
                let required = match side {
                    Side::Request => half.method.is_some(),
                    Side::Response => half.status.is_some(),
                };
                half.partial |= first && !required;
            }
            (Some(b), None) => {
                if let Err(e) = s.hpack.decode(b, |_, _| ()) {
                    s.hpack.set_uncertain();
                    ctx.error(format!("HPACK: {e} (stream {})", p.stream));
                }
            }
        }
        if p.end_stream && !p.discard {
            self.end_half(p.stream, side, ts, ctx);
        }
    }

    /// The half of `stream` that `side` sends, opened if new, with this frame counted. `None` for
    /// streams already closed.
    fn half(&mut self, stream: u32, side: Side, start_ns: u64, frame_len: usize) -> Option<&mut Half> {
        if !self.streams.contains_key(&stream) {
            if self.closed.contains(&stream) {
                return None;
            }
            if self.streams.len() >= MAX_STREAMS {
                self.drop_oldest();
            }
            self.seq += 1;
            self.streams.insert(stream, Stream { seq: self.seq, halves: Default::default() });
        }
        let half = &mut self.streams.get_mut(&stream)?.halves[idx(side)];
        if half.done {
            return None;
        }
        if !half.started {
            half.started = true;
            half.start_ns = start_ns;
        }
        half.size += (FRAME_HEADER_LEN + frame_len) as u64;
        Some(half)
    }

    fn drop_oldest(&mut self) {
        if let Some(oldest) = self.streams.iter().min_by_key(|(_, st)| st.seq).map(|(&id, _)| id) {
            self.streams.remove(&oldest);
            self.dropped_streams += 1;
        }
    }

    fn close(&mut self, stream: u32) {
        self.streams.remove(&stream);
        if self.closed.len() == RECENTLY_CLOSED {
            self.closed.pop_front();
        }
        self.closed.push_back(stream);
    }

    /// `side` ended `stream` (END_STREAM): emit its message.
    fn end_half(&mut self, stream: u32, side: Side, ts: u64, ctx: &mut Ctx) {
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        let i = idx(side);
        if st.halves[i].done {
            return;
        }
        st.halves[i].done = true;
        let grpc = st.halves[0].grpc || st.halves[i].grpc;
        ctx.out.push(message(&mut st.halves[i], side, stream, ts, grpc));
        let [req, resp] = &st.halves;
        // A response whose request was never seen (joined late) will not get one.
        let finished = match side {
            Side::Request => resp.done,
            Side::Response => req.done || !req.started,
        };
        if finished {
            self.close(stream);
        }
    }

    /// RST_STREAM: the stream ends now; what is still open of it is emitted, the response with
    /// the error code.
    fn reset(&mut self, stream: u32, side: Side, code: u32, start_ns: u64, ts: u64, ctx: &mut Ctx) {
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        let sender = &mut st.halves[idx(side)];
        if !sender.done {
            if !sender.started {
                sender.started = true;
                sender.start_ns = start_ns;
            }
            sender.size += (FRAME_HEADER_LEN + 4) as u64;
        }
        let grpc = st.halves[0].grpc || st.halves[1].grpc;
        let [req, resp] = &mut st.halves;
        if req.started && !req.done {
            ctx.out.push(message(req, Side::Request, stream, ts, grpc));
        }
        if !resp.done {
            if !resp.started {
                resp.start_ns = start_ns;
            }
            let mut m = message(resp, Side::Response, stream, ts, grpc);
            m.error = Some(format!("RST_STREAM {}", error_code_name(code)));
            ctx.out.push(m);
        }
        self.close(stream);
    }
}

impl Parser for Http2Parser {
    fn feed(
        &mut self,
        side: Side,
        chunk: &[u8],
        ts_ns: u64,
        gap: bool,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut ctx = Ctx { out, error: None, fatal: false };
        if gap {
            // Captures are cut at write boundaries: the chunk likely starts with a frame.
            self.lose_sync(side, true);
        }
        let mut rerun = self.process(side, chunk, ts_ns, &mut ctx);
        // Each rerun holds fewer bytes than the one before: this ends.
        while let Some(bytes) = rerun.take().filter(|_| !ctx.fatal) {
            rerun = self.process(side, &bytes, ts_ns, &mut ctx);
        }
        if ctx.fatal {
            self.failed = ctx.error.clone();
            self.streams.clear();
            self.sides = [SideState::new(Phase::Sync, false), SideState::new(Phase::Sync, false)];
        }
        ctx.error.map_or(Ok(()), Err)
    }

    /// Uncaptured bytes can only be placed inside a payload that is counted, not kept (DATA, and
    /// frames of other types or header blocks too big to hold): frame headers and kept payloads
    /// are needed to stay in step.
    fn skip(&mut self, side: Side, n: u64, ts_ns: u64, out: &mut Vec<Message>) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let s = &mut self.sides[idx(side)];
        let fits = usize::try_from(n).is_ok_and(|n| n <= s.remaining);
        if s.phase != Phase::Payload || s.keep || !fits {
            return false;
        }
        s.remaining -= n as usize;
        if s.remaining == 0 {
            // A skipped payload's frame is counted whole when it ends, as `process` does; with no
            // payload to decode, ending it reports no error.
            let mut ctx = Ctx { out, error: None, fatal: false };
            self.end_frame(side, None, ts_ns, &mut ctx);
        }
        true
    }

    fn buffered(&self) -> usize {
        self.sides.iter().map(SideState::buffered).sum()
    }
}

/// Per-feed output: messages, and the first error met.
struct Ctx<'a> {
    out: &'a mut Vec<Message>,
    error: Option<ParseError>,
    fatal: bool,
}

impl Ctx<'_> {
    fn error(&mut self, reason: String) {
        self.error.get_or_insert(ParseError(reason));
    }

    fn fail(&mut self, reason: &str) {
        self.error = Some(ParseError(reason.to_string()));
        self.fatal = true;
    }
}

/// The header block fragment of a HEADERS payload: without padding and priority fields.
fn headers_fragment(p: &[u8], flags: u8) -> Option<&[u8]> {
    let (mut start, mut end) = (0, p.len());
    if flags & FLAG_PADDED != 0 {
        end = end.checked_sub(usize::from(*p.first()?))?;
        start = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    p.get(start..end)
}

/// The header block fragment of a PUSH_PROMISE payload: without padding and promised stream id.
fn push_fragment(p: &[u8], flags: u8) -> Option<&[u8]> {
    let (mut start, mut end) = (4, p.len());
    if flags & FLAG_PADDED != 0 {
        end = end.checked_sub(usize::from(*p.first()?))?;
        start += 1;
    }
    p.get(start..end)
}

/// Builds the message of a finished half, moving its fields out.
fn message(half: &mut Half, side: Side, stream: u32, end_ns: u64, grpc: bool) -> Message {
    let mut m = Message {
        side: Some(side),
        key: Some(MatchKey::Stream(stream)),
        start_ns: half.start_ns,
        end_ns,
        size: half.size,
        protocol: Some(if grpc { Protocol::Grpc } else { Protocol::Http2 }),
        partial: half.partial,
        ..Message::default()
    };
    match side {
        Side::Request => {
            if grpc {
                m.operation = Some("POST".to_string());
                m.target = half.path.take();
            } else {
                m.operation = half.method.take();
                m.target = half.path.take().map(|mut p| {
                    p.truncate(p.find('?').unwrap_or(p.len()));
                    p
                });
            }
            if let Some(host) = half.authority.take() {
                m.attributes.push(("http.host", host));
            }
            m.attributes.append(&mut half.trace);
        }
        Side::Response if grpc => {
            if let Some(status) = half.status.take() {
                m.attributes.push(("http.status", status));
            }
            if let Some(code) = half.grpc_status.take() {
                if code != "0" {
                    let text = half.grpc_message.take().filter(|t| !t.is_empty());
                    m.error = Some(text.unwrap_or_else(|| grpc_code_name(&code).to_string()));
                }
                m.status = Some(code);
            }
        }
        Side::Response => m.status = half.status.take(),
    }
    m
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(v: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let decoded = match v[i..] {
            [b'%', h, l, ..] => hex(h).zip(hex(l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(v[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 9113 §7 error code names.
fn error_code_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).map_or_else(|| format!("0x{code:x}"), |n| n.to_string())
}

/// gRPC status code names; the number itself when unknown.
fn grpc_code_name(code: &str) -> &str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    code.parse::<usize>().ok().and_then(|n| NAMES.get(n).copied()).unwrap_or(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, Split};
    use proptest::prelude::*;

    const REQ: Side = Side::Request;
    const RESP: Side = Side::Response;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn settings(params: &[(u16, u32)]) -> Vec<u8> {
        let p: Vec<u8> =
            params.iter().flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()[..]].concat()).collect();
        frame(SETTINGS, 0, 0, &p)
    }

    /// HPACK string without Huffman (short strings only).
    fn string(s: &str) -> Vec<u8> {
        assert!(s.len() < 127);
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// Literal without indexing, new name.
    fn lit(name: &str, value: &str) -> Vec<u8> {
        [vec![0x00], string(name), string(value)].concat()
    }

    /// Literal without indexing, name from the static table.
    fn lit_named(index: u8, value: &str) -> Vec<u8> {
        let prefix = if index < 15 { vec![index] } else { vec![0x0f, index - 15] };
        [prefix, string(value)].concat()
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn preface() -> Vec<u8> {
        [&PREFACE[..], &settings(&[(3, 100), (4, 65_535)]), &frame(WINDOW_UPDATE, 0, 0, &[0, 0x0f, 0, 1])].concat()
    }

    fn server_preface() -> Vec<u8> {
        [settings(&[(3, 100), (5, 16_384)]), frame(SETTINGS, FLAG_ACK, 0, &[])].concat()
    }

    const EH: u8 = FLAG_END_HEADERS;
    const ES: u8 = FLAG_END_STREAM;

    /// Feeds each segment (chunk `i` at ts `i * 1000`), split as asked. Returns messages and errors.
    fn run(segments: &[(Side, Vec<u8>)], split: Split) -> (Vec<Message>, Vec<ParseError>) {
        testkit::feed_split(Http2Parser::new(), segments, split, 1000, 40)
    }

    /// Runs every split mode and checks they agree; returns the messages.
    fn run_all(segments: &[(Side, Vec<u8>)]) -> Vec<Message> {
        let (whole, errors) = run(segments, Split::Whole);
        assert!(errors.is_empty(), "{errors:?}");
        for split in [Split::Bytes, Split::Random(7), Split::Random(12_345), Split::Random(99)] {
            let (got, _) = run(segments, split);
            assert_eq!(got, whole, "{split:?}");
        }
        whole
    }

    fn attrs(m: &Message) -> Vec<(&str, &str)> {
        m.attributes.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn len(frames: &[&Vec<u8>]) -> u64 {
        frames.iter().map(|f| f.len() as u64).sum()
    }

    #[test]
    fn detects_preface_and_server_settings() {
        assert!(detect(REQ, PREFACE));
        assert!(detect(REQ, b"PRI * HT"));
        assert!(detect(REQ, &preface()));
        assert!(!detect(REQ, b"PRI * H"));
        assert!(!detect(REQ, b"GET / HTTP/1.1\r\n"));
        assert!(!detect(REQ, b"PRI * HTTP/1.1\r\n"));
        assert!(detect(RESP, &server_preface()));
        assert!(detect(RESP, &settings(&[])));
        assert!(!detect(RESP, &frame(SETTINGS, 0, 0, &[0; 5])));
        assert!(!detect(RESP, &frame(SETTINGS, FLAG_ACK, 0, &[])));
        assert!(!detect(RESP, &frame(HEADERS, EH, 1, &[0x88])));
        assert!(!detect(RESP, b"HTTP/1.1 200 OK\r\n"));
        assert!(!detect(RESP, b"+OK\r\n"));
        assert!(!detect(RESP, &[0, 0, 0]));
    }

    /// RFC 7541 C.4 requests and C.6 responses as three streams, answered out of order.
    #[test]
    fn get_requests_with_huffman_and_dynamic_table() {
        let h1 = frame(HEADERS, ES | EH, 1, &unhex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
        let h3 = frame(HEADERS, ES | EH, 3, &unhex("8286 84be 5886 a8eb 1064 9cbf"));
        let h5 = frame(HEADERS, ES | EH, 5, &unhex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"));
        // The server shrinks its table to 256 as RFC 7541 C.6 assumes.
        let c61 = unhex(
            "3fe101 4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d \
             29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        );
        let r1 = frame(HEADERS, EH, 1, &c61);
        let d1 = frame(DATA, ES, 1, b"hello");
        let r5 = frame(HEADERS, ES | EH, 5, &unhex("4883 640e ffc1 c0bf"));
        let c63 = unhex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 \
             e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        );
        let r3 = frame(HEADERS, EH, 3, &c63);
        let d3a = frame(DATA, 0, 3, &[b'x'; 100]);
        let d3b = frame(DATA, ES, 3, &[]);
        let segments = vec![
            (REQ, preface()),
            (REQ, h1.clone()),
            (RESP, server_preface()),
            (RESP, [r1.clone(), d1.clone()].concat()),
            (REQ, [frame(SETTINGS, FLAG_ACK, 0, &[]), h3.clone()].concat()),
            (REQ, h5.clone()),
            (RESP, r5.clone()),
            (RESP, [r3.clone(), d3a.clone(), d3b.clone()].concat()),
        ];
        let msgs = run_all(&segments);
        assert_eq!(msgs.len(), 6);
        let want_req = |m: &Message, stream, target: &str, ts| {
            assert_eq!(m.side, Some(REQ));
            assert_eq!(m.key, Some(MatchKey::Stream(stream)));
            assert_eq!(m.operation.as_deref(), Some("GET"));
            assert_eq!(m.target.as_deref(), Some(target));
            assert_eq!(attrs(m), vec![("http.host", "www.example.com")]);
            assert_eq!(m.protocol, Some(Protocol::Http2));
            assert_eq!((m.start_ns, m.end_ns), (ts, ts));
            assert!(!m.partial);
        };
        want_req(&msgs[0], 1, "/", 1000);
        assert_eq!(msgs[0].size, len(&[&h1]));
        let resp1 = &msgs[1];
        assert_eq!((resp1.side, resp1.key), (Some(RESP), Some(MatchKey::Stream(1))));
        assert_eq!(resp1.status.as_deref(), Some("302"));
        assert_eq!(resp1.size, len(&[&r1, &d1]));
        assert_eq!((resp1.error.as_ref(), resp1.partial), (None, false));
        want_req(&msgs[2], 3, "/", 4000);
        assert_eq!(msgs[2].size, len(&[&h3]));
        want_req(&msgs[3], 5, "/index.html", 5000);
        assert_eq!((msgs[4].key, msgs[4].status.as_deref()), (Some(MatchKey::Stream(5)), Some("307")));
        assert_eq!((msgs[5].key, msgs[5].status.as_deref()), (Some(MatchKey::Stream(3)), Some("200")));
        assert_eq!(msgs[5].size, len(&[&r3, &d3a, &d3b]));
        assert_eq!((msgs[5].start_ns, msgs[5].end_ns), (7000, 7000));
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// POST with a padded, prioritized HEADERS split over two CONTINUATIONs, padded DATA, and a
    /// second request reusing the dynamic table.
    fn post_conversation() -> (Vec<(Side, Vec<u8>)>, [u64; 4]) {
        let block = [
            vec![0x83, 0x87],
            [vec![0x44], string("/api/items?id=7&x=y")].concat(),
            [vec![0x41], string("api.example.com")].concat(),
            lit("traceparent", TRACEPARENT),
            lit("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            [vec![0x5f], string("application/json")].concat(),
        ]
        .concat();
        let (a, b) = (7, 40);
        let mut p1 = vec![3, 0x80, 0, 0, 3, 15];
        p1.extend_from_slice(&block[..a]);
        p1.extend_from_slice(&[0; 3]);
        let h = frame(HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1, &p1);
        let c1 = frame(CONTINUATION, 0, 1, &block[a..b]);
        let c2 = frame(CONTINUATION, EH, 1, &block[b..]);
        let d1 = frame(DATA, FLAG_PADDED, 1, &[&[2u8][..], b"{\"name\":1}", &[0, 0]].concat());
        let d2 = frame(DATA, ES, 1, b"\n");
        let r1 = frame(HEADERS, EH, 1, &[&[0x48][..], &string("201")].concat());
        let rd = frame(DATA, ES, 1, b"{}");
        // Dynamic table now: 62 = content-type, 63 = :authority, 64 = :path.
        let h3 = frame(HEADERS, ES | EH, 3, &[0x82, 0x87, 0xc0, 0xbf]);
        let r3 = frame(HEADERS, ES | EH, 3, &[0x88]);
        let sizes = [len(&[&h, &c1, &c2, &d1, &d2]), len(&[&r1, &rd]), len(&[&h3]), len(&[&r3])];
        let segments = vec![
            (REQ, [preface(), h, c1].concat()),
            (REQ, [c2, d1, d2].concat()),
            (RESP, [server_preface(), frame(PING, 0, 0, &[1; 8]), r1, rd].concat()),
            (REQ, h3),
            (RESP, r3),
        ];
        (segments, sizes)
    }

    #[test]
    fn post_with_padding_priority_continuation_and_trace_headers() {
        let (segments, sizes) = post_conversation();
        let msgs = run_all(&segments);
        assert_eq!(msgs.len(), 4);
        let req = &msgs[0];
        assert_eq!(req.operation.as_deref(), Some("POST"));
        assert_eq!(req.target.as_deref(), Some("/api/items"));
        let want = vec![
            ("http.host", "api.example.com"),
            ("traceparent", TRACEPARENT),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ];
        assert_eq!(attrs(req), want);
        assert_eq!((req.size, req.start_ns, req.end_ns, req.partial), (sizes[0], 0, 1000, false));
        assert_eq!((msgs[1].status.as_deref(), msgs[1].size), (Some("201"), sizes[1]));
        assert_eq!((msgs[2].operation.as_deref(), msgs[2].target.as_deref()), (Some("GET"), Some("/api/items")));
        assert_eq!(attrs(&msgs[2]), vec![("http.host", "api.example.com")]);
        assert_eq!(msgs[2].size, sizes[2]);
        assert_eq!((msgs[3].status.as_deref(), msgs[3].size), (Some("200"), sizes[3]));
        assert!(msgs.iter().all(|m| !m.partial && m.protocol == Some(Protocol::Http2)));
    }

    fn grpc_request(stream: u32, method: &str) -> Vec<u8> {
        let block = [
            vec![0x83, 0x86],
            lit_named(4, method),
            lit_named(1, "localhost:50051"),
            lit_named(31, "application/grpc"),
            lit("te", "trailers"),
            lit("grpc-timeout", "1S"),
            lit("traceparent", TRACEPARENT),
        ]
        .concat();
        let msg = [0, 0, 0, 0, 7, 0x0a, 5, b'w', b'o', b'r', b'l', b'd'];
        [frame(HEADERS, EH, stream, &block), frame(DATA, ES, stream, &msg)].concat()
    }

    fn grpc_conversation() -> Vec<(Side, Vec<u8>)> {
        let ok = [
            frame(HEADERS, EH, 1, &[&[0x88][..], &lit_named(31, "application/grpc+proto")].concat()),
            frame(DATA, 0, 1, &[0, 0, 0, 0, 7, 0x0a, 5, b'h', b'e', b'l', b'l', b'o']),
            frame(HEADERS, ES | EH, 1, &[lit("grpc-status", "0"), lit("grpc-message", "")].concat()),
        ]
        .concat();
        let trailers_only = [
            vec![0x88],
            lit_named(31, "application/grpc"),
            lit("grpc-status", "5"),
            lit("grpc-message", "no%20such%20method"),
        ]
        .concat();
        let unimplemented = [
            frame(HEADERS, EH, 5, &[&[0x88][..], &lit_named(31, "application/grpc")].concat()),
            frame(HEADERS, ES | EH, 5, &lit("grpc-status", "12")),
        ]
        .concat();
        vec![
            (REQ, preface()),
            (REQ, grpc_request(1, "/helloworld.Greeter/SayHello")),
            (RESP, [server_preface(), ok].concat()),
            (
                REQ,
                [grpc_request(3, "/helloworld.Greeter/Missing"), grpc_request(5, "/helloworld.Greeter/Later")].concat(),
            ),
            (RESP, frame(HEADERS, ES | EH, 3, &trailers_only)),
            (RESP, unimplemented),
        ]
    }

    #[test]
    fn grpc_calls_statuses_and_trailers_only() {
        let msgs = run_all(&grpc_conversation());
        assert_eq!(msgs.len(), 6);
        assert!(msgs.iter().all(|m| m.protocol == Some(Protocol::Grpc) && !m.partial));
        let req = &msgs[0];
        assert_eq!(req.operation.as_deref(), Some("POST"));
        assert_eq!(req.target.as_deref(), Some("/helloworld.Greeter/SayHello"));
        assert_eq!(attrs(req), vec![("http.host", "localhost:50051"), ("traceparent", TRACEPARENT)]);
        let ok = &msgs[1];
        assert_eq!((ok.status.as_deref(), ok.error.as_deref()), (Some("0"), None));
        assert_eq!(attrs(ok), vec![("http.status", "200")]);
        assert_eq!(msgs[2].target.as_deref(), Some("/helloworld.Greeter/Missing"));
        assert_eq!(msgs[3].target.as_deref(), Some("/helloworld.Greeter/Later"));
        let missing = &msgs[4];
        assert_eq!(missing.key, Some(MatchKey::Stream(3)));
        assert_eq!((missing.status.as_deref(), missing.error.as_deref()), (Some("5"), Some("no such method")));
        assert_eq!(attrs(missing), vec![("http.status", "200")]);
        let unimpl = &msgs[5];
        assert_eq!((unimpl.status.as_deref(), unimpl.error.as_deref()), (Some("12"), Some("UNIMPLEMENTED")));
    }

    #[test]
    fn rst_stream_ends_streams_with_an_error() {
        let get = frame(HEADERS, ES | EH, 1, &[0x82, 0x86, 0x04, 0x05, b'/', b's', b'l', b'o', b'w']);
        let refused = frame(RST_STREAM, 0, 1, &[0, 0, 0, 7]);
        let upload = frame(HEADERS, EH, 3, &[&[0x83, 0x86][..], &lit_named(4, "/upload")].concat());
        let body = frame(DATA, 0, 3, &[0; 100]);
        let cancel = frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]);
        let segments = vec![
            (REQ, [preface(), get.clone()].concat()),
            (RESP, [server_preface(), refused.clone()].concat()),
            (REQ, [upload.clone(), body.clone(), cancel.clone()].concat()),
            // In flight when the reset happened: ignored.
            (REQ, frame(DATA, ES, 3, &[0; 10])),
            (RESP, frame(RST_STREAM, 0, 3, &[0, 0, 0, 0x42])),
        ];
        let msgs = run_all(&segments);
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].target.as_deref(), Some("/slow"));
        let r1 = &msgs[1];
        assert_eq!((r1.side, r1.key), (Some(RESP), Some(MatchKey::Stream(1))));
        assert_eq!((r1.error.as_deref(), r1.status.as_ref()), (Some("RST_STREAM REFUSED_STREAM"), None));
        assert_eq!((r1.size, r1.start_ns, r1.end_ns), (13, 1000, 1000));
        let up = &msgs[2];
        assert_eq!((up.operation.as_deref(), up.target.as_deref()), (Some("POST"), Some("/upload")));
        assert_eq!((up.size, up.partial), (len(&[&upload, &body, &cancel]), false));
        let r3 = &msgs[3];
        assert_eq!((r3.key, r3.error.as_deref(), r3.size), (Some(MatchKey::Stream(3)), Some("RST_STREAM CANCEL"), 0));
        assert_eq!(error_code_name(0x42), "0x42");
    }

    #[test]
    fn uncaptured_data_bytes_are_counted_and_keep_the_stream_in_step() {
        let mut p = Http2Parser::new();
        let mut out = vec![];
        let get = |stream, path| frame(HEADERS, ES | EH, stream, &[&[0x82, 0x86][..], &lit_named(4, path)].concat());
        p.feed(REQ, &[preface(), get(1, "/big"), get(3, "/next")].concat(), 1, false, &mut out).unwrap();
        let ok = frame(HEADERS, EH, 1, &[0x88]);
        let data = frame(DATA, ES, 1, &[b'x'; 10_000]);
        // The capture kept the frame header and 100 payload bytes; 9900 more went by uncaptured.
        let first = [server_preface(), ok.clone(), data[..FRAME_HEADER_LEN + 100].to_vec()].concat();
        p.feed(RESP, &first, 2, false, &mut out).unwrap();
        // More than the frame holds cannot be placed.
        assert!(!p.skip(RESP, 9_901, 3, &mut out));
        assert!(p.skip(RESP, 9_900, 3, &mut out));
        p.feed(RESP, &frame(HEADERS, ES | EH, 3, &[0x8d]), 4, false, &mut out).unwrap();
        let responses: Vec<_> = out.iter().filter(|m| m.side == Some(RESP)).collect();
        assert_eq!(responses.len(), 2);
        assert_eq!(
            (responses[0].key, responses[0].size, responses[0].end_ns, responses[0].partial),
            (Some(MatchKey::Stream(1)), len(&[&ok, &data]), 3, false)
        );
        assert_eq!((responses[1].key, responses[1].status.as_deref()), (Some(MatchKey::Stream(3)), Some("404")));
        // In a frame header, uncaptured bytes cannot be placed.
        assert!(!p.skip(RESP, 10, 5, &mut out));
    }

    #[test]
    fn mid_stream_start_reports_unknown_dynamic_entries_as_partial() {
        // Joined late: no preface, the request refers to a dynamic entry (62) never seen.
        let h7 = frame(HEADERS, ES | EH, 7, &[&[0x82, 0x86][..], &lit_named(4, "/ping?x"), &[0xbe]].concat());
        let h9 = frame(HEADERS, ES | EH, 9, &[&[0x82, 0x86][..], &lit_named(4, "/pong"), &lit_named(1, "h")].concat());
        let segments = vec![
            (REQ, [h7, frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0])].concat()),
            (RESP, [frame(HEADERS, EH, 7, &[0x88, 0xbe]), frame(DATA, ES, 7, b"ok")].concat()),
            (REQ, [h9, frame(PING, 0, 0, &[0; 8])].concat()),
            (RESP, [frame(HEADERS, ES | EH, 9, &[0x8d])].concat()),
        ];
        let msgs = run_all(&segments);
        assert_eq!(msgs.len(), 4);
        assert_eq!((msgs[0].operation.as_deref(), msgs[0].target.as_deref()), (Some("GET"), Some("/ping")));
        assert!(msgs[0].partial && msgs[0].attributes.is_empty());
        assert_eq!((msgs[1].status.as_deref(), msgs[1].partial), (Some("200"), true));
        assert_eq!((msgs[2].target.as_deref(), msgs[2].partial), (Some("/pong"), false));
        assert_eq!((msgs[3].status.as_deref(), msgs[3].partial), (Some("404"), false));
        // A connection joined at a frame boundary: its first frame alone is enough.
        let lone = frame(HEADERS, ES | EH, 21, &[&[0x82, 0x86][..], &lit_named(4, "/first")].concat());
        let msgs = run_all(&[(REQ, lone)]);
        assert_eq!((msgs.len(), msgs[0].target.as_deref()), (1, Some("/first")));
    }

    #[test]
    fn mid_frame_start_resyncs_on_a_chain_of_frames() {
        let h1 = frame(HEADERS, ES | EH, 11, &[&[0x82, 0x86][..], &lit_named(4, "/a")].concat());
        let tail = b"this is the end of some earlier DATA frame".to_vec();
        let segments = vec![(REQ, [tail, h1, frame(PING, 0, 0, &[0; 8])].concat())];
        let msgs = run_all(&segments);
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].target.as_deref(), msgs[0].partial), (Some("/a"), false));
        // A body whose headers were not seen is partial.
        let segments = vec![(RESP, [frame(DATA, 0, 11, b"abc"), frame(DATA, ES, 11, b"d")].concat())];
        let msgs = run_all(&segments);
        assert_eq!((msgs.len(), msgs[0].partial, msgs[0].size), (1, true, 22));
    }

    #[test]
    fn gap_marks_open_streams_partial_and_resyncs() {
        let mut p = Http2Parser::new();
        let mut out = Vec::new();
        let upload = frame(HEADERS, EH, 1, &[&[0x83, 0x86][..], &lit_named(4, "/upload")].concat());
        let body = frame(DATA, 0, 1, &[7; 1000]);
        p.feed(REQ, &[preface(), upload.clone(), body[..500].to_vec()].concat(), 1, false, &mut out).unwrap();
        assert_eq!(p.buffered(), 0, "DATA is not buffered");
        let next = frame(HEADERS, ES | EH, 3, &[&[0x82, 0x86][..], &lit_named(4, "/next")].concat());
        let chunk = [frame(DATA, ES, 1, b"end"), next].concat();
        p.feed(REQ, &chunk, 2, true, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].target.as_deref(), out[0].partial), (Some("/upload"), true));
        // The frame cut by the gap is not counted.
        assert_eq!(out[0].size, (upload.len() + 12) as u64);
        assert_eq!((out[1].target.as_deref(), out[1].partial), (Some("/next"), false));
        // A gap in the middle of a header block, then garbage, then frames again.
        let big = frame(HEADERS, EH, 5, &[&[0x82, 0x86][..], &lit_named(4, &"p".repeat(100))].concat());
        p.feed(REQ, &big[..50], 3, false, &mut out).unwrap();
        assert!(p.buffered() > 0);
        let after = frame(HEADERS, ES | EH, 7, &[&[0x82, 0x86][..], &lit_named(4, "/after")].concat());
        let junk = [b"\xff\xfe garbage".to_vec(), after, settings(&[])].concat();
        p.feed(REQ, &junk, 4, true, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!((out[2].target.as_deref(), out[2].key), (Some("/after"), Some(MatchKey::Stream(7))));
        // After a gap at a frame boundary, a lone frame is parsed at once.
        let lone = frame(HEADERS, ES | EH, 9, &[&[0x82, 0x86][..], &lit_named(4, "/lone")].concat());
        p.feed(REQ, &lone, 5, true, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!((out[3].target.as_deref(), out[3].partial), (Some("/lone"), false));
        assert_eq!((out[2].target.as_deref(), out[2].key), (Some("/after"), Some(MatchKey::Stream(7))));
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn oversized_header_block_is_skipped_and_partial() {
        let value = "v".repeat(120);
        let mut block = vec![0x82, 0x86, 0x84];
        while block.len() < SIDE_BUDGET + 1000 {
            block.extend(lit("x-filler", &value));
        }
        let mut frames = Vec::new();
        for (i, part) in block.chunks(16_384).enumerate() {
            let last = (i + 1) * 16_384 >= block.len();
            let flags = if last { EH } else { 0 };
            frames.extend(frame(
                if i == 0 { HEADERS } else { CONTINUATION },
                flags | if i == 0 { ES } else { 0 },
                1,
                part,
            ));
        }
        let h3 = frame(HEADERS, ES | EH, 3, &[&[0x82, 0x86][..], &lit_named(4, "/small")].concat());
        let segments = vec![(REQ, [preface(), frames.clone()].concat()), (REQ, h3)];
        let msgs = run_all(&segments);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].partial && msgs[0].operation.is_none());
        assert_eq!(msgs[0].size, frames.len() as u64);
        assert_eq!((msgs[1].target.as_deref(), msgs[1].partial), (Some("/small"), false));
    }

    #[test]
    fn protocol_errors_are_reported_and_resynced() {
        let mut p = Http2Parser::new();
        let mut out = Vec::new();
        // DATA on stream 0 is a protocol error.
        let bad = [preface(), frame(DATA, 0, 0, b"x")].concat();
        assert!(p.feed(REQ, &bad, 1, false, &mut out).is_err());
        let ok = frame(HEADERS, ES | EH, 1, &[&[0x82, 0x86][..], &lit_named(4, "/ok")].concat());
        p.feed(REQ, &[ok, settings(&[])].concat(), 2, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        // HPACK garbage: reported, the message is partial.
        let h = frame(HEADERS, ES | EH, 3, &[0x82, 0x41, 0x7f]);
        assert!(p.feed(REQ, &h, 3, false, &mut out).unwrap_err().0.contains("HPACK"));
        assert!(out[1].partial);
    }

    #[test]
    fn endless_garbage_gives_up() {
        let mut p = Http2Parser::new();
        let mut out = Vec::new();
        let junk = vec![0xffu8; 64 * 1024];
        let mut result = Ok(());
        for _ in 0..20 {
            result = p.feed(REQ, &junk, 1, false, &mut out);
            assert!(p.buffered() <= MAX_BUFFERED);
        }
        let err = result.unwrap_err();
        assert_eq!(p.feed(RESP, &server_preface(), 2, false, &mut out), Err(err));
        assert!(out.is_empty());
    }

    #[test]
    fn open_streams_are_bounded() {
        let mut p = Http2Parser::new();
        let mut out = Vec::new();
        p.feed(REQ, &preface(), 1, false, &mut out).unwrap();
        for id in 0..1100u32 {
            let h = frame(HEADERS, EH, 2 * id + 1, &[0x83, 0x86, 0x84]);
            p.feed(REQ, &h, 2, false, &mut out).unwrap();
        }
        assert_eq!(p.streams.len(), MAX_STREAMS);
        assert_eq!(p.dropped_streams(), 1100 - MAX_STREAMS as u64);
        // The oldest were dropped: stream 1 is gone, the last one ends normally.
        p.feed(REQ, &frame(DATA, ES, 1, b""), 3, false, &mut out).unwrap();
        p.feed(REQ, &frame(DATA, ES, 2199, b""), 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].partial && !out[1].partial);
        assert_eq!(out[1].key, Some(MatchKey::Stream(2199)));
    }

    #[test]
    fn percent_decoding_and_names() {
        assert_eq!(percent_decode(b"a%20b%zz%4"), "a b%zz%4");
        assert_eq!(grpc_code_name("16"), "UNAUTHENTICATED");
        assert_eq!(grpc_code_name("99"), "99");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec((any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..20),
            start_with_preface: bool,
        ) {
            let mut p = Http2Parser::new();
            let mut out = Vec::new();
            let mut total = 0;
            if start_with_preface {
                let _ = p.feed(REQ, PREFACE, 0, false, &mut out);
            }
            for (is_req, gap, bytes) in &chunks {
                total += bytes.len();
                let side = if *is_req { REQ } else { RESP };
                let _ = p.feed(side, bytes, 1, *gap, &mut out);
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
            prop_assert!(out.len() <= 2 * (total / FRAME_HEADER_LEN) + 1);
        }

        #[test]
        fn frame_soup_never_panics(
            frames in proptest::collection::vec((0u8..12, any::<u8>(), 0u32..6, proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()), 0..30),
        ) {
            let mut p = Http2Parser::new();
            let mut out = Vec::new();
            let _ = p.feed(REQ, PREFACE, 0, false, &mut out);
            for (ty, flags, stream, payload, is_req) in &frames {
                let side = if *is_req { REQ } else { RESP };
                let _ = p.feed(side, &frame(*ty, *flags, *stream, payload), 1, false, &mut out);
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
            prop_assert!(out.len() <= 2 * frames.len());
        }

        #[test]
        fn any_split_gives_the_same_messages(seed: u64, which in 0..2usize) {
            let segs = [post_conversation().0, grpc_conversation()][which].clone();
            let (whole, errors) = run(&segs, Split::Whole);
            prop_assert!(errors.is_empty());
            prop_assert_eq!(whole.len(), [4, 6][which]);
            let (split, _) = run(&segs, Split::Random(seed));
            prop_assert_eq!(split, whole);
        }
    }
}
