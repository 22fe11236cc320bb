//! What the MySQL and PostgreSQL parsers, and the SQL obfuscation before metric labels, share:
//! one SQL lexer ([`Lexer`]), the verb of a statement, and how much of a statement a message
//! keeps.

/// The longest statement text a message keeps, in bytes (cut at a character boundary).
pub const MAX_STATEMENT: usize = 4096;

/// The longest keyword taken as a verb; longer words are not SQL verbs.
const MAX_VERB: usize = 32;

/// What a [`Token`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A run of whitespace (any Unicode whitespace).
    Whitespace,
    /// `-- ...` or, with [`Dialect::hash_comments`], `# ...`, to the end of the line (the
    /// newline excluded); `/* ... */`, nested with [`Dialect::nested_comments`]. With
    /// [`Dialect::executable_comments`], the opener (`/*!` and its version digits) and the
    /// closer (`*/`) of a MySQL executable comment, whose text between is code.
    Comment,
    /// A keyword or an unquoted identifier: a letter or `_`, then letters, digits, `_` and `$`
    /// (`SELECT`, `t1`, `foo$bar`, `naïve`).
    Word,
    /// `"..."` or `` `...` ``; a doubled quote stands for one.
    QuotedIdent,
    /// `'...'`, also prefixed: `E'...'`, `N'...'`, `B'...'`, `X'...'` (any case). `''` is an
    /// escaped quote, and a backslash escapes the next character (as in MySQL and PostgreSQL's
    /// `E''`: read so for every string, a standard string ending in a backslash, such as `'C:\'`,
    /// runs on, which errs towards hiding values rather than showing them).
    String,
    /// `$$...$$` or `$tag$...$tag$` (PostgreSQL).
    DollarString,
    /// `42`, `1.5`, `.5`, `1.`, `1e-3`, `2.5E+3`, `0xFF`. A `.` followed by a digit right after
    /// a word or a quoted identifier is punctuation (`t.5` is not a number). A number followed
    /// by letters ends where they begin (`1col` is `1` and `col`).
    Number,
    /// A bind placeholder: `?` or `$1`.
    Placeholder,
    /// Any other character, one per token: operators and punctuation.
    Punct,
}

/// One token: a slice of the input. The tokens of a text, in order, make up all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// False for a block comment, string, dollar-quoted string or quoted identifier whose end
    /// is missing: it runs to the end of the input.
    pub terminated: bool,
}

/// Where the servers' SQL differs, for the lexer. Everything else is read alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    /// `#` starts a comment to the end of the line (MySQL); otherwise it is an operator.
    pub hash_comments: bool,
    /// Block comments nest (PostgreSQL); otherwise the first `*/` ends one (MySQL).
    pub nested_comments: bool,
    /// The text of `/*!40101 ... */` is code (MySQL): only its opener and closer are comments.
    pub executable_comments: bool,
}

impl Dialect {
    pub const MYSQL: Dialect = Dialect { hash_comments: true, nested_comments: false, executable_comments: true };
    pub const POSTGRES: Dialect = Dialect { hash_comments: false, nested_comments: true, executable_comments: false };
}

