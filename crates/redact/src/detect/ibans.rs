//! IBANs: a registry country code, its exact length, mod 97.

use super::Span;

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

/// A byte that may stand alone between the characters of an IBAN: what
/// people type (space, dash, dot, slash, underscore) and what lists, CSV
/// and log lines put between fields (tab, newline, comma, pipe, colon,
/// tilde).
fn iban_sep(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'-' | b'.' | b'/' | b'_' | b'\t' | b'\n' | b',' | b'|' | b':' | b'~'
    )
}

/// IBANs: a country code from the registry, two check digits, then exactly
/// the country's length in letters and digits (single separators between
/// them allowed after the country code: `DE 89 3704…`), not followed
/// directly by another letter or digit, and mod 97.
/// Lower case is accepted.
pub(crate) fn ibans(s: &str, rule: usize, out: &mut Vec<Span>) {
    let b = s.as_bytes();
    let mut chars: Vec<u8> = Vec::with_capacity(34);
    let mut p = 0;
    while p + 15 <= b.len() {
        let starts = b[p].is_ascii_alphabetic()
            && b[p + 1].is_ascii_alphabetic()
            && (b[p + 2].is_ascii_digit() || (iban_sep(b[p + 2]) && b[p + 3].is_ascii_digit()))
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
            } else if iban_sep(b[q])
                && chars.len() >= 2
                && q + 1 < b.len()
                && b[q + 1].is_ascii_alphanumeric()
            {
                q += 1;
            } else {
                break;
            }
        }
        let whole = chars.len() == len
            && chars[2].is_ascii_digit()
            && chars[3].is_ascii_digit()
            && (q == b.len() || !b[q].is_ascii_alphanumeric());
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
