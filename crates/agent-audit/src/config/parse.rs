//! Configuration text to a [`Config`]: TOML with unknown keys refused, the
//! record limit checked, the sinks read, and each section checked, every
//! error naming the file, line and key.

use serde::Deserialize;

use super::position::{key_line, line_col};
#[cfg(feature = "jsonl")]
use super::sections::check_integrity;
#[cfg(feature = "agents")]
use super::sections::check_model;
use super::sinks::{name_sinks, parse_sink};
use super::{
    Config, ConfigError, LimitsConfig, MAX_RECORD_BYTES, MAX_SINKS, MIN_RECORD_BYTES,
    ServiceConfig, SinkRegistry,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    service: ServiceConfig,
    #[serde(default)]
    sinks: Option<Vec<toml::Spanned<toml::Table>>>,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    attributes: super::attributes::RawAttributes,
    #[cfg(feature = "redact")]
    #[serde(default)]
    redaction: Option<agent_audit_redact::RedactionConfig>,
    #[cfg(feature = "agents")]
    #[serde(default)]
    model: Option<agent_audit_agents::ModelConfig>,
    #[cfg(feature = "jsonl")]
    #[serde(default)]
    integrity: Option<agent_audit_jsonl::integrity::IntegrityConfig>,
    #[cfg(feature = "otel")]
    #[serde(default)]
    telemetry: Option<super::TelemetryConfig>,
}

impl Config {
    /// Parses configuration text; `source` names it in errors. The sink
    /// types are the built-in ones ([`SinkRegistry::with_builtins`]).
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        Config::parse_with(&SinkRegistry::with_builtins(), text, source)
    }

    /// Parses configuration text whose `[[sinks]]` may name any type in
    /// `registry`.
    pub fn parse_with(
        registry: &SinkRegistry,
        text: &str,
        source: &str,
    ) -> Result<Config, ConfigError> {
        if let Some(pos) = text.find('\0') {
            let (line, _) = line_col(text, pos);
            return Err(ConfigError::NotUtf8 {
                path: source.into(),
                line,
            });
        }
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = path_string(e.path());
            let inner = e.into_inner();
            let (line, column) = inner.span().map_or((1, 1), |s| line_col(text, s.start));
            let message = match key.as_deref().and_then(dotted_attribute) {
                Some(name) => super::attributes::dotted_key_message(name),
                None => inner.message().trim().to_string(),
            };
            ConfigError::Parse {
                path: source.into(),
                line,
                column,
                key,
                message,
            }
        })?;
        let max = raw.limits.max_record_bytes;
        if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&max) {
            return Err(ConfigError::Parse {
                path: source.into(),
                line: key_line(text, 0..text.len(), "max_record_bytes"),
                column: 1,
                key: Some("limits.max_record_bytes".into()),
                message: format!(
                    "{max} is out of range: a record limit must be between {MIN_RECORD_BYTES} and {MAX_RECORD_BYTES} bytes (the longest line the log's reader and verifier accept)"
                ),
            });
        }
        let mut sinks = Vec::new();
        match raw.sinks {
            None => sinks = Config::default().sinks,
            Some(tables) if tables.is_empty() => {
                return Err(ConfigError::Parse {
                    path: source.into(),
                    line: key_line(text, 0..text.len(), "sinks"),
                    column: 1,
                    key: Some("sinks".into()),
                    message: "no sinks: an audit trail needs at least one, or records would go nowhere (remove `sinks` for the default JSONL file and stdout)".into(),
                });
            }
            Some(tables) if tables.len() > MAX_SINKS => {
                let (line, _) = line_col(text, tables[MAX_SINKS].span().start);
                return Err(ConfigError::Parse {
                    path: source.into(),
                    line,
                    column: 1,
                    key: Some(format!("sinks[{MAX_SINKS}]")),
                    message: format!(
                        "{} sinks: at most {MAX_SINKS} (each runs its own worker thread and holds its own queue)",
                        tables.len()
                    ),
                });
            }
            Some(tables) => {
                for (i, table) in tables.into_iter().enumerate() {
                    sinks.push(parse_sink(registry, text, source, i, table)?);
                }
            }
        }
        name_sinks(&mut sinks, source)?;
        let attributes = super::attributes::parse(&raw.attributes, text, source)?;
        #[cfg(feature = "jsonl")]
        if let Some(integrity) = &raw.integrity {
            check_integrity(text, source, integrity)?;
        }
        #[cfg(feature = "agents")]
        if let Some(model) = &raw.model {
            check_model(text, source, model)?;
        }
        #[cfg(feature = "otel")]
        if let Some(t) = &raw.telemetry {
            super::telemetry::check_telemetry(text, source, t)?;
        }
        Ok(Config {
            source: source.into(),
            service: raw.service,
            sinks,
            limits: raw.limits,
            attributes,
            #[cfg(feature = "redact")]
            redaction: raw.redaction,
            #[cfg(feature = "agents")]
            model: raw.model,
            #[cfg(feature = "jsonl")]
            integrity: raw.integrity,
            #[cfg(feature = "otel")]
            telemetry: raw.telemetry,
        })
    }
}

fn path_string(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    (s != "." && !s.is_empty()).then_some(s)
}

/// The attribute name when the error's key is `attributes.<a>.<b>…`: a
/// dotted key in `[attributes]` (`tenant.id = "x"`), which TOML reads as
/// a table `tenant` holding `id`, and which the deserialiser refuses with
/// a message about its internals.
fn dotted_attribute(key: &str) -> Option<&str> {
    key.strip_prefix("attributes.")
        .filter(|rest| rest.contains('.'))
}
