//! The normalised view of a string: common encodings decoded and Unicode
//! look-alikes folded, keeping for every byte of the view the range of the
//! original it came from, so that a match found in the view stands for
//! exactly that original text.
//!
//! Two callers need the same view, and must not drift apart: redaction
//! (`agent-audit-redact` runs its detectors on the view too) and the model
//! client's scrubber (`agent-audit-agents` finds the operator's API key in
//! whatever a model server sends back).
//!
//! - **Decoded**, up to [`MAX_PASSES`] levels deep (`%2540` is `%40` after
//!   one pass and `@` after two): runs of `%XX` (UTF-8 across several),
//!   `&#64;`, `&#x40;` and named references (`&commat;`, `&amp;`, `&lt;`…),
//!   `\u0040`, `\u{40}`, surrogate pairs `\uD83D\uDE00`, `\x40` (ASCII
//!   only: `\xC3` is a byte, not a character), and the escapes that stand
//!   for themselves (`\"`, `\\`, `\/`, `\'`). Control escapes (`\n`, `\t`)
//!   stay as written: they stand for characters no secret holds.
//! - **Removed**: every default-ignorable code point (zero-width
//!   characters, bidi controls, variation selectors, invisible operators,
//!   tag characters, fillers), every format character (Unicode category
//!   Cf) and every combining mark (Mn, Mc, Me), which a renderer draws on
//!   the character before it.
//! - **Folded** to ASCII: what NFKC maps to printable ASCII (full-width,
//!   mathematical, enclosed, superscript and subscript letters and digits,
//!   ligatures, exotic spaces), the decimal digits of every script, and
//!   dash, full-stop, `@` and solidus look-alikes.
//!
//! The fold is a table of our own ([`table`](self) is generated from the
//! Unicode data by `crates/core/tools/normalize_table.py`) rather than the
//! `unicode-normalization` crate: it works one character at a time, so the
//! mapping back to the original stays exact, and it needs no dependency.
//! Out of reach: letter case (callers fold it if they need to), canonical
//! compositions such as `é` for `e` (a visibly different letter), and
//! confusables across scripts (Cyrillic `а` for Latin `a`).
//!
//! ```
//! use agent_audit_core::normalize;
//!
//! let s = "mail: alice%40exa\u{200B}mple.ｃｏｍ";
//! let v = normalize::view(s).expect("something to normalise");
//! assert_eq!(v.text, "mail: alice@example.com");
//! let at = v.text.find("alice").unwrap();
//! let (start, end) = v.original(at, v.text.len());
//! assert_eq!(&s[start..end], "alice%40exa\u{200B}mple.ｃｏｍ");
//! ```

mod table;

/// Decoding passes at most: each undoes one level of nested encoding.
pub const MAX_PASSES: usize = 8;

/// Whether `s` could differ from its normalised view: non-ASCII, or one of
/// the bytes that start an encoding (`%`, `&`, `\`).
pub fn needs(s: &str) -> bool {
    !s.is_ascii() || memchr::memchr3(b'%', b'&', b'\\', s.as_bytes()).is_some()
}

/// A normalised view: `text`, and for each byte of it the original range
/// of the character (or escape) it came from.
#[derive(Debug, Clone)]
pub struct View {
    /// The decoded and folded text.
    pub text: String,
    starts: Vec<usize>,
    ends: Vec<usize>,
}

impl View {
    /// The original byte range behind the view's bytes `[start, end)`.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.starts.get(start).copied().unwrap_or(0);
        let e = end
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .copied()
            .unwrap_or(s);
        (s, e.max(s))
    }

    /// Each character of the view with the original byte range it came
    /// from (several characters can share one range: a ligature).
    pub fn chars(&self) -> impl Iterator<Item = (char, usize, usize)> + '_ {
        self.text
            .char_indices()
            .map(|(i, c)| (c, self.starts[i], self.ends[i]))
    }
}

/// The normalised view of `s` (decoded and folded), or `None` when it is
/// `s` itself.
pub fn view(s: &str) -> Option<View> {
    if !needs(s) {
        return None;
    }
    let mut current: Option<View> = None;
    for _ in 0..MAX_PASSES {
        let input = current.as_ref().map_or(s, |v| v.text.as_str());
        if current.is_some() && !needs(input) {
            break;
        }
        let Some(next) = pass(input, true) else { break };
        current = Some(match current {
            None => next,
            Some(prev) => compose(&prev, next),
        });
    }
    current
}

/// The folded view of `s` with nothing decoded, or `None` when it is `s`
/// itself: for text whose escapes are meant literally.
pub fn fold_view(s: &str) -> Option<View> {
    if s.is_ascii() {
        return None;
    }
    pass(s, false)
}

