//! The pre-check's first look at a payload: one pass over its text for
//! the literals every detector needs, instead of one pass per detector.
//!
//! Every match of a pattern starts with one of a finite set of literals
//! (its prefixes, as `regex-syntax` extracts them: `sk-`, `AKIA`, the case
//! variants of `bearer`), and each hand-written scanner needs one too
//! (`basic` for `Basic` credentials, `://` for passwords in URLs,
//! `@` for e-mail addresses, 13 digits for a card number). Text holding
//! none of them cannot make a detector fire, so [`Screen::clears`] answers
//! for all of them in one scan. A detector without such a set (a custom
//! pattern that can start anywhere, such as `\w+@`, or the IBAN scanner)
//! means no screen at all: the detectors then run one by one, as before.
//!
//! The same literals ([`needed`]) go into the pre-check's one pass
//! ([`super::sieve`]), which reads ASCII text without escapes and also
//! finds the field triggers there; this screen's regex answers for the
//! rest (non-ASCII text, the decoded view, nested JSON text) and in the
//! walk.

use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::actions::enough_digits;

/// More literals than this and the scan would cost as much as the
/// detectors it replaces.
const MAX_LITERALS: usize = 200;

/// Literals are cut to this many bytes: long enough that ordinary words
/// (`account` before `AccountKey=`) do not hold them.
const KEEP_BYTES: usize = 8;

/// What one detector needs to be present before it can fire.
pub(super) enum Needs {
    /// One of the prefixes of this pattern's matches.
    Pattern(String),
    /// One of these literals.
    Literals(&'static [&'static str]),
    /// At least 13 ASCII digits (a card number).
    Digits,
}

/// What the detectors need, gathered: their literals (cut to
/// [`KEEP_BYTES`] and lower-cased) and whether one needs digits.
#[derive(Debug)]
pub(super) struct Needed {
    pub literals: Vec<Vec<u8>>,
    pub digits: bool,
}

/// What these detectors need, or `None` when one of them has no finite set
/// of literals (or too many to be worth a scan).
pub(super) fn needed(needs: &[Needs]) -> Option<Needed> {
    let mut literals: Vec<Vec<u8>> = Vec::new();
    let mut digits = false;
    for need in needs {
        match need {
            Needs::Pattern(p) => literals.extend(prefixes(p)?),
            Needs::Literals(l) => literals.extend(l.iter().map(|s| s.as_bytes().to_vec())),
            Needs::Digits => digits = true,
        }
    }
    // A prefix of a needed literal is needed too, in any case: cut to a
    // few bytes and lower-cased, the 128 case variants of `bearer ` and
    // the 18 spellings of `aws_secret_access` become a few dozen literals,
    // found in any case in one pass.
    for l in &mut literals {
        l.truncate(KEEP_BYTES);
        l.make_ascii_lowercase();
    }
    literals.sort();
    literals.dedup();
    if literals.iter().any(Vec::is_empty) || literals.len() > MAX_LITERALS {
        return None;
    }
    Some(Needed { literals, digits })
}

/// The literals of every detector, for one scan.
#[derive(Debug)]
pub(super) struct Screen {
    /// `None` when only digits are needed.
    literals: Option<regex::bytes::Regex>,
    digits: bool,
}

impl Screen {
    /// A screen for what the detectors need, or `None` when they need
    /// nothing (no detector).
    pub(super) fn build(needed: &Needed) -> Option<Screen> {
        let Needed { literals, digits } = needed;
        if literals.is_empty() && !digits {
            return None;
        }
        // One case-insensitive alternation of the literals, which the regex
        // engine scans with its lazy DFA. Measured under callgrind on the
        // tutorial's records (`redact_cost`): about 1,500 instructions a
        // record against 2,600 for the detectors one by one; an
        // Aho-Corasick DFA over the same set took 2,600, and 64
        // case-sensitive literals for the vectorised search 1,450 but more
        // false hits. (ASCII text without escapes takes the one-pass
        // sieve instead, `super::sieve`, which holds these literals too.)
        let literals = if literals.is_empty() {
            None
        } else {
            let alternation = literals
                .iter()
                .map(|l| escape_bytes(l))
                .collect::<Vec<_>>()
                .join("|");
            let literals = regex::bytes::RegexBuilder::new(&alternation)
                .unicode(false)
                .case_insensitive(true)
                .build()
                .ok()?;
            Some(literals)
        };
        Some(Screen {
            literals,
            digits: *digits,
        })
    }

