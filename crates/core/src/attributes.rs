//! A record's `attributes` (schema v2): the deployment's policy metadata
//! (tenant, purpose, classification, ticket), flat keys to scalar values,
//! bounded so that no caller can grow every record without limit.

use std::sync::Arc;

use crate::redact::{IdRewrite, PayloadFilter};

/// Most attributes one scope may carry.
pub const MAX_ATTRIBUTES: usize = 32;

/// Longest attribute key, in bytes (UTF-8).
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 128;

/// Longest string attribute value, in bytes (UTF-8). Numbers and booleans
/// are short by nature.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;

/// Longest `user_id` or `session_id`, in bytes (UTF-8), that
/// [`check_id`] and the `try_with_*` methods of
/// [`Auditor`](crate::Auditor) accept: every record of the scope carries
/// the id, so an unbounded one grows every record (and one near
/// `max_record_bytes` makes every record of the request fail).
pub const MAX_ID_BYTES: usize = 1024;

/// Checks a `user_id` or `session_id` (`field`) against [`MAX_ID_BYTES`];
/// the error names the field and the size, never the id.
pub fn check_id(field: &'static str, id: &str) -> Result<(), AttributeError> {
    if id.len() > MAX_ID_BYTES {
        return Err(AttributeError::IdTooLong {
            field,
            len: id.len(),
            max: MAX_ID_BYTES,
        });
    }
    Ok(())
}

/// One attribute's value: a string, a number or a boolean. Arrays,
/// objects and null are refused ([`AttrValue::from_json`]): attributes
/// are labels to filter and index by, not a second payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttrValue {
    /// A string.
    String(Arc<str>),
    /// A JSON number (integer or finite float).
    Number(serde_json::Number),
    /// A boolean.
    Bool(bool),
}

impl AttrValue {
    /// A float as a value; `None` for NaN and the infinities, which JSON
    /// cannot hold.
    pub fn float(f: f64) -> Option<AttrValue> {
        serde_json::Number::from_f64(f).map(AttrValue::Number)
    }

    /// A JSON value as an attribute value for the attribute `key`:
    /// strings, numbers and booleans are taken, anything else (an object,
    /// however deep, an array, null) is [`AttributeError::NotScalar`]
    /// naming `key`.
    pub fn from_json(key: &str, value: &serde_json::Value) -> Result<AttrValue, AttributeError> {
        use serde_json::Value;
        match value {
            Value::String(s) => Ok(AttrValue::String(Arc::from(s.as_str()))),
            Value::Number(n) => Ok(AttrValue::Number(n.clone())),
            Value::Bool(b) => Ok(AttrValue::Bool(*b)),
            other => Err(AttributeError::NotScalar {
                key: shown_key(key),
                found: match other {
                    Value::Null => "null",
                    Value::Array(_) => "an array",
                    _ => "an object",
                },
            }),
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AttrValue::String(s) => serde_json::Value::String(s.to_string()),
            AttrValue::Number(n) => serde_json::Value::Number(n.clone()),
            AttrValue::Bool(b) => serde_json::Value::Bool(*b),
        }
    }

    /// The string, for a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::String(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::String(s) => f.write_str(s),
            AttrValue::Number(n) => write!(f, "{n}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::String(Arc::from(s))
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::String(Arc::from(s))
    }
}

impl From<bool> for AttrValue {
    fn from(b: bool) -> Self {
        AttrValue::Bool(b)
    }
}

impl From<i64> for AttrValue {
    fn from(n: i64) -> Self {
        AttrValue::Number(n.into())
    }
}

impl From<u64> for AttrValue {
    fn from(n: u64) -> Self {
        AttrValue::Number(n.into())
    }
}

impl From<i32> for AttrValue {
    fn from(n: i32) -> Self {
        AttrValue::Number(n.into())
    }
}

