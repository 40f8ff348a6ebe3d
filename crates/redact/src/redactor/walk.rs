//! The walk over a payload: each object member's key is scanned and
//! matched against the field rules, each value walked, to [`MAX_DEPTH`].

use serde_json::{Map, Value};

use crate::config::Action;
use crate::names::{self, Tokens};
use crate::normalize;

use super::build::valid_name;
use super::{MAX_DEPTH, Redactor, Scan, UNSCANNABLE, UNSCANNABLE_ID, note};

impl Redactor {
    /// The first field rule matching `key`, or its decoded and folded
    /// view (`pa%73sword`, `pass&#119;ord`: names are normalised like
    /// values); `tokens` is scratch space.
    pub(super) fn field_rule(&self, key: &str, tokens: &mut Tokens) -> Option<usize> {
        if self.fields.is_empty() || is_mask(key) {
            return None;
        }
        let plain = self.field_rule_of(key, tokens);
        if let Some(view) = normalize::view(key) {
            let decoded = self.field_rule_of(&view.text, tokens);
            return match (plain, decoded) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        plain
    }

    fn field_rule_of(&self, key: &str, tokens: &mut Tokens) -> Option<usize> {
        // The first field, in configuration order, that matches.
        let mut best: Option<usize> = None;
        let last = key.bytes().rev().find(|b| !matches!(b, b'_' | b'-'));
        if let Some(b) = last {
            best = self.by_last[usize::from(b)]
                .iter()
                .copied()
                .find(|&i| names::suffix_matches(key, &self.fields[i].name.joined));
        }
        if key.is_ascii() && !self.key_filter.candidate(key.as_bytes()) {
            return best.map(|i| self.fields[i].rule);
        }
        tokens.split(key);
        // A field's tokens are matched at every place in the key in one
        // try, so a first token that comes back tries nothing new: a key of
        // one word repeated would cost its number of tokens squared. By
        // the first field of each list (each field is in one list only).
        let mut tried: Vec<usize> = Vec::new();
        for t in tokens.iter() {
            if !t
                .as_bytes()
                .first()
                .is_some_and(|&b| self.first_byte[usize::from(b)])
            {
                continue;
            }
            let Some(candidates) = self.by_first.get(t) else {
                continue;
            };
            match candidates.first() {
                Some(first) if !tried.contains(first) => tried.push(*first),
                _ => continue,
            }
            for &i in candidates {
                if best.is_some_and(|b| b <= i) {
                    break;
                }
                #[cfg(test)]
                TRIED.with(|n| n.set(n.get() + 1));
                if self.fields[i].name.matches_tokens(tokens) {
                    best = Some(i);
                    break;
                }
            }
        }
        best.map(|i| self.fields[i].rule)
    }

    /// Returns false when the value must be dropped by its parent.
    /// `nest` counts the strings holding JSON text this value lies in.
    pub(super) fn walk(
        &self,
        v: &mut Value,
        depth: usize,
        nest: usize,
        fired: &mut Vec<usize>,
    ) -> bool {
        match v {
            Value::String(s) => {
                if nest < MAX_NESTED_JSON
                    && let Some(mut inner) = parse_json_text(s)
                {
                    // Tool arguments and results travel as JSON text in a
                    // string (OpenAI's `function.arguments`, a `tool`
                    // message's `content`): redacted with the same rules as
                    // an object, written back only when something fired.
                    let mut local = Vec::new();
                    self.walk(&mut inner, depth + 1, nest + 1, &mut local);
                    if !local.is_empty() {
                        for rule in local {
                            note(fired, rule);
                        }
                        // Serialising a `Value` does not fail; were it to,
                        // the text is hidden whole rather than kept.
                        *s = serde_json::to_string(&inner)
                            .unwrap_or_else(|_| format!("[REDACTED:{UNSCANNABLE}]"));
                        return true;
                    }
                    // Nothing fired in the parsed value, but the text is kept,
                    // and the value need not hold all of it: a member shadowed
                    // by a later one of the same key, digits past a float's
                    // precision. The text is scanned as text too.
                }
                match self.scan(s, fired) {
                    Scan::Unchanged => true,
                    Scan::Replaced(new) => {
                        *s = new;
                        true
                    }
                    Scan::Drop => false,
                }
            }
            Value::Number(n) => {
                if self.regexes.is_empty() && self.card.is_none() && self.iban.is_none() {
                    return true;
                }
                let text = n.to_string();
                match self.scan_whole(&text, fired) {
                    Scan::Unchanged => true,
                    Scan::Replaced(new) => {
                        *v = Value::String(new);
                        true
                    }
                    Scan::Drop => false,
                }
            }
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    return self.unscannable(v, fired);
                }
                for item in items.iter_mut() {
                    if !self.walk(item, depth + 1, nest, fired) {
                        // Keep positions: a dropped element becomes null.
                        *item = Value::Null;
                    }
                }
                true
            }
            Value::Object(map) => {
                if depth >= MAX_DEPTH {
                    return self.unscannable(v, fired);
                }
                self.walk_object(map, depth, nest, fired);
                true
            }
            Value::Null | Value::Bool(_) => true,
        }
    }

    fn unscannable(&self, v: &mut Value, fired: &mut Vec<usize>) -> bool {
        note(fired, UNSCANNABLE_ID);
        *v = Value::String(format!("[REDACTED:{UNSCANNABLE}]"));
        true
    }

    fn walk_object(
        &self,
        map: &mut Map<String, Value>,
        depth: usize,
        nest: usize,
        fired: &mut Vec<usize>,
    ) {
        let mut renames: Vec<(String, String)> = Vec::new();
        let mut tokens = Tokens::new();
        map.retain(|key, value| {
            // The key first: a secret-named key can itself be a secret
            // (`"Bearer abc…": 1`).
            match self.scan(key, fired) {
                Scan::Unchanged => {}
                Scan::Drop => return false,
                Scan::Replaced(new) => renames.push((key.clone(), new)),
            }
            if let Some(rule) = self.field_rule(key, &mut tokens) {
                if value.is_null() {
                    // Nothing to hide; a mask would suggest a secret existed.
                    return true;
                }
                note(fired, rule);
                if self.rules[rule].action == Action::Drop {
                    return false;
                }
                *value = self.replace_whole(rule, value);
                return true;
            }
            self.walk(value, depth + 1, nest, fired)
        });
        for (old, new) in renames {
            if let Some(value) = map.remove(&old) {
                let mut name = new.clone();
                let mut n = 2;
                while map.contains_key(&name) {
                    name = format!("{new}#{n}");
                    n += 1;
                }
                map.insert(name, value);
            }
        }
    }
}

