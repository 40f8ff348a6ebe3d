//! The `[[sinks]]` tables: the keys every sink has (`name`, `required`,
//! `overflow`, `queue`), then the options of its type, which the
//! [`SinkRegistry`] entry of that type deserialises and validates.

use std::fmt;

use serde::de::DeserializeOwned;

use agent_audit_core::{DEFAULT_QUEUE, Overflow};

use super::ConfigError;
use super::position::{key_line, line_col};
use super::registry::{AnyOptions, ErasedType, OptionFailure, SinkRegistry};

/// One `[[sinks]]` entry: the keys every sink has, and its own options.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name (default: the type, numbered when repeated).
    pub name: String,
    /// Whether its failure fails `emit` (default: true for `jsonl`, false
    /// otherwise; a registered type says).
    pub required: bool,
    /// Queue-full policy (default `block`).
    pub overflow: Overflow,
    /// Queue capacity in records (default
    /// [`DEFAULT_QUEUE`](agent_audit_core::DEFAULT_QUEUE)).
    pub queue: usize,
    /// Line of the entry in the file, for later errors.
    pub line: usize,
    pub(super) sink_type: TypeRef,
    pub(super) options: AnyOptions,
}

impl SinkConfig {
    /// A sink of a registered type with its options, for a configuration
    /// built in code (the default).
    #[cfg(any(feature = "jsonl", feature = "stdout"))]
    pub(super) fn of_type(
        registry: &SinkRegistry,
        type_name: &str,
        options: impl super::registry::AnyDebug,
    ) -> Option<SinkConfig> {
        let sink_type = registry.get(type_name)?.clone();
        Some(SinkConfig {
            name: type_name.into(),
            required: sink_type.required_by_default(),
            overflow: Overflow::default(),
            queue: DEFAULT_QUEUE,
            line: 0,
            sink_type: TypeRef(sink_type),
            options: std::sync::Arc::new(options),
        })
    }

    /// The `type` value.
    pub fn type_name(&self) -> &str {
        self.sink_type.0.name()
    }

    /// The sink's own options, when they are a `T` (the `Options` of its
    /// [`SinkType`](super::SinkType)): `sink.options::<JsonlOptions>()`.
    pub fn options<T: 'static>(&self) -> Option<&T> {
        (*self.options).as_any().downcast_ref::<T>()
    }
}

/// The registered type of a sink, shown by its name.
#[derive(Clone)]
pub(super) struct TypeRef(pub(super) std::sync::Arc<dyn ErasedType>);

impl fmt::Debug for TypeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.name())
    }
}

pub(super) fn parse_sink(
    registry: &SinkRegistry,
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
                message: format!("missing `type` ({})", type_list(registry)),
            });
        }
    };
    let Some(sink_type) = registry.get(&ty) else {
        return Err(err(
            "type",
            format!("unknown sink type `{ty}` ({})", registry.listing()),
        ));
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
    let options = sink_type.parse(t).map_err(|failure| match failure {
        OptionFailure::Serde { key, message } => err(&key, message),
        OptionFailure::Invalid(e) => match e.key() {
            Some(key) => ConfigError::Parse {
                path: source.into(),
                // `retry.max_elapsed_ms` sits on the `retry` line (an
                // inline table) or in a `[sinks.retry]` table below the
                // sink's.
                line: key_line(text, span.clone(), key.split('.').next().unwrap_or(key)),
                column: 1,
                key: Some(format!("sinks[{index}].{key}")),
                message: e.message().to_string(),
            },
            None => ConfigError::Parse {
                path: source.into(),
                line: line_col(text, span.start).0,
                column: 1,
                key: None,
                message: e.message().to_string(),
            },
        },
    })?;
    Ok(SinkConfig {
        name: name.unwrap_or_else(|| ty.clone()),
        required: required.unwrap_or_else(|| sink_type.required_by_default()),
        overflow: overflow.unwrap_or_default(),
        queue,
        line: line_col(text, span.start).0,
        sink_type: TypeRef(sink_type.clone()),
        options,
    })
}

/// "one of jsonl, stdout", or what to do when no type is registered.
fn type_list(registry: &SinkRegistry) -> String {
    if registry.types().next().is_none() {
        registry.listing()
    } else {
        format!("one of {}", registry.types().collect::<Vec<_>>().join(", "))
    }
}

/// Numbers a repeated default name (`jsonl`, `jsonl-2`) and refuses a
/// name given twice.
pub(super) fn name_sinks(sinks: &mut [SinkConfig], source: &str) -> Result<(), ConfigError> {
    for i in 0..sinks.len() {
        if sinks[..i].iter().any(|s| s.name == sinks[i].name) {
            let base = sinks[i].name.clone();
            if sinks[i].name == sinks[i].type_name() {
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

impl fmt::Display for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, required = {}, overflow = {:?}, queue = {})",
            self.name,
            self.type_name(),
            self.required,
            self.overflow,
            self.queue
        )
    }
}
