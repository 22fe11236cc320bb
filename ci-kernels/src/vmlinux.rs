//! The kernel's own BTF, taken out of its bzImage: the compressed vmlinux the setup header points
//! at is decompressed (gzip, xz or zstd, whichever the build used) and its `.BTF` section read.
//! That section is exactly what the running kernel serves as /sys/kernel/btf/vmlinux, so it is
//! what an archive entry for the kernel holds (archives make it with pahole from the DWARF of the
//! same build).

use std::io::Read;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection};

/// The compressed payload of a bzImage (boot protocol 2.08+: `payload_offset`/`payload_length`
/// in the setup header, relative to the protected-mode code after the setup sectors).
pub fn compressed_payload(bz: &[u8]) -> Result<&[u8]> {
    if bz.len() < 0x250 || &bz[0x202..0x206] != b"HdrS" {
        bail!("not a bzImage (no HdrS setup header)");
    }
    let version = u16::from_le_bytes([bz[0x206], bz[0x207]]);
    if version < 0x0208 {
        bail!("boot protocol {version:#x} has no payload fields (2.08+ needed)");
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let pm_start = (setup_sects + 1) * 512;
    let offset = u32::from_le_bytes(bz[0x248..0x24c].try_into().unwrap()) as usize;
    let length = u32::from_le_bytes(bz[0x24c..0x250].try_into().unwrap()) as usize;
    bz.get(pm_start + offset..pm_start + offset + length).context("the payload lies past the end of the image")
}

/// Decompresses the payload, whatever its format.
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if payload.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(payload).read_to_end(&mut out).context("gunzip")?;
    } else if payload.starts_with(b"\xfd7zXZ\x00") {
        out = unxz_one_stream(payload)?;
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        // zstd kernels append the uncompressed size after the frame: decode just the frame.
        let mut d = zstd::stream::read::Decoder::new(payload)?.single_frame();
        d.read_to_end(&mut out).context("unzstd")?;
    } else {
        bail!("payload compression not recognized (magic {:02x?})", &payload[..payload.len().min(6)]);
    }
    Ok(out)
}

/// Decodes the first xz stream and ignores what follows: xz kernels append the uncompressed size
/// (4 bytes) after the stream, which a whole-input decoder takes for a corrupt second stream.
fn unxz_one_stream(input: &[u8]) -> Result<Vec<u8>> {
    let mut stream = xz2::stream::Stream::new_stream_decoder(u64::MAX, 0).context("xz decoder")?;
    let mut out = Vec::with_capacity(input.len() * 4);
    loop {
        let consumed = stream.total_in() as usize;
        if out.capacity() - out.len() < 1 << 20 {
            out.reserve(out.capacity().max(1 << 20));
        }
        match stream.process_vec(&input[consumed..], &mut out, xz2::stream::Action::Run).context("unxz")? {
            xz2::stream::Status::StreamEnd => return Ok(out),
            _ if stream.total_in() as usize == input.len() && out.len() < out.capacity() => {
                bail!("the xz stream ends early (truncated payload)")
            }
            _ => {}
        }
    }
}

/// The kernel's BTF: the `.BTF` section of the vmlinux inside `bzimage`.
pub fn extract_btf(bzimage: &[u8]) -> Result<Vec<u8>> {
    let vmlinux = decompress(compressed_payload(bzimage)?)?;
    let elf = object::File::parse(&*vmlinux).context("the decompressed payload is not an ELF vmlinux")?;
    let section =
        elf.section_by_name(".BTF").context("the vmlinux has no .BTF section (built without CONFIG_DEBUG_INFO_BTF)")?;
    Ok(section.data().context("reading .BTF")?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_bzimage() {
        assert!(compressed_payload(&[0u8; 4096]).unwrap_err().to_string().contains("not a bzImage"));
        assert!(decompress(b"plain").is_err());
    }

    #[test]
    fn decompresses_each_format() {
        use std::io::Write;
        let text = b"vmlinux".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        assert_eq!(decompress(&gz.finish().unwrap()).unwrap(), text);
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&text).unwrap();
        assert_eq!(decompress(&xz.finish().unwrap()).unwrap(), text);
        let mut zst = zstd::encode_all(&text[..], 3).unwrap();
        zst.extend_from_slice(&(text.len() as u32).to_le_bytes());
        assert_eq!(decompress(&zst).unwrap(), text);
    }
}

#[cfg(test)]
mod cached_kernels {
    /// Every Debian kernel the matrix has fetched on this machine yields a BTF (where none was
    /// fetched yet, there is nothing to read; the matrix run itself extracts them).
    #[test]
    fn debian_kernels_in_the_cache_yield_their_btf() {
        let dir = crate::cache::dir_from(std::env::var_os(crate::cache::ENV)).join("kernels");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for e in entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("deb-")) {
            let Ok(image) = std::fs::read(e.path().join("vmlinuz")) else { continue };
            let btf = super::extract_btf(&image).unwrap_or_else(|err| panic!("{}: {err:#}", e.path().display()));
            assert_eq!(&btf[..2], &[0x9f, 0xeb], "{}: BTF magic", e.path().display());
        }
    }
}
