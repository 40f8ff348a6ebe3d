//! Whether a payload's compact JSON text could hold anything a rule
//! redacts, answered on the text so that most records skip building a
//! `serde_json::Value`.
//!
//! Two paths answer the same question. Most payloads are ASCII JSON text
//! without a backslash, `%` or `&`; for them the [one pass](super::onepass)
//! answers (a product automaton of the detectors' literals and the field
//! triggers, [`super::sieve`]), judging only the keys and assignments that
//! hold a field trigger. Any other text (non-ASCII, escapes, nested JSON
//! text, percent or entity encodings), a configuration whose detectors
//! have no finite set of literals (IBAN, a pattern that can start
//! anywhere) or a field trigger of one byte takes the full path here: a
//! scan for each question, escapes decoded, the normalised view, each
//! level of nested JSON text.

use crate::names::Tokens;
use crate::normalize;

use super::actions::enough_digits;
use super::walk::MAX_NESTED_JSON;
use super::{MAX_DEPTH, Redactor};
use crate::detect;

/// More `{` and `[` than this in a payload's text and the walk may reach
/// [`MAX_DEPTH`] (where it masks whatever lies below): each level of JSON
/// text in a string deepens the walk by one without a bracket of its own,
/// and up to [`MAX_NESTED_JSON`] levels are parsed.
pub(super) const MAX_BRACKETS: usize = MAX_DEPTH - MAX_NESTED_JSON;

thread_local! {
    /// Reused by the pre-check, which runs on every record: splitting keys
    /// then allocates nothing.
    static SCRATCH: std::cell::RefCell<Tokens> = std::cell::RefCell::new(Tokens::new());
}

