//! The compiled rules and the walk over a payload.

use agent_audit_core::{IdRewrite, PayloadFilter};
use hmac::{Hmac, Mac};
use regex::Regex;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::config::{Action, DEFAULT_FIELDS, Detector, RedactionConfig};
use crate::detect::{self, Span};
use crate::error::RedactError;
use crate::names::{self, FieldName, Tokens};
use crate::normalize;

/// Deepest nesting scanned. serde_json refuses deeper JSON text, so only a
/// value built in code can exceed it; what lies below is masked whole.
pub const MAX_DEPTH: usize = 128;

/// Rule name reported when a value could not be scanned and was masked
/// whole (nesting deeper than [`MAX_DEPTH`]).
pub const UNSCANNABLE: &str = "unscannable";

/// Shortest accepted `hash` key, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

const UNSCANNABLE_ID: usize = usize::MAX;

/// How matched text is normalised before hashing, so that one value written
/// two ways gets one pseudonym.
#[derive(Clone, Copy, Debug)]
enum Norm {
    /// As matched.
    Exact,
    /// Lower case (e-mail addresses).
    Lower,
    /// Digits only (card numbers).
    Digits,
    /// Letters and digits, upper case (IBANs).
    AlnumUpper,
}

#[derive(Debug)]
struct Rule {
    name: String,
    action: Action,
    mask: String,
    norm: Norm,
}

#[derive(Debug)]
struct FieldRule {
    name: FieldName,
    rule: usize,
}

