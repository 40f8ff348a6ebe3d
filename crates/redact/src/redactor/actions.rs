//! What happens to matched text: every match in a string found (in the
//! string and in its normalised view), overlaps merged, and each stretch
//! masked, hashed to a pseudonym or, for `drop`, the value dropped.

use hmac::Mac;
use serde_json::Value;

use crate::config::Action;
use crate::detect::{self, Span};
use crate::normalize;

use super::{Norm, Redactor, note};

pub(super) enum Scan {
    Unchanged,
    Replaced(String),
    Drop,
}

impl Redactor {
    /// The pseudonym `hash` writes for `text` under rule `rule`'s
    /// normalisation; `None` without a key.
    fn pseudonym(&self, text: &str, norm: Norm) -> Option<String> {
        let mut mac = self.key.clone()?;
        match norm {
            Norm::Exact => mac.update(text.as_bytes()),
            Norm::Lower => mac.update(text.to_lowercase().as_bytes()),
            Norm::Digits => {
                let d: Vec<u8> = text.bytes().filter(u8::is_ascii_digit).collect();
                mac.update(&d);
            }
            Norm::AlnumUpper => {
                let d: Vec<u8> = text
                    .bytes()
                    .filter(u8::is_ascii_alphanumeric)
                    .map(|b| b.to_ascii_uppercase())
                    .collect();
                mac.update(&d);
            }
        }
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(21);
        out.push_str("hmac:");
        out.push_str(&hex::encode(&tag[..8]));
        Some(out)
    }

    /// What replaces a whole value under `rule` (mask or hash; `drop` is
    /// handled by the caller). Without a key, masks: never fail open.
    pub(super) fn replace_whole(&self, rule: usize, value: &Value) -> Value {
        let r = &self.rules[rule];
        if r.action == Action::Hash {
            let text = match value {
                Value::String(s) => Some(s.clone()),
                other => serde_json::to_string(other).ok(),
            };
            if let Some(p) = text.and_then(|t| self.pseudonym(&t, r.norm)) {
                return Value::String(p);
            }
        }
        Value::String(r.mask.clone())
    }

    /// Every match of the patterns and detectors in `s`.
    fn find(&self, s: &str, spans: &mut Vec<Span>) {
        for (rule, re) in &self.regexes {
            for m in re.find_iter(s) {
                if !m.is_empty() {
                    spans.push(Span {
                        start: m.start(),
                        end: m.end(),
                        rule: *rule,
                    });
                }
            }
        }
        if let Some(rule) = self.card
            && enough_digits(s)
        {
            detect::cards(s, rule, spans);
        }
        if let Some(rule) = self.iban
            && s.len() >= 15
        {
            detect::ibans(s, rule, spans);
        }
        self.secret_shapes(s, spans);
        self.assignments(s, false, spans);
    }

    /// The secret shapes a regex cannot confirm (Basic credentials,
    /// passwords in URLs).
    pub(super) fn secret_shapes(&self, s: &str, spans: &mut Vec<Span>) {
        if let Some(rule) = self.bearer {
            detect::basic_auth(s, rule, spans);
        }
        if let Some(rule) = self.api {
            detect::url_passwords(s, rule, spans);
        }
    }

    /// Every match in `s`, and in its normalised view (mapped back to the
    /// original text it came from), overlaps merged so that no part of any
    /// match survives, each stretch with the strongest action of the rules
    /// involved; the rules are noted in `fired`.
    fn merged(&self, s: &str, fired: &mut Vec<usize>) -> Vec<(Span, Action)> {
        let mut spans: Vec<Span> = Vec::new();
        self.find(s, &mut spans);
        if let Some(view) = normalize::view(s) {
            let mut seen = Vec::new();
            self.find(&view.text, &mut seen);
            for sp in seen {
                let (start, end) = view.original(sp.start, sp.end);
                if end > start {
                    spans.push(Span {
                        start,
                        end,
                        rule: sp.rule,
                    });
                }
            }
        }
        if spans.is_empty() {
            return Vec::new();
        }
        // Ties go to the rule listed first, so the mask does not depend on
        // the order the scanners ran in.
        spans.sort_unstable_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(a.rule.cmp(&b.rule))
        });
        let mut merged: Vec<(Span, Action)> = Vec::with_capacity(spans.len());
        for sp in spans {
            note(fired, sp.rule);
            let action = self.rules[sp.rule].action;
            match merged.last_mut() {
                Some((last, act)) if sp.start < last.end => {
                    last.end = last.end.max(sp.end);
                    if strength(action) > strength(*act) {
                        *act = action;
                    }
                }
                _ => merged.push((sp, action)),
            }
        }
        merged
    }

    /// What replaces the matched text `s[sp]`: its pseudonym under `hash`
    /// (of its normalised view: `alice%40example.com` and
    /// `alice@example.com` are one pseudonym), else the rule's mask.
    fn replacement(&self, s: &str, sp: Span, action: Action) -> String {
        let rule = &self.rules[sp.rule];
        let pseudonym = match action {
            Action::Hash => {
                let matched = &s[sp.start..sp.end];
                match normalize::view(matched) {
                    Some(v) => self.pseudonym(&v.text, rule.norm),
                    None => self.pseudonym(matched, rule.norm),
                }
            }
            _ => None,
        };
        pseudonym.unwrap_or_else(|| rule.mask.clone())
    }

    /// Finds every match in `s` and builds the redacted text.
    pub(super) fn scan(&self, s: &str, fired: &mut Vec<usize>) -> Scan {
        let merged = self.merged(s, fired);
        if merged.is_empty() {
            return Scan::Unchanged;
        }
        if merged.iter().any(|(_, a)| *a == Action::Drop) {
            return Scan::Drop;
        }
        let mut out = String::with_capacity(s.len() + 16 * merged.len());
        let mut at = 0;
        for (sp, action) in merged {
            out.push_str(&s[at..sp.start]);
            out.push_str(&self.replacement(s, sp, action));
            at = sp.end;
        }
        out.push_str(&s[at..]);
        Scan::Replaced(out)
    }

    /// Like [`Redactor::scan`] for a number's JSON text, which is one
    /// value: a match anywhere replaces all of it (`4111111111111111.0`
    /// must not become a mask followed by `.0`).
    pub(super) fn scan_whole(&self, s: &str, fired: &mut Vec<usize>) -> Scan {
        let merged = self.merged(s, fired);
        if merged.iter().any(|(_, a)| *a == Action::Drop) {
            return Scan::Drop;
        }
        match merged.first() {
            None => Scan::Unchanged,
            Some(&(sp, action)) => Scan::Replaced(self.replacement(s, sp, action)),
        }
    }
}

/// Whether `s` holds the 13 digits a card number needs, stopping early.
pub(super) fn enough_digits(s: &str) -> bool {
    s.len() >= 13 && s.bytes().filter(u8::is_ascii_digit).nth(12).is_some()
}

fn strength(a: Action) -> u8 {
    match a {
        Action::Hash => 0,
        Action::Mask => 1,
        Action::Drop => 2,
    }
}
