//! Capture files: the normalized events of a live run, zstd-compressed, for `strata replay`.
//!
//! Layout (version 2): the magic line `STRATA-CAPTURE\n`, the format version (u32 LE), the
//! recording host's wall-clock offset (i64 LE: realtime minus monotonic, ns, so a replay prints
//! the original times), then frames. A frame is [`SYNC`] (8 bytes), the compressed length (u32
//! LE), and one zstd frame with a content checksum holding [`codec`] records. The writer closes a
//! frame with every batch, so a recorder that is killed leaves a file that replays up to its last
//! batch; a frame damaged in the middle of the file is detected (checksum), counted, and skipped
//! by scanning for the next [`SYNC`], so every record after the damage is still replayed.
//!
//! Version 1 files (one zstd stream, no frames) are still read.

pub mod codec;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use strata_event::Event;

use crate::clock::WallClock;
use codec::CodecError;

pub const MAGIC: &[u8] = b"STRATA-CAPTURE\n";
/// The format this strata writes.
pub const FORMAT_VERSION: u32 = 2;
/// Starts every frame; chosen to be unlikely in compressed data and easy to scan for.
pub const SYNC: [u8; 8] = *b"\xffSTRATA\x02";
/// A frame is closed at least this often (bytes of records), even within a batch.
const FRAME_BYTES: usize = 1 << 16;
/// Larger than any frame the writer makes: a length beyond it is damage.
const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaptureFileError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}: not a strata capture file (no STRATA-CAPTURE header)")]
    NotACapture(PathBuf),
    #[error("{path}: capture format version {found}, this strata reads versions 1 and {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error(
        "{path}: {damaged} damaged parts ({skipped_bytes} bytes) were skipped; the {records} good records before, \
         between and after them were replayed (first damage: {first})"
    )]
    Damaged { path: PathBuf, records: u64, damaged: u64, skipped_bytes: u64, first: String },
    #[error("{path}: {error} (after {records} good records, which were replayed)")]
    Corrupt { path: PathBuf, records: u64, error: CodecError },
    #[error("{path}: the file ends inside a record (after {records} good records, which were replayed): {detail}")]
    Truncated { path: PathBuf, records: u64, detail: String },
}

/// Writes events to a capture file.
pub struct CaptureWriter {
    file: BufWriter<File>,
    buf: Vec<u8>,
}

impl CaptureWriter {
    pub fn create(path: &Path, clock: WallClock) -> Result<CaptureWriter, CaptureFileError> {
        let io = |error| CaptureFileError::Io { path: path.to_path_buf(), error };
        let mut file = BufWriter::new(File::create(path).map_err(io)?);
        file.write_all(MAGIC).map_err(io)?;
        file.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(io)?;
        file.write_all(&(clock.offset_ns() as i64).to_le_bytes()).map_err(io)?;
        Ok(CaptureWriter { file, buf: Vec::with_capacity(FRAME_BYTES * 2) })
    }

    pub fn write(&mut self, ev: &Event) -> std::io::Result<()> {
        codec::encode(ev, &mut self.buf);
        if self.buf.len() >= FRAME_BYTES {
            self.close_frame()?;
        }
        Ok(())
    }

    fn close_frame(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut enc = zstd::Encoder::new(Vec::with_capacity(self.buf.len() / 4), 3)?;
        enc.include_checksum(true)?;
        enc.write_all(&self.buf)?;
        let frame = enc.finish()?;
        self.file.write_all(&SYNC)?;
        self.file.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.file.write_all(&frame)?;
        self.buf.clear();
        Ok(())
    }

    /// Closes the current frame and writes it out: everything so far survives a kill.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.close_frame()?;
        self.file.flush()
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.flush()
    }
}

