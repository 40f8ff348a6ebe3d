//! Finding a secret in text a server sent, however it was encoded.
//!
//! The text is decoded and folded by core's normaliser
//! ([`agent_audit_core::normalize`], the one redaction uses): escapes
//! undone level after level (`\\u0073`, `%2573`), invisible characters and
//! combining marks dropped, compatibility forms (full-width, mathematical,
//! enclosed letters and digits) folded to ASCII, each character remembering
//! where in the original text it came from. The secret goes through the
//! same normaliser, so a secret that itself looks like an escape (`%41`)
//! still matches its literal occurrences. Both sides are then folded to
//! lower case and compared by windows: any
//! [`WINDOW`] consecutive characters of the secret (all of it when it is
//! shorter) mark their source span, and overlapping spans merge into one
//! `[REDACTED]`. Hex and base64 forms are matched whole.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use agent_audit_core::normalize;

/// Characters of a secret matched on their own: a key cut short after
/// this many characters is still scrubbed.
const WINDOW: usize = 16;
/// Hex and base64 forms are looked for only for secrets this long:
/// shorter patterns would match ordinary text.
const MIN_ENCODED_BYTES: usize = 4;
const MARK: &str = "[REDACTED]";

/// A normalised character and the source bytes `[start, end)` it came
/// from.
type Unit = (char, usize, usize);

struct Needle {
    windows: HashSet<Vec<char>>,
    /// The first two characters of each window: a cheap test before
    /// hashing a whole window.
    firsts: Bigrams,
    width: usize,
    /// Compared after case folding (the text forms, hex); base64 is
    /// compared exactly.
    folded: bool,
    /// Compared with the text as it is rather than decoded: a secret
    /// that looks like escapes (`%41`) has windows of its own
    /// spelling that no decoded window shows.
    undecoded: bool,
}

struct Inner {
    needles: Vec<Needle>,
    min_width: usize,
    /// Folded and exact characters of every needle: a character outside
    /// these and outside escape syntax ends a run worth decoding.
    chars: HashSet<char>,
    /// The ASCII part of `chars` and of escape syntax, as a bitmap.
    ascii: u128,
}

/// Scrubs a set of secrets. Cheap to clone; no `Debug` that could print
/// what it holds.
#[derive(Clone, Default)]
pub(super) struct Scrubber {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber(***)")
    }
}

