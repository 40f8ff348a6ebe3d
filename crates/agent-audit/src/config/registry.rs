//! The sink types a configuration can name: each `type = "..."` of a
//! `[[sinks]]` table is looked up in a [`SinkRegistry`], whose entry reads
//! the table's own options and later builds the sink.
//!
//! The built-in types (`jsonl`, `stdout`, `otlp`, each behind its cargo
//! feature) are registered by [`SinkRegistry::with_builtins`] through the
//! same [`SinkType`] trait a team implements for its own sink.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use agent_audit_core::{AsyncSink, Sink};

use super::ServiceConfig;
use super::assemble::Assembly;

/// The error a [`SinkType::build`] returns: anything that says why the sink
/// could not be opened. It becomes
/// [`BuildError::Sink`](super::BuildError::Sink), naming the file, the
/// sink and its line.
pub type SinkBuildError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A sink type that `audit.toml` can name: its `type` value, its options,
/// their validation and how the sink is built.
///
/// The keys every sink has (`type`, `name`, `required`, `overflow`,
/// `queue`) are the configuration's own: they are taken out of the
/// `[[sinks]]` table before the rest is deserialised into
/// [`SinkType::Options`]. Give `Options` `#[serde(deny_unknown_fields)]` so
/// that a misspelt key is an error, as it is for the built-in types; every
/// error names the file, the line and the key.
///
/// See [`SinkRegistry`] for a complete example.
pub trait SinkType: Send + Sync + 'static {
    /// The sink's own keys, deserialised from its `[[sinks]]` table.
    type Options: DeserializeOwned + fmt::Debug + Send + Sync + 'static;

    /// The `type` value that names this sink type in `audit.toml`.
    fn name(&self) -> &str;

    /// Checks what serde cannot (a bound, a combination of keys), before
    /// anything is opened. The error names the key, dotted for a nested one
    /// (`retry.max_elapsed_ms`).
    fn validate(&self, options: &Self::Options) -> Result<(), OptionError> {
        let _ = options;
        Ok(())
    }

    /// `required` when the table leaves it out. `false` unless overridden:
    /// a sink whose failure should stop the agent says so.
    fn required_by_default(&self) -> bool {
        false
    }

    /// Opens the sink, when the dispatcher is assembled
    /// ([`Config::start`](super::Config::start)).
    fn build(
        &self,
        options: &Self::Options,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError>;
}

/// A sink built by a [`SinkType`], ready for the dispatcher: a blocking
/// [`Sink`] on its own worker thread, or an [`AsyncSink`] run there through
/// core's bridge (a private runtime, or the one given to
/// [`DispatcherBuilder::async_runtime`](agent_audit_core::DispatcherBuilder::async_runtime)
/// through [`Config::start_with`](super::Config::start_with)).
///
/// Non-exhaustive so that another kind of sink can be added without
/// breaking a registrant: build one with [`BuiltSink::new`],
/// [`BuiltSink::new_async`] or `From`.
#[non_exhaustive]
pub enum BuiltSink {
    /// A synchronous [`Sink`].
    Sync(Box<dyn Sink>),
    /// An asynchronous [`AsyncSink`].
    Async(Box<dyn AsyncSink>),
}

impl BuiltSink {
    /// A synchronous sink.
    pub fn new(sink: impl Sink) -> BuiltSink {
        BuiltSink::Sync(Box::new(sink))
    }

    /// An asynchronous sink.
    pub fn new_async(sink: impl AsyncSink) -> BuiltSink {
        BuiltSink::Async(Box::new(sink))
    }
}

impl From<Box<dyn Sink>> for BuiltSink {
    fn from(sink: Box<dyn Sink>) -> BuiltSink {
        BuiltSink::Sync(sink)
    }
}

impl From<Box<dyn AsyncSink>> for BuiltSink {
    fn from(sink: Box<dyn AsyncSink>) -> BuiltSink {
        BuiltSink::Async(sink)
    }
}

impl fmt::Debug for BuiltSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuiltSink::Sync(_) => f.write_str("BuiltSink::Sync(..)"),
            BuiltSink::Async(_) => f.write_str("BuiltSink::Async(..)"),
        }
    }
}

