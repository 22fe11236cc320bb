//! Tracepoint `format` files from tracefs: where each field of a raw sample lives.
//!
//! Offsets differ between kernels (6.x syscall records are not laid out like 3.10's), so they are
//! always read from the running kernel, never hard-coded.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    pub id: u32,
    pub fields: Vec<Field>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("no `ID:` line")]
    NoId,
    #[error("bad field line {0:?}")]
    BadField(String),
    #[error("field {0} not in format")]
    MissingField(String),
}

impl Format {
    pub fn parse(text: &str) -> Result<Format, FormatError> {
        let mut name = String::new();
        let mut id = None;
        let mut fields = vec![];
        for line in text.lines() {
            let line = line.trim();
            if let Some(n) = line.strip_prefix("name:") {
                name = n.trim().to_string();
            } else if let Some(i) = line.strip_prefix("ID:") {
                id = i.trim().parse().ok();
            } else if line.starts_with("field:") {
                fields.push(parse_field(line).ok_or_else(|| FormatError::BadField(line.to_string()))?);
            }
        }
        Ok(Format { name, id: id.ok_or(FormatError::NoId)?, fields })
    }

    pub fn field(&self, name: &str) -> Result<&Field, FormatError> {
        self.fields.iter().find(|f| f.name == name).ok_or_else(|| FormatError::MissingField(name.to_string()))
    }

    /// The syscall arguments, in order: the fields after `__syscall_nr` (or `nr` on old kernels).
    pub fn syscall_args(&self) -> Vec<Field> {
        let start = self.fields.iter().position(|f| f.name == "__syscall_nr" || f.name == "nr").map(|i| i + 1);
        match start {
            Some(i) => self.fields[i..].to_vec(),
            None => vec![],
        }
    }
}

/// `field:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;`
fn parse_field(line: &str) -> Option<Field> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in line.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d);
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("signed:") {
            signed = v.trim() == "1";
        }
    }
    // The name is the last identifier of the declaration, before any array suffix.
    let decl = decl?.trim();
    let decl = decl.split('[').next()?.trim_end();
    let name = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?.to_string();
    if name.is_empty() {
        return None;
    }
    Some(Field { name, offset: offset?, size: size?, signed })
}

/// Reads an integer field from a raw sample, sign-extending signed fields. None if out of bounds.
pub fn read_int(raw: &[u8], f: &Field) -> Option<i64> {
    let bytes = raw.get(f.offset..f.offset + f.size)?;
    let mut buf = [0u8; 8];
    match f.size {
        1 | 2 | 4 | 8 => buf[..f.size].copy_from_slice(bytes),
        _ => return None,
    }
    let v = u64::from_le_bytes(buf);
    Some(if f.signed {
        let shift = 64 - 8 * f.size as u32;
        ((v << shift) as i64) >> shift
    } else {
        v as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDTO: &str = "name: sys_enter_sendto\nID: 2224\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
\tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:void * buff;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:size_t len;\toffset:32;\tsize:8;\tsigned:0;\n\
\tfield:struct sockaddr * addr;\toffset:48;\tsize:8;\tsigned:0;\n\nprint fmt: \"...\"\n";

    #[test]
    fn parses_a_syscall_format() {
        let f = Format::parse(SENDTO).unwrap();
        assert_eq!(f.id, 2224);
        assert_eq!(f.name, "sys_enter_sendto");
        let args: Vec<_> = f.syscall_args().into_iter().map(|a| (a.name, a.offset)).collect();
        assert_eq!(args, vec![("fd".into(), 16), ("buff".into(), 24), ("len".into(), 32), ("addr".into(), 48)]);
    }

    #[test]
    fn reads_signed_and_unsigned_fields() {
        let mut raw = vec![0u8; 24];
        raw[16..24].copy_from_slice(&(-11i64).to_le_bytes());
        let ret = Field { name: "ret".into(), offset: 16, size: 8, signed: true };
        assert_eq!(read_int(&raw, &ret), Some(-11));
        raw[4..8].copy_from_slice(&(-1i32).to_le_bytes());
        let pid = Field { name: "p".into(), offset: 4, size: 4, signed: true };
        assert_eq!(read_int(&raw, &pid), Some(-1));
        let upid = Field { signed: false, ..pid };
        assert_eq!(read_int(&raw, &upid), Some(0xffff_ffff));
        let past = Field { name: "x".into(), offset: 20, size: 8, signed: false };
        assert_eq!(read_int(&raw, &past), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(Format::parse("nothing"), Err(FormatError::NoId));
        assert!(Format::parse("ID: 3\n\tfield:int x;\toffset:zz;\tsize:4;\n").is_err());
        assert!(Format::parse("ID: 3\n\tfield:;\toffset:1;\tsize:4;\n").is_err());
        let f = Format::parse("ID: 3\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n").unwrap();
        assert_eq!(f.fields[0].name, "comm");
    }
}