/// Splits SQL text into [`Token`]s. Never fails: any text is a sequence of tokens, an
/// unterminated one running to the end. Linear in the length of the text.
#[derive(Clone, Debug)]
pub struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    dialect: Dialect,
    /// The last token was a word or a quoted identifier: a `.` after it qualifies a name.
    after_name: bool,
    /// Inside a MySQL executable comment: `*/` closes it.
    in_executable: bool,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str, dialect: Dialect) -> Self {
        Lexer { text, pos: 0, dialect, after_name: false, in_executable: false }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let (s, i) = (self.text, self.pos);
        let b = s.as_bytes();
        let c = *b.get(i)?;
        let next = b.get(i + 1).copied();
        // Every arm ends a token at a character boundary: after an ASCII delimiter, after a
        // whole character, or at the end.
        let (kind, end) = match c {
            b'-' if next == Some(b'-') => (Kind::Comment, Some(line_end(b, i))),
            b'#' if self.dialect.hash_comments => (Kind::Comment, Some(line_end(b, i))),
            b'/' if next == Some(b'*') && self.dialect.executable_comments && b.get(i + 2) == Some(&b'!') => {
                self.in_executable = true;
                (Kind::Comment, Some(digits_end(b, i + 3)))
            }
            b'*' if next == Some(b'/') && self.in_executable => {
                self.in_executable = false;
                (Kind::Comment, Some(i + 2))
            }
            b'/' if next == Some(b'*') => (Kind::Comment, block_comment_end(b, i, self.dialect.nested_comments)),
            b'\'' => (Kind::String, quoted_end(b, i + 1, b'\'', true)),
            b'"' | b'`' => (Kind::QuotedIdent, quoted_end(b, i + 1, c, false)),
            b'?' => (Kind::Placeholder, Some(i + 1)),
            b'$' if next.is_some_and(|d| d.is_ascii_digit()) => (Kind::Placeholder, Some(digits_end(b, i + 1))),
            b'$' => match dollar_tag_end(s, i) {
                Some(tag_end) => {
                    let tag = &s[i..tag_end];
                    (Kind::DollarString, s[tag_end..].find(tag).map(|p| tag_end + p + tag.len()))
                }
                None => (Kind::Punct, Some(i + 1)),
            },
            b'0'..=b'9' => (Kind::Number, Some(number_end(b, i))),
            b'.' if next.is_some_and(|d| d.is_ascii_digit()) && !self.after_name => {
                (Kind::Number, Some(number_end(b, i)))
            }
            _ => {
                let ch = s[i..].chars().next()?;
                if ch.is_whitespace() {
                    let end = s[i..].char_indices().find(|&(_, c)| !c.is_whitespace()).map_or(b.len(), |(p, _)| i + p);
                    (Kind::Whitespace, Some(end))
                } else if is_word_start(ch) {
                    let end = word_end(s, i);
                    if end == i + 1 && b"EeNnBbXx".contains(&c) && b.get(end) == Some(&b'\'') {
                        (Kind::String, quoted_end(b, end + 1, b'\'', true))
                    } else {
                        (Kind::Word, Some(end))
                    }
                } else {
                    (Kind::Punct, Some(i + ch.len_utf8()))
                }
            }
        };
        // `None`: an opener without its closer, running to the end.
        let terminated = end.is_some();
        let end = end.unwrap_or(b.len());
        self.pos = end;
        self.after_name = matches!(kind, Kind::Word | Kind::QuotedIdent);
        Some(Token { kind, text: &s[i..end], terminated })
    }
}