/// What a [`SinkType::build`] knows about the sink it builds.
pub struct SinkContext<'a> {
    pub(super) name: &'a str,
    pub(super) required: bool,
    pub(super) source: &'a str,
    pub(super) line: usize,
    pub(super) service: &'a ServiceConfig,
    /// State the built-in types share across sinks (the JSONL head and
    /// lease); private, since no other sink type may take them. Only the
    /// JSONL type reads it.
    #[cfg_attr(not(feature = "jsonl"), allow(dead_code))]
    pub(super) assembly: &'a mut Assembly,
}

impl SinkContext<'_> {
    /// The sink's unique name (`name`, else the type, numbered when
    /// repeated).
    pub fn name(&self) -> &str {
        self.name
    }

    /// Whether the sink's failure stops the agent.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The configuration file (`<default>` for the built-in default).
    pub fn source(&self) -> &str {
        self.source
    }

    /// The line of the sink's `[[sinks]]` table (0 for the default).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The `[service]` section: who is emitting.
    pub fn service(&self) -> &ServiceConfig {
        self.service
    }
}

/// A value in a sink's options that the sink cannot use, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match key { Some(k) => format!("key `{k}`: {message}"), None => message.clone() })]
pub struct OptionError {
    key: Option<String>,
    message: String,
}

impl OptionError {
    /// The value of `key` (dotted for a nested key: `retry.max_elapsed_ms`)
    /// is unusable; `message` says why, and is shown as written.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> OptionError {
        OptionError {
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// The options as a whole are unusable (no one key is at fault); the
    /// error names the table's line.
    pub fn table(message: impl Into<String>) -> OptionError {
        OptionError {
            key: None,
            message: message.into(),
        }
    }

    /// The key at fault, when one is.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Why a sink type could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two types with one name: a configuration would not say which.
    #[error("sink type `{0}` is already registered")]
    Duplicate(String),
    /// A name a TOML string could hold but an operator should not have to
    /// type: empty, or other than ASCII letters, digits, `_`, `-` and `.`.
    #[error(
        "sink type name `{0}` is not usable: use ASCII letters, digits, `_`, `-` and `.` (not empty)"
    )]
    BadName(String),
}

/// The sink types a configuration may name.
///
/// [`Config::load`](super::Config::load), [`Config::parse`](super::Config::parse)
/// and [`Config::discover`](super::Config::discover) use
/// [`SinkRegistry::with_builtins`]; the `_with` variants take a registry with
/// types of your own:
///
/// ```
/// use agent_audit::config::{BuiltSink, Config, OptionError, SinkContext, SinkBuildError, SinkRegistry, SinkType};
/// use agent_audit::{AckLevel, Batch, Sink, SinkError};
///
/// /// A sink that counts records and says how many at close.
/// struct Counter { every: u64, seen: u64 }
///
/// impl Sink for Counter {
///     fn max_level(&self) -> AckLevel { AckLevel::Written }
///     fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
///         self.seen += batch.records.len() as u64;
///         Ok(AckLevel::Written)
///     }
/// }
///
/// /// `type = "counter"`, with its one key.
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct CounterOptions { every: u64 }
///
/// struct CounterType;
///
/// impl SinkType for CounterType {
///     type Options = CounterOptions;
///     fn name(&self) -> &str { "counter" }
///     fn validate(&self, o: &CounterOptions) -> Result<(), OptionError> {
///         if o.every == 0 {
///             return Err(OptionError::new("every", "must be at least 1"));
///         }
///         Ok(())
///     }
///     fn build(&self, o: &CounterOptions, _: &mut SinkContext<'_>) -> Result<BuiltSink, SinkBuildError> {
///         Ok(BuiltSink::new(Counter { every: o.every, seen: 0 }))
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = SinkRegistry::with_builtins().register(CounterType)?;
/// let text = "[[sinks]]\ntype = \"counter\"\nevery = 10\nrequired = true\n";
/// let config = Config::parse_with(&registry, text, "audit.toml")?;
/// assert_eq!(config.sinks[0].type_name(), "counter");
///
/// // A bad value names the file, line and key.
/// let e = Config::parse_with(&registry, "[[sinks]]\ntype = \"counter\"\nevery = 0\n", "audit.toml")
///     .unwrap_err();
/// assert_eq!(e.to_string(), "audit.toml:3:1: key `sinks[0].every`: must be at least 1");
/// # Ok(()) }
/// ```
///
/// From a file, `Config::load_with(&registry, path)`; with the flag and the
/// variable, `Config::discover_with(&registry, explicit)`. The sink is built
/// by [`Config::start`](super::Config::start) like any other.
#[derive(Clone, Default)]
pub struct SinkRegistry {
    types: BTreeMap<String, Arc<dyn ErasedType>>,
}

