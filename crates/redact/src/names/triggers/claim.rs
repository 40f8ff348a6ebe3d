//! The claim the key filter and the pre-check's screen rest on, tested:
//! a key whose tokens hold a canonical token `t` holds one of
//! `triggers([t])`. Keys are built from every word
//! the splitter treats specially (canonical spellings, joined words, the
//! secret words split off a token's end, `cc`, `card` and the number
//! words, `pass`), in every case, joined by every kind of separator and
//! by case changes, with trailing digits.

use proptest::prelude::*;

use super::super::{CANONICAL, JOINS, SUFFIX_WORDS, Tokens};
use super::triggers;

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

/// Every token of `key`, and whether the key holds a trigger of it.
fn check(key: &str) -> Result<(), TestCaseError> {
    let mut t = Tokens::default();
    t.split(key);
    let raw = key.to_ascii_lowercase();
    for token in t.iter() {
        let hit = triggers([token].into_iter())
            .iter()
            .any(|tr| raw.contains(tr.as_str()));
        prop_assert!(hit, "{key:?} has token {token:?}, raw {raw:?}");
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

/// The tables the triggers come from hold letters and digits only.
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
