//! `audit.toml`: configuration to a running [`Dispatcher`](agent_audit_core::Dispatcher).
//!
//! ```toml
//! [service]
//! name = "bank-assistant"
//!
//! [[sinks]]
//! type = "jsonl"
//! path = "audit-log.jsonl"
//! fsync = "batch"        # never | interval | batch | every
//! required = true
//! overflow = "block"     # block | drop_newest | fail_closed
//! queue = 8192
//!
//! [[sinks]]
//! type = "stdout"
//! format = "pretty"      # pretty | json
//! ```
//!
//! Unknown keys, wrong types and unknown sink types are errors that name the
//! file, line and key. With no file, [`Config::default`] applies: a JSONL file
//! `audit-log.jsonl` in the working directory plus stdout.
//!
//! The `type` of a sink is looked up in a [`SinkRegistry`]: the built-in
//! types by default, or a registry with types of your own
//! ([`Config::load_with`], [`Config::parse_with`], [`Config::discover_with`]).
//!
//! The loader is one file per job: `load` (finding and reading the file),
//! `parse` (the text to a [`Config`]), `sinks` (each `[[sinks]]` table by
//! its type), `registry` (the sink types a file may name), `builtins`
//! (`jsonl`, `stdout`, `otlp` registered), `sections` (the `[integrity]` and `[model]` sections other
//! crates define), `position` (the line of a key, for errors), `assemble`
//! (a [`Config`] to a running [`Dispatcher`](agent_audit_core::Dispatcher))
//! and `error`.

mod assemble;
mod attributes;
mod builtins;
mod error;
mod load;
mod parse;
mod position;
mod registry;
mod sections;
mod sinks;
#[cfg(feature = "otel")]
mod telemetry;

use serde::Deserialize;

pub use error::{BuildError, ConfigError};
pub use load::{CONFIG_ENV, MAX_CONFIG_BYTES};
pub use registry::{
    BuiltSink, OptionError, RegistryError, SinkBuildError, SinkContext, SinkRegistry, SinkType,
};
#[cfg(feature = "agents")]
pub use sections::ModelError;
pub use sinks::SinkConfig;
#[cfg(feature = "otel")]
pub use telemetry::TelemetryConfig;

/// A whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (`<default>` when built in).
    pub source: String,
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[[sinks]]`, in order.
    pub sinks: Vec<SinkConfig>,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[attributes]`: stamped on every record (schema v2).
    pub attributes: agent_audit_core::Attributes,
    /// `[redaction]`; `None` means the secret-shaped defaults.
    #[cfg(feature = "redact")]
    pub redaction: Option<agent_audit_redact::RedactionConfig>,
    /// `[model]`.
    #[cfg(feature = "agents")]
    pub model: Option<agent_audit_agents::ModelConfig>,
    /// `[integrity]`: the chain key and signed checkpoints.
    #[cfg(feature = "jsonl")]
    pub integrity: Option<agent_audit_jsonl::integrity::IntegrityConfig>,
    /// `[telemetry]`: traces and metrics through the OpenTelemetry SDK;
    /// `None` exports none (see [`crate::telemetry`]).
    #[cfg(feature = "otel")]
    pub telemetry: Option<TelemetryConfig>,
}

/// `[service]`: who is emitting.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name, sent as OTLP `service.name`. `None` when the table
    /// does not set it: then `OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `agent-audit` ([`DEFAULT_SERVICE_NAME`]).
    #[serde(default)]
    pub name: Option<String>,
    /// Service version, sent as OTLP `service.version`.
    #[serde(default)]
    pub version: Option<String>,
}

/// `service.name` when neither `[service]` nor the environment names one.
pub const DEFAULT_SERVICE_NAME: &str = "agent-audit";

#[cfg(feature = "otlp")]
impl ServiceConfig {
    /// The OTLP resource: this table's keys, then `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES`, then this machine's host name.
    pub fn resource(
        &self,
    ) -> Result<agent_audit_otlp::ServiceInfo, agent_audit_otlp::OtlpConfigError> {
        agent_audit_otlp::ServiceInfo::from_env(
            self.name.as_deref(),
            self.version.as_deref(),
            DEFAULT_SERVICE_NAME,
        )
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest serialised record; bigger records are refused, never
    /// truncated. Default 1 MiB.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

/// Smallest `[limits] max_record_bytes`: below it ordinary records (about
/// 400 bytes with their ids) would be refused.
pub const MIN_RECORD_BYTES: usize = 4096;

/// Largest `[limits] max_record_bytes`: the longest line the JSONL reader
/// and verifier accept (16 MiB), so every record written can be read back.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// The most `[[sinks]]` a configuration may name. Each sink is a worker
/// thread with its own queue, and more than a handful has no use; the
/// bound keeps a hostile file from starting thousands of threads (or from
/// making the loader, which looks up each table's line, do quadratic work).
pub const MAX_SINKS: usize = 64;

fn default_max_record_bytes() -> usize {
    1 << 20
}

impl Default for Config {
    /// A JSONL file `audit-log.jsonl` in the working directory (fsync per
    /// batch, required) plus readable lines on stdout.
    // Each push is feature-gated, which `vec![]` cannot express.
    #[allow(clippy::vec_init_then_push)]
    fn default() -> Self {
        #[allow(unused_mut)]
        let mut sinks = Vec::new();
        #[cfg(any(feature = "jsonl", feature = "stdout"))]
        let builtins = SinkRegistry::with_builtins();
        #[cfg(feature = "jsonl")]
        sinks.extend(SinkConfig::of_type(
            &builtins,
            "jsonl",
            agent_audit_jsonl::JsonlOptions::new("audit-log.jsonl"),
        ));
        #[cfg(feature = "stdout")]
        sinks.extend(SinkConfig::of_type(
            &builtins,
            "stdout",
            agent_audit_stdout::StdoutOptions::default(),
        ));
        Config {
            source: "<default>".into(),
            service: ServiceConfig::default(),
            sinks,
            limits: LimitsConfig::default(),
            attributes: Default::default(),
            #[cfg(feature = "redact")]
            redaction: None,
            #[cfg(feature = "agents")]
            model: None,
            #[cfg(feature = "jsonl")]
            integrity: None,
            #[cfg(feature = "otel")]
            telemetry: None,
        }
    }
}
