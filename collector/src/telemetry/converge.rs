//! Convergence before anything becomes a metric label.
//!
//! Every distinct label value is a separate time series in Prometheus (and in most OTLP backends).
//! Raw request paths and SQL statements are effectively unbounded: `/users/12345`, a session token
//! in a path, `WHERE id = 42`, or an `IN (...)` list whose length varies per call each mint a new
//! series, and a busy node can create millions of them, which exhausts the memory of the agent and
//! of the metrics backend and makes dashboards useless. Identifiers in paths are by far the most
//! common cause. This module turns such values into a small set of stable shapes *before* they
//! are used as labels:
//!
//! * [`template_path`] replaces identifier-like path segments with `{id}`;
//! * [`obfuscate_sql`] replaces SQL literals with `?` (which also keeps secrets and personal data
//!   out of metrics);
//! * [`LabelLimiter`] is the backstop: whatever still diverges is folded into [`OVERFLOW`] once a
//!   label has seen `limit` distinct values.
//!
//! All functions are pure, never panic on any UTF-8 input, run in linear time, and bound their
//! output length.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use protocols::sql::{Dialect, Kind, Lexer};

/// Maximum length in bytes of a templated path, including the trailing `/...` marker.
pub const MAX_PATH_LEN: usize = 256;

/// Maximum length in bytes of an obfuscated SQL statement, including the trailing `...` marker.
pub const MAX_SQL_LEN: usize = 512;

/// The replacement for an identifier path segment.
pub const ID_PLACEHOLDER: &str = "{id}";

/// The value a [`LabelLimiter`] substitutes once a label's distinct-value budget is spent.
pub const OVERFLOW: &str = "*";

/// Default distinct values per label used by strata.
pub const DEFAULT_LABEL_LIMIT: usize = 100;

// ---------------------------------------------------------------------------------------------
// URL path templating
// ---------------------------------------------------------------------------------------------

/// Turns a request path into a low-cardinality route template suitable as an HTTP route label.
///
/// Rules, applied in this order:
///
/// 1. Everything from the first `?` or `#` is dropped (query strings and fragments carry ids,
///    tokens and search terms).
/// 2. The output always starts with `/` (one is prepended if missing); an empty path gives `/`.
/// 3. The rest is split on `/`; empty segments are kept as they are (`//a/` stays `//a/`), no
///    percent-decoding and no other normalisation happens.
/// 4. A segment becomes `{id}` when it is an identifier:
///    * all ASCII digits (`123`);
///    * a UUID, 8-4-4-4-12 hex digits, any case;
///    * at least 16 ASCII hex digits (hashes, 24-hex Mongo object ids, 40-hex SHA-1s);
///    * at least 16 ASCII letters and digits with at least one letter and **at least 3 digits**
///      (random tokens such as `a1b2c3d4e5f6g7h8i9`). This rule is deliberately conservative: it
///      allows no `-`, `_` or `.`, so long slugs like `quarterly-report-2024` stay, and short or
///      mostly-alphabetic words (`v2`, `page2`, `authentication2fa`) stay.
/// 5. A segment `<identifier>.<ext>` where `<ext>` is 1 to 5 ASCII letters/digits containing at
///    least one letter becomes `{id}.<ext>` (`/img/123.png` gives `/img/{id}.png`); `1.2`,
///    `index.html` and `v1.json` stay.
/// 6. If the result is longer than [`MAX_PATH_LEN`] bytes it is cut at a segment boundary and
///    ends with `/...`, so it is at most [`MAX_PATH_LEN`] bytes long.
///
/// Non-ASCII segments are never identifiers and are kept as they are.
pub fn template_path(path: &str) -> String {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let path = &path[..end];
    let rest = path.strip_prefix('/').unwrap_or(path);
    let mut out = String::with_capacity(rest.len().min(MAX_PATH_LEN) + 1);
    for segment in rest.split('/') {
        out.push('/');
        push_segment(&mut out, segment);
        if out.len() > MAX_PATH_LEN {
            break;
        }
    }
    if out.len() > MAX_PATH_LEN {
        // Every '/' is ASCII, so cutting at one is always on a char boundary. Position 0 is a '/',
        // so the search always succeeds; the cut leaves room for the 4-byte marker.
        let limit = MAX_PATH_LEN - "/...".len();
        let cut = out.as_bytes()[..=limit].iter().rposition(|&b| b == b'/').unwrap_or(0);
        out.truncate(cut);
        out.push_str("/...");
    }
    out
}