/// Applies a [`RedactionConfig`] to payloads. Build it once at start with
/// [`Redactor::from_config`] and hand it to the dispatcher as its
/// [`PayloadFilter`]; it is `Send + Sync` and shares nothing mutable.
///
/// For each object member, in order: a field rule whose name matches the
/// key redacts the whole value; otherwise the key is scanned (a key can be
/// an e-mail address) and the value walked. Strings, and numbers as their
/// JSON text, are scanned by the pattern rules and detectors; overlapping
/// matches are merged and take the strongest action of the rules involved
/// (`drop` over `mask` over `hash`).
pub struct Redactor {
    rules: Vec<Rule>,
    fields: Vec<FieldRule>,
    /// Each regex on its own: one alternation of them all would lose the
    /// literal prefilters (`sk-`, `AKIA`, `bearer`) that let most text be
    /// skipped without running an automaton (measured: 10x slower).
    regexes: Vec<(usize, Regex)>,
    card: Option<usize>,
    iban: Option<usize>,
    key: Option<Hmac<Sha256>>,
    /// Field indices by the first canonical token of their name, in
    /// order: only these can match a key holding that token.
    by_first: std::collections::HashMap<String, Vec<usize>>,
    /// First bytes of the keys of `by_first`: most tokens need no lookup.
    first_byte: [bool; 256],
    /// Rules out most ASCII keys that cannot hold one of the keys of
    /// `by_first` among their tokens ([`names::triggers`]) before they are
    /// split.
    key_filter: names::KeyFilter,
    /// Field indices by the last byte (either ASCII case) of their name
    /// without `_` and `-`, in order: the suffix rule's candidates.
    by_last: Vec<Vec<usize>>,
    /// A custom pattern uses `^`, `$`, `\A` or `\z`, which match at a
    /// string's edges but not inside a payload's JSON text, so
    /// [`Redactor::may_redact`] cannot rule anything out.
    anchored: bool,
    /// Finds `":`, the end of every key in compact JSON text.
    key_end: memchr::memmem::Finder<'static>,
    /// Tells this redactor's entries in the thread-local key cache apart.
    id: u64,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Redactor")
            .field("rules", &self.rule_names())
            .field("hash_key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

thread_local! {
    /// Reused by the pre-check, which runs on every record: splitting keys
    /// then allocates nothing.
    static SCRATCH: std::cell::RefCell<Tokens> = std::cell::RefCell::new(Tokens::new());
    /// The pre-check's answers per key, for the redactor whose id is first:
    /// records of one schema repeat their keys, so most keys are looked up,
    /// not split. Bounded: cleared when full.
    static KEY_CACHE: std::cell::RefCell<(u64, std::collections::HashMap<Box<str>, bool>)> =
        std::cell::RefCell::new((0, std::collections::HashMap::new()));
}

/// Entries in a thread's key cache before it is cleared.
const KEY_CACHE_ENTRIES: usize = 4096;
/// Longer keys are not cached.
const KEY_CACHE_KEY_BYTES: usize = 64;

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What [`Redactor::redact_id`] did to an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdOutcome {
    /// No rule fired: keep the id.
    Unchanged,
    /// Write this id instead.
    Replaced {
        /// The masked or hashed id.
        id: String,
        /// The rules that fired.
        rules: Vec<String>,
    },
    /// A `drop` rule fired: record no id.
    Dropped {
        /// The rules that fired.
        rules: Vec<String>,
    },
}

enum Scan {
    Unchanged,
    Replaced(String),
    Drop,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The canonical tokens of the built-in secret names.
fn builtin_names() -> Vec<Vec<String>> {
    let mut t = Tokens::default();
    DEFAULT_FIELDS
        .iter()
        .map(|f| {
            t.split(f);
            t.iter().map(str::to_string).collect()
        })
        .collect()
}

fn compile_field(field: &str, builtin: &[Vec<String>]) -> Result<FieldName, RedactError> {
    FieldName::new(field, builtin).ok_or_else(|| RedactError::BadField {
        field: field.to_string(),
    })
}

impl Redactor {
    /// Compiles `config`, reading the `hash` key (when some rule hashes)
    /// from the environment variable `config.key_env()`.
    pub fn from_config(config: &RedactionConfig) -> Result<Redactor, RedactError> {
        Redactor::from_config_with_env(config, |name| std::env::var_os(name))
    }

    /// Like [`Redactor::from_config`], with `env` standing in for the
    /// process environment (tests, or a secret store).
    pub fn from_config_with_env(
        config: &RedactionConfig,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Redactor, RedactError> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut fields = Vec::new();
        let mut regexes = Vec::new();
        let mut card = None;
        let mut iban = None;
        let mut seen = std::collections::HashSet::new();
        let mut anchored = false;
        let builtin = builtin_names();
        let add = |rules: &mut Vec<Rule>, name: &str, action: Action, norm: Norm| {
            rules.push(Rule {
                name: name.to_string(),
                action,
                mask: format!("[REDACTED:{name}]"),
                norm,
            });
            rules.len() - 1
        };

        // Custom rules first: a user's rule wins over a built-in on the same key.
        for r in &config.rules {
            if !valid_name(&r.name) {
                return Err(RedactError::BadName {
                    rule: r.name.clone(),
                    problem: "use letters, digits, `_`, `-` or `.` only",
                });
            }
            if Detector::ALL.iter().any(|d| d.name() == r.name) || !seen.insert(r.name.clone()) {
                return Err(RedactError::BadName {
                    rule: r.name.clone(),
                    problem: "used twice (detector names included)",
                });
            }
            let action = r.action.unwrap_or(config.action);
            match (&r.pattern, &r.fields) {
                (Some(pattern), None) => {
                    let re = Regex::new(pattern).map_err(|e| RedactError::BadPattern {
                        rule: r.name.clone(),
                        source: Box::new(e),
                    })?;
                    anchored |= has_anchor(pattern);
                    let id = add(&mut rules, &r.name, action, Norm::Exact);
                    regexes.push((id, re));
                }
                (None, Some(names)) => {
                    if names.is_empty() {
                        return Err(RedactError::RuleShape {
                            rule: r.name.clone(),
                            problem: "`fields` is empty",
                        });
                    }
                    let id = add(&mut rules, &r.name, action, Norm::Exact);
                    for f in names {
                        fields.push(FieldRule {
                            name: compile_field(f, &builtin)?,
                            rule: id,
                        });
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(RedactError::RuleShape {
                        rule: r.name.clone(),
                        problem: "has both `pattern` and `fields`; give one",
                    });
                }
                (None, None) => {
                    return Err(RedactError::RuleShape {
                        rule: r.name.clone(),
                        problem: "needs `pattern` or `fields`",
                    });
                }
            }
        }
        let mut global_fields: Vec<Vec<String>> = Vec::new();
        for f in &config.fields {
            let name = compile_field(f, &builtin)?;
            if global_fields.contains(&name.tokens) {
                continue;
            }
            global_fields.push(name.tokens.clone());
            let id = add(&mut rules, f, config.action, Norm::Exact);
            fields.push(FieldRule { name, rule: id });
        }
        let mut detectors: Vec<Detector> = Vec::new();
        for d in &config.detectors {
            if !detectors.contains(d) {
                detectors.push(*d);
            }
        }
        for d in detectors {
            let (pattern, norm) = match d {
                Detector::Email => (Some(detect::EMAIL), Norm::Lower),
                Detector::ApiKey => (Some(detect::API_KEY), Norm::Exact),
                Detector::BearerToken => (Some(detect::BEARER_TOKEN), Norm::Exact),
                Detector::PaymentCard => (None, Norm::Digits),
                Detector::Iban => (None, Norm::AlnumUpper),
            };
            let id = add(&mut rules, d.name(), config.action, norm);
            match (d, pattern) {
                (_, Some(p)) => {
                    let re = Regex::new(p).map_err(|e| RedactError::BadPattern {
                        rule: d.name().to_string(),
                        source: Box::new(e),
                    })?;
                    regexes.push((id, re));
                }
                (Detector::PaymentCard, None) => card = Some(id),
                (_, None) => iban = Some(id),
            }
        }

        let hashing: Vec<String> = rules
            .iter()
            .filter(|r| r.action == Action::Hash)
            .map(|r| r.name.clone())
            .collect();
        let key = if hashing.is_empty() {
            None
        } else {
            let var = config.key_env().to_string();
            let bytes = env(&var)
                .map(|v| v.into_encoded_bytes())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| RedactError::MissingKey {
                    var: var.clone(),
                    rules: hashing,
                })?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(RedactError::KeyTooShort {
                    var,
                    len: bytes.len(),
                    min: MIN_KEY_BYTES,
                });
            }
            // HMAC takes keys of any length; this cannot fail.
            Hmac::<Sha256>::new_from_slice(&bytes).ok()
        };

        let mut by_last: Vec<Vec<usize>> = vec![Vec::new(); 256];
        let mut first_byte = [false; 256];
        let mut by_first: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            if let Some(&b) = f.name.joined.last() {
                by_last[usize::from(b)].push(i);
                if b.to_ascii_uppercase() != b {
                    by_last[usize::from(b.to_ascii_uppercase())].push(i);
                }
            }
            if let Some(t) = f.name.tokens.first() {
                if let Some(&b) = t.as_bytes().first() {
                    first_byte[usize::from(b)] = true;
                }
                by_first.entry(t.clone()).or_default().push(i);
            }
        }
        let key_filter =
            names::KeyFilter::new(&names::triggers(by_first.keys().map(String::as_str)));
        Ok(Redactor {
            rules,
            fields,
            regexes,
            card,
            iban,
            key,
            key_filter,
            by_first,
            first_byte,
            by_last,
            anchored,
            key_end: memchr::memmem::Finder::new(b"\":"),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Names of every rule, in the order they are tried.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// Whether no rule is configured (`fields = []`, `detectors = []`, no
    /// rules): the dispatcher can then run without a filter.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether [`Redactor::redact`] could change the payload whose compact
    /// JSON text (as `serde_json` writes it) is `payload_json`. `false` is a
    /// promise: no rule would fire, so the caller may keep the text and skip
    /// building a `serde_json::Value` (the costly part of filtering).
    ///
    /// It runs the same detectors once over the whole text (escapes
    /// decoded), where every string, key and number appears with a
    /// non-word character (`"`, `:`, `,`) on each side, so whatever matches
    /// inside one of them also matches here; a key matching a field rule
    /// shows as that name before `":`. Too many brackets for
    /// [`MAX_DEPTH`], an unparsable escape or an anchored custom pattern
    /// answer `true`.
    pub fn may_redact(&self, payload_json: &str) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        if self.anchored {
            return true;
        }
        let bytes = payload_json.as_bytes();
        if memchr::memchr2_iter(b'{', b'[', bytes)
            .nth(MAX_DEPTH)
            .is_some()
        {
            return true;
        }
        if !self.fields.is_empty() && self.field_key_in(payload_json) {
            return true;
        }
        let decoded;
        let text = if memchr::memchr(b'\\', bytes).is_some() {
            match decode_escapes(payload_json) {
                Some(d) => {
                    decoded = d;
                    decoded.as_str()
                }
                None => return true,
            }
        } else {
            payload_json
        };
        if self.detects(text) {
            return true;
        }
        // The normalised view of the whole text holds the view of every
        // string in it, still between quotes: no encoding or fold spans a
        // `"`.
        normalize::view(text).is_some_and(|v| self.detects(&v.text))
    }

    /// Whether some detector or pattern matches somewhere in `text`.
    fn detects(&self, text: &str) -> bool {
        if self.regexes.iter().any(|(_, re)| re.is_match(text)) {
            return true;
        }
        let mut spans = Vec::new();
        if let Some(rule) = self.card
            && enough_digits(text)
        {
            detect::cards(text, rule, &mut spans);
        }
        if let Some(rule) = self.iban
            && text.len() >= 15
        {
            detect::ibans(text, rule, &mut spans);
        }
        !spans.is_empty()
    }

    /// Whether some key of the compact JSON text `json` matches a field
    /// rule. Keys are found on the raw text, where a key's closing quote
    /// is the unescaped `"` before `:` and its opening quote the unescaped
    /// `"` before that, so a key with an escaped quote is whole.
    fn field_key_in(&self, json: &str) -> bool {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut tokens) => self.field_key_in_with(json, &mut tokens),
            Err(_) => self.field_key_in_with(json, &mut Tokens::new()),
        })
    }

