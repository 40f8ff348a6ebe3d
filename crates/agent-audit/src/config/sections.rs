//! The sections whose types other crates define, `[integrity]` (the JSONL
//! crate) and `[model]` (the agents crate): checked against the text, so
//! that an error names the key's line, and the model built. `[redaction]`
//! has no check here: its rules are compiled when the dispatcher is
//! assembled.

#[cfg(feature = "agents")]
use super::Config;
#[cfg(any(feature = "jsonl", feature = "agents"))]
use super::ConfigError;
#[cfg(any(feature = "jsonl", feature = "agents"))]
use super::position::{key_line, section};

/// Refuses an `[integrity]` section whose values do not fit together,
/// naming the key's line when the error names a key.
#[cfg(feature = "jsonl")]
pub(super) fn check_integrity(
    text: &str,
    source: &str,
    integrity: &agent_audit_jsonl::integrity::IntegrityConfig,
) -> Result<(), ConfigError> {
    integrity.validate().map_err(|e| match &e {
        agent_audit_jsonl::integrity::IntegrityError::InvalidValue { field, reason } => {
            ConfigError::Parse {
                path: source.into(),
                line: key_line(text, section(text, "integrity"), field),
                column: 1,
                key: Some(format!("integrity.{field}")),
                message: reason.clone(),
            }
        }
        _ => ConfigError::Invalid {
            path: source.into(),
            section: "integrity",
            message: e.to_string(),
        },
    })
}

/// Refuses a `[model]` section with a value out of range, naming the key's
/// line.
#[cfg(feature = "agents")]
pub(super) fn check_model(
    text: &str,
    source: &str,
    model: &agent_audit_agents::ModelConfig,
) -> Result<(), ConfigError> {
    let Err(e) = model.validate() else {
        return Ok(());
    };
    let key = match &e {
        agent_audit_agents::ModelConfigError::OutOfRange { key, .. } => Some(*key),
        _ => None,
    };
    Err(ConfigError::Parse {
        path: source.into(),
        line: key.map_or(1, |k| key_line(text, section(text, "model"), k)),
        column: 1,
        key: key.map(|k| format!("model.{k}")),
        message: e.to_string().trim_start_matches("[model] ").to_string(),
    })
}

/// Why the `[model]` section could not become a model.
#[cfg(feature = "agents")]
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ModelError {
    /// Configuration file.
    pub path: String,
    /// Cause, naming the key.
    #[source]
    pub source: agent_audit_agents::ModelConfigError,
}

#[cfg(feature = "agents")]
impl Config {
    /// The configured model, or the deterministic offline model when there
    /// is no `[model]` section.
    pub fn model(&self) -> Result<std::sync::Arc<dyn agent_audit_agents::ChatModel>, ModelError> {
        agent_audit_agents::build_model(&self.model.clone().unwrap_or_default()).map_err(|source| {
            ModelError {
                path: self.source.clone(),
                source,
            }
        })
    }
}
