//! Payment card numbers: digit groups joined by single separators, Luhn.

use super::Span;

/// Most digits in a card number.
const MAX_DIGITS: usize = 19;
/// Fewest digits in a card number.
const MIN_DIGITS: usize = 13;

/// The separator class of a byte between two digit groups of a card
/// number: space, tab and dash (which may mix, as people type them), and
/// each of the others on its own (dot, slash, underscore, newline, comma,
/// pipe, colon, tilde: what lists, CSV and log lines put between fields).
fn card_sep(b: u8) -> Option<u8> {
    match b {
        b' ' | b'-' | b'\t' => Some(b' '),
        b'.' | b'/' | b'_' | b'\n' | b',' | b'|' | b':' | b'~' => Some(b),
        _ => None,
    }
}

/// Luhn's doubled digit.
fn doubled(d: u32) -> u32 {
    if d > 4 { 2 * d - 9 } else { 2 * d }
}

/// Payment card numbers: within each run of digit groups joined by single
/// separators, the longest group-aligned window of 13 to 19 digits whose
/// separators are of one class and that passes Luhn, leftmost first. A
/// run of more than 19 digits without separators is a long number, not a
/// card.
pub(crate) fn cards(s: &str, rule: usize, out: &mut Vec<Span>) {
    cards_counted(s, rule, out);
}

/// [`cards`], returning the work done: digits and groups visited. Each
/// window starts at a group and ends within 19 digits (so within 19
/// groups), and its Luhn sum is kept up to date digit by digit rather
/// than recomputed, so the work is at most about 40 steps a digit
/// whatever the text (`1-1-1-…` was 19 × 19 a group).
pub(crate) fn cards_counted(s: &str, rule: usize, out: &mut Vec<Span>) -> usize {
    let b = s.as_bytes();
    let mut work = 0;
    let mut i = 0;
    // (start, end) byte offsets of the digit groups of the current run,
    // and the class of the separator after each group but the last.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut seps: Vec<u8> = Vec::new();
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        groups.clear();
        seps.clear();
        loop {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            groups.push((start, i));
            match b.get(i).copied().and_then(card_sep) {
                Some(class) if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    seps.push(class);
                    i += 1;
                }
                _ => break,
            }
        }
        let mut g = 0;
        while g < groups.len() {
            let mut best = None;
            let mut count = 0;
            // Luhn sums of the digits so far with the last one not doubled
            // (`plain`) and doubled (`shifted`): appending a digit swaps
            // their roles.
            let (mut plain, mut shifted) = (0u32, 0u32);
            for (h, &(gs, ge)) in groups.iter().enumerate().skip(g) {
                work += 1;
                if h > g && seps[h - 1] != seps[g] {
                    break;
                }
                // Other separators than spaces and dashes also join section
                // numbers, versions, addresses, times and lists: there
                // every group of a card has at least three digits.
                if h > g && seps[g] != b' ' && (ge - gs < 3 || groups[g].1 - groups[g].0 < 3) {
                    break;
                }
                count += ge - gs;
                if count > MAX_DIGITS {
                    break;
                }
                for &d in &b[gs..ge] {
                    work += 1;
                    let d = u32::from(d - b'0');
                    (plain, shifted) = (shifted + d, plain + doubled(d));
                }
                if count >= MIN_DIGITS && plain.is_multiple_of(10) {
                    best = Some(h);
                }
            }
            match best {
                Some(h) => {
                    out.push(Span {
                        start: groups[g].0,
                        end: groups[h].1,
                        rule,
                    });
                    g = h + 1;
                }
                None => g += 1,
            }
        }
    }
    work
}

/// The work [`cards_counted`] does on `s`.
#[cfg(test)]
pub(crate) fn card_work(s: &str) -> usize {
    cards_counted(s, 0, &mut Vec::new())
}
