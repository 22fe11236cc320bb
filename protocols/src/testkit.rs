//! Test support shared by the parsers' unit tests: feeding a conversation whole, byte by byte or
//! in pseudo-random pieces, which must all give the same messages.

use crate::message::{Message, ParseError, Parser, Side, MAX_BUFFERED};

#[derive(Clone, Copy, Debug)]
pub enum Split {
    Whole,
    Bytes,
    /// Pieces of 1 to `max_piece` bytes from a xorshift generator seeded with this.
    Random(u64),
}

/// Feeds each turn (turn `i` at ts `i * ts_step`) to `p`, cut as `split` says, checking the
/// buffer bound after every piece. Returns the messages and the errors `feed` gave.
pub fn feed_split<P: Parser>(
    mut p: P,
    turns: &[(Side, Vec<u8>)],
    split: Split,
    ts_step: u64,
    max_piece: u64,
) -> (Vec<Message>, Vec<ParseError>) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    let mut seed = match split {
        Split::Random(s) => s | 1,
        _ => 1,
    };
    for (i, (side, bytes)) in turns.iter().enumerate() {
        let mut at = 0;
        while at < bytes.len() {
            let n = match split {
                Split::Whole => bytes.len(),
                Split::Bytes => 1,
                Split::Random(_) => {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    1 + (seed % max_piece) as usize
                }
            };
            let end = (at + n).min(bytes.len());
            if let Err(e) = p.feed(*side, &bytes[at..end], i as u64 * ts_step, false, &mut out) {
                errors.push(e);
            }
            assert!(p.buffered() <= MAX_BUFFERED);
            at = end;
        }
    }
    (out, errors)
}

/// Feeds turns (ts = the turn's index) to a fresh parser, cut as asked; any parse error fails.
pub fn run<P: Parser>(new: impl Fn() -> P, turns: &[(Side, Vec<u8>)], split: Split) -> Vec<Message> {
    let (out, errors) = feed_split(new(), turns, split, 1, 23);
    assert!(errors.is_empty(), "{errors:?}");
    out
}

/// The same messages whole, byte by byte and in 19 random splits.
pub fn run_all<P: Parser>(new: impl Fn() -> P, turns: &[(Side, Vec<u8>)]) -> Vec<Message> {
    let whole = run(&new, turns, Split::Whole);
    assert_eq!(run(&new, turns, Split::Bytes), whole);
    for seed in 1..20 {
        assert_eq!(run(&new, turns, Split::Random(seed)), whole);
    }
    whole
}

/// One line per message: side, operation, target, status, error, attributes, partial.
pub fn brief(m: &Message) -> String {
    let side = if m.side == Some(Side::Request) { ">" } else { "<" };
    let attrs: Vec<String> = m.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{side} {} {} {} {} [{}]{}",
        m.operation.as_deref().unwrap_or("-"),
        m.target.as_deref().unwrap_or("-"),
        m.status.as_deref().unwrap_or("-"),
        m.error.as_deref().unwrap_or("-"),
        attrs.join(" "),
        if m.partial { " partial" } else { "" }
    )
}

/// Feeds each turn (ts = the turn's index) in pieces of `cuts[i % len]` bytes, piece `i` counted
/// across turns, checking the buffer bound after every piece. With `gaps`, piece `i` is lost when
/// `gaps[i % len]`, and the next one fed says so when `gaps[(i + 1) % len]`; errors are then
/// expected and ignored. Without, any error fails.
pub fn feed_cuts<P: Parser>(
    mut p: P,
    turns: &[(Side, Vec<u8>)],
    cuts: &[usize],
    gaps: Option<&[bool]>,
) -> Vec<Message> {
    let mut out = Vec::new();
    let mut i = 0;
    for (t, (side, bytes)) in turns.iter().enumerate() {
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + cuts[i % cuts.len()]).min(bytes.len());
            i += 1;
            match gaps {
                None => p.feed(*side, &bytes[at..end], t as u64, false, &mut out).unwrap(),
                Some(g) if !g[i % g.len()] => {
                    let _ = p.feed(*side, &bytes[at..end], t as u64, g[(i + 1) % g.len()], &mut out);
                }
                Some(_) => {}
            }
            assert!(p.buffered() <= MAX_BUFFERED);
            at = end;
        }
    }
    out
}
