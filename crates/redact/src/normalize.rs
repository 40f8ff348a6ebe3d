//! The normalised view of a string that detectors also run on: common
//! encodings decoded (`%40`, `&#64;`, `&commat;`, `\u0040`, `\x40`) and
//! Unicode look-alikes folded (fullwidth and mathematical letters and
//! digits, small and fullwidth `@`, ideographic full stops, other
//! scripts' decimal digits, exotic spaces and dashes; zero-width and
//! bidi-control characters and combining marks removed), keeping for
//! every byte of the view the range of the original it came from, so that
//! a match in the view redacts exactly the original text it stands for.
//!
//! The fold is a small table of our own rather than full NFKC (the
//! `unicode-normalization` crate): it covers what defeats the detectors
//! (look-alike digits, `@`, `.`, `-`, separators and ASCII letters) and
//! no more, adds no dependency, and never composes across characters, so
//! the mapping stays per character. Confusables across scripts (Cyrillic
//! `а` for Latin `a`) are not folded: see `docs/redaction.md`.

/// Decoding passes at most: `%2540` is `%40` after one and `@` after two.
const PASSES: usize = 3;

/// Whether `s` could differ from its normalised view: non-ASCII, or one of
/// the bytes that start an encoding (`%`, `&`, `\`).
pub(crate) fn needs(s: &str) -> bool {
    !s.is_ascii() || memchr::memchr3(b'%', b'&', b'\\', s.as_bytes()).is_some()
}

/// A normalised view: `text`, and for each byte of it the original range
/// `[starts[i], ends[i])` of the character it came from.
#[derive(Debug)]
pub(crate) struct View {
    pub text: String,
    starts: Vec<usize>,
    ends: Vec<usize>,
}

impl View {
    /// The original range behind the view's bytes `[start, end)`.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.starts.get(start).copied().unwrap_or(0);
        let e = end
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .copied()
            .unwrap_or(s);
        (s, e.max(s))
    }
}

/// The normalised view of `s`, or `None` when it is `s` itself.
pub(crate) fn view(s: &str) -> Option<View> {
    if !needs(s) {
        return None;
    }
    let mut current: Option<View> = None;
    for _ in 0..PASSES {
        let input = current.as_ref().map_or(s, |v| v.text.as_str());
        if current.is_some() && !needs(input) {
            break;
        }
        let Some(next) = pass(input) else { break };
        current = Some(match current {
            None => next,
            Some(prev) => compose(&prev, next),
        });
    }
    current
}

