//! The built-in detectors: regexes for shapes, and hand-written scanners
//! where a checksum decides (payment cards: Luhn; IBANs: mod 97), because a
//! regex's leftmost-longest candidate is not always the valid one
//! (`order 1234 4111 1111 1111 1111` holds a card that starts at the second
//! group).

/// E-mail addresses; Unicode letters allowed on both sides of the `@`.
pub(crate) const EMAIL: &str =
    r"[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}";

/// API key shapes. ASCII word boundaries keep the lazy DFA usable on
/// non-ASCII text.
pub(crate) const API_KEY: &str = concat!(
    r"(?-u:\b)sk-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"|(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
    r"|(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,}",
    r"|(?-u:\b)github_pat_[A-Za-z0-9_]{22,}",
    r"|(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"|(?-u:\b)AIza[A-Za-z0-9_\-]{35}",
    r"|(?-u:\b)hf_[A-Za-z0-9]{30,}",
    r"|(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
    // A key cut off before its END line is hidden to the end of the text.
    r"|-----BEGIN[A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z ]*PRIVATE KEY-----|$)",
);

/// `Bearer <token>`, any case of `bearer`; the token alphabet of RFC 6750.
pub(crate) const BEARER_TOKEN: &str = r"(?-u:\b)(?i:bearer)[ \t]+[A-Za-z0-9\-._~+/]{8,}=*";

/// A matched region of a string, in bytes, and the rule that matched it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub rule: usize,
}

/// Whether the digits pass the Luhn check.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// The separator class of a byte between two digit groups of a card
/// number: space and dash (which may mix, as people type them), dot,
/// slash, underscore.
fn card_sep(b: u8) -> Option<u8> {
    match b {
        b' ' | b'-' => Some(b' '),
        b'.' | b'/' | b'_' => Some(b),
        _ => None,
    }
}