/// Reads a capture file, handing every good event to `f` in order; returns the number of events.
/// Damage is an error after everything readable was handed over: a damaged frame is skipped and
/// counted, a truncated end reported.
pub fn replay(path: &Path, mut f: impl FnMut(Event, WallClock)) -> Result<u64, CaptureFileError> {
    let io = |error| CaptureFileError::Io { path: path.to_path_buf(), error };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut head = vec![0u8; MAGIC.len() + 12];
    if file.read_exact(&mut head).is_err() || &head[..MAGIC.len()] != MAGIC {
        return Err(CaptureFileError::NotACapture(path.to_path_buf()));
    }
    let version = u32::from_le_bytes(head[MAGIC.len()..MAGIC.len() + 4].try_into().unwrap());
    let offset = i64::from_le_bytes(head[MAGIC.len() + 4..].try_into().unwrap());
    let clock = WallClock::from_offset_ns(offset as i128);
    match version {
        1 => replay_stream(path, file, clock, &mut f),
        FORMAT_VERSION => {
            let mut rest = Vec::new();
            file.read_to_end(&mut rest).map_err(io)?;
            replay_frames(path, &rest, clock, &mut f)
        }
        found => Err(CaptureFileError::Version { path: path.to_path_buf(), found }),
    }
}

/// Hands every record of `records` (whole codec records) to `f`; returns how many.
fn decode_all(
    path: &Path,
    records: &[u8],
    clock: WallClock,
    done: u64,
    f: &mut impl FnMut(Event, WallClock),
) -> Result<u64, CaptureFileError> {
    let mut pos = 0;
    let mut n = 0;
    while pos < records.len() {
        match codec::decode(&records[pos..], pos) {
            Ok(Some((ev, used))) => {
                f(ev, clock);
                n += 1;
                pos += used;
            }
            Ok(None) => {
                return Err(CaptureFileError::Truncated {
                    path: path.to_path_buf(),
                    records: done + n,
                    detail: "a frame ends inside a record".into(),
                })
            }
            Err(error) => return Err(CaptureFileError::Corrupt { path: path.to_path_buf(), records: done + n, error }),
        }
    }
    Ok(n)
}

fn replay_frames(
    path: &Path,
    data: &[u8],
    clock: WallClock,
    f: &mut impl FnMut(Event, WallClock),
) -> Result<u64, CaptureFileError> {
    let (mut pos, mut records) = (0usize, 0u64);
    let (mut damaged, mut skipped, mut first) = (0u64, 0u64, None::<String>);
    let mut damage = |at: usize, what: String, skipped_to: usize, skipped: &mut u64| {
        damaged += 1;
        *skipped += (skipped_to - at) as u64;
        first.get_or_insert(format!("at byte {at} of the frames: {what}"));
    };
    while pos < data.len() {
        let frame = (|| {
            if data.len() - pos < SYNC.len() + 4 {
                return Err("the file ends inside a frame header".to_string());
            }
            if data[pos..pos + 8] != SYNC {
                return Err("no frame marker".to_string());
            }
            let len = u32::from_le_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
            if len > MAX_FRAME {
                return Err(format!("frame length {len} is implausible"));
            }
            let body = data.get(pos + 12..pos + 12 + len).ok_or("the file ends inside a frame")?;
            let records = zstd::decode_all(body).map_err(|e| format!("frame does not decompress: {e}"))?;
            Ok((records, 12 + len))
        })();
        match frame {
            Ok((bytes, used)) => {
                // A frame that decompressed and passed its checksum but holds bad records is
                // damage in the writer, not the file: report it as such.
                records += decode_all(path, &bytes, clock, records, f)?;
                pos += used;
            }
            Err(what) => match next_sync(data, pos + 1) {
                // Nothing after it: a recorder killed mid-write.
                None if what.contains("ends inside") => {
                    return Err(CaptureFileError::Truncated { path: path.to_path_buf(), records, detail: what });
                }
                next => {
                    let next = next.unwrap_or(data.len());
                    damage(pos, what, next, &mut skipped);
                    pos = next;
                }
            },
        }
    }
    match first {
        Some(first) => {
            Err(CaptureFileError::Damaged { path: path.to_path_buf(), records, damaged, skipped_bytes: skipped, first })
        }
        None => Ok(records),
    }
}

