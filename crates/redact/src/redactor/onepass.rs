//! The pre-check in one pass, for the common payload: ASCII JSON text
//! without a backslash, `%` or `&` (nor a raw tab or line break, which
//! serde_json never writes: only a payload's `RawValue` holds them).
//!
//! On such text the pre-check's full path ([`Redactor::may_redact`]) asks
//! five things, each a scan of its own: too many brackets, a key matching
//! a field rule, a detector firing, a secret-named assignment, a number
//! written back otherwise. The normalised view is the text itself (nothing
//! to decode or fold) and no string holds escaped JSON text, so nothing
//! else can fire. Here:
//!
//! - **Brackets** are counted first, without a branch a byte.
//! - **Detectors** need one of their literals (the screen's) before they
//!   can fire; where the [sieve](super::sieve) finds one, they run on the
//!   whole text, once.
//! - **Field rules** fire only on a key or on the name before an
//!   assignment's `=` or `:`, and only when that name holds a field
//!   trigger in the stripped spelling: a trigger of one of the field's
//!   tokens, all of which a matching name has ([`names::triggers`] lists
//!   every way a name gets a token, tested in `names::triggers::claim`),
//!   or for the suffix rule the field's name itself. After a trigger the
//!   sieve reports every `=` and `:` in the rest of the string and the `:`
//!   right after its closing quote: there an assignment and a key are
//!   judged exactly as the full path judges them, through the key cache.
//!   A string holds no quote here, so a key or name holding a trigger
//!   always ends at one of those bytes; keys and names without one cannot
//!   match and are never looked at, and a value holding one costs nothing
//!   more: on the tutorial's records only `account_id` and the `*_tokens`
//!   keys are judged.
//! - **Numbers** written back otherwise are judged as before, after the
//!   pass (nothing to do under the default detectors).
//!
//! At the first byte it does not read the pass stops and the full path
//! answers from the start. Only "maybe" is answered early: a "no" waits
//! for the whole text, so what the checks assume of the text (no
//! backslash) holds wherever they look.

use std::ops::ControlFlow;

#[cfg(doc)]
use crate::names;

use super::Redactor;
use super::actions::enough_digits;
use super::assign::{separated_name, value_after};
use super::precheck::{MAX_BRACKETS, json_space};
use super::sieve::{BAIL, DETECTOR, NAME_END};

/// The last `"` in `b`, eight bytes a round from the end.
fn last_quote(b: &[u8]) -> Option<usize> {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const QUOTES: u64 = 0x2222_2222_2222_2222;
    let mut end = b.len();
    while let Some(eight) = b[..end].last_chunk::<8>() {
        // Exactly the bytes that are `"` get their top bit: a byte's top
        // bit here is set when it is not zero after the xor.
        let x = u64::from_le_bytes(*eight) ^ QUOTES;
        let quotes = !(((x & LOW7) + LOW7) | x | LOW7);
        if quotes != 0 {
            return Some(end - 1 - (quotes.leading_zeros() / 8) as usize);
        }
        end -= 8;
    }
    b[..end].iter().rposition(|&c| c == b'"')
}

/// Whether `b` holds more than [`MAX_BRACKETS`] of `{` and `[`, counted
/// without a branch a byte: 32 bytes at a time in rounds of 224 (a
/// byte-wide count holds 224), the last few bytes only if they could
/// make the difference.
pub(super) fn too_many_brackets(b: &[u8]) -> bool {
    if b.len() <= MAX_BRACKETS {
        return false;
    }
    let whole = b.len() - b.len() % 32;
    let (body, tail) = b.split_at(whole);
    let count = |bytes: &[u8]| {
        bytes
            .iter()
            .fold(0u8, |a, &c| a + u8::from(c == b'{') + u8::from(c == b'['))
    };
    let mut n = 0usize;
    for round in body.chunks(224) {
        n += usize::from(count(round));
    }
    if n + tail.len() > MAX_BRACKETS {
        n += usize::from(count(tail));
    }
    n > MAX_BRACKETS
}

impl Redactor {
    /// [`Redactor::may_redact`] in one pass, or `None` when there is no
    /// sieve or the text holds a byte it does not read.
    pub(super) fn may_redact_in_one_pass(&self, text: &str) -> Option<bool> {
        let sieve = self.sieve.as_ref()?;
        // As the full path: more brackets than MAX_BRACKETS, maybe.
        if too_many_brackets(text.as_bytes()) {
            return Some(true);
        }
        // Card numbers need digits, not a literal.
        let mut detectors_judged = false;
        if self.card.is_some() && enough_digits(text) {
            if self.detectors_fire(text) {
                return Some(true);
            }
            detectors_judged = true;
        }
        let flow = sieve.scan(text.as_bytes(), |i, flags| {
            if flags & BAIL != 0 {
                return ControlFlow::Break(None);
            }
            if flags & DETECTOR != 0 && !detectors_judged {
                detectors_judged = true;
                if self.detectors_fire(text) {
                    return ControlFlow::Break(Some(true));
                }
            }
            if flags & NAME_END != 0 && self.name_fires_at(text, i) {
                return ControlFlow::Break(Some(true));
            }
            ControlFlow::Continue(())
        });
        match flow {
            ControlFlow::Break(answer) => answer,
            ControlFlow::Continue(()) => Some(self.digit_detectors && self.renumbered_fires(text)),
        }
    }

    /// Whether the key that the `":` at `i` ends, or the assignment whose
    /// `=` or `:` is at `i`, fires a field rule, as the full path judges
    /// them.
    fn name_fires_at(&self, text: &str, i: usize) -> bool {
        let b = text.as_bytes();
        // Spaces may stand between a key and its `:` (a RawValue).
        let before = i - b[..i].iter().rev().take_while(|c| json_space(**c)).count();
        if before > 0 && b[before - 1] == b'"' {
            // A key (strings hold no quote): it starts after the quote
            // before its closing one, as the full path finds it.
            let close = before - 1;
            return match last_quote(&b[..close]) {
                Some(open) => self.key_matches_cached(&text[open + 1..close]),
                None => true,
            };
        }
        match separated_name(text, i, true) {
            Some((name, quoted)) => {
                self.key_matches_cached(name) && value_after(text, i + 1, quoted).is_some()
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
