//! What a key must hold to have a given token: the triggers the key
//! filter and the pre-check's screen look for before a key is split.

#[cfg(doc)]
use super::Tokens;
use super::{CANONICAL, JOINS};

/// How the keys a trigger list is matched against are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// Lower-cased ASCII, as written (the key filter).
    Raw,
    /// Lower-cased ASCII with `_` and `-` left out and every other byte
    /// that is not a letter or digit written as a space (the pre-check's
    /// screen, which reads the whole payload text that way so that the
    /// suffix rule's names, `a_p_i_k_e_y` for `apikey`, show too).
    Stripped,
}

/// Substrings one of which a key (in `spelling`) must hold to have one of
/// `first` (canonical tokens) among its tokens. The key filter and the
/// pre-check's screen rule keys out on this, so it lists every way
/// [`Tokens::split`] makes a token from an ASCII key:
///
/// - a raw token as it is (the token itself), or with a trailing number
///   (`password2`, which holds it);
/// - a raw token's canonical spelling (`pwd`, `apikey`: the raw spellings
///   whose canonical form holds one), also when split off the end of a
///   longer token before a secret word at its end (`dbpasswd`,
///   `pwdtoken`);
/// - a run of raw tokens that is one word (`pass_word`, `DATABASE_URL`:
///   the run's first word);
/// - `pass` after another token (`db_pass`);
/// - `no`, `num`, `nr`, `nbr` after `card` make `number`: `card` (or `cc`,
///   which makes `card` below) is in the key;
/// - `cc` before `number`, `num` or `no` makes `card`: [`cc_before_n`].
///
/// Tokens, canonical spellings and joined words are letters and digits
/// only, so they read the same in both spellings. Tested on generated
/// keys of every shape, in both spellings (`claim`).
pub(crate) fn triggers<'a>(
    first: impl Iterator<Item = &'a str>,
    spelling: Spelling,
) -> Vec<String> {
    let first: Vec<&str> = first.collect();
    let mut out: Vec<String> = first.iter().map(|t| t.to_string()).collect();
    for (raw, c) in CANONICAL {
        if c.iter().any(|t| first.contains(t)) {
            out.push(raw.to_string());
        }
    }
    for (raw, c) in JOINS {
        if c.iter().any(|t| first.contains(t))
            && let Some(w) = raw.first()
        {
            out.push(w.to_string());
        }
    }
    if first.contains(&"password") {
        out.push("pass".into());
    }
    if first.contains(&"card") {
        cc_before_n(spelling, &mut out);
    }
    if first.contains(&"number") {
        out.push("card".into());
        cc_before_n(spelling, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// `cc` is `card` only as a raw token before one that starts with `n`
/// (`number`, `num`, `no`): a change of case (`ccNum`, read `ccn`) or
/// bytes that are neither letters nor digits lie between (`cc_no`,
/// `cc/no`, `cc  no`). Written without `_` and `-` and with the others as
/// spaces, that is `ccn` or `cc `.
fn cc_before_n(spelling: Spelling, out: &mut Vec<String>) {
    out.push("ccn".into());
    match spelling {
        Spelling::Raw => {
            for b in (0u8..0x80).filter(|b| !b.is_ascii_alphanumeric()) {
                out.push(format!("cc{}", char::from(b)));
            }
        }
        Spelling::Stripped => out.push("cc ".into()),
    }
}

/// `text` in the [`Spelling::Stripped`] spelling: ASCII letters lower-cased,
/// digits kept, `_` and `-` left out, every other byte a space.
pub(crate) fn spelled(text: &[u8]) -> Vec<u8> {
    text.iter()
        .filter(|&&b| !matches!(b, b'_' | b'-'))
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                b.to_ascii_lowercase()
            } else {
                b' '
            }
        })
        .collect()
}

#[cfg(test)]
mod claim;
