//! Records copied out of a kernel buffer into one allocation, then decoded as slices of it.

use bytes::{Bytes, BytesMut};

use crate::decode::{decode_at, DecodeError};
use crate::event::Event;

/// Raw records of one batch, back to back in one buffer.
#[derive(Default)]
pub struct RecordBatch {
    arena: BytesMut,
    ends: Vec<usize>,
}

impl RecordBatch {
    /// A reader's first allocation per batch (it grows for bigger ones): the batch's events keep
    /// the buffer alive, so each batch has its own.
    pub const FIRST_BYTES: usize = 256 << 10;

    pub fn with_capacity(bytes: usize) -> RecordBatch {
        RecordBatch { arena: BytesMut::with_capacity(bytes), ends: Vec::new() }
    }

    pub fn push(&mut self, record: &[u8]) {
        self.arena.extend_from_slice(record);
        self.ends.push(self.arena.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Decodes every record into `out`; each undecodable one is counted in `undecodable` and
    /// logged (a reader's loss, reported as such).
    pub fn decode_counting(self, out: &mut Vec<Event>, undecodable: &mut u64) {
        self.decode_into(out, |len, e| {
            *undecodable += 1;
            log::warn!("undecodable record of {len} bytes: {e}");
        });
    }

    /// Decodes every record into `out`; each undecodable one goes to `bad` instead.
    pub fn decode_into(self, out: &mut Vec<Event>, mut bad: impl FnMut(usize, DecodeError)) {
        let all: Bytes = self.arena.freeze();
        let mut start = 0;
        for end in self.ends {
            match decode_at(&all, start..end) {
                Ok(ev) => out.push(ev),
                Err(e) => bad(end - start, e),
            }
            start = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::testkit::data_record;

    /// testkit's data record on another fd.
    fn on_fd(fd: i32, payload: &[u8]) -> Vec<u8> {
        let mut rec = data_record(payload, payload.len() as u64, 0);
        // The header leads the record.
        let at = std::mem::offset_of!(crate::wire::Header, fd);
        rec[at..at + 4].copy_from_slice(&fd.to_ne_bytes());
        rec
    }

    #[test]
    fn each_record_decodes_from_its_own_place_and_a_bad_one_is_counted() {
        let mut batch = RecordBatch::default();
        batch.push(&on_fd(3, b"GET / HTTP/1.1\r\n"));
        let mut unknown = on_fd(4, b"lost");
        unknown[0] = 99; // the header's kind
        batch.push(&unknown);
        batch.push(&on_fd(5, b"HTTP/1.1 200 OK\r\n"));
        let (mut out, mut undecodable) = (vec![], 0);
        batch.decode_counting(&mut out, &mut undecodable);
        assert_eq!(undecodable, 1);
        let got: Vec<(i32, &[u8])> = out
            .iter()
            .map(|e| match &e.kind {
                EventKind::Data(d) => (e.fd, &d.payload.0[..]),
                other => panic!("not data: {other:?}"),
            })
            .collect();
        assert_eq!(got, vec![(3, &b"GET / HTTP/1.1\r\n"[..]), (5, &b"HTTP/1.1 200 OK\r\n"[..])]);
    }
}
