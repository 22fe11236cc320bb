//! Records copied out of a kernel buffer into one allocation, then decoded as slices of it.

use bytes::{Bytes, BytesMut};

use crate::decode::{decode, DecodeError};
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
            match decode(&all.slice(start..end)) {
                Ok(ev) => out.push(ev),
                Err(e) => bad(end - start, e),
            }
            start = end;
        }
    }
}