fn next_sync(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?.windows(SYNC.len()).position(|w| w == SYNC).map(|p| from + p)
}

/// Version 1: one zstd stream of records.
fn replay_stream(
    path: &Path,
    file: impl Read,
    clock: WallClock,
    f: &mut impl FnMut(Event, WallClock),
) -> Result<u64, CaptureFileError> {
    let io = |error| CaptureFileError::Io { path: path.to_path_buf(), error };
    let mut dec = zstd::Decoder::new(file).map_err(io)?;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
    let mut chunk = vec![0u8; 1 << 16];
    let (mut records, mut consumed) = (0u64, 0usize);
    loop {
        let n = match dec.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => {
                return Err(CaptureFileError::Truncated { path: path.to_path_buf(), records, detail: e.to_string() })
            }
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        loop {
            match codec::decode(&buf[pos..], consumed + pos) {
                Ok(Some((ev, used))) => {
                    f(ev, clock);
                    records += 1;
                    pos += used;
                }
                Ok(None) => break,
                Err(error) => return Err(CaptureFileError::Corrupt { path: path.to_path_buf(), records, error }),
            }
        }
        buf.drain(..pos);
        consumed += pos;
    }
    if !buf.is_empty() {
        return Err(CaptureFileError::Truncated {
            path: path.to_path_buf(),
            records,
            detail: format!("{} bytes of an unfinished record", buf.len()),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_event::LossSource;

    fn write_file(path: &Path, batches: &[Vec<Event>]) {
        let mut w = CaptureWriter::create(path, WallClock::from_offset_ns(5)).unwrap();
        for b in batches {
            for ev in b {
                w.write(ev).unwrap();
            }
            w.flush().unwrap();
        }
        w.finish().unwrap();
    }

    fn batch(start: u64, n: u64) -> Vec<Event> {
        (start..start + n).map(|i| Event::loss(i, LossSource::KernelData, i)).collect()
    }

    fn read_all(path: &Path) -> (Vec<u64>, Result<u64, CaptureFileError>) {
        let mut seen = vec![];
        let r = replay(path, |ev, clock| {
            assert_eq!(clock.offset_ns(), 5);
            seen.push(ev.ts_ns);
        });
        (seen, r)
    }

    #[test]
    fn frames_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cap");
        write_file(&path, &[batch(0, 10), batch(10, 10), batch(20, 10)]);
        let (seen, r) = read_all(&path);
        assert_eq!(r.unwrap(), 30);
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn damage_in_the_middle_loses_only_its_frame_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cap");
        write_file(&path, &[batch(0, 10), batch(10, 10), batch(20, 10)]);
        let mut bytes = std::fs::read(&path).unwrap();
        let header = MAGIC.len() + 12;
        let frames: Vec<usize> = bytes.windows(8).enumerate().filter(|(_, w)| *w == SYNC).map(|(i, _)| i).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], header);
        // Flip bytes inside the second frame's compressed body.
        for b in &mut bytes[frames[1] + 14..frames[1] + 20] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (seen, r) = read_all(&path);
        assert_eq!(seen, (0..10).chain(20..30).collect::<Vec<_>>(), "the first and last frames are replayed");
        match r {
            Err(CaptureFileError::Damaged { records: 20, damaged: 1, .. }) => {}
            other => panic!("expected one damaged part after 20 good records, got {other:?}"),
        }
    }

    #[test]
    fn a_killed_recorder_leaves_a_file_that_replays_up_to_its_last_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cap");
        write_file(&path, &[batch(0, 10), batch(10, 10)]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        let (seen, r) = read_all(&path);
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(matches!(r, Err(CaptureFileError::Truncated { records: 10, .. })), "{r:?}");
    }
}
