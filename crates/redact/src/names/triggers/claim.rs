//! The claim the key filter and the pre-check's screen rest on, tested:
//! a key whose tokens hold a canonical token `t` holds one of
//! `triggers([t])`, in either spelling. Keys are built from every word
//! the splitter treats specially (canonical spellings, joined words, the
//! secret words split off a token's end, `cc`, `card` and the number
//! words, `pass`), in every case, joined by every kind of separator and
//! by case changes, with trailing digits.

use proptest::prelude::*;

use super::super::{CANONICAL, JOINS, SUFFIX_WORDS, Tokens};
use super::{Spelling, spelled, triggers};

fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for (raw, canonical) in CANONICAL {
        words.push(raw.to_string());
        words.extend(canonical.iter().map(|c| c.to_string()));
    }
    for (raw, canonical) in JOINS {
        words.extend(raw.iter().map(|w| w.to_string()));
        words.extend(canonical.iter().map(|c| c.to_string()));
    }
    words.extend(SUFFIX_WORDS.iter().map(|w| w.to_string()));
    for w in [
        "cc", "card", "no", "num", "nr", "nbr", "number", "pass", "db", "max", "prompt", "api",
        "key", "x", "id", "value", "n", "o", "tokens", "2",
    ] {
        words.push(w.into());
    }
    words.sort();
    words.dedup();
    words
}

/// A word of the vocabulary in some case: lower, upper, capitalised or
/// random, as keys write them (`ccNum`, `CC_NO`, `PassWord`).
fn word() -> impl Strategy<Value = String> {
    (prop::sample::select(vocabulary()), 0..4usize, any::<u64>()).prop_map(|(w, how, bits)| {
        w.chars()
            .enumerate()
            .map(|(i, c)| match how {
                1 => c.to_uppercase().collect::<String>(),
                2 if i == 0 => c.to_uppercase().collect(),
                3 if bits >> (i % 64) & 1 == 1 => c.to_uppercase().collect(),
                _ => c.to_string(),
            })
            .collect()
    })
}

fn key() -> impl Strategy<Value = String> {
    let sep = prop::sample::select(vec![
        "", "", "_", "-", ".", " ", "/", ":", "__", "_-", "-_", "+", "\"", "'", "#", "_.", "._",
    ]);
    (
        prop::collection::vec((word(), sep), 1..5),
        prop::option::of(0u32..100),
    )
        .prop_map(|(parts, digits)| {
            let mut k: String = parts.into_iter().map(|(w, s)| format!("{w}{s}")).collect();
            if let Some(d) = digits {
                k.push_str(&d.to_string());
            }
            k
        })
}

/// Every token of `key`, and whether its spellings hold a trigger of it.
fn check(key: &str) -> Result<(), TestCaseError> {
    let mut t = Tokens::default();
    t.split(key);
    let raw = key.to_ascii_lowercase();
    let stripped = String::from_utf8(spelled(key.as_bytes())).unwrap();
    for token in t.iter() {
        let raw_hit = triggers([token].into_iter(), Spelling::Raw)
            .iter()
            .any(|tr| raw.contains(tr.as_str()));
        prop_assert!(raw_hit, "{key:?} has token {token:?}, raw {raw:?}");
        let stripped_hit = triggers([token].into_iter(), Spelling::Stripped)
            .iter()
            .any(|tr| stripped.contains(tr.as_str()));
        prop_assert!(
            stripped_hit,
            "{key:?} has token {token:?}, stripped {stripped:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_token_of_an_ascii_key_shows_a_trigger(k in key()) {
        prop_assume!(k.is_ascii());
        check(&k)?;
    }
}

#[test]
fn the_contextual_rules_by_hand() {
    for k in [
        "cc_no",
        "cc/no",
        "CC:NUM",
        "ccNum",
        "cc  number",
        "cc+no",
        "card_no",
        "CardNbr",
        "creditcard_no",
        "cc_-_no",
        "db_pass",
        "pass_word",
        "DATABASE_URL",
        "mot.de.passe",
        "accesstoken_value",
        "password2",
        "x_tokens2",
        "pwdtoken",
    ] {
        check(k).unwrap();
    }
}

/// The tables the triggers come from hold letters and digits only, so a
/// trigger reads the same in both spellings (but `cc` before `n`, which
/// [`super::cc_before_n`] spells for each).
#[test]
fn canonical_spellings_and_joined_words_are_alphanumeric() {
    let alnum = |w: &str| !w.is_empty() && w.chars().all(char::is_alphanumeric);
    for (raw, canonical) in CANONICAL {
        assert!(alnum(raw), "{raw}");
        assert!(canonical.iter().all(|c| alnum(c)), "{raw}");
    }
    for (raw, canonical) in JOINS {
        assert!(raw.iter().chain(canonical.iter()).all(|w| alnum(w)));
    }
    assert!(SUFFIX_WORDS.iter().all(|w| alnum(w)));
}