impl Scrubber {
    /// A scrubber for `secrets` (empty ones are ignored).
    pub(super) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut needles = Vec::new();
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            let raw: Vec<char> = folded_units(secret).iter().map(|u| lower(u.0)).collect();
            let normal: Vec<char> = decoded_units(secret).iter().map(|u| lower(u.0)).collect();
            needles.extend(text_needle(normal.clone(), false));
            if raw != normal {
                needles.extend(text_needle(raw, true));
            }
            if secret.len() >= MIN_ENCODED_BYTES {
                let hex: Vec<char> = secret
                    .bytes()
                    .flat_map(|b| {
                        let h = format!("{b:02x}");
                        h.chars().collect::<Vec<_>>()
                    })
                    .collect();
                needles.push(whole_needle(hex, true));
                for pattern in base64_patterns(secret.as_bytes()) {
                    needles.push(whole_needle(pattern, false));
                }
            }
        }
        if needles.is_empty() {
            return Scrubber::default();
        }
        let min_width = needles.iter().map(|n| n.width).min().unwrap_or(1);
        let chars = needles
            .iter()
            .flat_map(|n| n.windows.iter().flatten().copied())
            .collect();
        let mut inner = Inner {
            needles,
            min_width,
            chars,
            ascii: 0,
        };
        for c in (0u8..128).map(char::from) {
            if inner.may_belong_slow(c) {
                inner.ascii |= 1 << c as u32;
            }
        }
        Scrubber {
            inner: Some(Arc::new(inner)),
        }
    }

    /// No secret to scrub.
    pub(super) fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// `text` with every occurrence of a secret replaced by `[REDACTED]`.
    pub(super) fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(inner) = &self.inner else {
            return Cow::Borrowed(text);
        };
        let mut spans = Vec::new();
        let mut run_start: Option<(usize, usize)> = None; // (byte, chars)
        for (i, c) in text
            .char_indices()
            .chain(std::iter::once((text.len(), ' ')))
        {
            let inside = i < text.len() && inner.may_belong(c);
            match (inside, &mut run_start) {
                (true, Some((_, n))) => *n += 1,
                (true, None) => run_start = Some((i, 1)),
                (false, Some((start, n))) => {
                    if *n >= inner.min_width {
                        inner.find(text, *start, i, &mut spans);
                    }
                    run_start = None;
                }
                (false, None) => {}
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut pending: Option<(usize, usize)> = None;
        for (s, e) in spans {
            match &mut pending {
                Some((_, pe)) if s <= *pe => *pe = (*pe).max(e),
                _ => {
                    if let Some((ps, pe)) = pending.take() {
                        out.push_str(&text[at..ps]);
                        out.push_str(MARK);
                        at = pe;
                    }
                    pending = Some((s, e));
                }
            }
        }
        if let Some((ps, pe)) = pending {
            out.push_str(&text[at..ps]);
            out.push_str(MARK);
            at = pe;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Scrubs `s` in place.
    pub(super) fn string(&self, s: &mut String) {
        if let Cow::Owned(clean) = self.text(s) {
            *s = clean;
        }
    }

    /// Scrubs every string and every object key inside `value`.
    pub(super) fn value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (mut k, mut v) in old {
                    self.string(&mut k);
                    self.value(&mut v);
                    map.insert(k, v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

impl Inner {
    fn may_belong(&self, c: char) -> bool {
        if c.is_ascii() {
            return self.ascii & (1 << c as u32) != 0;
        }
        self.may_belong_slow(c)
    }

    fn may_belong_slow(&self, c: char) -> bool {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '\\' | '%' | '&' | '#' | ';' | '{' | '}' | '"' | '\'' | '/'
            )
            || self.chars.contains(&c)
            || match normalize::fold(c) {
                normalize::Fold::Remove => true,
                normalize::Fold::Same => self.chars.contains(&lower(c)),
                normalize::Fold::Char(d) => self.chars.contains(&lower(d)),
                normalize::Fold::To(s) => s.chars().any(|d| self.chars.contains(&lower(d))),
            }
    }

    /// Adds the byte spans of `text[start..end]` that hold a secret.
    fn find(&self, text: &str, start: usize, end: usize, spans: &mut Vec<(usize, usize)>) {
        let shift = |units: Vec<Unit>| -> Vec<Unit> {
            units
                .into_iter()
                .map(|(c, s, e)| (c, start + s, start + e))
                .collect()
        };
        let decoded = shift(decoded_units(&text[start..end]));
        let source = shift(folded_units(&text[start..end]));
        let exact: Vec<char> = decoded.iter().map(|u| u.0).collect();
        let folded: Vec<char> = exact.iter().map(|&c| lower(c)).collect();
        let source_folded: Vec<char> = source.iter().map(|u| lower(u.0)).collect();
        for needle in &self.needles {
            let (units, chars) = match (needle.undecoded, needle.folded) {
                (true, _) => (&source, &source_folded),
                (false, true) => (&decoded, &folded),
                (false, false) => (&decoded, &exact),
            };
            if chars.len() < needle.width {
                continue;
            }
            for p in 0..=chars.len() - needle.width {
                let second = chars.get(p + 1).copied().filter(|_| needle.width > 1);
                if needle.firsts.contains(chars[p], second)
                    && needle.windows.contains(&chars[p..p + needle.width])
                {
                    {
                        // Invisible characters and marks right after the
                        // key belong to it: a mark is drawn on its last
                        // character.
                        let mut e = units[p + needle.width - 1].2;
                        while let Some(c) = text[e..end].chars().next()
                            && normalize::is_removed(c)
                        {
                            e += c.len_utf8();
                        }
                        spans.push((units[p].1, e));
                    }
                }
            }
        }
    }
}

fn text_needle(chars: Vec<char>, undecoded: bool) -> Option<Needle> {
    if chars.is_empty() {
        return None;
    }
    let width = chars.len().min(WINDOW);
    let windows: HashSet<Vec<char>> = chars.windows(width).map(<[char]>::to_vec).collect();
    Some(Needle {
        firsts: Bigrams::of(windows.iter().map(Vec::as_slice)),
        windows,
        width,
        folded: true,
        undecoded,
    })
}

/// A bitmap of (low byte of the first, low byte of the second
/// character) pairs; a hit may be false and is checked in full.
struct Bigrams(Box<[u64; 1024]>);

impl Bigrams {
    fn index(a: char, b: Option<char>) -> usize {
        ((a as usize & 0xff) << 8) | b.map_or(0, |b| b as usize & 0xff)
    }

    fn of<'a>(windows: impl IntoIterator<Item = &'a [char]>) -> Bigrams {
        let mut bits = Box::new([0u64; 1024]);
        for w in windows {
            if let Some(&a) = w.first() {
                let i = Bigrams::index(a, w.get(1).copied());
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        Bigrams(bits)
    }

    fn contains(&self, a: char, b: Option<char>) -> bool {
        let i = Bigrams::index(a, b);
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

fn whole_needle(chars: Vec<char>, folded: bool) -> Needle {
    Needle {
        firsts: Bigrams::of([chars.as_slice()]),
        width: chars.len(),
        windows: HashSet::from([chars]),
        folded,
        undecoded: false,
    }
}

/// The base64 characters that depend only on `secret`, for each of the
/// three offsets it can start at inside encoded text, in the standard
/// and the URL-safe alphabet.
fn base64_patterns(secret: &[u8]) -> Vec<Vec<char>> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bits = secret.len() * 8;
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut buf = vec![0u8; offset];
        buf.extend_from_slice(secret);
        buf.extend_from_slice(&[0, 0]);
        // Character i covers bits 6i..6i+6 of the stream; keep those
        // that lie inside the secret's bits 8*offset..8*offset+bits.
        let first = (8 * offset).div_ceil(6);
        let last = (8 * offset + bits) / 6; // exclusive
        let pattern: Vec<char> = (first..last)
            .map(|i| {
                let bit = 6 * i;
                let (byte, shift) = (bit / 8, bit % 8);
                let two = (u16::from(buf[byte]) << 8) | u16::from(buf[byte + 1]);
                STD[usize::from((two >> (10 - shift)) & 63)] as char
            })
            .collect();
        if pattern.len() >= MIN_ENCODED_BYTES {
            let url: Vec<char> = pattern
                .iter()
                .map(|&c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            if url != pattern {
                out.push(url);
            }
            out.push(pattern);
        }
    }
    out
}

/// `text` decoded and folded, character by character.
fn decoded_units(text: &str) -> Vec<Unit> {
    match normalize::view(text) {
        Some(v) => v.chars().collect(),
        None => plain_units(text),
    }
}

/// `text` folded without decoding: how a secret that looks like
/// escapes is spelt literally.
fn folded_units(text: &str) -> Vec<Unit> {
    match normalize::fold_view(text) {
        Some(v) => v.chars().collect(),
        None => plain_units(text),
    }
}

fn plain_units(text: &str) -> Vec<Unit> {
    text.char_indices()
        .map(|(i, c)| (c, i, i + c.len_utf8()))
        .collect()
}

/// Lower case, when it is one character.
fn lower(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secret: &str, text: &str) -> String {
        Scrubber::new([secret]).text(text).into_owned()
    }

    #[test]
    fn every_encoding_of_the_key_is_scrubbed() {
        let key = "sk-Ab1\"/\\xyz-0123456789";
        let u: String = key.encode_utf16().map(|c| format!("\\u{c:04X}")).collect();
        let pct: String = key.bytes().map(|b| format!("%{b:02x}")).collect();
        let pct2: String = key.bytes().map(|b| format!("%25{b:02x}")).collect();
        let refs: String = key.chars().map(|c| format!("&#{};", c as u32)).collect();
        let zw: String = key.chars().flat_map(|c| [c, '\u{200b}']).collect();
        let wide: String = key
            .chars()
            .map(|c| match c {
                '!'..='~' => char::from_u32(c as u32 + 0xfee0).unwrap(),
                c => c,
            })
            .collect();
        let json = serde_json::to_string(key).unwrap();
        let twice = serde_json::to_string(&json[1..json.len() - 1]).unwrap();
        for form in [
            key.to_string(),
            key.to_uppercase(),
            u.clone(),
            u.replace('\\', "\\\\"),
            pct,
            pct2,
            refs,
            zw,
            wide,
            json[1..json.len() - 1].to_string(),
            twice[1..twice.len() - 1].to_string(),
            key[..16].to_string(),
        ] {
            let out = s(key, &format!("before {form} after"));
            assert_eq!(out, "before [REDACTED] after", "{form:?}");
        }
    }

    #[test]
    fn base64_and_hex_at_any_offset() {
        let key = "k3y-5ecret-v4lue";
        let b64 = |t: &str| {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut o = String::new();
            for ch in t.as_bytes().chunks(3) {
                let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=ch.len() {
                    o.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
                }
            }
            o
        };
        for prefix in ["Bearer ", "user:", "", "x"] {
            let text = b64(&format!("{prefix}{key}"));
            let out = s(key, &format!("auth {text} end"));
            assert!(out.contains("[REDACTED]"), "{prefix:?}: {out}");
            assert!(!out.contains(&text), "{out}");
        }
        let hex: String = key.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(s(key, &hex), "[REDACTED]");
    }

    #[test]
    fn ordinary_text_is_left_alone_and_short_keys_still_match() {
        let key = "sk-0123456789abcdef0123";
        let text = "The balance of account 12345 is 1,024.50 EUR. \\n %41 &amp;";
        assert!(matches!(Scrubber::new([key]).text(text), Cow::Borrowed(_)));
        assert_eq!(
            s("q7Zk", "a Q7ZK b q7\\u005ak"),
            "a [REDACTED] b [REDACTED]"
        );
        assert_eq!(s("", "anything"), "anything");
        // A key that looks like an escape still matches itself.
        assert_eq!(s("ab%41\\ncd", "x ab%41\\ncd y"), "x [REDACTED] y");
    }
}