impl Redactor {
    /// Whether [`Redactor::redact`] could change the payload whose compact
    /// JSON text (as `serde_json` writes it) is `payload_json`. `false` is a
    /// promise: no rule would fire, so the caller may keep the text and skip
    /// building a `serde_json::Value` (the costly part of filtering).
    ///
    /// It runs the same detectors once over the whole text (escapes
    /// decoded), where every string, key and number appears with a
    /// non-word character (`"`, `:`, `,`) on each side, so whatever matches
    /// inside one of them also matches here; a key matching a field rule
    /// shows as that name before `":`. Too many brackets for
    /// [`MAX_DEPTH`] (counting a level for each string of JSON text that
    /// may lie on the way), an unparsable escape or an anchored custom pattern
    /// answer `true`. Numbers in JSON text nested in strings are judged
    /// as the walk scans them, written back by serde_json.
    ///
    /// On ASCII text without escapes it answers in one pass (see
    /// `redactor/onepass.rs`): the detectors run only where one of their
    /// literals is, and only keys and assignment names holding a field
    /// trigger are judged; the answer is the full path's.
    pub fn may_redact(&self, payload_json: &str) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        if self.anchored {
            return true;
        }
        if let Some(answer) = self.may_redact_in_one_pass(payload_json) {
            return answer;
        }
        self.may_redact_in_full(payload_json)
    }

    /// [`Redactor::may_redact`] for any text, a scan for each question.
    /// Not inlined: its frame would cost every call of the one pass.
    #[inline(never)]
    pub(super) fn may_redact_in_full(&self, payload_json: &str) -> bool {
        let bytes = payload_json.as_bytes();
        if memchr::memchr2_iter(b'{', b'[', bytes)
            .nth(MAX_BRACKETS)
            .is_some()
        {
            return true;
        }
        if !self.fields.is_empty() && self.field_key_in(payload_json, false) {
            return true;
        }
        let raw = memchr::memchr(b'\\', bytes).is_none();
        let decoded;
        let text = if raw {
            payload_json
        } else {
            match decode_escapes(payload_json) {
                Some(d) => {
                    decoded = d;
                    decoded.as_str()
                }
                None => return true,
            }
        };
        // Without a backslash, `":` always ends a key, judged whole above
        // (a key before whitespace and `:` too, and judged here again).
        if self.text_fires(text, raw) || self.renumbered_fires(text) {
            return true;
        }
        if raw {
            return false;
        }
        // Strings holding JSON text (tool arguments and results), which the
        // walk parses: each level of escapes undone shows the next level's
        // keys and strings as the walk sees them, up to its bound.
        let mut level = text;
        let mut next;
        for _ in 0..=MAX_NESTED_JSON {
            if !self.fields.is_empty() && self.field_key_in(level, true) {
                return true;
            }
            match unescape_lenient(level) {
                Some(n) => next = n,
                None => break,
            }
            if self.text_fires(&next, false) || self.renumbered_fires(&next) {
                return true;
            }
            level = next.as_str();
        }
        false
    }

    /// Whether a detector, pattern or secret-named assignment fires in
    /// `text` or in its normalised view, which holds the view of every
    /// string in it, still between quotes: no encoding or fold spans a `"`.
    fn text_fires(&self, text: &str, key_ends: bool) -> bool {
        if self.detects(text) || self.assigns(text, key_ends) {
            return true;
        }
        normalize::view(text).is_some_and(|v| self.detects(&v.text) || self.assigns(&v.text, false))
    }

    /// Whether a detector or pattern fires on a number of `text` as
    /// serde_json writes it back. The walk parses JSON text nested in a
    /// string and scans its numbers so (`4.2e13` as `42000000000000.0`, a
    /// card number; `1.2345e4` as `12345.0`), so the text as written does
    /// not show what it scans. Only numbers with a fraction or an exponent,
    /// `-0` and integers past 64 bits are written back otherwise; they are
    /// found by a digit before `.`, `e` or `E`, by `-0`, and by a run of
    /// 19 digits, a branch-free test of 32 bytes at a time ruling out most
    /// of the text. A number written back holds only digits, `.`, `e`,
    /// `+` and `-`, which no built-in detector but the card scanner (and
    /// the IBAN scanner, said to for safety) matches, so the default
    /// detectors skip this; a custom pattern might match.
    pub(super) fn renumbered_fires(&self, text: &str) -> bool {
        if !self.digit_detectors {
            return false;
        }
        let b = text.as_bytes();
        let mut i = 0;
        while i + 1 < b.len() {
            let end = (i + 32).min(b.len() - 1);
            let maybe = match b[i..].first_chunk::<33>() {
                Some(w) => changes_within(w),
                None => true,
            };
            if maybe {
                for k in i..end {
                    if number_changes(b[k], b[k + 1]) && self.number_fires(text, k) {
                        return true;
                    }
                }
            }
            i = end;
        }
        // Any 19 digits in a row cover one of every 19th byte.
        let mut k = 18;
        while k < b.len() {
            if !b[k].is_ascii_digit() {
                k += 19;
                continue;
            }
            let run_end = k + b[k..].iter().take_while(|c| c.is_ascii_digit()).count();
            let run_start = k - b[..k]
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if run_end - run_start >= 19 && self.number_fires(text, run_start) {
                return true;
            }
            k = run_end + 18;
        }
        false
    }

    /// Whether the number around byte `at` of `text`, if it is a JSON
    /// value (after `:`, `,` or `[` and JSON whitespace), fires as
    /// serde_json writes it back.
    fn number_fires(&self, text: &str, at: usize) -> bool {
        let b = text.as_bytes();
        let mut start = at
            - b[..at]
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .count();
        if start > 0 && b[start - 1] == b'-' {
            start -= 1;
        }
        let before = b[..start]
            .iter()
            .rev()
            .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
        if !matches!(before, Some(b':' | b',' | b'[')) {
            return false;
        }
        let end = start
            + 1
            + b[start + 1..]
                .iter()
                .take_while(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                .count();
        let written = &text[start..end];
        // Not a JSON number: the walk does not parse the text it is in.
        let Ok(n) = serde_json::from_str::<serde_json::Number>(written) else {
            return false;
        };
        let back = n.to_string();
        back != written && self.detects(&back)
    }

    /// Whether some secret-named assignment is in `text`.
    fn assigns(&self, text: &str, key_ends: bool) -> bool {
        if self.fields.is_empty() || memchr::memchr2(b'=', b':', text.as_bytes()).is_none() {
            return false;
        }
        let mut spans = Vec::new();
        self.assignments(text, key_ends, &mut spans);
        !spans.is_empty()
    }

    /// Whether some detector or pattern matches somewhere in `text`.
    fn detects(&self, text: &str) -> bool {
        // Most text holds none of the literals any detector needs: one scan
        // answers for all of them.
        if self.screen.as_ref().is_some_and(|s| s.clears(text)) {
            return false;
        }
        self.detectors_fire(text)
    }

    /// Whether some detector or pattern matches somewhere in `text`, each
    /// run (no screen).
    pub(super) fn detectors_fire(&self, text: &str) -> bool {
        if self.regexes.iter().any(|(_, re)| re.is_match(text)) {
            return true;
        }
        let mut spans = Vec::new();
        if let Some(rule) = self.card
            && enough_digits(text)
        {
            detect::cards(text, rule, &mut spans);
        }
        if let Some(rule) = self.iban
            && text.len() >= 15
        {
            detect::ibans(text, rule, &mut spans);
        }
        self.secret_shapes(text, &mut spans);
        !spans.is_empty()
    }

    /// Whether some key of the JSON text `json` matches a field rule. Keys
    /// are found on the raw text, where a key's closing quote is the
    /// unescaped `"` before `:` (or before whitespace and `:`) and its
    /// opening quote the unescaped `"` before that, so a key with an
    /// escaped quote is whole.
    ///
    /// With `nested`, `json` is a level of escapes undone, where prose
    /// quotes look like keys too: a key counts only when a value the walk
    /// would redact follows (not `null`, not `in prose`).
    fn field_key_in(&self, json: &str, nested: bool) -> bool {
        let b = json.as_bytes();
        for colon in memchr::memchr_iter(b':', b) {
            // serde_json writes `":`, but a payload's RawValue and JSON text
            // in a string come from other writers, which may put JSON
            // whitespace before the `:` (`"password" : {…}`); the walk's
            // parser reads a key there all the same. Each run of
            // whitespace is skipped by the one `:` right after it: linear.
            let at = colon
                - b[..colon]
                    .iter()
                    .rev()
                    .take_while(|c| json_space(**c))
                    .count();
            let Some(at) = at.checked_sub(1).filter(|&q| b[q] == b'"') else {
                continue;
            };
            if escaped(b, at) {
                continue;
            }
            if nested {
                let value = b[colon + 1..]
                    .iter()
                    .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
                if !value.is_some_and(|c| {
                    matches!(c, b'"' | b'{' | b'[' | b'-' | b't' | b'f' | b'0'..=b'9')
                }) {
                    continue;
                }
            }
            let mut p = at;
            let start = loop {
                match memchr::memrchr(b'"', &b[..p]) {
                    Some(q) if escaped(b, q) => p = q,
                    Some(q) => break q + 1,
                    // Not a key after all; cannot tell, so maybe.
                    None => return true,
                }
            };
            let raw = &json[start..at];
            let key_decoded;
            let key = if raw.contains('\\') {
                match decode_escapes(raw) {
                    Some(d) => {
                        key_decoded = d;
                        key_decoded.as_str()
                    }
                    None => return true,
                }
            } else {
                raw
            };
            if self.key_matches_cached(key) {
                return true;
            }
        }
        false
    }
}