    /// Whether no detector can fire anywhere in `text`: `true` is a
    /// promise, `false` only a maybe.
    pub(super) fn clears(&self, text: &str) -> bool {
        let literal = self
            .literals
            .as_ref()
            .is_some_and(|l| l.is_match(text.as_bytes()));
        !(literal || self.digits && enough_digits(text))
    }
}

/// `bytes` as a pattern that matches exactly them (non-ASCII bytes as
/// `\xHH`, which a byte regex without Unicode matches as that byte: a
/// literal cut inside a character stays exact).
fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii() {
            out.push_str(&regex_syntax::escape(
                char::from(b).encode_utf8(&mut [0; 4]),
            ));
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// Literals one of which starts every match of `pattern`, parsed as the
/// `regex` crate parses it; `None` when there is no finite set.
fn prefixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let literals = seq.literals()?;
    Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::{Needs, Screen, needed};
    use crate::detect::{API_KEY, BEARER_TOKEN};

    fn screen(needs: Vec<Needs>) -> Screen {
        build(&needs).expect("a screen")
    }

    fn build(needs: &[Needs]) -> Option<Screen> {
        Screen::build(&needed(needs)?)
    }

    #[test]
    fn the_built_in_patterns_have_finite_prefixes() {
        let s = screen(vec![
            Needs::Pattern(API_KEY.into()),
            Needs::Pattern(BEARER_TOKEN.into()),
            Needs::Literals(&["basic", "://"]),
        ]);
        for hit in [
            "x sk-abc",
            "call_sk-abc",
            "AKIAIOSFODNN7EXAMPLE",
            "BeArEr abc",
            "Authorization: Basic dXNlcjpwYXNz",
            "https://u:p@h",
            "-----BEGIN RSA PRIVATE KEY-----",
            "aws_secret_access_key",
            "eyJhbGciOi.eyJzdWIi.x",
        ] {
            assert!(!s.clears(hit), "{hit:?}");
        }
        for clear in [
            r#"{"tool":"get_account_balance","call_id":"call_000000000001","arguments":{"account_id":"12345"}}"#,
            "The balance of account 12345 is 1,024.50 EUR.",
        ] {
            assert!(s.clears(clear), "{clear:?}");
        }
    }

    #[test]
    fn patterns_that_can_start_anywhere_get_no_screen() {
        assert!(build(&[Needs::Pattern(r"\w+@example\.com".into())]).is_none());
        assert!(build(&[Needs::Pattern(crate::detect::EMAIL.into())]).is_none());
        assert!(build(&[Needs::Pattern("a*".into())]).is_none());
        assert!(build(&[Needs::Pattern("(".into())]).is_none());
    }

    #[test]
    fn digits_need_thirteen() {
        let s = screen(vec![Needs::Digits]);
        assert!(s.clears("order 123456789012"));
        assert!(!s.clears("card 4111 1111 1111 1"));
    }

    /// A pattern from pieces that stress literal extraction: case-insensitive
    /// groups (whose Unicode folds add `ſ` for `s` and the Kelvin sign for
    /// `k`), non-ASCII literals that an 8-byte cut splits inside a
    /// character, alternations, optional and repeated prefixes, small
    /// classes and word boundaries.
    fn pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let atom = prop::sample::select(vec![
            "sk-",
            "token",
            "Key",
            "secret_",
            "straße",
            "日本語",
            "ключ",
            "éé",
            "ǅx",
            "[a-c]",
            "[0-9]",
            "[sS]",
            "x?",
            "(?:ab|cd)",
            "(?:|z)",
            "(?:sk|ſk)",
            "k{2,3}",
            "(?:ab){0,2}",
            r"\b",
            r"(?-u:\b)",
            r"\B",
            "_",
            "[ÿ-ā]",
            r"\x00",
            r"\n",
            r"\#",
            " ",
            r"\.",
            r"\[",
            "&~",
            "(?x: a b )",
            "[[:upper:]]",
            r"\u{1F600}",
        ]);
        (
            prop::collection::vec((atom, any::<bool>(), any::<bool>()), 1..6),
            any::<bool>(),
        )
            .prop_map(|(pieces, alternate)| {
                let mut out = String::new();
                for (i, (piece, fold, opt)) in pieces.iter().enumerate() {
                    if alternate && i == pieces.len() / 2 {
                        out.push('|');
                    }
                    match (fold, opt) {
                        (true, true) => out.push_str(&format!("(?i:{piece})?")),
                        (true, false) => out.push_str(&format!("(?i:{piece})")),
                        (false, true) => out.push_str(&format!("(?:{piece})?")),
                        (false, false) => out.push_str(piece),
                    }
                }
                out
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Differential: whatever text the pattern matches, the screen
        /// built from it does not clear. The match is generated from the
        /// pattern itself (without its look-arounds, which the generator
        /// cannot honour; the regex then says whether it really matches).
        #[test]
        fn the_screen_never_clears_a_match(
            p in pattern(),
            seed in proptest::prelude::any::<u64>(),
            before in "[ a-zA-Z_é]{0,3}",
            after in "[ a-zA-Z_é]{0,3}",
        ) {
            use proptest::strategy::{Strategy, ValueTree};
            use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
            let Some(s) = build(&[Needs::Pattern(p.clone())]) else {
                return Ok(());
            };
            let re = regex::Regex::new(&p).expect("valid pattern");
            let plain = p.replace(r"(?-u:\b)", "").replace(r"\b", "").replace(r"\B", "");
            let mut runner = TestRunner::new_with_rng(
                Config::default(),
                TestRng::from_seed(RngAlgorithm::ChaCha, &{
                    let mut k = [0u8; 32];
                    k[..8].copy_from_slice(&seed.to_le_bytes());
                    k
                }),
            );
            let generator = proptest::string::string_regex(&plain).expect("generable");
            for _ in 0..8 {
                let m = generator.new_tree(&mut runner).expect("a tree").current();
                let text = format!("{before}{m}{after}");
                if re.is_match(&text) {
                    proptest::prop_assert!(!s.clears(&text), "{p:?} matches {text:?}");
                }
            }
        }
    }

    #[test]
    fn huge_or_odd_literal_sets_build_quickly_or_not_at_all() {
        // Classes too large to enumerate: no finite set, no screen.
        for p in [
            "(?i)[a-z]{8}",
            r"\w{8}",
            r"(?i)\p{L}+x",
            "[^a]",
            "(?:a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s|t|u|v|w|x|y|z){8}",
        ] {
            assert!(build(&[Needs::Pattern(p.into())]).is_none(), "{p}");
        }
        // 500 distinct 12-byte literals: regex-syntax trims them to 4 bytes
        // or gives up; either way the build is bounded.
        let many = (0..500)
            .map(|i| format!("lit{i:09}"))
            .collect::<Vec<_>>()
            .join("|");
        if let Some(s) = build(&[Needs::Pattern(many.clone())]) {
            assert!(!s.clears("x lit000000499 y"));
        }
        // A pattern nested past regex-syntax's limit does not parse: no screen.
        let deep = format!("{}a{}", "(".repeat(300), ")".repeat(300));
        assert!(build(&[Needs::Pattern(deep)]).is_none());
    }

    /// The screen parses custom patterns with `regex-syntax` directly; the
    /// `regex` crate parses them with its own copy. While both are one
    /// version (one `regex-syntax` in Cargo.lock) they agree; this fails
    /// if an upgrade splits them and their syntax drifts apart.
    #[test]
    fn regex_syntax_and_regex_agree_on_what_parses() {
        for p in [
            r"\p{Greek}+",
            r"(?<name>x)",
            r"(?P<n>x)",
            r"\b{start}x\b{end}",
            r"\<x\>",
            r"[[:alpha:]]",
            r"\u{10FFFF}",
            "(?x) a # comment",
            r"[a&&b]",
            r"[a--b]",
            r"[a~~b]",
            r"(?R)^x",
            r"\pN",
            r"x{,3}",
            r"\K",
            r"(?=x)",
            r"\0",
            r"(?-u:\xFF)",
            r"[\d&&\p{Greek}]",
        ] {
            assert_eq!(
                regex::Regex::new(p).is_ok(),
                regex_syntax::Parser::new().parse(p).is_ok(),
                "{p}"
            );
        }
    }
}