/// Why an attribute was refused. Each variant names the attribute (its
/// first 128 bytes when the key itself is too long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// The key is empty.
    #[error("attribute key is empty")]
    EmptyKey,
    /// The key is longer than [`MAX_ATTRIBUTE_KEY_BYTES`].
    #[error("attribute `{key}…`: the key is {len} bytes, over the limit of {max}")]
    KeyTooLong {
        /// The key's first bytes.
        key: String,
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string value is longer than [`MAX_ATTRIBUTE_VALUE_BYTES`].
    #[error("attribute `{key}`: the value is {len} bytes, over the limit of {max}")]
    ValueTooLarge {
        /// The attribute.
        key: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is not a string, number or boolean.
    #[error(
        "attribute `{key}`: the value is {found}; an attribute holds a string, a number or a boolean"
    )]
    NotScalar {
        /// The attribute.
        key: String,
        /// What the value is.
        found: &'static str,
    },
    /// A `user_id` or `session_id` is longer than [`MAX_ID_BYTES`]
    /// ([`check_id`]).
    #[error("`{field}`: the id is {len} bytes, over the limit of {max}")]
    IdTooLong {
        /// `user_id` or `session_id`.
        field: &'static str,
        /// The id's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The scope already holds [`MAX_ATTRIBUTES`] attributes.
    #[error("attribute `{key}`: the scope already holds {max} attributes, the limit")]
    TooMany {
        /// The attribute that did not fit.
        key: String,
        /// The limit.
        max: usize,
    },
}

/// The OpenTelemetry attribute key of a record attribute, the one name
/// both the OTLP log records and (feature `otel`) the GenAI spans give
/// it. A dotted name spelled as OTel conventions are (lowercase ASCII
/// letters, digits and `_` in non-empty `.`-separated parts, the first
/// starting with a letter: `tenant.id`, `deployment.environment.name`) is
/// taken as the convention it names and kept. Anything else goes under
/// `audit.attribute.`: a plain name; a name in the namespaces agent-audit
/// fills itself (`audit.`, `agent_audit.`, `gen_ai.`, `user.`, `session.`,
/// `error.`, and `enduser.`, the older conventions' name for the user,
/// which backends still show as the user), the resource's (`service.`,
/// `telemetry.`) or the one the specification reserves (`otel.`), so that
/// it can neither pose as nor override them (a `user.id` or `enduser.id`
/// attribute would name another user than the record's `user_id`; an
/// `error.type` one would make a record or a span that failed nothing
/// look like an error); and a name spelled otherwise (` user.id`,
/// `User.Id`), which a backend that trims or folds case would read as
/// ours. There, characters
/// [`text::is_terminal_unsafe`](crate::text::is_terminal_unsafe) deems
/// unsafe are escaped as `\u{..}` ([`text::sanitize`](crate::text::sanitize)),
/// so a key cannot drive the terminal or viewer that shows it, and so is a
/// backslash, so that no two keys get one name (`a\u{1b}` typed out
/// would otherwise be the escaped form of `a` followed by ESC).
pub fn otel_key(key: &str) -> String {
    const OURS: [&str; 10] = [
        "audit.",
        "agent_audit.",
        "gen_ai.",
        "user.",
        "enduser.",
        "session.",
        "error.",
        "service.",
        "telemetry.",
        "otel.",
    ];
    if convention_like(key) && !OURS.iter().any(|p| key.starts_with(p)) {
        return key.to_string();
    }
    let key = if key.contains('\\') {
        crate::text::sanitize(&key.replace('\\', "\\u{5c}"))
    } else {
        crate::text::sanitize(key)
    };
    format!("audit.attribute.{key}")
}

