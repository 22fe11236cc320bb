//! One connection's protocol session: detection, then a parser per connection and a matcher that
//! pairs what it parses.

use protocols::message::{Message, Parser, Protocol, Side};
use strata_event::{Direction, Role, Transport};

use super::detect;
use super::matcher::{Matched, Matcher};

/// Chunks looked at before giving up on recognizing a connection.
const DETECT_CHUNKS: u32 = 8;
/// Opening bytes of a TCP direction kept while detecting. Servers often read a length prefix
/// first and the rest after (a Kafka broker reads 4 bytes, then the request): the test must see
/// the chunks joined.
const OPENING_CAP: usize = 512;

enum State {
    Detecting {
        seen: u32,
        /// Per direction (egress, ingress): the bytes seen so far from the stream's start, while
        /// they are contiguous and within [`OPENING_CAP`].
        opening: [Vec<u8>; 2],
    },
    Parsing {
        protocol: Protocol,
        parser: Box<dyn Parser>,
        request_direction: Direction,
    },
    /// Not a protocol strata knows, or the parser gave up: bytes are only counted.
    Opaque,
}

pub struct Session {
    state: State,
    matcher: Matcher,
    /// Per direction (egress, ingress): bytes were lost since the last chunk fed.
    gap: [bool; 2],
    messages: Vec<Message>,
    /// What the matcher made of them (reused between chunks).
    matched: Vec<Matched>,
}

/// What a chunk produced.
pub enum Output {
    Pair(Protocol, Message, Message),
    Orphan(Protocol, Message),
    /// A request that will not be answered (evicted from a full matcher).
    Unanswered(Protocol, Message),
}

impl Output {
    fn from_matched(protocol: Protocol, m: Matched) -> Output {
        match m {
            Matched::Pair(req, resp) => Output::Pair(protocol, req, resp),
            Matched::Orphan(resp) => Output::Orphan(protocol, resp),
            Matched::Unanswered(req) => Output::Unanswered(protocol, req),
        }
    }
}

/// Outcome of feeding one chunk, for the pipeline's counters.
#[derive(Default)]
pub struct Fed {
    pub parse_error: Option<String>,
    pub detected: Option<Protocol>,
    pub gave_up: bool,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

fn opposite(d: Direction) -> Direction {
    match d {
        Direction::Egress => Direction::Ingress,
        Direction::Ingress => Direction::Egress,
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            state: State::Detecting { seen: 0, opening: [vec![], vec![]] },
            matcher: Matcher::default(),
            gap: [false; 2],
            messages: vec![],
            matched: vec![],
        }
    }

    pub fn protocol(&self) -> Option<Protocol> {
        match &self.state {
            State::Parsing { protocol, .. } => Some(*protocol),
            _ => None,
        }
    }

    /// Bytes held by the parser and requests waiting for responses (roughly), for memory bounds.
    pub fn footprint(&self) -> usize {
        let parser = match &self.state {
            State::Parsing { parser, .. } => parser.buffered(),
            _ => 0,
        };
        parser + self.matcher.len() * 256
    }

    /// The role the protocol revealed: the side sending requests is the client.
    pub fn role(&self) -> Option<Role> {
        match &self.state {
            State::Parsing { request_direction: Direction::Egress, .. } => Some(Role::Client),
            State::Parsing { request_direction: Direction::Ingress, .. } => Some(Role::Server),
            _ => None,
        }
    }

    pub fn overflow(&self) -> u64 {
        self.matcher.overflow
    }

    /// Bytes were lost on this connection (loss reported by the capture): neither side may be
    /// stitched across.
    pub fn mark_gap(&mut self) {
        self.gap = [true; 2];
        if let State::Detecting { opening, .. } = &mut self.state {
            opening.iter_mut().for_each(Vec::clear);
        }
    }

