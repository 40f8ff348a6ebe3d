//! Secret shapes a regex cannot confirm: HTTP Basic credentials (base64 of
//! `user:password`, which ordinary words after "Basic" are not) and the
//! password in a URL's userinfo.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::Span;

/// Built once: a finder costs more to build than most texts to search.
static SCHEME_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"://"));

/// `Basic <base64 of user:password>`, any case of `basic` (`bAsIc` too):
/// the scheme and the credentials. Prose ("Basic settings") does not
/// decode to a text holding `:`.
pub(crate) fn basic_auth(s: &str, rule: usize, out: &mut Vec<Span>) {
    let b = s.as_bytes();
    // Every `b` or `B` is a candidate: rarer in text than any letter of
    // `asic`, and found with one vectorised scan.
    for start in memchr::memchr2_iter(b'b', b'B', b) {
        if !b
            .get(start..start + 5)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"basic"))
            || (start > 0 && b[start - 1].is_ascii_alphanumeric())
        {
            continue;
        }
        let at = start + 1;
        let mut t = at + 4;
        let gap = t;
        while t < b.len() && matches!(b[t], b' ' | b'\t') {
            t += 1;
        }
        if t == gap {
            continue;
        }
        let token_start = t;
        while t < b.len() && (b[t].is_ascii_alphanumeric() || matches!(b[t], b'+' | b'/')) {
            t += 1;
        }
        let body = t;
        while t < b.len() && b[t] == b'=' && t - body < 2 {
            t += 1;
        }
        if body - token_start >= 4
            && decode_base64(&b[token_start..body]).is_some_and(|d| d.contains(&b':'))
        {
            out.push(Span {
                start,
                end: t,
                rule,
            });
        }
    }
}

/// Standard base64 without padding; `None` for a length no encoding has.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * k);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// The password in `scheme://user:password@host`: from after the userinfo's
/// first `:` to its `@` (the user name, host and path stay).
pub(crate) fn url_passwords(s: &str, rule: usize, out: &mut Vec<Span>) {
    let b = s.as_bytes();
    for at in SCHEME_END.find_iter(b) {
        let scheme = b[..at]
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
            .count();
        if scheme == 0 {
            continue;
        }
        let from = at + 3;
        let end = b[from..]
            .iter()
            .position(|c| {
                matches!(
                    c,
                    b'@' | b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\\'
                ) || c.is_ascii_whitespace()
            })
            .map_or(b.len(), |k| from + k);
        if b.get(end) != Some(&b'@') {
            continue;
        }
        if let Some(colon) = memchr::memchr(b':', &b[from..end]) {
            let start = from + colon + 1;
            if end > start {
                out.push(Span { start, end, rule });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str, f: fn(&str, usize, &mut Vec<Span>)) -> Vec<&str> {
        let mut out = Vec::new();
        f(s, 0, &mut out);
        out.iter().map(|sp| &s[sp.start..sp.end]).collect()
    }

    #[test]
    fn basic_credentials_but_not_prose() {
        assert_eq!(
            texts("Authorization: Basic YWxpY2U6aHVudGVyMg== x", basic_auth),
            ["Basic YWxpY2U6aHVudGVyMg=="]
        );
        assert_eq!(
            texts("basic dXNlcjpwYXNz", basic_auth),
            ["basic dXNlcjpwYXNz"]
        );
        assert!(texts("Basic Settings and basic information", basic_auth).is_empty());
        assert!(texts("BASIC", basic_auth).is_empty());
    }

    #[test]
    fn url_password_only() {
        assert_eq!(texts("mysql://root:pw@10.0.0.1/db", url_passwords), ["pw"]);
        assert_eq!(texts("redis://:pw@cache:6379", url_passwords), ["pw"]);
        assert!(texts("https://user@example.com:8443/a:b@c", url_passwords).is_empty());
        assert!(texts("postgres://localhost:5432/db", url_passwords).is_empty());
    }
}
