//! The compiled rules and the walk over a payload, one file per job:
//! `build` compiles a [`RedactionConfig`](crate::RedactionConfig) into a
//! [`Redactor`], `precheck` tells from a payload's JSON text whether any
//! rule could fire (`onepass` in one pass over common text, with `sieve`,
//! its automaton, and `screen`, the detectors' literals; `cache`, the
//! per-thread answers for keys already seen), `walk` visits a payload's
//! values and keys, `assign` finds secret-named assignments in text, and
//! `actions` finds matches in a string and masks, hashes or drops them.

mod actions;
mod assign;
mod build;
mod cache;
mod onepass;
mod precheck;
mod screen;
mod sieve;
mod walk;

use agent_audit_core::{IdRewrite, PayloadFilter};
use hmac::Hmac;
use regex::Regex;
use serde_json::Value;
use sha2::Sha256;

use crate::config::Action;
use crate::names::{self, FieldName, Tokens};
use actions::Scan;

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

/// Applies a [`RedactionConfig`](crate::RedactionConfig) to payloads. Build it once at start with
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
    /// Rules `0..custom_rules` come from `[[redaction.rules]]`.
    custom_rules: usize,
    fields: Vec<FieldRule>,
    /// Each regex on its own: one alternation of them all would lose the
    /// literal prefilters (`sk-`, `AKIA`, `bearer`) that let most text be
    /// skipped without running an automaton (measured: 10x slower).
    regexes: Vec<(usize, Regex)>,
    card: Option<usize>,
    iban: Option<usize>,
    /// The `bearer_token` rule: HTTP Basic credentials too.
    bearer: Option<usize>,
    /// The `api_key` rule: passwords in URLs too.
    api: Option<usize>,
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
    /// A custom pattern, the card or the IBAN scanner is on: the only
    /// rules that can match a number as serde_json writes it back
    /// ([`Redactor::may_redact`] judges those numbers only then).
    digit_detectors: bool,
    /// A custom pattern uses `^`, `$`, `\A` or `\z`, which match at a
    /// string's edges but not inside a payload's JSON text, so
    /// [`Redactor::may_redact`] cannot rule anything out.
    anchored: bool,
    /// Every detector's literals in one scan, when each has a finite set.
    screen: Option<screen::Screen>,
    /// The pre-check's one pass over ASCII text without escapes: the
    /// detectors' literals and the field triggers, when the detectors
    /// have a finite set.
    sieve: Option<sieve::Sieve>,
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

/// What [`Redactor::redact_id`] did to an id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

impl Redactor {
    /// Names of every rule, in the order they are tried.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// Whether no rule is configured (`fields = []`, `detectors = []`, no
    /// rules): the dispatcher can then run without a filter.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Redacts `payload` in place and returns the names of the rules that
    /// fired, in rule order, each once. Same as [`PayloadFilter::apply`].
    pub fn redact(&self, payload: &mut Value) -> Vec<String> {
        let mut fired: Vec<usize> = Vec::new();
        if !self.walk(payload, 0, 0, &mut fired) {
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
    ///
    /// Schema v2's `user_id` and `session_id` and each attribute (by its
    /// key) come here too. For the record's own `session_id` key, only
    /// `[[redaction.rules]]` naming it apply by name, not the built-in
    /// `session_id` name: that name is for payload fields holding a
    /// session cookie, while the record's key is how a reviewer finds a
    /// session (`--session-id`); detectors still scan it, and a rule
    /// `fields = ["session_id"], action = "hash"` pseudonymises it.
    pub fn redact_id(&self, field: &str, id: &str) -> IdOutcome {
        let mut fired: Vec<usize> = Vec::new();
        let mut tokens = Tokens::new();
        let by_name = self
            .field_rule(field, &mut tokens)
            .filter(|&rule| field != "session_id" || rule < self.custom_rules);
        let outcome = if let Some(rule) = by_name {
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
}

/// Records that `rule` fired, once.
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