/// Whether `key` is spelled as an OTel semantic convention's attribute
/// name: at least two `.`-separated parts of `[a-z0-9_]`, the first
/// character a letter.
fn convention_like(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.contains('.')
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// `key` cut to at most [`MAX_ATTRIBUTE_KEY_BYTES`] at a character
/// boundary, for an error message.
fn shown_key(key: &str) -> String {
    let mut end = key.len().min(MAX_ATTRIBUTE_KEY_BYTES);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key[..end].to_string()
}

/// Checks one attribute against the limits (not the count).
pub(crate) fn check(key: &str, value: &AttrValue) -> Result<(), AttributeError> {
    if key.is_empty() {
        return Err(AttributeError::EmptyKey);
    }
    if key.len() > MAX_ATTRIBUTE_KEY_BYTES {
        return Err(AttributeError::KeyTooLong {
            key: shown_key(key),
            len: key.len(),
            max: MAX_ATTRIBUTE_KEY_BYTES,
        });
    }
    if let AttrValue::String(s) = value
        && s.len() > MAX_ATTRIBUTE_VALUE_BYTES
    {
        return Err(AttributeError::ValueTooLarge {
            key: key.to_string(),
            len: s.len(),
            max: MAX_ATTRIBUTE_VALUE_BYTES,
        });
    }
    Ok(())
}

/// What the redaction rules make of an attribute: its key is scanned as a
/// payload object's key is (a key can be an e-mail address or a token, and
/// a detector matching it renames or drops the attribute), then strings
/// and numbers pass [`PayloadFilter::apply_id`] under the attribute's key
/// (a field rule naming the key, or a detector matching the value, fires
/// as on a payload field); `None` when a rule drops it.
pub(crate) fn redacted(
    filter: Option<&Arc<dyn PayloadFilter>>,
    key: &Arc<str>,
    value: AttrValue,
) -> Option<(Arc<str>, AttrValue)> {
    let Some(filter) = filter else {
        return Some((key.clone(), value));
    };
    let key = redacted_key(filter, key)?;
    let text = match &value {
        AttrValue::String(s) => s.to_string(),
        AttrValue::Number(n) => n.to_string(),
        AttrValue::Bool(_) => return Some((key, value)),
    };
    match filter.apply_id(&key, &text) {
        IdRewrite::Keep => Some((key, value)),
        IdRewrite::Replace(s) => Some((key, AttrValue::String(Arc::from(s)))),
        _ => None,
    }
}

/// An attribute key as the rules want it recorded: the key of a one-member
/// object `{key: null}` after [`PayloadFilter::apply`], which scans object
/// keys with the detectors (a null value is left alone by field rules).
/// `None` when the member is dropped.
fn redacted_key(filter: &Arc<dyn PayloadFilter>, key: &Arc<str>) -> Option<Arc<str>> {
    let mut probe = serde_json::Map::new();
    probe.insert(key.to_string(), serde_json::Value::Null);
    let mut probe = serde_json::Value::Object(probe);
    if !filter.may_apply(&probe.to_string()) {
        return Some(key.clone());
    }
    filter.apply(&mut probe);
    let serde_json::Value::Object(map) = probe else {
        return None;
    };
    if map.contains_key(&**key) {
        return Some(key.clone());
    }
    // Renamed: the one key left is the redacted one. Anything else (no
    // key, or a filter that added members) records nothing.
    match map.len() {
        1 => map.into_iter().next().map(|(k, _)| Arc::from(k)),
        _ => None,
    }
}

/// A scope's attributes: sorted by key (the order they are written in),
/// each key once, with their JSON object text kept beside them so that a
/// record copies it instead of serialising again. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    entries: Arc<[(Arc<str>, AttrValue)]>,
    json: Arc<str>,
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            entries: Arc::from(Vec::new()),
            json: Arc::from("{}"),
        }
    }
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.entries
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Every attribute, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttrValue)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// The attributes as the compact JSON object a record holds.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// These attributes with `key` set to `value` (replacing an earlier
    /// value), checked against the limits. On error `self` is unchanged.
    pub fn with(
        &self,
        key: &str,
        value: impl Into<AttrValue>,
    ) -> Result<Attributes, AttributeError> {
        let value = value.into();
        check(key, &value)?;
        let mut entries: Vec<(Arc<str>, AttrValue)> = self.entries.to_vec();
        match entries.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => entries[i].1 = value,
            Err(i) => {
                if entries.len() >= MAX_ATTRIBUTES {
                    return Err(AttributeError::TooMany {
                        key: key.to_string(),
                        max: MAX_ATTRIBUTES,
                    });
                }
                entries.insert(i, (Arc::from(key), value));
            }
        }
        Ok(Attributes::from_sorted(entries))
    }

    /// These attributes without `key`.
    pub fn without(&self, key: &str) -> Attributes {
        if self.get(key).is_none() {
            return self.clone();
        }
        let entries = self
            .entries
            .iter()
            .filter(|(k, _)| &**k != key)
            .cloned()
            .collect();
        Attributes::from_sorted(entries)
    }

    /// Attributes from a JSON object's entries, each checked as by
    /// [`Attributes::with`] and [`AttrValue::from_json`].
    pub fn from_json_map(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Attributes, AttributeError> {
        let mut out = Attributes::new();
        for (k, v) in map {
            out = out.with(k, AttrValue::from_json(k, v)?)?;
        }
        Ok(out)
    }

    /// The attributes as a JSON object.
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect()
    }

    /// These attributes as the redaction rules want them recorded.
    pub(crate) fn redacted(&self, filter: Option<&Arc<dyn PayloadFilter>>) -> Attributes {
        if filter.is_none() || self.is_empty() {
            return self.clone();
        }
        // A redacted key may sort elsewhere or meet another one masked
        // alike: re-sorted, and a repeated name gets `#2`, `#3` as a
        // payload's renamed keys do.
        let mut sorted: std::collections::BTreeMap<Arc<str>, AttrValue> =
            std::collections::BTreeMap::new();
        for (k, v) in self.entries.iter() {
            let Some((k, v)) = redacted(filter, k, v.clone()) else {
                continue;
            };
            let mut name = k.clone();
            let mut n = 2;
            while sorted.contains_key(&name) {
                name = Arc::from(format!("{k}#{n}"));
                n += 1;
            }
            sorted.insert(name, v);
        }
        Attributes::from_sorted(sorted.into_iter().collect())
    }

    fn from_sorted(entries: Vec<(Arc<str>, AttrValue)>) -> Attributes {
        // Written by hand in key order: serde_json's map would follow its
        // `preserve_order` feature, which another crate may switch on.
        let mut json = String::with_capacity(2 + entries.len() * 24);
        json.push('{');
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&serde_json::Value::String(k.to_string()).to_string());
            json.push(':');
            json.push_str(&v.to_json().to_string());
        }
        json.push('}');
        Attributes {
            entries: Arc::from(entries),
            json: Arc::from(json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_sorted_replaced_and_bounded() {
        let a = Attributes::new()
            .with("tenant", "emea")
            .unwrap()
            .with("purpose", "support")
            .unwrap()
            .with("tier", 3)
            .unwrap()
            .with("tenant", "apac")
            .unwrap();
        assert_eq!(
            a.json(),
            r#"{"purpose":"support","tenant":"apac","tier":3}"#
        );
        assert_eq!(a.get("tier"), Some(&AttrValue::from(3)));
        let long = "x".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1);
        let err = a.with("note", long.as_str()).unwrap_err();
        assert!(err.to_string().contains("attribute `note`"), "{err}");
        assert_eq!(a.len(), 3, "a refused attribute leaves the others");
        let mut many = Attributes::new();
        for i in 0..MAX_ATTRIBUTES {
            many = many.with(&format!("k{i}"), true).unwrap();
        }
        assert!(matches!(
            many.with("one_more", 1),
            Err(AttributeError::TooMany { ref key, .. }) if key == "one_more"
        ));
        assert!(check_id("user_id", &"u".repeat(MAX_ID_BYTES)).is_ok());
        let err = check_id("user_id", &"u".repeat(MAX_ID_BYTES + 1)).unwrap_err();
        assert!(err.to_string().starts_with("`user_id`"), "{err}");
        assert!(!err.to_string().contains("uuu"), "{err}");
        let nested = serde_json::json!({"a": {"b": {"c": 1}}});
        assert!(matches!(
            AttrValue::from_json("deep", &nested),
            Err(AttributeError::NotScalar { ref key, .. }) if key == "deep"
        ));
    }

    #[test]
    fn otel_keys_keep_conventions_and_fence_off_ours_and_lookalikes() {
        for kept in ["tenant.id", "deployment.environment.name", "app.v2_tier"] {
            assert_eq!(otel_key(kept), kept);
        }
        for (key, named) in [
            ("purpose", "audit.attribute.purpose"),
            ("user.id", "audit.attribute.user.id"),
            ("session.id", "audit.attribute.session.id"),
            (
                "gen_ai.operation.name",
                "audit.attribute.gen_ai.operation.name",
            ),
            ("error.type", "audit.attribute.error.type"),
            ("audit.attribute.x", "audit.attribute.audit.attribute.x"),
            ("enduser.id", "audit.attribute.enduser.id"),
            ("agent_audit.sink", "audit.attribute.agent_audit.sink"),
            // Lookalikes a trimming or case-folding backend would read as
            // ours, and names no convention is spelled as.
            (" user.id", "audit.attribute. user.id"),
            ("User.Id", "audit.attribute.User.Id"),
            ("user.id ", "audit.attribute.user.id "),
            ("tenant..id", "audit.attribute.tenant..id"),
            (".id", "audit.attribute..id"),
            ("1x.id", "audit.attribute.1x.id"),
            // A control or bidi character is escaped, never passed on.
            ("user.\u{1b}[2Jid", "audit.attribute.user.\\u{1b}[2Jid"),
            ("\u{202e}di.resu", "audit.attribute.\\u{202e}di.resu"),
        ] {
            assert_eq!(otel_key(key), named, "{key:?}");
        }
        // A key typed as the escaped form of another is not its name.
        assert_eq!(otel_key("a\\u{1b}"), "audit.attribute.a\\u{5c}u{1b}");
        assert_ne!(otel_key("a\\u{1b}"), otel_key("a\u{1b}"));
    }
}