    fn field_key_in_with(&self, json: &str, tokens: &mut Tokens) -> bool {
        let b = json.as_bytes();
        for at in self.key_end.find_iter(b) {
            if escaped(b, at) {
                continue;
            }
            let mut p = at;
            let start = loop {
                match memchr::memrchr(b'"', &b[..p]) {
                    Some(q) if escaped(b, q) => p = q,
                    Some(q) => break q + 1,
                    // Not a key after all; cannot tell, so maybe.
                    None => return true,
                }
            };
            let raw = &json[start..at];
            let key_decoded;
            let key = if raw.contains('\\') {
                match decode_escapes(raw) {
                    Some(d) => {
                        key_decoded = d;
                        key_decoded.as_str()
                    }
                    None => return true,
                }
            } else {
                raw
            };
            if self.key_matches_cached(key, tokens) {
                return true;
            }
        }
        false
    }

    /// Redacts `payload` in place and returns the names of the rules that
    /// fired, in rule order, each once. Same as [`PayloadFilter::apply`].
    pub fn redact(&self, payload: &mut Value) -> Vec<String> {
        let mut fired: Vec<usize> = Vec::new();
        if !self.walk(payload, 0, &mut fired) {
            *payload = Value::Null;
        }
        fired.sort_unstable();
        let mut names: Vec<String> = Vec::with_capacity(fired.len());
        for id in fired {
            let name = self.rules.get(id).map_or(UNSCANNABLE, |r| r.name.as_str());
            // A field rule and a detector may share a name (`api_key`).
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names
    }

    /// Applies the rules to one of a record's ids, `field` being its name
    /// (`request_id`, `correlation_id`): a field rule naming it replaces
    /// (or drops) the whole id; otherwise the id is scanned like a string
    /// value, so an e-mail address used as a correlation id is caught.
    ///
    /// The ids are not part of the payload: core's `Auditor` calls this
    /// (through [`PayloadFilter::apply_id`]) once when an id enters its
    /// scope (`for_request`, `with_correlation_id`), so every record of
    /// the scope carries the redacted id. `hash` is the action that keeps
    /// ids useful: one customer, one pseudonym, records still join.
    pub fn redact_id(&self, field: &str, id: &str) -> IdOutcome {
        let mut fired: Vec<usize> = Vec::new();
        let mut tokens = Tokens::new();
        let outcome = if let Some(rule) = self.field_rule(field, &mut tokens) {
            note(&mut fired, rule);
            if self.rules[rule].action == Action::Drop {
                None
            } else {
                match self.replace_whole(rule, &Value::String(id.to_string())) {
                    Value::String(s) => Some(s),
                    _ => Some(self.rules[rule].mask.clone()),
                }
            }
        } else {
            match self.scan(id, &mut fired) {
                Scan::Unchanged => return IdOutcome::Unchanged,
                Scan::Replaced(s) => Some(s),
                Scan::Drop => None,
            }
        };
        fired.sort_unstable();
        let rules: Vec<String> = fired
            .iter()
            .filter_map(|&id| self.rules.get(id).map(|r| r.name.clone()))
            .collect();
        match outcome {
            Some(id) => IdOutcome::Replaced { id, rules },
            None => IdOutcome::Dropped { rules },
        }
    }

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
    fn replace_whole(&self, rule: usize, value: &Value) -> Value {
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

    /// Whether some field rule matches `key`, through the thread's cache.
    fn key_matches_cached(&self, key: &str, tokens: &mut Tokens) -> bool {
        if key.len() > KEY_CACHE_KEY_BYTES {
            return self.field_rule(key, tokens).is_some();
        }
        let cached = KEY_CACHE.with(|cell| {
            let mut cache = cell.try_borrow_mut().ok()?;
            if cache.0 != self.id {
                cache.0 = self.id;
                cache.1.clear();
            }
            cache.1.get(key).copied()
        });
        if let Some(hit) = cached {
            return hit;
        }
        let hit = self.field_rule(key, tokens).is_some();
        KEY_CACHE.with(|cell| {
            if let Ok(mut cache) = cell.try_borrow_mut()
                && cache.0 == self.id
            {
                if cache.1.len() >= KEY_CACHE_ENTRIES {
                    cache.1.clear();
                }
                cache.1.insert(Box::from(key), hit);
            }
        });
        hit
    }

    /// The first field rule matching `key`; `tokens` is scratch space.
    fn field_rule(&self, key: &str, tokens: &mut Tokens) -> Option<usize> {
        if self.fields.is_empty() || is_mask(key) {
            return None;
        }
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
            for &i in candidates {
                if best.is_some_and(|b| b <= i) {
                    break;
                }
                if self.fields[i].name.matches_tokens(tokens) {
                    best = Some(i);
                    break;
                }
            }
        }
        best.map(|i| self.fields[i].rule)
    }

    /// Returns false when the value must be dropped by its parent.
    fn walk(&self, v: &mut Value, depth: usize, fired: &mut Vec<usize>) -> bool {
        match v {
            Value::String(s) => match self.scan(s, fired) {
                Scan::Unchanged => true,
                Scan::Replaced(new) => {
                    *s = new;
                    true
                }
                Scan::Drop => false,
            },
            Value::Number(n) => {
                if self.regexes.is_empty() && self.card.is_none() && self.iban.is_none() {
                    return true;
                }
                let text = n.to_string();
                match self.scan(&text, fired) {
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
                    if !self.walk(item, depth + 1, fired) {
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
                self.walk_object(map, depth, fired);
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

    fn walk_object(&self, map: &mut Map<String, Value>, depth: usize, fired: &mut Vec<usize>) {
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
            self.walk(value, depth + 1, fired)
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
    }

    /// Finds every match in `s`, and in its normalised view (mapped back to
    /// the original text it came from), and builds the redacted text.
    fn scan(&self, s: &str, fired: &mut Vec<usize>) -> Scan {
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
            return Scan::Unchanged;
        }
        spans.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));

        // Merge overlaps so no part of any match survives, keeping the
        // strongest action of the rules involved.
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
        if merged.iter().any(|(_, a)| *a == Action::Drop) {
            return Scan::Drop;
        }
        let mut out = String::with_capacity(s.len() + 16 * merged.len());
        let mut at = 0;
        for (sp, action) in merged {
            out.push_str(&s[at..sp.start]);
            let rule = &self.rules[sp.rule];
            // Hashed as its normalised view: `alice%40example.com` and
            // `alice@example.com` are one pseudonym.
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
            match pseudonym {
                Some(p) => out.push_str(&p),
                None => out.push_str(&rule.mask),
            }
            at = sp.end;
        }
        out.push_str(&s[at..]);
        Scan::Replaced(out)
    }
}

/// Whether a pattern asserts the start or end of the text or of a line,
/// which a string's edges satisfy but its place inside JSON text does not.
/// A pattern that does not parse here counts as anchored.
fn has_anchor(pattern: &str) -> bool {
    use regex_syntax::hir::Look;
    match regex_syntax::Parser::new().parse(pattern) {
        Ok(hir) => {
            let looks = hir.properties().look_set();
            [
                Look::Start,
                Look::End,
                Look::StartLF,
                Look::EndLF,
                Look::StartCRLF,
                Look::EndCRLF,
            ]
            .into_iter()
            .any(|l| looks.contains(l))
        }
        Err(_) => true,
    }
}

/// The JSON text with its string escapes replaced by the characters they
/// stand for; `None` for a malformed escape.
fn decode_escapes(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let d = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hi = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&hi) {
                    let mut ahead = chars.clone();
                    let lo = (ahead.next() == Some('\\') && ahead.next() == Some('u'))
                        .then(|| hex4(&mut ahead))
                        .flatten()
                        .filter(|lo| (0xDC00..0xE000).contains(lo));
                    match lo {
                        Some(lo) => {
                            chars = ahead;
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                        }
                        None => char::REPLACEMENT_CHARACTER,
                    }
                } else {
                    char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
            }
            _ => return None,
        };
        out.push(d);
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
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

/// Whether the byte at `at` is escaped: preceded by an odd number of `\\`.
fn escaped(b: &[u8], at: usize) -> bool {
    b[..at].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

/// Whether `s` holds the 13 digits a card number needs, stopping early.
fn enough_digits(s: &str) -> bool {
    s.len() >= 13 && s.bytes().filter(u8::is_ascii_digit).nth(12).is_some()
}

fn strength(a: Action) -> u8 {
    match a {
        Action::Hash => 0,
        Action::Mask => 1,
        Action::Drop => 2,
    }
}

fn note(fired: &mut Vec<usize>, rule: usize) {
    if !fired.contains(&rule) {
        fired.push(rule);
    }
}

impl PayloadFilter for Redactor {
    fn apply(&self, payload: &mut Value) -> Vec<String> {
        self.redact(payload)
    }

    fn may_apply(&self, payload_json: &str) -> bool {
        self.may_redact(payload_json)
    }

    fn apply_id(&self, field: &str, id: &str) -> IdRewrite {
        match self.redact_id(field, id) {
            IdOutcome::Unchanged => IdRewrite::Keep,
            IdOutcome::Replaced { id, .. } => IdRewrite::Replace(id),
            IdOutcome::Dropped { .. } => IdRewrite::Drop,
        }
    }
}
