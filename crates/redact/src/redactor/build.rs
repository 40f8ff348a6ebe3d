//! A [`RedactionConfig`] compiled into a [`Redactor`]: names checked,
//! patterns compiled, the `hash` key read, and the indexes the pre-check
//! and the walk use to rule keys out cheaply.

use hmac::{Hmac, Mac};
use regex::Regex;
use sha2::Sha256;

use crate::config::{Action, DEFAULT_FIELDS, Detector, RedactionConfig};
use crate::detect;
use crate::error::RedactError;
use crate::names::{self, FieldName, Tokens};

use super::screen::{self, Needs, Screen};
use super::sieve::Sieve;
use super::{FieldRule, MIN_KEY_BYTES, Norm, Redactor, Rule};

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(super) fn valid_name(name: &str) -> bool {
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
        let mut bearer = None;
        let mut api = None;
        let mut seen = std::collections::HashSet::new();
        let mut anchored = false;
        // What each detector needs to be present to fire (the screen).
        let mut needs: Vec<Needs> = Vec::new();
        let mut unscreened = false;
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
                    needs.push(Needs::Pattern(pattern.clone()));
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
        let custom_rules = rules.len();
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
            match d {
                // `Basic` credentials need `basic` (any case: the screen
                // folds ASCII case); passwords in URLs need `://`.
                Detector::BearerToken => {
                    bearer = Some(id);
                    needs.push(Needs::Pattern(detect::BEARER_TOKEN.into()));
                    needs.push(Needs::Literals(&["basic"]));
                }
                Detector::ApiKey => {
                    api = Some(id);
                    needs.push(Needs::Pattern(detect::API_KEY.into()));
                    needs.push(Needs::Literals(&["://"]));
                }
                // The address pattern starts with a class of every letter,
                // but its `@` is a literal.
                Detector::Email => needs.push(Needs::Literals(&["@"])),
                Detector::PaymentCard => needs.push(Needs::Digits),
                // Country code and digits: no literal to look for.
                Detector::Iban => unscreened = true,
            }
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
            if let Some(&b) = f.name.joined.last().filter(|_| f.name.suffix) {
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
        let key_filter = names::KeyFilter::new(&names::triggers(
            by_first.keys().map(String::as_str),
            names::Spelling::Raw,
        ));
        let needed = if unscreened {
            None
        } else {
            screen::needed(&needs)
        };
        let screen = needed.as_ref().and_then(Screen::build);
        // What a key or name must hold (in the stripped spelling) to match
        // a field rule: a trigger of each of the field's tokens (all of
        // them are in a matching key), so of the one whose shortest
        // trigger is longest (`x_api_key`: `api`, not `x`, which every
        // key with an x would hold); or for the suffix rule the whole name
        // without `_` and `-` (a name with a byte beyond ASCII never ends
        // an ASCII key: left out).
        let shortest = |t: &str| {
            names::triggers(std::iter::once(t), names::Spelling::Stripped)
                .iter()
                .map(String::len)
                .min()
                .unwrap_or(0)
        };
        let telling: Vec<&str> = fields
            .iter()
            .filter_map(|f| {
                let mut best: Option<(&str, usize)> = None;
                for t in &f.name.tokens {
                    let n = shortest(t);
                    if best.is_none_or(|(_, m)| n > m) {
                        best = Some((t, n));
                    }
                }
                best.map(|(t, _)| t)
            })
            .collect();
        let mut field_literals: Vec<Vec<u8>> =
            names::triggers(telling.into_iter(), names::Spelling::Stripped)
                .into_iter()
                .map(String::into_bytes)
                .collect();
        field_literals.extend(
            fields
                .iter()
                .filter(|f| f.name.suffix && f.name.joined.is_ascii())
                .map(|f| names::spelled(&f.name.joined)),
        );
        let sieve = needed.and_then(|n| Sieve::build(&n.literals, &field_literals));
        let digit_detectors =
            regexes.iter().any(|&(id, _)| id < custom_rules) || card.is_some() || iban.is_some();
        Ok(Redactor {
            digit_detectors,
            custom_rules,
            rules,
            fields,
            regexes,
            card,
            iban,
            bearer,
            api,
            key,
            key_filter,
            screen,
            sieve,
            by_first,
            first_byte,
            by_last,
            anchored,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
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
