//! What the MySQL and PostgreSQL parsers share: the verb of a SQL statement and how much of a
//! statement a message keeps.

/// The longest statement text a message keeps, in bytes (cut at a character boundary).
pub const MAX_STATEMENT: usize = 4096;

/// The longest keyword taken as a verb; longer words are not SQL verbs.
const MAX_VERB: usize = 32;

/// The first keyword of `statement`, upper-cased (`SELECT`, `INSERT`, `BEGIN`, `CREATE`, ...).
///
/// Leading whitespace, parentheses and semicolons are skipped, as are comments: `-- ...`, `# ...`
/// (MySQL) and `/* ... */`. The text of a MySQL executable comment (`/*!40101 SET ...*/`) is
/// code, so its verb counts. `None` when no keyword starts the statement.
pub fn verb(statement: &str) -> Option<String> {
    let b = statement.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'(' || b[i] == b';') {
            i += 1;
        }
        let rest = &b[i..];
        if rest.starts_with(b"--") || rest.starts_with(b"#") {
            i += rest.iter().position(|&c| c == b'\n')? + 1;
        } else if rest.starts_with(b"/*!") {
            i += 3 + rest[3..].iter().take_while(|c| c.is_ascii_digit()).count();
        } else if rest.starts_with(b"/*") {
            i += 2 + find(&rest[2..], b"*/")? + 2;
        } else {
            break;
        }
    }
    let word = &b[i..];
    let n = word.iter().take_while(|c| c.is_ascii_alphabetic() || **c == b'_').count();
    if n == 0 || n > MAX_VERB || word.get(n).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(statement[i..i + n].to_ascii_uppercase())
}

/// `bytes` as text, cut to [`MAX_STATEMENT`] bytes without splitting a character (invalid UTF-8
/// is replaced).
pub fn statement(bytes: &[u8]) -> String {
    let mut cut = &bytes[..bytes.len().min(MAX_STATEMENT)];
    if cut.len() < bytes.len() {
        // Drop the last character when the cut split it: find its lead byte (at most 3
        // continuation bytes back) and compare the width the lead announces with what is there.
        let cont = cut.iter().rev().take(3).take_while(|&&c| c & 0xc0 == 0x80).count();
        if let Some(&lead) = cut.len().checked_sub(cont + 1).map(|i| &cut[i]) {
            let width = match lead {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            if width > cont + 1 {
                cut = &cut[..cut.len() - cont - 1];
            }
        }
    }
    match std::str::from_utf8(cut) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(cut).into_owned(),
    }
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(verb("select 1").as_deref(), Some("SELECT"));
        assert_eq!(verb("  \n\tInsert into t values (1)").as_deref(), Some("INSERT"));
        assert_eq!(verb("-- note\nUPDATE t SET a=1").as_deref(), Some("UPDATE"));
        assert_eq!(verb("/* c */ /* d */delete from t").as_deref(), Some("DELETE"));
        assert_eq!(verb("# mysql\nbegin").as_deref(), Some("BEGIN"));
        assert_eq!(verb("(SELECT 1) UNION (SELECT 2)").as_deref(), Some("SELECT"));
        assert_eq!(verb("/*!40101 SET NAMES utf8 */").as_deref(), Some("SET"));
        assert_eq!(verb("COMMIT;").as_deref(), Some("COMMIT"));
        assert_eq!(verb("create_table").as_deref(), Some("CREATE_TABLE"));
        assert_eq!(verb(""), None);
        assert_eq!(verb("   "), None);
        assert_eq!(verb("-- only a comment"), None);
        assert_eq!(verb("/* open"), None);
        assert_eq!(verb("123"), None);
        assert_eq!(verb("abc1"), None);
        assert_eq!(verb("'str'"), None);
    }

    #[test]
    fn statements_are_cut_at_character_boundaries() {
        assert_eq!(statement(b"SELECT 1"), "SELECT 1");
        let long = "é".repeat(MAX_STATEMENT); // 2 bytes each
        assert_eq!(statement(long.as_bytes()).len(), MAX_STATEMENT);
        let odd = format!("a{}", "é".repeat(MAX_STATEMENT));
        let s = statement(odd.as_bytes());
        assert_eq!(s.len(), MAX_STATEMENT - 1);
        assert!(!s.contains('\u{fffd}'));
        let euro = format!("ab{}", "€".repeat(MAX_STATEMENT)); // 3 bytes each
        let s = statement(euro.as_bytes());
        assert!(!s.contains('\u{fffd}') && s.len() <= MAX_STATEMENT);
        assert_eq!(statement(&[0xff, b'a']), "\u{fffd}a");
    }
}
