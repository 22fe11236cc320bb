//! Reading one ring: the records between the agent's `tail` and the module's `head`, each behind
//! an 8-byte header (its length, and whether it only pads the ring's end). Pure: the memory comes
//! from a function, so tests give it a plain buffer and the capture the mapped ring.

use crate::abi::Rec;

const REC: u64 = std::mem::size_of::<Rec>() as u64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ring damaged at position {pos}: {what}")]
pub struct RingError {
    pub pos: u64,
    pub what: String,
}

/// Calls `each` with every record's bytes from `tail` up to `head` and returns the new tail. A
/// damaged header stops the walk with an error: the caller skips to `head` (and counts it).
///
/// `bytes_at(offset, len)` gives `len` bytes at `offset` into the ring's data; a record never
/// wraps around the end (the module pads the end instead), so one call covers one record.
pub fn read_records<'a>(
    ring_bytes: u64,
    bytes_at: impl Fn(usize, usize) -> &'a [u8],
    tail: u64,
    head: u64,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, RingError> {
    let mut pos = tail;
    if head < tail || head - tail > ring_bytes {
        return Err(RingError { pos, what: format!("head {head} is not within a ring's length of tail {tail}") });
    }
    while pos < head {
        let off = pos & (ring_bytes - 1);
        let room = ring_bytes - off;
        if head - pos < REC || room < REC {
            return Err(RingError { pos, what: "a record header is cut short".into() });
        }
        let hdr = bytes_at(off as usize, REC as usize);
        let len = u32::from_ne_bytes(hdr[0..4].try_into().unwrap()) as u64;
        let pad = u32::from_ne_bytes(hdr[4..8].try_into().unwrap());
        if pad == 1 {
            if len != room {
                return Err(RingError { pos, what: format!("padding of {len} bytes does not reach the end ({room})") });
            }
            pos += len;
            continue;
        }
        let step = len.next_multiple_of(8);
        if len < REC || step > room || pos + step > head {
            return Err(RingError { pos, what: format!("a record of {len} bytes does not fit") });
        }
        each(bytes_at((off + REC) as usize, (len - REC) as usize));
        pos += step;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring as the module writes it: `records` appended from `start`, padding the end.
    fn ring(size: usize, start: u64, records: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut data = vec![0xAAu8; size];
        let mut head = start;
        for r in records {
            let need = (8 + r.len()).next_multiple_of(8) as u64;
            let off = (head % size as u64) as usize;
            if off as u64 + need > size as u64 {
                let pad = (size - off) as u32;
                data[off..off + 4].copy_from_slice(&pad.to_ne_bytes());
                data[off + 4..off + 8].copy_from_slice(&1u32.to_ne_bytes());
                head += pad as u64;
            }
            let off = (head % size as u64) as usize;
            data[off..off + 4].copy_from_slice(&((8 + r.len()) as u32).to_ne_bytes());
            data[off + 4..off + 8].copy_from_slice(&0u32.to_ne_bytes());
            data[off + 8..off + 8 + r.len()].copy_from_slice(r);
            head += need;
        }
        (data, head)
    }

    fn read(data: &[u8], tail: u64, head: u64) -> Result<(u64, Vec<Vec<u8>>), RingError> {
        let mut got = vec![];
        let end = read_records(data.len() as u64, |o, l| &data[o..o + l], tail, head, |r| got.push(r.to_vec()))?;
        Ok((end, got))
    }

    #[test]
    fn records_come_out_whole_and_in_order_across_the_end() {
        let recs: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 5 + i as usize * 3]).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        // Start near the end of a 64-byte ring so the records wrap (with padding) more than once.
        let (data, head) = ring(64, 1000, &refs[..3]);
        let (end, got) = read(&data, 1000, head).unwrap();
        assert_eq!(end, head);
        assert_eq!(got, recs[..3]);
        let (data, head2) = ring(64, 0, &refs[3..5]);
        let (end, got) = read(&data, 0, head2).unwrap();
        assert_eq!((end, got.as_slice()), (head2, &recs[3..5]));
    }

    #[test]
    fn an_empty_ring_reads_nothing() {
        let data = vec![0u8; 64];
        assert_eq!(read(&data, 128, 128).unwrap(), (128, vec![]));
    }

    #[test]
    fn damage_is_an_error_not_a_wild_read() {
        let (mut data, head) = ring(64, 0, &[b"abcdefgh"]);
        data[0..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(read(&data, 0, head).unwrap_err().what.contains("does not fit"));
        let (mut data, head) = ring(64, 0, &[b"abc"]);
        data[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(read(&data, 0, head).is_err(), "shorter than its own header");
        let (data, _) = ring(64, 0, &[b"abc"]);
        assert!(read(&data, 0, 200).is_err(), "head beyond a ring's length");
        let (mut data, head) = ring(64, 48, &[b"0123456789abcdef"]);
        data[48..52].copy_from_slice(&8u32.to_ne_bytes());
        assert!(read(&data, 48, head).unwrap_err().what.contains("padding"));
    }
}
