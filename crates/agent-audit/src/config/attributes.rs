//! `[attributes]`: policy metadata stamped on every record (schema v2's
//! `attributes`), such as `tenant = "emea-retail"`. Each value is a
//! string, an integer, a float or a boolean within the record limits
//! ([`MAX_ATTRIBUTES`](agent_audit_core::MAX_ATTRIBUTES) and the key and
//! value sizes); anything else is an error naming the file, line and key.

use std::collections::BTreeMap;

use agent_audit_core::{AttrValue, Attributes};

use super::ConfigError;
use super::position::line_col;

/// The `[attributes]` table as TOML gave it: each value with its place.
pub(super) type RawAttributes = BTreeMap<String, toml::Spanned<toml::Value>>;

/// Turns `[attributes]` into [`Attributes`], refusing a value that is not
/// a scalar or breaks a limit.
pub(super) fn parse(
    raw: &RawAttributes,
    text: &str,
    source: &str,
) -> Result<Attributes, ConfigError> {
    let mut out = Attributes::new();
    for (key, value) in raw {
        let err = |message: String| {
            let (line, column) = line_col(text, value.span().start);
            ConfigError::Parse {
                path: source.into(),
                line,
                column,
                key: Some(format!("attributes.{key}")),
                message,
            }
        };
        let v = match value.get_ref() {
            toml::Value::String(s) => AttrValue::from(s.as_str()),
            toml::Value::Integer(n) => AttrValue::from(*n),
            toml::Value::Boolean(b) => AttrValue::from(*b),
            toml::Value::Float(f) => {
                AttrValue::float(*f).ok_or_else(|| err(format!("{f} is not a finite number")))?
            }
            other => {
                return Err(err(format!(
                    "is {}; an attribute holds a string, a number or a boolean (quote a dotted name: \"tenant.id\" = …)",
                    match other {
                        toml::Value::Array(_) => "an array",
                        toml::Value::Table(_) => "a table",
                        _ => "a date-time",
                    }
                )));
            }
        };
        out = out.with(key, v).map_err(|e| err(e.to_string()))?;
    }
    Ok(out)
}

/// The error for a dotted key in `[attributes]` (`tenant.id = "x"`): TOML
/// makes it a table, and the fix is to quote the name.
pub(super) fn dotted_key_message(name: &str) -> String {
    format!(
        "a dotted key makes a table in TOML (`{name}` is a table inside another), and an attribute holds a string, a number or a boolean; quote a dotted attribute name: \"{name}\" = …"
    )
}
