//! The caller's trace context, from the W3C `traceparent` header or B3 (single `b3` header or the
//! `x-b3-*` headers), as the HTTP parsers kept them in a record's attributes.

use crate::pipeline::Record;

/// A parent span from a request's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub span_id: u64,
    /// The caller's sampling decision; None when the header did not say (B3 may defer).
    pub sampled: Option<bool>,
}

pub fn parent_of(r: &Record) -> Option<Parent> {
    let a = &r.attributes;
    if let Some(p) = a.get("traceparent").and_then(traceparent) {
        return Some(p);
    }
    if let Some(p) = a.get("b3").and_then(b3_single) {
        return Some(p);
    }
    let trace_id = hex128(a.get("x-b3-traceid")?)?;
    let span_id = hex64(a.get("x-b3-spanid")?)?;
    Some(Parent { trace_id, span_id, sampled: a.get("x-b3-sampled").and_then(b3_flag) })
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; zero ids are invalid.
pub fn traceparent(v: &str) -> Option<Parent> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    if version.len() != 2 || version == "ff" {
        return None;
    }
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(Parent { trace_id: hex128(trace)?, span_id: hex64(span)?, sampled: Some(flags & 1 == 1) })
}

/// `<trace id>-<span id>[-<sampled>[-<parent span id>]]`, or a bare sampling flag (no context).
pub fn b3_single(v: &str) -> Option<Parent> {
    let mut parts = v.trim().split('-');
    let trace_id = hex128(parts.next()?)?;
    let span_id = hex64(parts.next()?)?;
    let sampled = parts.next().and_then(b3_flag);
    Some(Parent { trace_id, span_id, sampled })
}

fn b3_flag(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// 32 hex digits, or 16 (B3's 64-bit trace ids, left-padded); not all zero.
fn hex128(v: &str) -> Option<u128> {
    if !(v.len() == 32 || v.len() == 16) || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(v, 16).ok().filter(|&id| id != 0)
}

fn hex64(v: &str) -> Option<u64> {
    if v.len() != 16 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(v, 16).ok().filter(|&id| id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_traceparent() {
        let p = traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(p.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(p.span_id, 0xb7ad6b7169203331);
        assert_eq!(p.sampled, Some(true));
        assert_eq!(
            traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap().sampled,
            Some(false)
        );
        // Future versions may append fields; version 00 may not. Zero ids and ff are invalid.
        assert!(traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra").is_some());
        assert!(traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra").is_none());
        assert!(traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none());
        assert!(traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_none());
        assert!(traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01").is_none());
        assert!(traceparent("garbage").is_none());
    }

    #[test]
    fn b3_single_and_64_bit_ids() {
        let p = b3_single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90").unwrap();
        assert_eq!(
            (p.trace_id, p.span_id, p.sampled),
            (0x80f198ee56343ba864fe8b2a57d3eff7, 0xe457b5a2e4d86bd1, Some(true))
        );
        let short = b3_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1").unwrap();
        assert_eq!((short.trace_id, short.sampled), (0x64fe8b2a57d3eff7, None));
        assert!(b3_single("0").is_none(), "a bare deny flag carries no context");
    }
}