/// `s` folded, nothing decoded (field names).
pub fn fold_str(s: &str) -> String {
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

/// What one character becomes in the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Itself.
    Same,
    /// Nothing: an invisible character or a combining mark.
    Remove,
    /// One ASCII character.
    Char(char),
    /// Several ASCII characters (a ligature, `⑴`).
    To(&'static str),
}

/// How the view spells `c`.
pub fn fold(c: char) -> Fold {
    let u = u32::from(c);
    if u < 0x80 {
        return Fold::Same;
    }
    let i = table::TABLE.partition_point(|&(_, last, _)| last < u);
    match table::TABLE.get(i) {
        Some(&(first, _, map)) if first <= u => match map {
            Map::Remove => Fold::Remove,
            Map::Run(base) => {
                char::from_u32(u32::from(base) + (u - first)).map_or(Fold::Same, Fold::Char)
            }
            Map::To(s) => Fold::To(s),
        },
        _ => Fold::Same,
    }
}

/// Whether the view drops `c` (default-ignorable, format character or
/// combining mark).
pub fn is_removed(c: char) -> bool {
    fold(c) == Fold::Remove
}

/// A row of the generated table.
#[derive(Debug, Clone, Copy)]
enum Map {
    Remove,
    /// The first code point of the range is this ASCII byte, the next one
    /// the byte after, and so on.
    Run(u8),
    To(&'static str),
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

/// One folding pass, decoding too when `decode`; `None` when nothing
/// changed.
fn pass(s: &str, decode: bool) -> Option<View> {
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
            b'%' if decode && pct(b, i).is_some() => {
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
            b'&' if decode && entity(s, i).is_some() => {
                if let Some((c, len)) = entity(s, i) {
                    out.changed = true;
                    out.push_folded(c, i, i + len);
                    i += len;
                }
            }
            b'\\' if decode && backslash(b, i).is_some() => {
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

/// `&#64;`, `&#x40;` or a named entity at `i`: the character and the
/// entity's length.
fn entity(s: &str, i: usize) -> Option<(char, usize)> {
    let rest = s.get(i + 1..)?;
    let semi = rest.as_bytes().iter().take(12).position(|&c| c == b';')?;
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
            "apos" => '\'',
            "lt" => '<',
            "gt" => '>',
            _ => return None,
        }
    };
    Some((c, semi + 2))
}

/// `n` hex digits at `i` as a number.
fn hex_at(b: &[u8], i: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..n {
        v = v * 16 + u32::from(hex(*b.get(i + k)?)?);
    }
    Some(v)
}

/// A backslash escape at `i`: the character and the escape's length.
fn backslash(b: &[u8], i: usize) -> Option<(char, usize)> {
    let next = *b.get(i + 1)?;
    match next {
        b'u' if b.get(i + 2) == Some(&b'{') => {
            let digits = b[i + 3..].iter().take(7).position(|&c| c == b'}')?;
            if digits == 0 {
                return None;
            }
            let v = hex_at(b, i + 3, digits)?;
            Some((char::from_u32(v)?, digits + 4))
        }
        b'u' => {
            let v = hex_at(b, i + 2, 4)?;
            if (0xD800..0xDC00).contains(&v) {
                // A surrogate pair, as JSON writes characters beyond the BMP.
                if b.get(i + 6) != Some(&b'\\') || b.get(i + 7) != Some(&b'u') {
                    return None;
                }
                let low = hex_at(b, i + 8, 4).filter(|l| (0xDC00..0xE000).contains(l))?;
                let c = char::from_u32(0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00))?;
                return Some((c, 12));
            }
            Some((char::from_u32(v)?, 6))
        }
        b'x' => {
            let v = hex(*b.get(i + 2)?)? * 16 + hex(*b.get(i + 3)?)?;
            v.is_ascii().then_some((char::from(v), 4))
        }
        b'"' | b'\\' | b'/' | b'\'' => Some((char::from(next), 2)),
        _ => None,
    }
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
        assert_eq!(text("alice\\u{40}example.com"), "alice@example.com");
        assert_eq!(text("\\uD835\\uDC1A"), "a");
        assert_eq!(text("k\\\"e\\\\y &lt;&gt;&apos;"), "k\"e\\y <>'");
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
    fn removes_every_invisible_and_mark_and_folds_compatibility_forms() {
        for sep in [
            "\u{301}",
            "\u{20DD}",
            "\u{FE0F}",
            "\u{E0100}",
            "\u{200E}",
            "\u{200F}",
            "\u{2061}",
            "\u{2064}",
            "\u{E0041}",
            "\u{E007F}",
            "\u{3164}",
            "\u{115F}",
            "\u{180B}",
            "\u{FFA0}",
            "\u{1D173}",
            "\u{34F}",
            "\u{61C}",
            "\u{206A}",
            "\u{600}",
            "\u{FFF9}",
            "\u{93F}",
        ] {
            let s: String = "sk-12".chars().flat_map(|c| [c, ' ']).collect();
            let s = s.replace(' ', sep);
            assert_eq!(
                text(&s),
                "sk-12",
                "U+{:04X}",
                sep.chars().next().unwrap() as u32
            );
        }
        for (form, plain) in [
            ("𝐬𝐤𝟏", "sk1"),
            ("𝔰𝔨", "sk"),
            ("𝙨𝙠𝟷", "sk1"),
            ("ⓢⓚ①⓪", "sk10"),
            ("ⓈⓀ", "SK"),
            ("🄰🄱", "AB"),
            ("ˢᵏ¹", "sk1"),
            ("ₛₖ₁", "sk1"),
            ("ﬁ", "fi"),
            ("٣৩", "33"),
            ("ｓｋ－１", "sk-1"),
        ] {
            assert_eq!(text(form), plain, "{form}");
        }
    }

    #[test]
    fn fold_view_does_not_decode() {
        assert!(fold_view("%41\\u0041").is_none());
        assert_eq!(fold_view("%4\u{200B}1").unwrap().text, "%41");
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
        let spans: Vec<_> = view("\\u0041ﬁ").unwrap().chars().collect();
        assert_eq!(spans, [('A', 0, 6), ('f', 6, 9), ('i', 6, 9)]);
    }

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for w in table::TABLE.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{:X}", w[1].0);
        }
    }
}
