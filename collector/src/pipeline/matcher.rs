//! Pairs responses with requests: in order (FIFO) where the protocol is ordered, by stream id,
//! correlation id or query id where it is not.

use std::collections::{HashMap, VecDeque};

use protocols::message::{MatchKey, Message};

/// Requests waiting for their response on one connection, bounded.
#[derive(Default)]
pub struct Matcher {
    fifo: VecDeque<Message>,
    keyed: HashMap<MatchKey, Message>,
    /// Requests dropped because too many were waiting (the oldest go first).
    pub overflow: u64,
}

/// How many requests may wait for a response on one connection.
pub const MAX_WAITING: usize = 1024;

/// What a response found.
pub enum Matched {
    Pair(Message, Message),
    /// No request waits for it (it was sent before capture began, or was lost).
    Orphan(Message),
}

impl Matcher {
    pub fn request(&mut self, m: Message) -> Option<Message> {
        let evicted = if self.len() >= MAX_WAITING {
            self.overflow += 1;
            self.evict_oldest()
        } else {
            None
        };
        match m.key {
            Some(MatchKey::Fifo) | None => self.fifo.push_back(m),
            Some(k) => {
                // A reused id replaces a request that never got its answer.
                if let Some(old) = self.keyed.insert(k, m) {
                    return Some(old);
                }
            }
        }
        evicted
    }

    pub fn response(&mut self, m: Message) -> Matched {
        let req = match m.key {
            Some(MatchKey::Fifo) | None => self.fifo.pop_front(),
            Some(k) => self.keyed.remove(&k),
        };
        match req {
            Some(r) => Matched::Pair(r, m),
            None => Matched::Orphan(m),
        }
    }

    pub fn len(&self) -> usize {
        self.fifo.len() + self.keyed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests still waiting (the connection ended), oldest first.
    pub fn drain(&mut self) -> Vec<Message> {
        let mut all: Vec<Message> = self.fifo.drain(..).chain(self.keyed.drain().map(|(_, m)| m)).collect();
        all.sort_by_key(|m| m.start_ns);
        all
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

    #[test]
    fn fifo_pairs_in_order_and_keyed_by_key() {
        let mut m = Matcher::default();
        m.request(msg(MatchKey::Fifo, 1));
        m.request(msg(MatchKey::Fifo, 2));
        assert!(matches!(m.response(msg(MatchKey::Fifo, 3)), Matched::Pair(r, _) if r.start_ns == 1));
        m.request(msg(MatchKey::Stream(5), 10));
        m.request(msg(MatchKey::Stream(7), 11));
        assert!(matches!(m.response(msg(MatchKey::Stream(7), 12)), Matched::Pair(r, _) if r.start_ns == 11));
        assert!(matches!(m.response(msg(MatchKey::Stream(9), 13)), Matched::Orphan(_)));
        let left: Vec<u64> = m.drain().iter().map(|r| r.start_ns).collect();
        assert_eq!(left, [2, 10]);
    }

    #[test]
    fn waiting_requests_are_bounded_and_overflow_counted() {
        let mut m = Matcher::default();
        let mut evicted = 0;
        for i in 0..(MAX_WAITING as u64 + 10) {
            evicted += m.request(msg(MatchKey::Fifo, i)).is_some() as u64;
        }
        assert_eq!((m.len(), m.overflow, evicted), (MAX_WAITING, 10, 10));
    }
}