/// Longest string parsed as JSON text; longer ones are scanned as text.
const MAX_JSON_TEXT: usize = 1 << 20;

/// Strings holding JSON text holding strings holding JSON text…: levels
/// parsed; deeper ones are scanned as text.
pub(super) const MAX_NESTED_JSON: usize = 4;

/// The JSON object or array a string's text is (after trimming), if it is
/// one and not too long. Checked on its first and last bytes first, so
/// most strings cost two comparisons.
fn parse_json_text(s: &str) -> Option<Value> {
    let t = s.trim();
    let (first, last) = (*t.as_bytes().first()?, *t.as_bytes().last()?);
    if t.len() < 2
        || t.len() > MAX_JSON_TEXT
        || !matches!((first, last), (b'{', b'}') | (b'[', b']'))
    {
        return None;
    }
    serde_json::from_str(t).ok()
}

/// Whether `key` is a mask this crate wrote for a key (`[REDACTED:iban]`,
/// `[REDACTED:email]#2`): its rule name is not a field name.
fn is_mask(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("[REDACTED:") else {
        return false;
    };
    let Some(close) = rest.find(']') else {
        return false;
    };
    let (name, tail) = (&rest[..close], &rest[close + 1..]);
    valid_name(name)
        && (tail.is_empty()
            || tail
                .strip_prefix('#')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

#[cfg(test)]
thread_local! {
    /// Field names tried against a key's tokens on this thread (each try
    /// reads every token of the key).
    static TRIED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::TRIED;
    use crate::config::{RedactionConfig, RuleConfig};
    use crate::names::Tokens;
    use crate::redactor::Redactor;

    /// A key of one word repeated (`max_tokens_max_tokens_…`, adversarial
    /// model output) tries each field once, not once for each time its
    /// first token comes back: a field's tokens are matched at every place
    /// in the key in one try, so a 1 MiB key of `max_tokens_` (95,000
    /// tokens) took about 100 s (its number of tokens squared).
    #[test]
    fn a_repeated_word_tries_each_field_once() {
        let r = Redactor::from_config(&RedactionConfig {
            rules: vec![RuleConfig {
                name: "mine".into(),
                pattern: None,
                fields: Some(vec!["max_size".into(), "customer_name".into()]),
                action: None,
            }],
            ..RedactionConfig::default()
        })
        .unwrap();
        let fields = r.fields.len();
        for word in [
            "max_tokens_",
            "secret_name_",
            "max_customer_",
            "password_length_",
        ] {
            let key = word.repeat(2000);
            TRIED.with(|n| n.set(0));
            let _ = r.field_rule(&key, &mut Tokens::new());
            let tried = TRIED.with(std::cell::Cell::get);
            assert!(tried <= fields, "{word}: {tried} tries for {fields} fields");
        }
    }
}