fn push_segment(out: &mut String, segment: &str) {
    if is_identifier(segment) {
        out.push_str(ID_PLACEHOLDER);
        return;
    }
    if let Some((stem, ext)) = segment.rsplit_once('.') {
        if is_identifier(stem) && is_extension(ext) {
            out.push_str(ID_PLACEHOLDER);
            out.push('.');
            out.push_str(ext);
            return;
        }
    }
    out.push_str(segment);
}

/// Whether a path segment looks like an identifier (see [`template_path`] for the rules).
fn is_identifier(segment: &str) -> bool {
    let b = segment.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) || is_uuid(b) {
        return true;
    }
    if b.len() < 16 {
        return false;
    }
    if b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    b.iter().all(u8::is_ascii_alphanumeric) && digits >= 3 && digits < b.len()
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_extension(ext: &str) -> bool {
    let b = ext.as_bytes();
    (1..=5).contains(&b.len()) && b.iter().all(u8::is_ascii_alphanumeric) && b.iter().any(u8::is_ascii_alphabetic)
}

// ---------------------------------------------------------------------------------------------
// SQL obfuscation
// ---------------------------------------------------------------------------------------------

/// Replaces the literals of a SQL statement with `?` so that statements differing only in their
/// values converge to one label value (and so that values, often personal data or secrets, never
/// reach metrics).
///
/// The statement is split by the SQL lexer the protocol parsers use ([`protocols::sql::Lexer`]);
/// these are the rules by which its tokens are rendered:
///
/// * String literals `'...'` become `?`, including the prefixed forms `E'...'`, `N'...'`,
///   `B'...'` and `X'...'` (any case). `''` is an escaped quote, and a backslash always escapes
///   the next character (MySQL and `E''` semantics). For standard strings such as `'C:\'` this
///   over-obfuscates (the rest of the statement may become `?`) but never leaks a value.
/// * Dollar-quoted strings `$$...$$` and `$tag$...$tag$` become `?`.
/// * Numeric literals become `?`: integers, decimals (`1.5`, `.5`, `1.`), exponents (`1e-3`) and
///   hex (`0xFF`). Digits inside identifiers (`t1`, `col_2`) stay. A number that is directly
///   followed by letters is still replaced (`1AND` gives `?AND`, `0x1g` gives `?g`): MySQL's
///   digit-led identifiers such as `1col` become `?col`, which stays stable and never leaks a
///   value. A leading minus stays (`-5` gives `-?`).
/// * Placeholders stay: `?`, `$1`. Keywords such as `NULL`, `TRUE` and `FALSE` stay.
/// * Double-quoted (`"..."`, `""` escape) and backquoted identifiers are kept verbatim.
/// * Comments are removed: `-- ...` to the end of the line and `/* ... */` (nested, as in
///   PostgreSQL). A removed comment acts as whitespace.
/// * An unterminated string, dollar-quoted string, quoted identifier or block comment turns
///   everything from its opener to the end into a single `?`.
/// * `IN (...)` lists whose elements are all literals or placeholders collapse to `IN (?)`, so
///   that lists of different lengths converge (`NOT IN` too). A single `$n` element is kept
///   (`IN ($1)` stays), two or more are collapsed (`IN ($1, $2)` gives `IN (?)`).
/// * Runs of whitespace become one space and the result is trimmed.
/// * The output is at most [`MAX_SQL_LEN`] bytes: longer results are cut on a char boundary and
///   end with `...`.
pub fn obfuscate_sql(statement: &str) -> String {
    let tokens = tokenize(statement);
    let mut out = Renderer { out: String::with_capacity(statement.len().min(MAX_SQL_LEN) + 8), space: false };
    let mut i = 0;
    while i < tokens.len() {
        if let Some(end) = collapsible_in_list(&tokens, i) {
            // Emit `IN`, any space before the parenthesis, then `(?)`.
            let open = tokens[i + 1..].iter().position(|t| *t != Tok::Space).map_or(i + 1, |p| i + 1 + p);
            for t in &tokens[i..=open] {
                out.push(t);
            }
            out.push(&Tok::Lit);
            out.push(&Tok::Punct(")"));
            i = end + 1;
            continue;
        }
        out.push(&tokens[i]);
        i += 1;
    }
    truncate_sql(out.out)
}