/// Payment card numbers: within each run of digit groups joined by single
/// separators (space, dash, dot, slash, underscore), the longest
/// group-aligned window of 13 to 19 digits whose separators are of one
/// class and that passes Luhn, leftmost first. A run of more than 19
/// digits without separators is a long number, not a card.
pub(crate) fn cards(s: &str, rule: usize, out: &mut Vec<Span>) {
    let b = s.as_bytes();
    let mut i = 0;
    // (start, end) byte offsets of the digit groups of the current run,
    // and the class of the separator after each group but the last.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut seps: Vec<u8> = Vec::new();
    let mut digits: Vec<u8> = Vec::with_capacity(19);
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
            for (h, &(gs, ge)) in groups.iter().enumerate().skip(g) {
                if h > g && seps[h - 1] != seps[g] {
                    break;
                }
                // Dots, slashes and underscores also join section numbers,
                // versions, addresses and dates: there every group of a
                // card has at least three digits.
                if h > g && seps[g] != b' ' && (ge - gs < 3 || groups[g].1 - groups[g].0 < 3) {
                    break;
                }
                count += ge - gs;
                if count > 19 {
                    break;
                }
                if count >= 13 {
                    digits.clear();
                    for &(s2, e2) in &groups[g..=h] {
                        digits.extend_from_slice(&b[s2..e2]);
                    }
                    if luhn(&digits) {
                        best = Some(h);
                    }
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
}

/// IBAN length per country (the SWIFT IBAN registry).
fn iban_length(cc: [u8; 2]) -> Option<usize> {
    let n = match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FK" | b"FO" | b"GL" | b"NL" | b"SD" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"MN" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"NI" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    };
    Some(n)
}

/// Whether the IBAN characters (upper case, no spaces) pass mod 97.
pub(crate) fn iban_checksum(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let mut r: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        r = match c {
            b'0'..=b'9' => (r * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (r * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    r == 1
}

/// IBANs: a country code from the registry, two check digits, then exactly
/// the country's length in letters and digits (single spaces, dashes or
/// dots between them allowed after the first four), not followed directly
/// by another letter or digit, and mod 97.
/// Lower case is accepted.
pub(crate) fn ibans(s: &str, rule: usize, out: &mut Vec<Span>) {
    let b = s.as_bytes();
    let mut chars: Vec<u8> = Vec::with_capacity(34);
    let mut p = 0;
    while p + 15 <= b.len() {
        let starts = b[p].is_ascii_alphabetic()
            && b[p + 1].is_ascii_alphabetic()
            && b[p + 2].is_ascii_digit()
            && b[p + 3].is_ascii_digit()
            && (p == 0 || !b[p - 1].is_ascii_alphanumeric());
        let len = if starts {
            iban_length([b[p].to_ascii_uppercase(), b[p + 1].to_ascii_uppercase()])
        } else {
            None
        };
        let Some(len) = len else {
            p += 1;
            continue;
        };
        chars.clear();
        let mut q = p;
        while chars.len() < len && q < b.len() {
            if b[q].is_ascii_alphanumeric() {
                chars.push(b[q].to_ascii_uppercase());
                q += 1;
            } else if matches!(b[q], b' ' | b'-' | b'.')
                && chars.len() >= 4
                && q + 1 < b.len()
                && b[q + 1].is_ascii_alphanumeric()
            {
                q += 1;
            } else {
                break;
            }
        }
        let whole = chars.len() == len && (q == b.len() || !b[q].is_ascii_alphanumeric());
        if whole && iban_checksum(&chars) {
            out.push(Span {
                start: p,
                end: q,
                rule,
            });
            p = q;
        } else {
            p += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_texts(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        cards(s, 0, &mut out);
        out.iter().map(|sp| &s[sp.start..sp.end]).collect()
    }

    fn iban_texts(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        ibans(s, 0, &mut out);
        out.iter().map(|sp| &s[sp.start..sp.end]).collect()
    }

    #[test]
    fn luhn_accepts_test_cards_and_rejects_off_by_one() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"5500000000000004"));
        assert!(luhn(b"378282246310005"));
        assert!(luhn(b"6011111111111117"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"1234567890123456"));
    }

    #[test]
    fn cards_with_separators_and_inside_longer_runs() {
        assert_eq!(
            card_texts("pay 4111 1111 1111 1111 now"),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            card_texts("pay 4111-1111-1111-1111."),
            ["4111-1111-1111-1111"]
        );
        assert_eq!(card_texts("amex 378282246310005"), ["378282246310005"]);
        assert_eq!(
            card_texts("order 1234 4111 1111 1111 1111"),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            card_texts("4111 1111 1111 1111 5500 0000 0000 0004"),
            ["4111 1111 1111 1111", "5500 0000 0000 0004"]
        );
        assert_eq!(card_texts("card:4111111111111111;"), ["4111111111111111"]);
    }

    #[test]
    fn cards_false_positives() {
        // Fails Luhn.
        assert!(card_texts("4111 1111 1111 1112").is_empty());
        assert!(card_texts("1234567890123456").is_empty());
        // Too short, too long without separators.
        assert!(card_texts("411111111111").is_empty());
        assert!(card_texts("41111111111111111111111").is_empty());
        // Dates, phone numbers, amounts.
        assert!(card_texts("2024-01-15 12:30, +49 30 1234567, 1,024.50 EUR").is_empty());
        // Double separators break a run.
        assert!(card_texts("4111  1111  1111  1111").is_empty());
    }

    #[test]
    fn iban_mod97() {
        assert!(iban_checksum(b"DE89370400440532013000"));
        assert!(iban_checksum(b"GB82WEST12345698765432"));
        assert!(iban_checksum(b"NO9386011117947"));
        assert!(!iban_checksum(b"DE89370400440532013001"));
    }

    #[test]
    fn ibans_in_text() {
        assert_eq!(
            iban_texts("IBAN DE89 3704 0044 0532 0130 00, thanks"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            iban_texts("to GB82WEST12345698765432."),
            ["GB82WEST12345698765432"]
        );
        assert_eq!(
            iban_texts("fr1420041010050500013m02606 x"),
            ["fr1420041010050500013m02606"]
        );
        assert_eq!(iban_texts("NO9386011117947"), ["NO9386011117947"]);
    }

    #[test]
    fn iban_false_positives() {
        // Wrong check digits.
        assert!(iban_texts("DE89 3704 0044 0532 0130 01").is_empty());
        // Unknown country code.
        assert!(iban_texts("ZZ89370400440532013000").is_empty());
        // Longer than the country's length.
        assert!(iban_texts("DE893704004405320130001").is_empty());
        // Glued to a word.
        assert!(iban_texts("xDE89370400440532013000").is_empty());
        assert!(iban_texts("version AB12 of the thing, build DE12 ok").is_empty());
    }
}
