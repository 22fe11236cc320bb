//! Small edits of a BTF's struct members, to make the BTF of "another kernel" from this one: a
//! member moved (another layout) or gone (another version). The tests of the BTF checks and of
//! fetching use them; nothing in the agent does.

/// Where a struct member's record is, found by walking the type section.
struct MemberAt {
    /// Byte offset of the member's 12-byte record in the file.
    record: usize,
    /// Whether the struct encodes bitfield offsets (kind_flag).
    bitfield_encoding: bool,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn find_member(btf: &[u8], strukt: &str, member: &str) -> Result<MemberAt, String> {
    crate::unpack::check_header(btf)?;
    let hdr_len = u32_at(btf, 4) as usize;
    let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
    let str_off = hdr_len + u32_at(btf, 16) as usize;
    let str_len = u32_at(btf, 20) as usize;
    let name = |off: u32| -> &[u8] {
        let start = str_off + off as usize;
        let end = btf[start..str_off + str_len].iter().position(|&c| c == 0).map_or(str_off + str_len, |n| start + n);
        &btf[start..end]
    };
    let mut pos = hdr_len + type_off;
    let end = pos + type_len;
    while pos + 12 <= end {
        let info = u32_at(btf, pos + 4);
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 == 1;
        let extra = match kind {
            1 => 4,              // INT
            3 => 12,             // ARRAY
            4 | 5 => 12 * vlen,  // STRUCT, UNION
            6 => 8 * vlen,       // ENUM
            13 => 8 * vlen,      // FUNC_PROTO
            14 => 4,             // VAR
            15 => 12 * vlen,     // DATASEC
            17 => 4,             // DECL_TAG
            19 => 12 * vlen,     // ENUM64
            2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
            k => return Err(format!("BTF kind {k} at byte {pos} is unknown")),
        };
        if kind == 4 && name(u32_at(btf, pos)) == strukt.as_bytes() {
            for m in 0..vlen {
                let record = pos + 12 + 12 * m;
                if name(u32_at(btf, record)) == member.as_bytes() {
                    return Ok(MemberAt { record, bitfield_encoding: kind_flag });
                }
            }
            return Err(format!("struct {strukt} has no member {member}"));
        }
        pos += 12 + extra;
    }
    Err(format!("no struct {strukt}"))
}

/// `btf` with `strukt.member` moved `bytes` further into its struct.
pub fn shift_member(btf: &[u8], strukt: &str, member: &str, bytes: u32) -> Result<Vec<u8>, String> {
    let at = find_member(btf, strukt, member)?;
    let mut out = btf.to_vec();
    let o = at.record + 8;
    let offset = u32_at(&out, o);
    let moved = if at.bitfield_encoding {
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
    let at = find_member(btf, strukt, member)?;
    let mut out = btf.to_vec();
    out[at.record..at.record + 4].copy_from_slice(&0u32.to_le_bytes());
    Ok(out)
}
