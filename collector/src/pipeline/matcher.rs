//! Pairs responses with requests: in order (FIFO) where the protocol is ordered, by stream id,
//! correlation id or query id where it is not.
//!
//! A server may answer before it has read the whole request (an early 4xx, a handler that does
//! not read the body): the response then comes out of the parser before the request does, since
//! a request is complete only with its body. Such a response waits, and pairs with the next
//! request if that request began before it (a response cannot precede its own request); one that
//! no request claims that way is an orphan (its request was sent before capture began). Without
//! this, one early answer would shift every later pairing on the connection by one.

use std::collections::VecDeque;

use foldhash::HashMap;

use protocols::message::{MatchKey, Message};

/// Requests waiting for their response on one connection, bounded.
#[derive(Default)]
pub struct Matcher {
    fifo: VecDeque<Message>,
    keyed: HashMap<MatchKey, Message>,
    /// In-order responses that came while no request waited, oldest first.
    early: VecDeque<Message>,
    /// Requests dropped because too many were waiting (the oldest go first).
    pub overflow: u64,
}

/// How many requests (or early responses) may wait on one connection.
pub const MAX_WAITING: usize = 1024;

/// What came of a message.
#[derive(Debug)]
pub enum Matched {
    Pair(Message, Message),
    /// No request claims it (it was sent before capture began, or was lost).
    Orphan(Message),
    /// A request that will not be answered (pushed out of a full matcher).
    Unanswered(Message),
}

impl Matcher {
    pub fn request(&mut self, m: Message, out: &mut Vec<Matched>) {
        if matches!(m.key, Some(MatchKey::Fifo) | None) {
            // Early responses older than this request were answers to earlier, unseen ones.
            while self.early.front().is_some_and(|r| r.start_ns < m.start_ns) {
                out.push(Matched::Orphan(self.early.pop_front().expect("checked")));
            }
            if let Some(resp) = self.early.pop_front() {
                out.push(Matched::Pair(m, resp));
                return;
            }
        }
        if self.len() >= MAX_WAITING {
            self.overflow += 1;
            if let Some(old) = self.evict_oldest() {
                out.push(Matched::Unanswered(old));
            }
        }
        match m.key {
            Some(MatchKey::Fifo) | None => self.fifo.push_back(m),
            Some(k) => {
                // A reused id replaces a request that never got its answer.
                if let Some(old) = self.keyed.insert(k, m) {
                    out.push(Matched::Unanswered(old));
                }
            }
        }
    }

    pub fn response(&mut self, m: Message, out: &mut Vec<Matched>) {
        match m.key {
            Some(MatchKey::Fifo) | None => match self.fifo.pop_front() {
                Some(req) => out.push(Matched::Pair(req, m)),
                None => {
                    if self.early.len() >= MAX_WAITING {
                        out.push(Matched::Orphan(self.early.pop_front().expect("full")));
                    }
                    self.early.push_back(m);
                }
            },
            Some(k) => match self.keyed.remove(&k) {
                Some(req) => out.push(Matched::Pair(req, m)),
                None => out.push(Matched::Orphan(m)),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.fifo.len() + self.keyed.len() + self.early.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection ended: requests still waiting go unanswered, early responses are orphans.
    pub fn drain(&mut self, out: &mut Vec<Matched>) {
        let mut waiting: Vec<Message> = self.fifo.drain(..).chain(self.keyed.drain().map(|(_, m)| m)).collect();
        waiting.sort_by_key(|m| m.start_ns);
        out.extend(waiting.into_iter().map(Matched::Unanswered));
        out.extend(self.early.drain(..).map(Matched::Orphan));
    }

    fn evict_oldest(&mut self) -> Option<Message> {
        if let Some(m) = self.fifo.pop_front() {
            return Some(m);
        }
        let oldest = self.keyed.iter().min_by_key(|(_, m)| m.start_ns).map(|(k, _)| *k)?;
        self.keyed.remove(&oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(key: MatchKey, t: u64) -> Message {
        Message { key: Some(key), start_ns: t, end_ns: t, ..Default::default() }
    }

    /// (request start, response start) of pairs, and what else came out.
    fn summary(out: &[Matched]) -> Vec<String> {
        out.iter()
            .map(|m| match m {
                Matched::Pair(q, r) => format!("pair {} {}", q.start_ns, r.start_ns),
                Matched::Orphan(r) => format!("orphan {}", r.start_ns),
                Matched::Unanswered(q) => format!("unanswered {}", q.start_ns),
            })
            .collect()
    }

    #[test]
    fn fifo_pairs_in_order_and_keyed_by_key() {
        let mut m = Matcher::default();
        let mut out = vec![];
        m.request(msg(MatchKey::Fifo, 1), &mut out);
        m.request(msg(MatchKey::Fifo, 2), &mut out);
        m.response(msg(MatchKey::Fifo, 3), &mut out);
        m.request(msg(MatchKey::Stream(5), 10), &mut out);
        m.request(msg(MatchKey::Stream(7), 11), &mut out);
        m.response(msg(MatchKey::Stream(7), 12), &mut out);
        m.response(msg(MatchKey::Stream(9), 13), &mut out);
        m.drain(&mut out);
        assert_eq!(summary(&out), ["pair 1 3", "pair 11 12", "orphan 13", "unanswered 2", "unanswered 10"]);
    }

    #[test]
    fn an_early_answer_pairs_with_the_request_still_being_received() {
        // Server side: the head of request 1 arrives at t=10, the server answers at t=20 before
        // reading the body, the body completes the request later; then request 2 at t=30 and its
        // answer at t=40.
        let mut m = Matcher::default();
        let mut out = vec![];
        m.response(msg(MatchKey::Fifo, 20), &mut out);
        assert!(out.is_empty(), "the early answer waits for its request");
        m.request(msg(MatchKey::Fifo, 10), &mut out);
        m.request(msg(MatchKey::Fifo, 30), &mut out);
        m.response(msg(MatchKey::Fifo, 40), &mut out);
        assert_eq!(summary(&out), ["pair 10 20", "pair 30 40"]);
    }

    #[test]
    fn an_answer_to_a_request_before_capture_is_an_orphan_and_shifts_nothing() {
        let mut m = Matcher::default();
        let mut out = vec![];
        // Its request was sent before capture began: the next request started after it.
        m.response(msg(MatchKey::Fifo, 5), &mut out);
        m.request(msg(MatchKey::Fifo, 10), &mut out);
        m.response(msg(MatchKey::Fifo, 20), &mut out);
        assert_eq!(summary(&out), ["orphan 5", "pair 10 20"]);
        // And one that never meets a request is an orphan when the connection ends.
        let mut out = vec![];
        m.response(msg(MatchKey::Fifo, 30), &mut out);
        m.drain(&mut out);
        assert_eq!(summary(&out), ["orphan 30"]);
    }

    #[test]
    fn waiting_requests_are_bounded_and_overflow_counted() {
        let mut m = Matcher::default();
        let mut out = vec![];
        for i in 0..(MAX_WAITING as u64 + 10) {
            m.request(msg(MatchKey::Fifo, i), &mut out);
        }
        assert_eq!((m.len(), m.overflow, out.len()), (MAX_WAITING, 10, 10));
        assert!(out.iter().all(|o| matches!(o, Matched::Unanswered(_))));
    }
}
