//! Helpers the redaction tests share. Each test binary uses some of
//! them.
#![allow(dead_code)]

use agent_audit_redact::{Action, RuleConfig};
use serde_json::Value;

/// A rule named `name`: a pattern, field names, or both, and an action
/// (the default when `None`).
pub fn rule(
    name: &str,
    pattern: Option<&str>,
    fields: Option<&[&str]>,
    action: Option<Action>,
) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        pattern: pattern.map(String::from),
        fields: fields.map(|f| f.iter().map(|s| s.to_string()).collect()),
        action,
    }
}

/// `v`'s compact JSON text with some characters of its strings (those
/// whose position's bit is set in `bits`) written as `\u` escapes: the
/// same payload, spelled as another writer might, with names split across
/// escapes.
pub fn escaped_json(v: &Value, bits: u64) -> String {
    fn string(s: &str, bits: u64, i: &mut usize, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            *i += 1;
            if c == '"'
                || c == '\\'
                || (c as u32) < 0x20
                || (bits >> (*i % 64) & 1 == 1 && (c as u32) < 0x10000)
            {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        out.push('"');
    }
    fn go(v: &Value, bits: u64, i: &mut usize, out: &mut String) {
        match v {
            Value::String(s) => string(s, bits, i, out),
            Value::Array(a) => {
                out.push('[');
                for (k, x) in a.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    go(x, bits, i, out);
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                for (k, (key, x)) in m.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    string(key, bits, i, out);
                    out.push(':');
                    go(x, bits, i, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, bits, &mut 0, &mut out);
    out
}
