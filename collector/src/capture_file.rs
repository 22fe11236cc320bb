//! Capture files: the normalized events of a live run, zstd-compressed, for `strata replay`.
//!
//! Layout: the magic line `STRATA-CAPTURE\n`, the codec version (u32 LE), the recording host's
//! wall-clock offset (i64 LE: realtime minus monotonic, ns, so a replay prints the original
//! times), then one zstd stream of `probes_core::codec` records. The writer flushes a zstd block
//! with every batch, so a recorder that is killed leaves a file that replays up to its last batch.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use probes_core::codec::{self, CodecError, CODEC_VERSION};
use strata_event::Event;

use crate::output::{EventSink, WallClock};

pub const MAGIC: &[u8] = b"STRATA-CAPTURE\n";

#[derive(Debug, thiserror::Error)]
pub enum CaptureFileError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}: not a strata capture file (no STRATA-CAPTURE header)")]
    NotACapture(PathBuf),
    #[error("{path}: capture format version {found}, this strata reads version {CODEC_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: {error} (after {records} good records, which were replayed)")]
    Corrupt { path: PathBuf, records: u64, error: CodecError },
    #[error("{path}: the file ends inside a record (after {records} good records, which were replayed): {detail}")]
    Truncated { path: PathBuf, records: u64, detail: String },
}

/// Writes events to a capture file.
pub struct CaptureWriter {
    enc: zstd::Encoder<'static, BufWriter<File>>,
    buf: Vec<u8>,
}

impl CaptureWriter {
    pub fn create(path: &Path, clock: WallClock) -> Result<CaptureWriter, CaptureFileError> {
        let io = |error| CaptureFileError::Io { path: path.to_path_buf(), error };
        let mut file = BufWriter::new(File::create(path).map_err(io)?);
        file.write_all(MAGIC).map_err(io)?;
        file.write_all(&CODEC_VERSION.to_le_bytes()).map_err(io)?;
        file.write_all(&(clock.offset_ns() as i64).to_le_bytes()).map_err(io)?;
        let enc = zstd::Encoder::new(file, 3).map_err(io)?;
        Ok(CaptureWriter { enc, buf: Vec::with_capacity(1 << 16) })
    }

    /// Ends the zstd stream (a file that was not finished still replays up to its last flush).
    pub fn finish(mut self) -> std::io::Result<()> {
        self.flush()?;
        self.enc.finish()?.flush()
    }
}

impl EventSink for CaptureWriter {
    fn write_event(&mut self, ev: &Event) -> std::io::Result<()> {
        codec::encode(ev, &mut self.buf);
        if self.buf.len() >= 1 << 16 {
            self.enc.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.enc.write_all(&self.buf)?;
        self.buf.clear();
        self.enc.flush()
    }
}

/// Reads a capture file, handing every good event to `f` in order; returns the recording's wall
/// clock and the number of events. A corrupt or truncated file is an error after all the good
/// records before the damage were handed over.
pub fn replay(path: &Path, mut f: impl FnMut(Event, WallClock)) -> Result<u64, CaptureFileError> {
    let io = |error| CaptureFileError::Io { path: path.to_path_buf(), error };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut head = vec![0u8; MAGIC.len() + 12];
    if file.read_exact(&mut head).is_err() || &head[..MAGIC.len()] != MAGIC {
        return Err(CaptureFileError::NotACapture(path.to_path_buf()));
    }
    let version = u32::from_le_bytes(head[MAGIC.len()..MAGIC.len() + 4].try_into().unwrap());
    if version != CODEC_VERSION {
        return Err(CaptureFileError::Version { path: path.to_path_buf(), found: version });
    }
    let offset = i64::from_le_bytes(head[MAGIC.len() + 4..].try_into().unwrap());
    let clock = WallClock::from_offset_ns(offset as i128);
    let mut dec = zstd::Decoder::with_buffer(file).map_err(io)?;
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