/// Runs `f` with the thread's scratch tokens (fresh ones if they are in
/// use).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Tokens) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut tokens) => f(&mut tokens),
        Err(_) => f(&mut Tokens::new()),
    })
}

/// The JSON text with its string escapes replaced by the characters they
/// stand for; `None` for a malformed escape.
fn decode_escapes(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let d = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hi = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&hi) {
                    let mut ahead = chars.clone();
                    let lo = (ahead.next() == Some('\\') && ahead.next() == Some('u'))
                        .then(|| hex4(&mut ahead))
                        .flatten()
                        .filter(|lo| (0xDC00..0xE000).contains(lo));
                    match lo {
                        Some(lo) => {
                            chars = ahead;
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                        }
                        None => char::REPLACEMENT_CHARACTER,
                    }
                } else {
                    char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
            }
            _ => return None,
        };
        out.push(d);
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

/// `text` with the JSON escapes in it undone, those that are not JSON
/// escapes kept as written; `None` when it holds none. A string holding
/// JSON text shows its strings so, as the walk parses them.
fn unescape_lenient(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let first = memchr::memchr(b'\\', b)?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut changed = false;
    let mut rest = &text[first..];
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let mut chars = tail.chars();
        let d = match chars.next() {
            Some('"') => Some('"'),
            Some('\\') => Some('\\'),
            Some('/') => Some('/'),
            Some('b') => Some('\u{8}'),
            Some('f') => Some('\u{c}'),
            Some('n') => Some('\n'),
            Some('r') => Some('\r'),
            Some('t') => Some('\t'),
            Some('u') => {
                let mut probe = chars.clone();
                match hex4(&mut probe) {
                    Some(hi) => {
                        let mut c = char::from_u32(hi);
                        if (0xD800..0xDC00).contains(&hi) {
                            let mut ahead = probe.clone();
                            let lo = (ahead.next() == Some('\\') && ahead.next() == Some('u'))
                                .then(|| hex4(&mut ahead))
                                .flatten()
                                .filter(|lo| (0xDC00..0xE000).contains(lo));
                            c = match lo {
                                Some(lo) => {
                                    probe = ahead;
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                }
                                None => Some(char::REPLACEMENT_CHARACTER),
                            };
                        }
                        chars = probe;
                        Some(c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    }
                    None => None,
                }
            }
            _ => None,
        };
        match d {
            Some(c) => {
                changed = true;
                out.push(c);
                rest = chars.as_str();
            }
            None => {
                out.push('\\');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Whether the byte at `at` is escaped: preceded by an odd number of `\\`.
/// JSON's whitespace: what may stand between a key's closing quote and
/// its `:`.
pub(super) fn json_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn escaped(b: &[u8], at: usize) -> bool {
    b[..at].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

/// Whether the bytes `x`, `y` start a number serde_json writes back
/// otherwise: a digit before a fraction or an exponent, or `-0`.
fn number_changes(x: u8, y: u8) -> bool {
    (x.wrapping_sub(b'0') < 10) & ((y == b'.') | (y | 0x20 == b'e')) | (x == b'-') & (y == b'0')
}

/// [`number_changes`] for the 32 pairs of 33 bytes, without a branch so
/// that the compiler tests them together.
fn changes_within(w: &[u8; 33]) -> bool {
    let mut any = false;
    for j in 0..32 {
        any |= number_changes(w[j], w[j + 1]);
    }
    any
}

#[cfg(test)]
mod tests {
    use super::{changes_within, number_changes};

    #[test]
    fn the_branch_free_test_is_the_plain_one() {
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                let plain = (x.is_ascii_digit() && matches!(y, b'.' | b'e' | b'E'))
                    || (x == b'-' && y == b'0');
                assert_eq!(number_changes(x, y), plain, "{x} {y}");
            }
        }
        let mut w = [b'a'; 33];
        assert!(!changes_within(&w));
        // The last pair of the 33 bytes counts too.
        w[31] = b'4';
        w[32] = b'E';
        assert!(changes_within(&w));
    }
}