/// `next` (a view of `prev.text`) as a view of `prev`'s original.
fn compose(prev: &View, next: View) -> View {
    let starts = next
        .starts
        .iter()
        .map(|&i| prev.starts.get(i).copied().unwrap_or(0))
        .collect();
    let ends = next
        .ends
        .iter()
        .map(|&i| {
            i.checked_sub(1)
                .and_then(|j| prev.ends.get(j))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    View {
        text: next.text,
        starts,
        ends,
    }
}

struct Builder {
    text: String,
    starts: Vec<usize>,
    ends: Vec<usize>,
    changed: bool,
}

impl Builder {
    fn push(&mut self, c: char, start: usize, end: usize) {
        self.text.push(c);
        for _ in 0..c.len_utf8() {
            self.starts.push(start);
            self.ends.push(end);
        }
    }

    /// `c`, from original bytes `[start, end)`, folded.
    fn push_folded(&mut self, c: char, start: usize, end: usize) {
        match fold(c) {
            Fold::Same => self.push(c, start, end),
            Fold::Remove => self.changed = true,
            Fold::To(s) => {
                self.changed = true;
                for d in s.chars() {
                    self.push(d, start, end);
                }
            }
            Fold::Char(d) => {
                self.changed = true;
                self.push(d, start, end);
            }
        }
    }
}

/// One decoding and folding pass; `None` when nothing changed.
fn pass(s: &str) -> Option<View> {
    let b = s.as_bytes();
    let mut out = Builder {
        text: String::with_capacity(s.len()),
        starts: Vec::with_capacity(s.len()),
        ends: Vec::with_capacity(s.len()),
        changed: false,
    };
    let mut i = 0;
    let mut bytes: Vec<u8> = Vec::new();
    while i < b.len() {
        match b[i] {
            b'%' if pct(b, i).is_some() => {
                // A run of %XX: its bytes decoded together (UTF-8 spans
                // several), invalid ones kept as written.
                bytes.clear();
                let mut at = Vec::new();
                let mut j = i;
                while let Some(v) = pct(b, j) {
                    bytes.push(v);
                    at.push(j);
                    j += 3;
                }
                let mut k = 0;
                for chunk in bytes.utf8_chunks() {
                    for c in chunk.valid().chars() {
                        let n = c.len_utf8();
                        let start = at[k];
                        let end = at[k + n - 1] + 3;
                        out.changed = true;
                        out.push_folded(c, start, end);
                        k += n;
                    }
                    for _ in chunk.invalid() {
                        let start = at[k];
                        for (o, &byte) in b[start..start + 3].iter().enumerate() {
                            out.push(char::from(byte), start + o, start + o + 1);
                        }
                        k += 1;
                    }
                }
                i = j;
            }
            b'&' if entity(s, i).is_some() => {
                if let Some((c, len)) = entity(s, i) {
                    out.changed = true;
                    out.push_folded(c, i, i + len);
                    i += len;
                }
            }
            b'\\' if backslash(b, i).is_some() => {
                if let Some((c, len)) = backslash(b, i) {
                    out.changed = true;
                    out.push_folded(c, i, i + len);
                    i += len;
                }
            }
            _ => {
                let c = s[i..].chars().next().unwrap_or('\u{FFFD}');
                let n = c.len_utf8();
                out.push_folded(c, i, i + n);
                i += n;
            }
        }
    }
    out.changed.then_some(View {
        text: out.text,
        starts: out.starts,
        ends: out.ends,
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte of a `%XX` at `i`.
fn pct(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    Some(hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?)
}

/// `&#64;`, `&#x40;` or a few named entities at `i`: the character and
/// the entity's length.
fn entity(s: &str, i: usize) -> Option<(char, usize)> {
    let rest = s.get(i + 1..)?;
    let semi = rest.as_bytes().iter().take(10).position(|&c| c == b';')?;
    let body = &rest[..semi];
    let c = if let Some(num) = body.strip_prefix('#') {
        let v = match num.strip_prefix(['x', 'X']) {
            Some(h) => u32::from_str_radix(h, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        char::from_u32(v)?
    } else {
        match body {
            "commat" => '@',
            "period" => '.',
            "amp" => '&',
            "nbsp" => ' ',
            "sol" => '/',
            "lowbar" => '_',
            "hyphen" | "dash" => '-',
            "plus" => '+',
            "quot" => '"',
            _ => return None,
        }
    };
    Some((c, semi + 2))
}

/// `\uXXXX` (not a surrogate) or `\xXX` (ASCII) at `i`: the character and
/// the escape's length.
fn backslash(b: &[u8], i: usize) -> Option<(char, usize)> {
    match b.get(i + 1)? {
        b'u' => {
            let mut v = 0u32;
            for k in 0..4 {
                v = v * 16 + u32::from(hex(*b.get(i + 2 + k)?)?);
            }
            Some((char::from_u32(v)?, 6))
        }
        b'x' => {
            let v = hex(*b.get(i + 2)?)? * 16 + hex(*b.get(i + 3)?)?;
            v.is_ascii().then_some((char::from(v), 4))
        }
        _ => None,
    }
}

enum Fold {
    Same,
    Remove,
    Char(char),
    To(&'static str),
}

fn from_u32(v: u32) -> Fold {
    char::from_u32(v).map_or(Fold::Same, Fold::Char)
}

/// The look-alike table.
fn fold(c: char) -> Fold {
    let u = u32::from(c);
    if u < 0x80 {
        return Fold::Same;
    }
    match u {
        // Fullwidth ASCII.
        0xFF01..=0xFF5E => from_u32(u - 0xFF01 + 0x21),
        // Spaces.
        0xA0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => Fold::Char(' '),
        // Invisible: soft hyphen, combining grapheme joiner, Mongolian vowel
        // separator, zero-width, bidi controls, word joiner and invisible
        // operators, variation selectors, BOM.
        0xAD
        | 0x34F
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x2069
        | 0xFE00..=0xFE0F
        | 0xFEFF
        | 0xE0100..=0xE01EF => Fold::Remove,
        // Combining marks.
        0x300..=0x36F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F => {
            Fold::Remove
        }
        // Dashes and minus signs.
        0x2010..=0x2015 | 0x2043 | 0x2212 | 0xFE58 | 0xFE63 => Fold::Char('-'),
        // Full stops: ideographic, halfwidth ideographic, one dot leader,
        // small.
        0x3002 | 0xFF61 | 0x2024 | 0xFE52 => Fold::Char('.'),
        // Small commercial at, small solidus-like forms.
        0xFE6B => Fold::Char('@'),
        0x2215 | 0x2044 => Fold::Char('/'),
        // Mathematical alphanumeric letters (13 styles of A-Z a-z) and
        // digits (5 styles of 0-9).
        0x1D400..=0x1D6A3 => {
            let k = (u - 0x1D400) % 52;
            if k < 26 {
                from_u32(u32::from(b'A') + k)
            } else {
                from_u32(u32::from(b'a') + k - 26)
            }
        }
        0x1D7CE..=0x1D7FF => from_u32(u32::from(b'0') + (u - 0x1D7CE) % 10),
        // Decimal digits of other scripts: Arabic-Indic, extended
        // Arabic-Indic, Devanagari, Bengali, Thai.
        0x660..=0x669 => from_u32(u - 0x660 + 0x30),
        0x6F0..=0x6F9 => from_u32(u - 0x6F0 + 0x30),
        0x966..=0x96F => from_u32(u - 0x966 + 0x30),
        0x9E6..=0x9EF => from_u32(u - 0x9E6 + 0x30),
        0xE50..=0xE59 => from_u32(u - 0xE50 + 0x30),
        // Superscript, subscript and circled digits.
        0xB9 => Fold::Char('1'),
        0xB2 => Fold::Char('2'),
        0xB3 => Fold::Char('3'),
        0x2070 => Fold::Char('0'),
        0x2074..=0x2079 => from_u32(u - 0x2070 + 0x30),
        0x2080..=0x2089 => from_u32(u - 0x2080 + 0x30),
        0x2460..=0x2468 => from_u32(u - 0x2460 + 0x31),
        0x24EA => Fold::Char('0'),
        // Latin ligatures.
        0xFB00 => Fold::To("ff"),
        0xFB01 => Fold::To("fi"),
        0xFB02 => Fold::To("fl"),
        0xFB03 => Fold::To("ffi"),
        0xFB04 => Fold::To("ffl"),
        0xFB05 | 0xFB06 => Fold::To("st"),
        _ => Fold::Same,
    }
}

/// `s` folded (no decoding), for field names.
pub(crate) fn fold_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match fold(c) {
            Fold::Same => out.push(c),
            Fold::Remove => {}
            Fold::Char(d) => out.push(d),
            Fold::To(t) => out.push_str(t),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        view(s).map_or_else(|| s.to_string(), |v| v.text)
    }

    #[test]
    fn decodes_and_folds() {
        assert_eq!(text("alice%40example.com"), "alice@example.com");
        assert_eq!(text("alice%2540example.com"), "alice@example.com");
        assert_eq!(text("alice&#64;example&period;com"), "alice@example.com");
        assert_eq!(text("alice&#x40;example.com"), "alice@example.com");
        assert_eq!(text("alice\\u0040example.com"), "alice@example.com");
        assert_eq!(
            text("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
            "alice@example.com"
        );
        assert_eq!(text("alice﹫example。com"), "alice@example.com");
        assert_eq!(text("４１１１ １１１１"), "4111 1111");
        assert_eq!(text("ali\u{200B}ce"), "alice");
        assert_eq!(text("%C3%A9t%C3%A9"), "été");
        assert_eq!(text("𝐬𝐤-𝟏"), "sk-1");
        assert_eq!(text("100%"), "100%");
        assert_eq!(text("%ZZ &amp x \\n"), "%ZZ &amp x \\n");
        assert!(view("plain ascii").is_none());
    }

    #[test]
    fn maps_back_to_the_original() {
        let s = "to: alice%2540example.com!";
        let v = view(s).unwrap();
        let at = v.text.find("alice").unwrap();
        let end = at + "alice@example.com".len();
        let (a, b) = v.original(at, end);
        assert_eq!(&s[a..b], "alice%2540example.com");

        let s = "x ａｌ\u{200B}ｉ y";
        let v = view(s).unwrap();
        assert_eq!(v.text, "x ali y");
        let (a, b) = v.original(2, 5);
        assert_eq!(&s[a..b], "ａｌ\u{200B}ｉ");
        // Invalid UTF-8 in percent-encoding stays as written.
        let s = "%FF%40";
        let v = view(s).unwrap();
        assert_eq!(v.text, "%FF@");
        assert_eq!(v.original(3, 4), (3, 6));
    }
}
