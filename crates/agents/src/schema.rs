//! Validation of tool arguments against their JSON Schema, before the call.
//!
//! It covers the keywords schemars generates for argument types and that
//! tool schemas use in practice: `type` (one or several), `properties`,
//! `required`, `additionalProperties`, `items`, `enum`, `const`, `minimum`,
//! `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`,
//! `maxLength`, `minItems`, `maxItems`, `anyOf`, `oneOf`, `allOf`, `not` and
//! local `$ref` (`#/$defs/..`, `#/definitions/..`). Other keywords
//! (`format`, `pattern`, `description`, ...) are not checked; a typed tool
//! also deserialises its argument type, which catches the rest.

use serde_json::Value;

/// One way the arguments do not match the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value (`""` for the root).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "at {at}: {}", self.message)
    }
}

/// Checks `value` against `schema` and lists every violation found.
pub fn validate(schema: &Value, value: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    check(schema, schema, value, "", &mut out, 0);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    let actual = type_name(v);
    expected == actual || (expected == "number" && actual == "integer")
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

fn check(
    root: &Value,
    schema: &Value,
    value: &Value,
    path: &str,
    out: &mut Vec<Violation>,
    depth: u32,
) {
    let push = |out: &mut Vec<Violation>, message: String| {
        out.push(Violation {
            path: path.to_string(),
            message,
        })
    };
    if depth > 64 {
        push(out, "schema nests too deeply (recursive $ref?)".into());
        return;
    }
    let obj = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return push(out, "no value is allowed here".into()),
        Value::Object(o) => o,
        _ => return,
    };
    if let Some(Value::String(r)) = obj.get("$ref") {
        match resolve(root, r) {
            Some(target) => check(root, target, value, path, out, depth + 1),
            None => push(out, format!("schema reference `{r}` cannot be resolved")),
        }
    }
    match obj.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            return push(out, format!("expected {t}, got {}", type_name(value)));
        }
        Some(Value::Array(ts))
            if !ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, value)) =>
        {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            return push(
                out,
                format!(
                    "expected one of {}, got {}",
                    names.join(", "),
                    type_name(value)
                ),
            );
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = obj.get("enum")
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        push(out, format!("{value} is not one of {}", list.join(", ")));
    }
    if let Some(c) = obj.get("const")
        && c != value
    {
        push(out, format!("must be {c}"));
    }
    if let Some(n) = value.as_f64() {
        let bound = |k: &str| obj.get(k).and_then(Value::as_f64);
        if let Some(m) = bound("minimum")
            && n < m
        {
            push(out, format!("{n} is below the minimum {m}"));
        }
        if let Some(m) = bound("maximum")
            && n > m
        {
            push(out, format!("{n} is above the maximum {m}"));
        }
        if let Some(m) = bound("exclusiveMinimum")
            && n <= m
        {
            push(out, format!("{n} must be greater than {m}"));
        }
        if let Some(m) = bound("exclusiveMaximum")
            && n >= m
        {
            push(out, format!("{n} must be less than {m}"));
        }
    }
    if let Value::String(s) = value {
        let len = s.chars().count() as u64;
        if let Some(m) = obj.get("minLength").and_then(Value::as_u64)
            && len < m
        {
            push(out, format!("string is shorter than {m} characters"));
        }
        if let Some(m) = obj.get("maxLength").and_then(Value::as_u64)
            && len > m
        {
            push(out, format!("string is longer than {m} characters"));
        }
    }
    if let Value::Array(items) = value {
        if let Some(m) = obj.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < m
        {
            push(out, format!("fewer than {m} items"));
        }
        if let Some(m) = obj.get("maxItems").and_then(Value::as_u64)
            && (items.len() as u64) > m
        {
            push(out, format!("more than {m} items"));
        }
        if let Some(item_schema) = obj.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(
                    root,
                    item_schema,
                    item,
                    &format!("{path}/{i}"),
                    out,
                    depth + 1,
                );
            }
        }
    }
    if let Value::Object(map) = value {
        if let Some(Value::Array(required)) = obj.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    push(out, format!("missing required property `{name}`"));
                }
            }
        }
        let props = obj.get("properties").and_then(Value::as_object);
        for (key, v) in map {
            let child = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
            match props.and_then(|p| p.get(key)) {
                Some(s) => check(root, s, v, &child, out, depth + 1),
                None => match obj.get("additionalProperties") {
                    Some(Value::Bool(false)) => push(out, format!("unknown property `{key}`")),
                    Some(s @ Value::Object(_)) => check(root, s, v, &child, out, depth + 1),
                    _ => {}
                },
            }
        }
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        for s in all {
            check(root, s, value, path, out, depth + 1);
        }
    }
    let passing = |list: &Vec<Value>| {
        list.iter()
            .filter(|s| {
                let mut tmp = Vec::new();
                check(root, s, value, path, &mut tmp, depth + 1);
                tmp.is_empty()
            })
            .count()
    };
    if let Some(Value::Array(any)) = obj.get("anyOf")
        && passing(any) == 0
    {
        push(
            out,
            "matches none of the allowed alternatives (anyOf)".into(),
        );
    }
    if let Some(Value::Array(one)) = obj.get("oneOf") {
        let n = passing(one);
        if n != 1 {
            push(
                out,
                format!("must match exactly one alternative (oneOf), matches {n}"),
            );
        }
    }
    if let Some(not) = obj.get("not") {
        let mut tmp = Vec::new();
        check(root, not, value, path, &mut tmp, depth + 1);
        if tmp.is_empty() {
            push(out, "matches a schema it must not match (not)".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_schema() {
        let s = json!({
            "type": "object",
            "properties": {
                "account_id": {"type": "string", "minLength": 1},
                "limit": {"type": ["integer", "null"], "minimum": 1},
                "kind": {"$ref": "#/$defs/Kind"}
            },
            "required": ["account_id"],
            "additionalProperties": false,
            "$defs": {"Kind": {"enum": ["checking", "savings"]}}
        });
        assert!(validate(&s, &json!({"account_id": "1"})).is_empty());
        assert!(
            validate(
                &s,
                &json!({"account_id": "1", "limit": null, "kind": "savings"})
            )
            .is_empty()
        );
        let v = validate(
            &s,
            &json!({"account_id": 5, "limit": 0, "kind": "x", "extra": 1}),
        );
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(v.len(), 4, "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("/account_id") && t.contains("expected string"))
        );
        assert!(text.iter().any(|t| t.contains("unknown property `extra`")));
        let v = validate(&s, &json!({}));
        assert_eq!(v[0].message, "missing required property `account_id`");
        assert_eq!(
            validate(&s, &json!("x"))[0].message,
            "expected object, got string"
        );
    }
}
