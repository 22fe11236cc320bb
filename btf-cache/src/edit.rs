//! Small edits of a BTF's struct members, to make the BTF of "another kernel" from this one: a
//! member moved (another layout) or gone (another version). The tests of the BTF checks and of
//! fetching use them; nothing in the agent does.

use crate::types::Types;

fn record_of(btf: &[u8], strukt: &str, member: &str) -> Result<(usize, bool), String> {
    Types::parse(btf)?.member_record(strukt, member).ok_or_else(|| format!("struct {strukt} has no member {member}"))
}

/// `btf` with `strukt.member` moved `bytes` further into its struct.
pub fn shift_member(btf: &[u8], strukt: &str, member: &str, bytes: u32) -> Result<Vec<u8>, String> {
    let (record, bitfield_encoding) = record_of(btf, strukt, member)?;
    let mut out = btf.to_vec();
    let o = record + 8;
    let offset = u32::from_le_bytes(out[o..o + 4].try_into().unwrap());
    let moved = if bitfield_encoding {
        // Low 24 bits: bit offset; high 8: bitfield size.
        (offset & 0xff00_0000) | ((offset & 0x00ff_ffff) + bytes * 8)
    } else {
        offset + bytes * 8
    };
    out[o..o + 4].copy_from_slice(&moved.to_le_bytes());
    Ok(out)
}

/// `btf` with `strukt.member` made anonymous: a kernel without that member, as far as CO-RE can
/// tell.
pub fn unname_member(btf: &[u8], strukt: &str, member: &str) -> Result<Vec<u8>, String> {
    let (record, _) = record_of(btf, strukt, member)?;
    let mut out = btf.to_vec();
    out[record..record + 4].copy_from_slice(&0u32.to_le_bytes());
    Ok(out)
}
