//! The `[[sinks]]` tables: the keys every sink has (`name`, `required`,
//! `overflow`, `queue`), then the options of its type, deserialised by the
//! crate that defines them.

use std::fmt;

use serde::de::DeserializeOwned;

use agent_audit_core::{DEFAULT_QUEUE, Overflow};

use super::ConfigError;
use super::position::{key_line, line_col};

/// One `[[sinks]]` entry: the keys every sink has, and its own options.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name (default: the type, numbered when repeated).
    pub name: String,
    /// Whether its failure fails `emit` (default: true for `jsonl`, false
    /// otherwise).
    pub required: bool,
    /// Queue-full policy (default `block`).
    pub overflow: Overflow,
    /// Queue capacity in records (default
    /// [`DEFAULT_QUEUE`](agent_audit_core::DEFAULT_QUEUE)).
    pub queue: usize,
    /// The type and its options.
    pub kind: SinkKind,
    /// Line of the entry in the file, for later errors.
    pub line: usize,
}

/// A sink type with its options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SinkKind {
    /// `type = "jsonl"`.
    #[cfg(feature = "jsonl")]
    Jsonl(agent_audit_jsonl::JsonlOptions),
    /// `type = "stdout"`.
    #[cfg(feature = "stdout")]
    Stdout(agent_audit_stdout::StdoutOptions),
    /// `type = "otlp"`.
    #[cfg(feature = "otlp")]
    Otlp(agent_audit_otlp::OtlpConfig),
}

impl SinkKind {
    /// The `type` value.
    pub fn type_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "jsonl")]
            SinkKind::Jsonl(_) => "jsonl",
            #[cfg(feature = "stdout")]
            SinkKind::Stdout(_) => "stdout",
            #[cfg(feature = "otlp")]
            SinkKind::Otlp(_) => "otlp",
        }
    }
}

/// Sink types this build knows.
pub const SINK_TYPES: &[&str] = &[
    #[cfg(feature = "jsonl")]
    "jsonl",
    #[cfg(feature = "stdout")]
    "stdout",
    #[cfg(feature = "otlp")]
    "otlp",
];

pub(super) fn parse_sink(
    text: &str,
    source: &str,
    index: usize,
    table: toml::Spanned<toml::Table>,
) -> Result<SinkConfig, ConfigError> {
    let span = table.span();
    let mut t = table.into_inner();
    let err = |key: &str, message: String| ConfigError::Parse {
        path: source.into(),
        line: key_line(text, span.clone(), key),
        column: 1,
        key: Some(format!("sinks[{index}].{key}")),
        message,
    };
    let ty = match t.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(err(
                "type",
                format!("expected a string, found {}", other.type_str()),
            ));
        }
        None => {
            return Err(ConfigError::Parse {
                path: source.into(),
                line: line_col(text, span.start).0,
                column: 1,
                key: Some(format!("sinks[{index}].type")),
                message: format!("missing `type` (one of {})", SINK_TYPES.join(", ")),
            });
        }
    };
    fn take<T: DeserializeOwned>(
        t: &mut toml::Table,
        key: &str,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Option<T>, ConfigError> {
        match t.remove(key) {
            None => Ok(None),
            Some(v) => v
                .try_into::<T>()
                .map(Some)
                .map_err(|e| err(key, e.message().trim().to_string())),
        }
    }
    let name: Option<String> = take(&mut t, "name", &err)?;
    let required: Option<bool> = take(&mut t, "required", &err)?;
    let overflow: Option<Overflow> = take(&mut t, "overflow", &err)?;
    let queue: Option<i64> = take(&mut t, "queue", &err)?;
    let queue = match queue {
        None => DEFAULT_QUEUE,
        Some(q) if (1..=10_000_000).contains(&q) => q as usize,
        Some(q) => {
            return Err(err(
                "queue",
                format!("must be between 1 and 10000000, got {q}"),
            ));
        }
    };
    fn options<T: DeserializeOwned>(
        t: toml::Table,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(t)).map_err(|e| {
            let msg = e.inner().message().trim().to_string();
            let key = e.path().to_string();
            let key = if key == "." {
                unknown_field(&msg).unwrap_or_default()
            } else {
                key
            };
            err(&key, msg)
        })
    }
    let kind = match ty.as_str() {
        #[cfg(feature = "jsonl")]
        "jsonl" => {
            let o: agent_audit_jsonl::JsonlOptions = options(t, &err)?;
            if let Err(agent_audit_jsonl::JsonlError::InvalidOption { field, reason, .. }) =
                o.validate()
            {
                return Err(err(field, format!("{field} {reason}")));
            }
            SinkKind::Jsonl(o)
        }
        #[cfg(feature = "stdout")]
        "stdout" => SinkKind::Stdout(options(t, &err)?),
        #[cfg(feature = "otlp")]
        "otlp" => {
            let o: agent_audit_otlp::OtlpConfig = options(t, &err)?;
            // A configuration error (exit 2), before anything starts.
            o.check_credentials()
                .map_err(|e| err("endpoint", e.to_string()))?;
            if let Err(e @ agent_audit_otlp::OtlpConfigError::OutOfRange { key, .. }) = o.validate()
            {
                // `retry.max_elapsed_ms` sits on the `retry` line (an inline
                // table) or in a `[sinks.retry]` table below the sink's.
                let head = key.split('.').next().unwrap_or(key);
                return Err(ConfigError::Parse {
                    path: source.into(),
                    line: key_line(text, span.clone(), head),
                    column: 1,
                    key: Some(format!("sinks[{index}].{key}")),
                    message: e.to_string().trim_start_matches("otlp sink: ").to_string(),
                });
            }
            SinkKind::Otlp(o)
        }
        other => {
            return Err(err(
                "type",
                format!(
                    "unknown sink type `{other}` (this build knows {})",
                    SINK_TYPES.join(", ")
                ),
            ));
        }
    };
    Ok(SinkConfig {
        name: name.unwrap_or_else(|| ty.clone()),
        required: required.unwrap_or(ty == "jsonl"),
        overflow: overflow.unwrap_or_default(),
        queue,
        kind,
        line: line_col(text, span.start).0,
    })
}

/// Numbers a repeated default name (`jsonl`, `jsonl-2`) and refuses a
/// name given twice.
pub(super) fn name_sinks(sinks: &mut [SinkConfig], source: &str) -> Result<(), ConfigError> {
    for i in 0..sinks.len() {
        if sinks[..i].iter().any(|s| s.name == sinks[i].name) {
            let base = sinks[i].name.clone();
            if sinks[i].name == sinks[i].kind.type_name() {
                sinks[i].name = format!("{base}-{}", i + 1);
            } else {
                return Err(ConfigError::Parse {
                    path: source.into(),
                    line: sinks[i].line,
                    column: 1,
                    key: Some(format!("sinks[{i}].name")),
                    message: format!("sink name `{base}` is used twice"),
                });
            }
        }
    }
    Ok(())
}

/// The field named by serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

impl fmt::Display for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, required = {}, overflow = {:?}, queue = {})",
            self.name,
            self.kind.type_name(),
            self.required,
            self.overflow,
            self.queue
        )
    }
}