/// The first keyword of `statement`, upper-cased (`SELECT`, `INSERT`, `BEGIN`, `CREATE`, ...).
///
/// Leading whitespace, parentheses and semicolons are skipped, as are comments, read as MySQL
/// does (`-- ...`, `# ...`, `/* ... */` ended by the first `*/`; PostgreSQL statements hardly
/// ever start otherwise). The text of a MySQL executable comment (`/*!40101 SET ...*/`) is code,
/// so its verb counts. `None` when no keyword starts the statement.
pub fn verb(statement: &str) -> Option<String> {
    for t in Lexer::new(statement, Dialect::MYSQL) {
        match t.kind {
            Kind::Whitespace | Kind::Comment => {}
            Kind::Punct if t.text == "(" || t.text == ";" => {}
            Kind::Word => {
                let word = t.text.as_bytes();
                let n = word.iter().take_while(|c| c.is_ascii_alphabetic() || **c == b'_').count();
                if n == 0 || n > MAX_VERB || word.get(n).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                return Some(t.text[..n].to_ascii_uppercase());
            }
            _ => return None,
        }
    }
    None
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

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// End (exclusive) of the run of identifier characters starting at `i`.
fn word_end(s: &str, i: usize) -> usize {
    s[i..].char_indices().find(|&(_, c)| !is_word_continue(c)).map_or(s.len(), |(p, _)| i + p)
}

/// End (exclusive) of the run of ASCII digits starting at `i`.
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Where the line comment starting at `i` ends: at the newline, or at the end.
fn line_end(b: &[u8], i: usize) -> usize {
    b[i..].iter().position(|&x| x == b'\n').map_or(b.len(), |p| i + p)
}

/// End (exclusive) of a quoted run whose content starts at `i`; a doubled quote is an escaped
/// quote, and with `backslash` a backslash escapes the next byte. Delimiters are ASCII, so the
/// continuation bytes of multi-byte chars can never match them.
fn quoted_end(b: &[u8], mut i: usize, quote: u8, backslash: bool) -> Option<usize> {
    while i < b.len() {
        let c = b[i];
        if backslash && c == b'\\' {
            i += 2;
        } else if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return Some(i + 1);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// End (exclusive) of the `/* */` comment starting at `i`, nested or not.
fn block_comment_end(b: &[u8], mut i: usize, nested: bool) -> Option<usize> {
    let mut depth = 0usize;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') if nested || depth == 0 => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// For a `$` at `i` that opens a dollar quote (`$$` or `$tag$`), the end (exclusive) of the
/// opening delimiter.
fn dollar_tag_end(s: &str, i: usize) -> Option<usize> {
    let mut chars = s[i + 1..].char_indices();
    let (_, first) = chars.next()?;
    if first == '$' {
        return Some(i + 2);
    }
    if !is_word_start(first) {
        return None;
    }
    for (p, c) in chars {
        if c == '$' {
            return Some(i + 1 + p + 1);
        }
        if !(c.is_alphanumeric() || c == '_') {
            return None;
        }
    }
    None
}

/// End (exclusive) of the numeric literal starting at `i` (a digit, or a `.` followed by a digit).
fn number_end(b: &[u8], i: usize) -> usize {
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
        let mut k = i + 2;
        while k < b.len() && b[k].is_ascii_hexdigit() {
            k += 1;
        }
        return k;
    }
    let mut k = digits_end(b, i);
    if b.get(k) == Some(&b'.') {
        k = digits_end(b, k + 1);
    }
    if matches!(b.get(k), Some(b'e' | b'E')) {
        let mut e = k + 1;
        if matches!(b.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        if b.get(e).is_some_and(u8::is_ascii_digit) {
            k = digits_end(b, e);
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The tokens as `Kind(text)`, space-separated; `!` after the kind when unterminated, and
    /// `_` for a whitespace token of one space.
    fn lex(text: &str, dialect: Dialect) -> String {
        let show = |t: Token| match (t.kind, t.text) {
            (Kind::Whitespace, " ") => "_".to_string(),
            _ => format!("{:?}{}({})", t.kind, if t.terminated { "" } else { "!" }, t.text),
        };
        Lexer::new(text, dialect).map(show).collect::<Vec<_>>().join(" ")
    }

    fn pg(text: &str) -> String {
        lex(text, Dialect::POSTGRES)
    }

    fn my(text: &str) -> String {
        lex(text, Dialect::MYSQL)
    }

    #[test]
    fn lexer_tokens() {
        assert_eq!(
            pg("SELECT t1.col_2, \"Col 1\" FROM t WHERE x>=$1 AND y = ?;"),
            "Word(SELECT) _ Word(t1) Punct(.) Word(col_2) Punct(,) _ QuotedIdent(\"Col 1\") _ Word(FROM) _ Word(t) _ \
             Word(WHERE) _ Word(x) Punct(>) Punct(=) Placeholder($1) _ Word(AND) _ Word(y) _ Punct(=) _ \
             Placeholder(?) Punct(;)"
        );
        // Words: letters (any script) or `_`, then also digits and `$`.
        assert_eq!(pg("naïve foo$bar _x1"), "Word(naïve) _ Word(foo$bar) _ Word(_x1)");
        // Numbers, and where they stop.
        assert_eq!(
            pg("1.5e-3 .5 1. 0xFF 1e+ 1col 0x1g"),
            "Number(1.5e-3) _ Number(.5) _ Number(1.) _ Number(0xFF) _ Number(1) Word(e) Punct(+) _ Number(1) \
             Word(col) _ Number(0x1) Word(g)"
        );
        // After a name, `.5` qualifies it.
        assert_eq!(
            pg("t.5 \"q\".5 (.5)"),
            "Word(t) Punct(.) Number(5) _ QuotedIdent(\"q\") Punct(.) Number(5) _ Punct(() Number(.5) Punct())"
        );
        // A run of whitespace, of any kind, is one token.
        assert_eq!(pg("a \t\r\n\u{a0}\u{b}b"), "Word(a) Whitespace( \t\r\n\u{a0}\u{b}) Word(b)");
        assert_eq!(pg("a<>€b"), "Word(a) Punct(<) Punct(>) Punct(€) Word(b)");
        assert_eq!(pg(""), "");
    }

    #[test]
    fn lexer_comments() {
        assert_eq!(pg("a -- x 'y\nb"), "Word(a) _ Comment(-- x 'y) Whitespace(\n) Word(b)");
        assert_eq!(pg("-- to the end"), "Comment(-- to the end)");
        assert_eq!(pg("a - - b"), "Word(a) _ Punct(-) _ Punct(-) _ Word(b)");
        // `#`: a comment in MySQL, an operator in PostgreSQL.
        assert_eq!(my("# c\n1"), "Comment(# c) Whitespace(\n) Number(1)");
        assert_eq!(pg("a # b"), "Word(a) _ Punct(#) _ Word(b)");
        // Block comments nest in PostgreSQL only.
        assert_eq!(pg("/* a /* b */ c */d"), "Comment(/* a /* b */ c */) Word(d)");
        assert_eq!(my("/* a /* b */ c */d"), "Comment(/* a /* b */) _ Word(c) _ Punct(*) Punct(/) Word(d)");
        // MySQL's executable comments hold code.
        assert_eq!(
            my("/*!40101 SET x=1 */;"),
            "Comment(/*!40101) _ Word(SET) _ Word(x) Punct(=) Number(1) _ Comment(*/) Punct(;)"
        );
        assert_eq!(my("/*! a*/ */"), "Comment(/*!) _ Word(a) Comment(*/) _ Punct(*) Punct(/)");
        assert_eq!(pg("/*!40101 SET x=1 */"), "Comment(/*!40101 SET x=1 */)");
        assert_eq!(pg("/**/x"), "Comment(/**/) Word(x)");
        assert_eq!(pg("/*/ x"), "Comment!(/*/ x)");
        assert_eq!(pg("/* a /* b */"), "Comment!(/* a /* b */)");
    }

    #[test]
    fn lexer_strings_and_quoted_identifiers() {
        assert_eq!(pg("'it''s' 'a\\'b'"), "String('it''s') _ String('a\\'b')");
        assert_eq!(
            pg("E'\\n' N'x' x'0F' b'01' e''"),
            "String(E'\\n') _ String(N'x') _ String(x'0F') _ String(b'01') _ String(e'')"
        );
        // Only one letter prefixes a string.
        assert_eq!(pg("ab'c'"), "Word(ab) String('c')");
        assert_eq!(pg("'é''ü'x"), "String('é''ü') Word(x)");
        assert_eq!(pg("\"t\"\"q\" `b``c`"), "QuotedIdent(\"t\"\"q\") _ QuotedIdent(`b``c`)");
        // A backslash escapes in strings only.
        assert_eq!(pg("\"a\\\" b"), "QuotedIdent(\"a\\\") _ Word(b)");
    }

    #[test]
    fn lexer_dollar_quotes_and_placeholders() {
        assert_eq!(pg("$$body$$"), "DollarString($$body$$)");
        assert_eq!(pg("$fn$ x $$ 'y $fn$;"), "DollarString($fn$ x $$ 'y $fn$) Punct(;)");
        assert_eq!(pg("$ab_1$x$ab_1$"), "DollarString($ab_1$x$ab_1$)");
        assert_eq!(pg("$1 $12a ?"), "Placeholder($1) _ Placeholder($12) Word(a) _ Placeholder(?)");
        // No opening tag: a lone `$`.
        assert_eq!(pg("$ $a $a-b$"), "Punct($) _ Punct($) Word(a) _ Punct($) Word(a) Punct(-) Word(b$)");
    }

    #[test]
    fn lexer_unterminated_runs_to_the_end() {
        assert_eq!(pg("SELECT 'abc"), "Word(SELECT) _ String!('abc)");
        assert_eq!(pg("'a\\'"), "String!('a\\')");
        assert_eq!(pg("x'"), "String!(x')");
        assert_eq!(pg("'"), "String!(')");
        assert_eq!(pg("\"col"), "QuotedIdent!(\"col)");
        assert_eq!(pg("$$ never $ ends"), "DollarString!($$ never $ ends)");
        assert_eq!(pg("$t$ x $$"), "DollarString!($t$ x $$)");
        assert_eq!(pg("a /* b"), "Word(a) _ Comment!(/* b)");
        assert_eq!(pg("\\"), "Punct(\\)");
    }

    /// Checks what holds for every text: the tokens cover it in order, none is empty, and only
    /// the last one may be unterminated (a string, comment or quoted identifier).
    fn check_lexes(text: &str) -> Result<(), TestCaseError> {
        for dialect in [Dialect::POSTGRES, Dialect::MYSQL] {
            let tokens: Vec<Token> = Lexer::new(text, dialect).collect();
            prop_assert_eq!(tokens.iter().map(|t| t.text).collect::<String>(), text);
            prop_assert!(tokens.iter().all(|t| !t.text.is_empty()));
            for (i, t) in tokens.iter().enumerate() {
                if !t.terminated {
                    prop_assert_eq!(i, tokens.len() - 1);
                    prop_assert!(matches!(
                        t.kind,
                        Kind::Comment | Kind::String | Kind::QuotedIdent | Kind::DollarString
                    ));
                }
            }
            let _ = verb(text);
        }
        Ok(())
    }

    /// Pieces that open, close and escape the lexer's tokens, to join at random.
    const SQL_BITS: &[&str] = &[
        "'", "''", "\"", "`", "$", "$$", "$a$", "$1", "/*", "*/", "/", "*", "--", "#", "-", "?", ".", "e", "E", "x",
        "0", "1", "a", "_", " ", "\n", "\\", "é", ";", "(", ")", ",", "€",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn lexer_covers_any_text(text in any::<String>()) {
            check_lexes(&text)?;
        }

        #[test]
        fn lexer_covers_sql_like_text(parts in prop::collection::vec(prop::sample::select(SQL_BITS.to_vec()), 0..40)) {
            check_lexes(&parts.concat())?;
        }
    }

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
    fn verbs_past_any_comment() {
        assert_eq!(verb("/* a */ -- b\n# c\n (( SELECT 1").as_deref(), Some("SELECT"));
        assert_eq!(verb("/*!SELECT 1*/").as_deref(), Some("SELECT"));
        assert_eq!(verb("/*!40101 */ SELECT 1").as_deref(), Some("SELECT"));
        assert_eq!(verb("/*!40101 /*!50000 SHOW").as_deref(), Some("SHOW"));
        assert_eq!(verb("E'x' || 'y'"), None);
        assert_eq!(verb("$1"), None);
        assert_eq!(verb("\"select\""), None);
        assert_eq!(verb(&"/*!".repeat(2000)), None);
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
