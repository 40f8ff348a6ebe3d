//! Secret-named assignments inside text: `password=hunter2`,
//! `"client_secret": "…"`, `pwd: …`, `Authorization: Basic …`. A value
//! that is text (a log line, a query string, a header block, JSON that did
//! not parse) still says which of its parts is a secret, by the name in
//! front of it; the name is judged by the same matcher as object keys, so
//! `token_type=bearer` stays and `db_pwd=…` does not.
//!
//! The pre-check runs the same scanner over the payload's whole JSON text,
//! where every string still lies between quotes that no name or value
//! crosses: what fires in a string fires there too.

use crate::detect::Span;
use crate::names::Tokens;

use super::Redactor;

/// Authorization schemes whose credentials follow after a space
/// (`Authorization: Basic dXNlcjpwYXNz`): the value is scheme and token.
const SCHEMES: [&str; 8] = [
    "basic",
    "bearer",
    "digest",
    "token",
    "negotiate",
    "ntlm",
    "apikey",
    "hmac",
];

/// Whether a character can be part of a name in text.
fn name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Where an unquoted value ends.
fn value_end(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\n'
            | b'\r'
            | b'"'
            | b'\''
            | b','
            | b';'
            | b'&'
            | b')'
            | b']'
            | b'}'
            | b'<'
            | b'>'
    )
}

impl Redactor {
    /// Pushes the value span of every secret-named assignment in `s`.
    /// `key_ends` says that `s` is compact JSON text without a backslash,
    /// where `":` always closes an object key (the pre-check has judged
    /// those whole): skipped.
    pub(super) fn assignments(&self, s: &str, key_ends: bool, out: &mut Vec<Span>) {
        if self.fields.is_empty() {
            return;
        }
        let b = s.as_bytes();
        // Allocates only when a name is split.
        let mut tokens = Tokens::default();
        // Past the last value found: a separator inside it is part of it
        // (`pwd=a=b=c`), and skipping it keeps the scan linear.
        let mut covered = 0;
        for i in memchr::memchr2_iter(b'=', b':', b) {
            if i < covered {
                continue;
            }
            let Some((name, quoted)) = separated_name(s, i, key_ends) else {
                continue;
            };
            let Some(rule) = self.field_rule(name, &mut tokens) else {
                continue;
            };
            if let Some((start, end)) = value_after(s, i + 1, quoted) {
                covered = end;
                out.push(Span { start, end, rule });
            }
        }
    }
}

/// The name before the `=` or `:` at `i` of `s`, and whether a quote
/// closed it, when that byte separates a name from a value: not in `==`,
/// `!=`, `<=`, `::`, `://` (comparisons, paths, URLs), nor, with
/// `key_ends`, the `":` that closes an object key.
pub(super) fn separated_name(s: &str, i: usize, key_ends: bool) -> Option<(&str, bool)> {
    let b = s.as_bytes();
    let prev = i.checked_sub(1).map(|p| b[p]);
    let next = b.get(i + 1).copied();
    if matches!(prev, Some(b'=' | b'!' | b'<' | b'>' | b':'))
        || matches!(next, Some(b'=' | b':'))
        || (b[i] == b':' && next == Some(b'/'))
    {
        return None;
    }
    if key_ends && b[i] == b':' && prev == Some(b'"') {
        return None;
    }
    name_before(s, i)
}

/// The name that ends before the separator at `sep`, and whether a quote
/// closed it: spaces, then quotes (and the backslashes of escaped quotes),
/// then a run of name characters.
fn name_before(s: &str, sep: usize) -> Option<(&str, bool)> {
    let b = s.as_bytes();
    let mut j = sep;
    while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
        j -= 1;
    }
    let mut quoted = false;
    while j > 0 && matches!(b[j - 1], b'"' | b'\'' | b'\\') {
        quoted |= b[j - 1] != b'\\';
        j -= 1;
    }
    let end = j;
    let start = s[..end]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| name_char(c))
        .last()
        .map_or(end, |(k, _)| k);
    (start < end).then(|| (&s[start..end], quoted))
}

/// The value after a separator (its byte range), or `None` when there is
/// none: a quoted value (quotes, possibly escaped, around it), or after an
/// unquoted name a run up to a space or delimiter (two runs when the first
/// is an authorization scheme). After a quoted name an unquoted value
/// counts only when it is a number: `"password": in prose` is prose.
pub(super) fn value_after(s: &str, from: usize, quoted_name: bool) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut k = from;
    while k < b.len() && matches!(b[k], b' ' | b'\t') {
        k += 1;
    }
    let mut q = k;
    while q < b.len() && b[q] == b'\\' {
        q += 1;
    }
    if let Some(&quote @ (b'"' | b'\'')) = b.get(q) {
        let start = q + 1;
        let mut e = start;
        while e < b.len() && b[e] != quote {
            e += 1;
        }
        // An escaped closing quote: its backslashes are not the value.
        let mut end = e;
        while end > start && b[end - 1] == b'\\' {
            end -= 1;
        }
        return (end > start && !is_masked(&s[start..end])).then_some((start, end));
    }
    if q > k {
        return None;
    }
    if quoted_name && !b.get(k).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let run = |from: usize| {
        let mut e = from;
        while e < b.len() && !value_end(b[e]) {
            e += 1;
        }
        e
    };
    let mut end = run(k);
    if end == k || is_masked(&s[k..end]) {
        return None;
    }
    if SCHEMES.iter().any(|w| s[k..end].eq_ignore_ascii_case(w)) {
        let mut t = end;
        while t < b.len() && b[t] == b' ' {
            t += 1;
        }
        let e2 = run(t);
        if e2 > t {
            end = e2;
        }
    }
    Some((k, end))
}

/// Whether a value is already one of our masks: redacting twice must not
/// fire again.
fn is_masked(v: &str) -> bool {
    v.starts_with("[REDACTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Option<&str> {
        let sep = s.find(['=', ':'])?;
        let (_, quoted) = name_before(s, sep)?;
        value_after(s, sep + 1, quoted).map(|(a, b)| &s[a..b])
    }

    #[test]
    fn names_and_values() {
        assert_eq!(name_before("x password=", 10), Some(("password", false)));
        assert_eq!(name_before("{\"pwd\": ", 6), Some(("pwd", true)));
        assert_eq!(name_before("\\\"pwd\\\":", 7), Some(("pwd", true)));
        assert_eq!(value("password=hunter2&x=1"), Some("hunter2"));
        assert_eq!(value("\"client_secret\": \"CS-1\""), Some("CS-1"));
        assert_eq!(value("\\\"pwd\\\":\\\"hunter2\\\""), Some("hunter2"));
        assert_eq!(
            value("Authorization: Basic dXNlcjpwYXNz rest"),
            Some("Basic dXNlcjpwYXNz")
        );
        assert_eq!(value("pwd: hunter2\nnext"), Some("hunter2"));
        assert_eq!(value("\"password\": in prose"), None);
        assert_eq!(value("\"pin\": 1234}"), Some("1234"));
        assert_eq!(value("password="), None);
        assert_eq!(value("password=\"\""), None);
        assert_eq!(value("password=[REDACTED:password]"), None);
    }
}