impl SinkRegistry {
    /// No sink types at all.
    pub fn new() -> SinkRegistry {
        SinkRegistry::default()
    }

    /// The built-in types this build has: `jsonl`, `stdout`, `otlp`, each
    /// behind the cargo feature of that name.
    pub fn with_builtins() -> SinkRegistry {
        let mut registry = SinkRegistry::new();
        super::builtins::register(&mut registry);
        registry
    }

    /// Adds a sink type; its name must be new.
    pub fn register<T: SinkType>(mut self, sink_type: T) -> Result<SinkRegistry, RegistryError> {
        self.insert(sink_type)?;
        Ok(self)
    }

    /// Adds a sink type in place; its name must be new.
    pub fn insert<T: SinkType>(&mut self, sink_type: T) -> Result<(), RegistryError> {
        let name = sink_type.name().to_string();
        let usable = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !usable {
            return Err(RegistryError::BadName(name));
        }
        if self.types.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        self.types.insert(name, Arc::new(Typed(sink_type)));
        Ok(())
    }

    /// The registered type names, sorted.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    pub(super) fn get(&self, name: &str) -> Option<&Arc<dyn ErasedType>> {
        self.types.get(name)
    }

    /// The registered names for an error: "jsonl, stdout", or what to do
    /// when there are none.
    pub(super) fn listing(&self) -> String {
        if self.types.is_empty() {
            "none are registered: enable a sink feature of agent-audit (jsonl, stdout, otlp) or register a type".into()
        } else {
            format!(
                "registered: {}",
                self.types().collect::<Vec<_>>().join(", ")
            )
        }
    }
}

impl fmt::Debug for SinkRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.types()).finish()
    }
}

/// A sink's deserialised options, whatever their type.
pub(super) type AnyOptions = Arc<dyn AnyDebug>;

pub(super) trait AnyDebug: Any + fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + fmt::Debug + Send + Sync> AnyDebug for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Where an option error came from, which decides the line it names.
pub(super) enum OptionFailure {
    /// serde: the key as serde's path gives it.
    Serde { key: String, message: String },
    /// [`SinkType::validate`]: the key's first segment has the line (a
    /// nested key sits on its inline table's line).
    Invalid(OptionError),
}

/// [`SinkType`] without its `Options` type, so that types with different
/// options share one map.
pub(super) trait ErasedType: Send + Sync {
    fn name(&self) -> &str;
    fn required_by_default(&self) -> bool;
    fn parse(&self, table: toml::Table) -> Result<AnyOptions, OptionFailure>;
    fn build(
        &self,
        options: &AnyOptions,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError>;
}

struct Typed<T>(T);

impl<T: SinkType> ErasedType for Typed<T> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn required_by_default(&self) -> bool {
        self.0.required_by_default()
    }

    fn parse(&self, table: toml::Table) -> Result<AnyOptions, OptionFailure> {
        let options: T::Options = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let message = e.inner().message().trim().to_string();
                let key = e.path().to_string();
                let key = if key == "." {
                    unknown_field(&message).unwrap_or_default()
                } else {
                    key
                };
                OptionFailure::Serde { key, message }
            })?;
        self.0.validate(&options).map_err(OptionFailure::Invalid)?;
        Ok(Arc::new(options))
    }

    fn build(
        &self,
        options: &AnyOptions,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        // Through the Arc: `Arc<dyn AnyDebug>` is itself `Any`.
        match (**options).as_any().downcast_ref::<T::Options>() {
            Some(o) => self.0.build(o, context),
            // A SinkConfig's options come from its own type's parse.
            None => Err(format!("options of another type given to `{}`", self.0.name()).into()),
        }
    }
}

/// The field named by serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}
