//! The automaton against a plain reading of what it promises.

use std::ops::ControlFlow;

use proptest::prelude::*;

use super::{BAIL, DETECTOR, KEEP_BYTES, NAME_END, Sieve, minimal};
use crate::names::spelled;

/// Every event of `text`, found by the sieve, up to and with the first
/// bail.
fn events(s: &Sieve, text: &[u8]) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let _ = s.scan(text, |i, f| {
        out.push((i, f));
        if f & BAIL != 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    out
}

fn bails(b: u8) -> bool {
    !b.is_ascii() || matches!(b, b'\\' | b'%' | b'&' | b'\t' | b'\n' | b'\r')
}

/// The same, by definition: at each byte, whether the lower-cased text so
/// far ends with a detector literal; and, with the field triggers read on
/// the spelled text since the field automaton last (re)started, whether
/// the byte is an `=` or `:` while a trigger has armed the pass, or a `:`
/// right after the `"` that disarmed it (spaces between allowed). A trigger arms the pass (and the
/// field automaton rests); a `"` disarms it, and the field automaton
/// starts again at that quote. The literals are the sieve's: without those
/// that hold another (`literals_that_hold_another_still_report`).
fn reference(detector: &[Vec<u8>], field: &[Vec<u8>], text: &[u8]) -> Vec<(usize, u8)> {
    let readable = |l: &&Vec<u8>| !l.is_empty() && !l.iter().any(|&b| bails(b));
    let detector = minimal(
        detector
            .iter()
            .filter(readable)
            .map(|l| l.to_ascii_lowercase()),
    );
    let field = minimal(field.iter().filter(readable).cloned());
    let mut out = Vec::new();
    let mut armed = false;
    let mut closed = false;
    let mut since: Vec<u8> = Vec::new();
    let read = |since: &mut Vec<u8>, b: u8| -> bool {
        if matches!(b, b'_' | b'-') {
            return false;
        }
        since.extend(spelled(&[b]));
        if field.iter().any(|l| since.ends_with(l)) {
            since.clear();
            true
        } else {
            false
        }
    };
    for i in 0..text.len() {
        if bails(text[i]) {
            out.push((i, BAIL));
            break;
        }
        let mut f = 0;
        let lower = text[..=i].to_ascii_lowercase();
        if detector.iter().any(|l| lower.ends_with(l)) {
            f |= DETECTOR;
        }
        let was_closed = std::mem::take(&mut closed);
        if armed {
            match text[i] {
                b'"' => {
                    since.clear();
                    armed = read(&mut since, b'"');
                    closed = true;
                }
                b'=' | b':' => f |= NAME_END,
                _ => {}
            }
        } else {
            if was_closed && text[i] == b':' {
                f |= NAME_END;
            }
            closed = was_closed && text[i] == b' ';
            armed = read(&mut since, text[i]);
        }
        if f != 0 {
            out.push((i, f));
        }
    }
    out
}

fn literal(alphabet: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(alphabet.as_bytes().to_vec()), 1..10)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Small alphabets so that literals overlap and share prefixes and
    /// suffixes, with `_`, `-` and bail bytes in the text.
    #[test]
    fn events_are_what_the_literals_say(
        detector in prop::collection::vec(literal("abcAB_-.:{%"), 0..6),
        field in prop::collection::vec(literal("abc1 "), 0..6),
        text in prop::collection::vec(prop::sample::select(b"aAbBcC1_-. \t\n:={[\"%\\\xc3".to_vec()), 0..60),
    ) {
        let Some(s) = Sieve::build(&detector, &field) else {
            // Only single-byte field triggers refuse a sieve here.
            prop_assert!(field.iter().any(|l| l.len() == 1));
            return Ok(());
        };
        prop_assert_eq!(events(&s, &text), reference(&detector, &field, &text));
    }

    /// Whatever the reduction drops, every occurrence of a literal (cut to
    /// its first bytes) in text the pass reads holds an event of its kind
    /// at one of its bytes.
    #[test]
    fn literals_that_hold_another_still_report(
        lits in prop::collection::vec(literal("abAB"), 1..6),
        text in prop::collection::vec(prop::sample::select(b"aAbB".to_vec()), 0..40),
    ) {
        let s = Sieve::build(&lits, &[]).unwrap();
        let got = events(&s, &text);
        let lower = text.to_ascii_lowercase();
        for l in &lits {
            let l = l[..l.len().min(KEEP_BYTES)].to_ascii_lowercase();
            for (start, w) in lower.windows(l.len()).enumerate() {
                if w == l.as_slice() {
                    let end = start + l.len();
                    prop_assert!(
                        got.iter().any(|&(i, f)| (start..end).contains(&i) && f & DETECTOR != 0),
                        "{l:?} at {start} in {text:?}: {got:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn by_hand() {
    let detector = vec![b"sk-".to_vec(), b"bearer".to_vec(), b"://".to_vec()];
    let field = vec![b"token".to_vec(), b"apikey".to_vec(), b"cc ".to_vec()];
    let s = Sieve::build(&detector, &field).unwrap();
    let text = br#"{"a_p_i-KEY":[1],"x":"BeArEr t","u":"h://","cc.no":"TOKEN: a=b"}"#;
    let got = events(&s, text);
    assert_eq!(got, reference(&detector, &field, text));
    let t = std::str::from_utf8(text).unwrap();
    let at = |needle: &str| t.find(needle).unwrap() + needle.len() - 1;
    // The `:` after a key holding a trigger spelled with `_` and `-`.
    assert!(got.contains(&(at("a_p_i-KEY\":"), NAME_END)));
    assert!(got.contains(&(at("BeArEr"), DETECTOR)));
    assert!(got.contains(&(at("://"), DETECTOR)));
    assert!(got.contains(&(at("cc.no\":"), NAME_END)));
    // Every separator after a trigger in a string.
    assert!(got.contains(&(at("TOKEN:"), NAME_END)));
    assert!(got.contains(&(at("a="), NAME_END)));
    // Nothing else reports: not the end of a value holding a trigger.
    assert_eq!(got.len(), 6, "{got:?}");
    // Stops at the first byte it does not read.
    let got = events(&s, "token é \"".as_bytes());
    assert_eq!(got, [(6, BAIL)]);
    // A single-byte field trigger: no sieve.
    assert!(Sieve::build(&detector, &[b"x".to_vec()]).is_none());
}

/// Literal sets whose automaton is too large for 16-bit entries (built
/// once: hundreds of literals).
type Large = (Vec<Vec<u8>>, Vec<Vec<u8>>, Sieve);

fn large() -> &'static Large {
    static BUILT: std::sync::OnceLock<Large> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        // A fixed pseudo-random stream of literals, 5 to 8 bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut word = || -> Vec<u8> {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 5 + (x % 4) as usize;
            (0..len)
                .map(|k| b"abcdefghij:_ "[((x >> (8 + 5 * k)) % 13) as usize])
                .collect()
        };
        let detector: Vec<Vec<u8>> = (0..100).map(|_| word()).collect();
        let field: Vec<Vec<u8>> = (0..160)
            .map(|_| spelled(&word()))
            .filter(|l| l.len() >= 2)
            .collect();
        let s = Sieve::build(&detector, &field).expect("a sieve");
        (detector, field, s)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_large_table_reports_the_same(
        text in prop::collection::vec(prop::sample::select(b"abcdefghij:_ \"=-".to_vec()), 0..200),
    ) {
        let (detector, field, s) = large();
        prop_assert!(matches!(s.table, super::Table::Large(_)), "{s:?}");
        prop_assert_eq!(events(s, &text), reference(detector, field, &text));
    }
}

/// The default rules' table fits 16 bits (1,640 states of 38 classes,
/// 62,320 entries of 65,536): two more byte classes take the 32-bit
/// table, one more instruction a byte (measured under callgrind on the
/// tutorial's records: 4,226 -> 4,404 instructions a record, when space
/// and tab, line feed and carriage return were each a class of their own
/// for keys spaced from their `:`).
#[test]
fn the_default_rules_take_the_small_table() {
    let r = crate::Redactor::from_config(&crate::RedactionConfig::default()).unwrap();
    let s = r.sieve.as_ref().expect("the defaults have a sieve");
    assert!(matches!(s.table, super::Table::Small(_)), "{s:?}");
}