/// A token of a statement as obfuscation renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    /// Whitespace or a removed comment.
    Space,
    /// Keyword or unquoted identifier, kept.
    Word(&'a str),
    /// Quoted identifier, kept.
    Ident(&'a str),
    /// `?` or `$n`, kept.
    Param(&'a str),
    /// Any literal, rendered as `?`.
    Lit,
    /// Any other single character, kept.
    Punct(&'a str),
}

struct Renderer {
    out: String,
    space: bool,
}

impl Renderer {
    fn push(&mut self, tok: &Tok<'_>) {
        let text = match *tok {
            Tok::Space => {
                self.space = true;
                return;
            }
            Tok::Lit => "?",
            Tok::Word(s) | Tok::Ident(s) | Tok::Param(s) | Tok::Punct(s) => s,
        };
        if self.space && !self.out.is_empty() {
            self.out.push(' ');
        }
        self.space = false;
        self.out.push_str(text);
    }
}

fn truncate_sql(mut s: String) -> String {
    if s.len() <= MAX_SQL_LEN {
        return s;
    }
    let mut cut = MAX_SQL_LEN - "...".len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str("...");
    s
}

/// If `tokens[i]` is `IN` followed by a parenthesised list of only literals and placeholders that
/// should collapse, returns the index of the closing parenthesis.
fn collapsible_in_list(tokens: &[Tok<'_>], i: usize) -> Option<usize> {
    match tokens[i] {
        Tok::Word(w) if w.eq_ignore_ascii_case("in") => {}
        _ => return None,
    }
    let skip = |mut k: usize| {
        while tokens.get(k) == Some(&Tok::Space) {
            k += 1;
        }
        k
    };
    let mut k = skip(i + 1);
    if tokens.get(k) != Some(&Tok::Punct("(")) {
        return None;
    }
    let mut count = 0;
    let mut all_dollar_params = true;
    loop {
        k = skip(k + 1);
        match tokens.get(k)? {
            Tok::Lit | Tok::Param("?") => all_dollar_params = false,
            Tok::Param(_) => {}
            _ => return None,
        }
        count += 1;
        k = skip(k + 1);
        match tokens.get(k)? {
            Tok::Punct(",") => continue,
            Tok::Punct(")") => break,
            _ => return None,
        }
    }
    if count == 1 && all_dollar_params {
        return None;
    }
    Some(k)
}

/// The statement's tokens as obfuscation sees them, from the SQL lexer the protocol parsers use
/// ([`protocols::sql::Lexer`]), read the PostgreSQL way (nested block comments, `#` an operator).
/// An unterminated string, dollar-quoted string, quoted identifier or block comment is the last
/// token: it becomes one literal.
fn tokenize(s: &str) -> Vec<Tok<'_>> {
    Lexer::new(s, Dialect::POSTGRES)
        .map(|t| match t.kind {
            _ if !t.terminated => Tok::Lit,
            Kind::Whitespace | Kind::Comment => Tok::Space,
            Kind::Word => Tok::Word(t.text),
            Kind::QuotedIdent => Tok::Ident(t.text),
            Kind::String | Kind::DollarString | Kind::Number => Tok::Lit,
            Kind::Placeholder => Tok::Param(t.text),
            Kind::Punct => Tok::Punct(t.text),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Per-label distinct-value limit
// ---------------------------------------------------------------------------------------------

/// Caps the number of distinct values each label can take, the last line of defence against
/// cardinality explosions that templating and obfuscation did not catch (a new kind of id, a
/// client sending random paths, a scanner).
///
/// The first `limit` distinct values seen for a label pass unchanged, and keep passing for the
/// lifetime of the limiter; every other value is replaced with [`OVERFLOW`] (`*`), so a label
/// never produces more than `limit + 1` series. The limiter stores at most `limit` owned values
/// per label and never stores folded values, so memory is bounded by `labels x limit`.
#[derive(Debug, Clone)]
pub struct LabelLimiter {
    limit: usize,
    labels: BTreeMap<&'static str, LabelState>,
}

#[derive(Debug, Clone, Default)]
struct LabelState {
    admitted: HashSet<String>,
    folded: u64,
}

impl Default for LabelLimiter {
    /// A limiter with [`DEFAULT_LABEL_LIMIT`] values per label.
    fn default() -> Self {
        Self::new(DEFAULT_LABEL_LIMIT)
    }
}

impl LabelLimiter {
    /// A limiter admitting `limit` distinct values per label (`0` folds everything).
    pub fn new(limit: usize) -> Self {
        Self { limit, labels: BTreeMap::new() }
    }

    /// Distinct values admitted per label.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Returns `value` if it is (or can become) one of the admitted values of `label`, otherwise
    /// [`OVERFLOW`], counting the fold. A value that already is [`OVERFLOW`] passes through
    /// without taking a slot and without being counted as folded.
    pub fn admit<'a>(&mut self, label: &'static str, value: &'a str) -> Cow<'a, str> {
        if value == OVERFLOW {
            return Cow::Borrowed(value);
        }
        let state = self.labels.entry(label).or_default();
        if state.admitted.contains(value) {
            return Cow::Borrowed(value);
        }
        if state.admitted.len() < self.limit {
            state.admitted.insert(value.to_owned());
            return Cow::Borrowed(value);
        }
        state.folded = state.folded.saturating_add(1);
        Cow::Borrowed(OVERFLOW)
    }

    /// Counts one more observation folded for `label` (a series worked out before, whose value
    /// [`admit`](Self::admit) folded then and would fold again).
    pub fn count_folded(&mut self, label: &'static str) {
        let state = self.labels.entry(label).or_default();
        state.folded = state.folded.saturating_add(1);
    }

    /// Labels with at least one folded observation and their counts, ordered by label name. The
    /// count is the number of folded *observations* (calls to [`admit`](Self::admit) that
    /// returned [`OVERFLOW`]), not the number of distinct folded values, which is not tracked
    /// precisely because folded values are not stored.
    pub fn folded(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.labels.iter().filter(|(_, s)| s.folded > 0).map(|(label, s)| (*label, s.folded))
    }

    /// Number of distinct values admitted so far for `label` (at most [`limit`](Self::limit)).
    pub fn distinct(&self, label: &str) -> usize {
        self.labels.get(label).map_or(0, |s| s.admitted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_path_examples() {
        let cases: &[(&str, &str)] = &[
            ("", "/"),
            ("/", "/"),
            ("/users", "/users"),
            ("/users/123", "/users/{id}"),
            ("/users/123/orders/456", "/users/{id}/orders/{id}"),
            ("/users/123?expand=true&id=9", "/users/{id}"),
            ("/users/123#section-4", "/users/{id}"),
            ("/a?b/123", "/a"),
            ("?x=1", "/"),
            ("/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}"),
            ("/items/550E8400-E29B-41D4-A716-446655440000/x", "/items/{id}/x"),
            ("/objects/507f1f77bcf86cd799439011", "/objects/{id}"),
            ("/commit/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commit/{id}"),
            ("/t/a1b2c3d4e5f6g7h8i9", "/t/{id}"),
            ("/t/deadbeefdeadbeef", "/t/{id}"),
            ("/t/deadbeefdeadbee", "/t/deadbeefdeadbee"),
            ("/api/v2/page2/index.html", "/api/v2/page2/index.html"),
            ("/orders", "/orders"),
            ("/t/authentication2fa", "/t/authentication2fa"),
            ("/t/quarterly-report-2024", "/t/quarterly-report-2024"),
            ("/t/abcdefghijklmnop12", "/t/abcdefghijklmnop12"),
            ("/t/1234567890123456789012", "/t/{id}"),
            ("/img/123.png", "/img/{id}.png"),
            ("/v/1.2", "/v/1.2"),
            ("/v/v1.json", "/v/v1.json"),
            ("/a/123.tar.gz", "/a/123.tar.gz"),
            ("users/7", "/users/{id}"),
            ("//a//1/", "//a//{id}/"),
            ("/café/123", "/café/{id}"),
            ("/１２３", "/１２３"),
            ("/-1", "/-1"),
            ("*", "/*"),
        ];
        for (input, want) in cases {
            assert_eq!(template_path(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn template_path_truncates_at_segment_boundary() {
        let long = format!("/{}", ["segment"; 60].join("/"));
        let out = template_path(&long);
        assert!(out.len() <= MAX_PATH_LEN, "{}", out.len());
        assert!(out.ends_with("/..."));
        assert!(out.trim_end_matches("/...").split('/').skip(1).all(|s| s == "segment"));
        // Exactly at the limit: untouched.
        let exact = format!("/{}", "z".repeat(MAX_PATH_LEN - 1));
        assert_eq!(template_path(&exact), exact);
        // One over with a single segment: only the marker is left.
        assert_eq!(template_path(&format!("/{}", "z".repeat(MAX_PATH_LEN))), "/...");
        // Non-ASCII near the cut.
        let out = template_path(&format!("/{}", ["é1"; 200].join("/")));
        assert!(out.len() <= MAX_PATH_LEN && out.ends_with("/..."));
        // Templating happens before measuring: many ids shrink.
        let ids = format!("/{}", ["1234567890123456"; 30].join("/"));
        assert_eq!(template_path(&ids), format!("/{}", ["{id}"; 30].join("/")));
    }

    #[test]
    fn obfuscate_sql_examples() {
        let cases: &[(&str, &str)] = &[
            ("SELECT * FROM users WHERE id = 42 AND name = 'bob'", "SELECT * FROM users WHERE id = ? AND name = ?"),
            ("select a from t where x in (1, 2, 3)", "select a from t where x in (?)"),
            ("select a from t where x IN ('a','b')", "select a from t where x IN (?)"),
            ("select a from t where x not in ( ? , ? )", "select a from t where x not in (?)"),
            ("select a from t where x in ($1, $2)", "select a from t where x in (?)"),
            ("select a from t where x in ($1)", "select a from t where x in ($1)"),
            ("select a from t where x in (select b from u)", "select a from t where x in (select b from u)"),
            ("select a from t where x in (1, y)", "select a from t where x in (?, y)"),
            ("SELECT t1.col_2 FROM t1 WHERE c3 = 3", "SELECT t1.col_2 FROM t1 WHERE c3 = ?"),
            ("SELECT 1.5, .5, 1., 1e10, 2.5E-3, 0xFF, -7", "SELECT ?, ?, ?, ?, ?, ?, -?"),
            ("SELECT 'it''s', E'a\\'b', N'x', x'0F', b'01'", "SELECT ?, ?, ?, ?, ?"),
            ("SELECT 'it\\'s secret' FROM t", "SELECT ? FROM t"),
            ("SELECT $$body$$, $fn$ x $$ y $fn$", "SELECT ?, ?"),
            ("UPDATE t SET a = $1 WHERE b = ?", "UPDATE t SET a = $1 WHERE b = ?"),
            ("SELECT \"Col 1\", `tbl2` FROM \"t\"\"q\"", "SELECT \"Col 1\", `tbl2` FROM \"t\"\"q\""),
            ("SELECT a -- secret 42\nFROM t", "SELECT a FROM t"),
            ("SELECT a/* 42 */FROM t /* x /* nested */ 7 */ WHERE 1", "SELECT a FROM t WHERE ?"),
            ("  SELECT\n\t a ,\r\n b   FROM   t  ", "SELECT a , b FROM t"),
            ("SELECT 'unterminated FROM t", "SELECT ?"),
            ("SELECT a /* unterminated 42", "SELECT a ?"),
            ("SELECT $$ never ends", "SELECT ?"),
            ("SELECT \"open", "SELECT ?"),
            ("SELECT a FROM t WHERE b = NULL OR c = TRUE", "SELECT a FROM t WHERE b = NULL OR c = TRUE"),
            ("SELECT a FROM 1col WHERE a=1AND b=0x1g", "SELECT a FROM ?col WHERE a=?AND b=?g"),
            ("SELECT foo$bar, $ FROM t", "SELECT foo$bar, $ FROM t"),
            ("INSERT INTO t (a, b) VALUES (1, 'x')", "INSERT INTO t (a, b) VALUES (?, ?)"),
            ("SELECT 'é' || 'ü', naïve FROM café", "SELECT ? || ?, naïve FROM café"),
            ("", ""),
            ("   ", ""),
            ("-- only a comment", ""),
        ];
        for (input, want) in cases {
            assert_eq!(obfuscate_sql(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn obfuscate_sql_bounds_output() {
        let long = format!("SELECT {} FROM t", ["column_name"; 100].join(", "));
        let out = obfuscate_sql(&long);
        assert_eq!(out.len(), MAX_SQL_LEN);
        assert!(out.ends_with("..."));
        let wide = format!("SELECT {}", "é".repeat(600));
        let out = obfuscate_sql(&wide);
        assert!(out.len() <= MAX_SQL_LEN && out.ends_with("..."));
        // A huge IN list collapses before the bound applies.
        let list = format!("SELECT a FROM t WHERE x IN ({}) AND y = 1", ["123"; 10_000].join(", "));
        assert_eq!(obfuscate_sql(&list), "SELECT a FROM t WHERE x IN (?) AND y = ?");
    }

    #[test]
    fn limiter_folds_after_limit() {
        let mut l = LabelLimiter::new(3);
        assert_eq!(l.limit(), 3);
        for v in ["a", "b", "c"] {
            assert_eq!(l.admit("route", v), v);
        }
        assert_eq!(l.admit("route", "d"), OVERFLOW);
        assert_eq!(l.admit("route", "e"), OVERFLOW);
        assert_eq!(l.admit("route", "d"), OVERFLOW);
        // Earlier values keep passing.
        for v in ["c", "b", "a"] {
            assert_eq!(l.admit("route", v), v);
        }
        assert_eq!(l.distinct("route"), 3);
        // Observations, not distinct values.
        assert_eq!(l.folded().collect::<Vec<_>>(), vec![("route", 3)]);
    }

    #[test]
    fn limiter_overflow_value_takes_no_slot() {
        let mut l = LabelLimiter::new(1);
        assert_eq!(l.admit("k", OVERFLOW), OVERFLOW);
        assert_eq!(l.distinct("k"), 0);
        assert_eq!(l.folded().count(), 0);
        assert_eq!(l.admit("k", "x"), "x");
        assert_eq!(l.admit("k", OVERFLOW), OVERFLOW);
        assert_eq!(l.distinct("k"), 1);
        assert_eq!(l.folded().count(), 0);
    }

    #[test]
    fn limiter_labels_are_independent() {
        let mut l = LabelLimiter::new(3);
        for v in ["1", "2", "3", "4"] {
            l.admit("a", v);
        }
        for v in ["1", "2", "3"] {
            assert_eq!(l.admit("b", v), v);
        }
        assert_eq!(l.admit("c", "4"), "4");
        assert_eq!(l.distinct("a"), 3);
        assert_eq!(l.distinct("b"), 3);
        assert_eq!(l.distinct("c"), 1);
        assert_eq!(l.distinct("unknown"), 0);
        assert_eq!(l.folded().collect::<Vec<_>>(), vec![("a", 1)]);
        l.admit("b", "9");
        assert_eq!(l.folded().collect::<Vec<_>>(), vec![("a", 1), ("b", 1)]);
    }

    #[test]
    fn limiter_zero_and_default() {
        let mut l = LabelLimiter::new(0);
        assert_eq!(l.admit("k", "x"), OVERFLOW);
        assert_eq!(l.distinct("k"), 0);
        assert_eq!(l.folded().collect::<Vec<_>>(), vec![("k", 1)]);
        assert_eq!(LabelLimiter::default().limit(), DEFAULT_LABEL_LIMIT);
    }

    /// Calls `f` with every string of length 0..=max_len over `alphabet`.
    fn for_all_strings(alphabet: &[char], max_len: usize, mut f: impl FnMut(&str)) {
        let mut idx: Vec<usize> = Vec::with_capacity(max_len);
        let mut s = String::new();
        loop {
            s.clear();
            s.extend(idx.iter().map(|&i| alphabet[i]));
            f(&s);
            // Odometer increment; grow when all positions wrapped.
            let mut pos = 0;
            loop {
                if pos == idx.len() {
                    if idx.len() == max_len {
                        return;
                    }
                    idx.push(0);
                    break;
                }
                idx[pos] += 1;
                if idx[pos] < alphabet.len() {
                    break;
                }
                idx[pos] = 0;
                pos += 1;
            }
        }
    }

    fn check_path(input: &str) {
        let out = template_path(input);
        assert!(out.starts_with('/') && out.len() <= MAX_PATH_LEN, "{input:?} -> {out:?}");
        assert!(!out.contains(['?', '#']), "{input:?} -> {out:?}");
        assert_eq!(template_path(&out), out, "not idempotent for {input:?}");
    }

    fn check_sql(input: &str) {
        let out = obfuscate_sql(input);
        assert!(out.len() <= MAX_SQL_LEN, "{input:?}");
        assert_eq!(out, out.trim(), "{input:?}");
        // Quoted identifiers are kept verbatim and may contain any whitespace.
        if !out.contains(['"', '`']) {
            assert!(!out.contains("  "), "{input:?} -> {out:?}");
        }
    }

    #[test]
    fn no_panic_brute_force_sql_alphabet() {
        let alphabet = ['\'', '"', '$', '-', '*', '/', '1', 'e', '\\', '(', ',', ' ', 'é', '?'];
        let mut n = 0usize;
        for_all_strings(&alphabet, 5, |s| {
            check_sql(s);
            check_path(s);
            n += 1;
        });
        assert_eq!(n, (0..=5).map(|k| alphabet.len().pow(k)).sum::<usize>());
    }

    #[test]
    fn no_panic_brute_force_path_alphabet() {
        let alphabet = ['/', '?', '#', '1', 'a', 'f', '.', 'é', '$', '\''];
        for_all_strings(&alphabet, 6, |s| {
            check_path(s);
            check_sql(s);
        });
    }

    #[test]
    fn no_panic_on_long_inputs() {
        for unit in ["1/", "é/", "'", "/*", "$a$", "x IN (1,", "--\n", "a1b2c3d4e5f6g7h8i9/"] {
            let s = unit.repeat(2_000);
            check_path(&s);
            check_sql(&s);
        }
    }
}
