//! Just enough of a BTF reader to say where a struct member lives: the type section walked into
//! records, and member paths (`__sk_common.skc_family`) followed through named and anonymous
//! members. For reports (`strata btf compare`) and the tests' BTF edits; the loader uses aya's.

use crate::unpack::check_header;

/// A member of a struct or union, as BTF records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub type_id: u32,
    /// Bit offset within the parent (bitfield size stripped).
    pub bit_offset: u32,
    /// Byte offset of this member's 12-byte record in the file (for edits).
    pub record: usize,
}

/// A type record: its kind, name, and the type it refers to or its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    pub kind: u32,
    pub name: String,
    /// `size` for INT/STRUCT/UNION/ENUM, else the referenced type id.
    pub size_or_type: u32,
    /// STRUCT/UNION members.
    pub members: Vec<Member>,
    /// Whether members encode bitfields (kind_flag).
    pub kind_flag: bool,
}

pub const KIND_STRUCT: u32 = 4;
pub const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// The types of a BTF; `types[0]` is `void`, so ids index directly.
pub struct Types {
    pub types: Vec<Type>,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl Types {
    pub fn parse(btf: &[u8]) -> Result<Types, String> {
        check_header(btf)?;
        let hdr_len = u32_at(btf, 4) as usize;
        let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
        let str_off = hdr_len + u32_at(btf, 16) as usize;
        let str_end = str_off + u32_at(btf, 20) as usize;
        let name = |off: u32| -> String {
            let start = str_off + off as usize;
            if start >= str_end {
                return String::new();
            }
            let end = btf[start..str_end].iter().position(|&c| c == 0).map_or(str_end, |n| start + n);
            String::from_utf8_lossy(&btf[start..end]).into_owned()
        };
        let mut types = vec![Type { kind: 0, name: "void".into(), size_or_type: 0, members: vec![], kind_flag: false }];
        let mut pos = hdr_len + type_off;
        let end = pos + type_len;
        while pos + 12 <= end {
            let info = u32_at(btf, pos + 4);
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let extra = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                k => return Err(format!("BTF kind {k} at byte {pos} is unknown")),
            };
            if pos + 12 + extra > end {
                return Err(format!("the type at byte {pos} runs past the type section"));
            }
            let members = if kind == KIND_STRUCT || kind == KIND_UNION {
                (0..vlen)
                    .map(|m| {
                        let record = pos + 12 + 12 * m;
                        let off = u32_at(btf, record + 8);
                        Member {
                            name: name(u32_at(btf, record)),
                            type_id: u32_at(btf, record + 4),
                            bit_offset: if kind_flag { off & 0x00ff_ffff } else { off },
                            record,
                        }
                    })
                    .collect()
            } else {
                vec![]
            };
            types.push(Type {
                kind,
                name: name(u32_at(btf, pos)),
                size_or_type: u32_at(btf, pos + 8),
                members,
                kind_flag,
            });
            pos += 12 + extra;
        }
        Ok(Types { types })
    }

    /// The struct named `name` (the first with members, where a forward declaration shares it).
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && t.name == name && !t.members.is_empty())
            .map(|i| i as u32)
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(t.kind, KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Finds `name` among the members of `id`, looking into anonymous struct/union members:
    /// (bit offset from `id`'s start, the member).
    fn member(&self, id: u32, name: &str) -> Option<(u32, &Member)> {
        let t = self.types.get(self.resolve(id) as usize)?;
        for m in &t.members {
            if m.name == name {
                return Some((m.bit_offset, m));
            }
            if m.name.is_empty() {
                if let Some((inner, found)) = self.member(m.type_id, name) {
                    return Some((m.bit_offset + inner, found));
                }
            }
        }
        None
    }

    /// Byte offset of `path` (`a.b.c`) from the start of struct `strukt`.
    pub fn offset_of(&self, strukt: &str, path: &str) -> Option<u32> {
        let mut id = self.struct_id(strukt)?;
        let mut bits = 0;
        for part in path.split('.') {
            let (off, m) = self.member(id, part)?;
            bits += off;
            id = m.type_id;
        }
        Some(bits / 8)
    }

    /// The record of `strukt`'s direct or anonymous-nested member `name` (for edits).
    pub fn member_record(&self, strukt: &str, name: &str) -> Option<(usize, bool)> {
        let id = self.struct_id(strukt)?;
        let (_, m) = self.member(id, name)?;
        // The struct that holds it decides how its offset is encoded.
        let holder = self.types.iter().find(|t| t.members.iter().any(|x| x.record == m.record))?;
        Some((m.record, holder.kind_flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF, where it has one (the only BTF a test can count on).
    fn kernel_btf() -> Option<Vec<u8>> {
        std::fs::read("/sys/kernel/btf/vmlinux").ok()
    }

    #[test]
    fn offsets_through_named_and_anonymous_members() {
        let Some(btf) = kernel_btf() else {
            eprintln!("SKIPPED: this kernel has no /sys/kernel/btf/vmlinux");
            return;
        };
        let t = Types::parse(&btf).unwrap();
        // sock_common starts struct sock, and skc_family sits in it past the address union.
        assert_eq!(t.offset_of("sock", "__sk_common"), Some(0));
        let family = t.offset_of("sock_common", "skc_family").unwrap();
        assert_eq!(t.offset_of("sock", "__sk_common.skc_family"), Some(family));
        // skc_num lives in an anonymous union/struct: found through it, right after skc_dport.
        let dport = t.offset_of("sock_common", "skc_dport").unwrap();
        assert_eq!(t.offset_of("sock_common", "skc_num"), Some(dport + 2));
        assert_eq!(t.offset_of("sock_common", "no_such_member"), None);
        assert_eq!(t.offset_of("no_such_struct", "x"), None);
    }

    #[test]
    fn an_edit_moves_exactly_one_member() {
        let Some(btf) = kernel_btf() else { return };
        let moved = crate::edit::shift_member(&btf, "sock_common", "skc_num", 8).unwrap();
        let (a, b) = (Types::parse(&btf).unwrap(), Types::parse(&moved).unwrap());
        assert_eq!(b.offset_of("sock_common", "skc_num"), a.offset_of("sock_common", "skc_num").map(|o| o + 8));
        assert_eq!(b.offset_of("sock_common", "skc_dport"), a.offset_of("sock_common", "skc_dport"));
    }
}
