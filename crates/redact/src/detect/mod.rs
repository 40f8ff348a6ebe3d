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
    // `_` before `sk-` too: ids such as `call_sk-…` hold keys (the `_`
    // is hidden with the key; a regex cannot look behind).
    r"(?:(?-u:\b)|_)sk-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"|(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
    r"|(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,}",
    r"|(?-u:\b)github_pat_[A-Za-z0-9_]{22,}",
    r"|(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"|(?-u:\b)AIza[A-Za-z0-9_\-]{35}",
    r"|(?-u:\b)hf_[A-Za-z0-9]{30,}",
    r"|(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
    r"|(?-u:\b)npm_[A-Za-z0-9]{36}",
    r"|(?-u:\b)pypi-[A-Za-z0-9_\-]{50,}",
    r"|(?-u:\b)shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}",
    r"|(?-u:\b)do[por]_v1_[a-f0-9]{64}",
    r"|(?-u:\b)SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    // Azure storage and service bus connection strings.
    r"|(?-u:\b)(?:AccountKey|SharedAccessKey)=[A-Za-z0-9+/]{20,}={0,2}",
    // An AWS secret access key has no prefix of its own: 40 base64
    // characters after a name that says what they are.
    r#"|(?:aws|AWS|Aws)_?(?:secret|SECRET|Secret)(?:_?(?:access|ACCESS|Access))?(?:_?(?:key|KEY|Key))?["']?[ \t]*[:=]?[ \t]*["']?[A-Za-z0-9/+]{40}"#,
    // PEM and PGP private key blocks; a key cut off before its END line is
    // hidden to the end of the text.
    r"|-----BEGIN[A-Z ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z ]*PRIVATE KEY(?: BLOCK)?-----|$)",
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

/// Whether the digits pass the Luhn check (the card scanner keeps the sum
/// up to date as it goes; this is the reference it is tested against).
#[cfg(test)]
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

mod cards;
mod ibans;
mod secrets;

pub(crate) use cards::cards;
#[cfg(test)]
use ibans::iban_checksum;
pub(crate) use ibans::ibans;
pub(crate) use secrets::{basic_auth, url_passwords};

#[cfg(test)]
mod tests {
    use super::*;
    use cards::card_work;

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
    fn cards_with_the_separators_of_lists_and_logs() {
        for sep in ["\t", "\n", ",", "|", ":", "~"] {
            let s = format!("x 4111{sep}1111{sep}1111{sep}1111 y");
            assert_eq!(card_texts(&s), [&s[2..s.len() - 2]], "{s:?}");
        }
        // Times, thousands and short lists are not cards.
        assert!(card_texts("10:00:00, 1,234,567, 1|2|3").is_empty());
        assert!(card_texts("12:34:56:78:90:12:34").is_empty());
    }

    /// Review of issue 10: `1-1-1-…` cost 19 × 19 steps a group (100 KB
    /// took seconds, 1.6 MB over a minute in a debug build). The work is
    /// now bounded by a constant a digit, counted rather than timed.
    #[test]
    fn card_work_is_linear_in_the_text() {
        for unit in ["1-", "1 ", "12 ", "1.", "4111 "] {
            let s = unit.repeat((1 << 20) / unit.len());
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            let work = card_work(&s);
            assert!(
                work <= 40 * digits,
                "{unit:?}: {work} steps for {digits} digits"
            );
        }
    }

    /// The running Luhn sum agrees with the reference on every window.
    #[test]
    fn running_luhn_agrees_with_the_reference() {
        let s = "4111 1111 1111 1111 5500 0000 0000 0004 378282246310005 1234 5678 9012 3456";
        let mut out = Vec::new();
        cards(s, 0, &mut out);
        for sp in &out {
            let d: Vec<u8> = s[sp.start..sp.end]
                .bytes()
                .filter(u8::is_ascii_digit)
                .collect();
            assert!(luhn(&d));
        }
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn ibans_with_other_separators_and_a_space_after_the_country() {
        for sep in ["\t", "\n", ",", "|", ":", "~", "/", "_"] {
            let s = ["DE89", "3704", "0044", "0532", "0130", "00"].join(sep);
            assert_eq!(iban_texts(&s), [s.as_str()], "{s:?}");
        }
        assert_eq!(
            iban_texts("IBAN: DE 89 3704 0044 0532 0130 00."),
            ["DE 89 3704 0044 0532 0130 00"]
        );
        assert!(iban_texts("DE 12 of 34, at 12:30, 14:45").is_empty());
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