    /// Feeds one data chunk: `captured` is what the capture holds of the `moved` bytes (a prefix).
    #[allow(clippy::too_many_arguments)]
    pub fn feed(
        &mut self,
        transport: Transport,
        role: Role,
        direction: Direction,
        captured: &[u8],
        moved: u64,
        ts_ns: u64,
        out: &mut Vec<Output>,
    ) -> Fed {
        let mut fed = Fed::default();
        let mut joined = None;
        if let State::Detecting { seen, opening } = &mut self.state {
            *seen += 1;
            let give_up = *seen >= DETECT_CHUNKS;
            let first = Self::opening(&mut opening[dir_index(direction)], transport, captured, moved);
            match Self::recognize(transport, role, direction, first.as_deref().unwrap_or(captured)) {
                Some((protocol, request_direction)) => {
                    fed.detected = Some(protocol);
                    let parser = detect::parser(protocol, transport);
                    self.state = State::Parsing { protocol, parser, request_direction };
                    // The first chunk of a side is whole from its start: no gap before it.
                    self.gap = [false; 2];
                    joined = first;
                }
                None if give_up => {
                    fed.gave_up = true;
                    self.state = State::Opaque;
                }
                None => {}
            }
        }
        let uncaptured = moved.saturating_sub(captured.len() as u64);
        // The parser starts with every opening byte of the side that revealed the protocol.
        let captured = joined.as_deref().unwrap_or(captured);
        let State::Parsing { protocol, parser, request_direction } = &mut self.state else { return fed };
        let side = if direction == *request_direction { Side::Request } else { Side::Response };
        let i = dir_index(direction);
        let gap = std::mem::replace(&mut self.gap[i], false);
        let protocol = *protocol;
        if let Err(e) = parser.feed(side, captured, ts_ns, gap, &mut self.messages) {
            fed.parse_error = Some(e.0);
        }
        // Bytes the capture did not keep: the parser counts them where it can place them (a body
        // of known length); otherwise the next chunk must not be stitched to this one.
        if uncaptured > 0 && !parser.skip(side, uncaptured, ts_ns, &mut self.messages) {
            self.gap[i] = true;
        }
        let mut matched = std::mem::take(&mut self.matched);
        for m in self.messages.drain(..) {
            match m.side {
                Some(Side::Request) => self.matcher.request(m, &mut matched),
                _ => self.matcher.response(m, &mut matched),
            }
        }
        out.extend(matched.drain(..).map(|m| Output::from_matched(protocol, m)));
        self.matched = matched;
        fed
    }

    /// The direction's opening bytes with this chunk appended, when there were earlier ones to
    /// join (None: test the chunk alone). A truncated chunk ends the contiguous opening, and so
    /// does passing [`OPENING_CAP`]; datagrams are never joined.
    fn opening(kept: &mut Vec<u8>, transport: Transport, captured: &[u8], moved: u64) -> Option<Vec<u8>> {
        if transport == Transport::Udp {
            return None;
        }
        let whole = moved == captured.len() as u64;
        if kept.is_empty() || kept.len() + captured.len() > OPENING_CAP {
            kept.clear();
            if whole && captured.len() <= OPENING_CAP {
                kept.extend_from_slice(captured);
            }
            return None;
        }
        let mut joined = std::mem::take(kept);
        joined.extend_from_slice(captured);
        if whole {
            kept.clone_from(&joined);
        }
        Some(joined)
    }

    /// Which protocol, and which direction carries requests.
    fn recognize(
        transport: Transport,
        role: Role,
        direction: Direction,
        first: &[u8],
    ) -> Option<(Protocol, Direction)> {
        if first.is_empty() {
            return None;
        }
        let as_request = |d: Direction| -> Option<(Protocol, Direction)> {
            detect::detect(transport, Side::Request, first).map(|p| (p, d))
        };
        let as_response = |d: Direction| detect::detect(transport, Side::Response, first).map(|p| (p, opposite(d)));
        match (role, direction) {
            (Role::Client, Direction::Egress) | (Role::Server, Direction::Ingress) => as_request(direction),
            (Role::Client, Direction::Ingress) | (Role::Server, Direction::Egress) => as_response(direction),
            (Role::Unknown, _) => as_request(direction).or_else(|| as_response(direction)),
        }
    }

    /// The connection ended: requests still waiting will not be answered, answers still waiting
    /// have no request.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        let Some(protocol) = self.protocol() else { return };
        let mut matched = Vec::new();
        self.matcher.drain(&mut matched);
        out.extend(matched.into_iter().map(|m| Output::from_matched(protocol, m)));
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}
