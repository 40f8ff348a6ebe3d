//! The `[model]` section of `audit.toml` and the model it builds.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::model::ChatModel;
use crate::offline::OfflineModel;
use crate::openai::{
    ApiKey, ClientBuildError, MAX_RESPONSE_BYTES, MIN_RESPONSE_BYTES, OpenAiClient,
};

/// Base URL used when `base_url` is not given.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Variable the key is read from when `api_key_env` is not given.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
/// Per-attempt timeout when `timeout_ms` is not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Retries when `max_retries` is not given.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// Which model implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Provider {
    /// The deterministic offline model (no network).
    #[default]
    Offline,
    /// An OpenAI-compatible Chat Completions server.
    Openai,
}

/// The `[model]` section:
///
/// ```toml
/// [model]
/// provider = "openai"                    # "openai" | "offline" (required)
/// base_url = "http://127.0.0.1:11434/v1" # default https://api.openai.com/v1
/// model = "llama3.2"                     # required for "openai"
/// api_key_env = "OPENAI_API_KEY"         # the variable holding the key
/// timeout_ms = 60000                     # per attempt
/// max_retries = 2                        # after the first attempt
/// max_response_bytes = 16777216          # largest answer read (16 MiB)
/// ```
///
/// The key itself is never written in the file: only the name of the
/// environment variable that holds it. Without `api_key_env`, the key is
/// read from `OPENAI_API_KEY` if set (local servers need none). With no
/// `[model]` section, [`ModelConfig::default`] selects the offline model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `openai` or `offline`.
    pub provider: Provider,
    /// Base URL of the API, up to and including `/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Model name sent in requests and written in records.
    #[serde(default)]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Per-attempt timeout in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retries after the first attempt.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Largest response body read, in bytes (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`](crate::openai::DEFAULT_MAX_RESPONSE_BYTES)).
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
}

/// Largest `timeout_ms`: one hour for one attempt.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Largest `max_retries`.
pub const MAX_RETRIES: u32 = 20;

impl ModelConfig {
    /// Checks the numbers against their bounds (`timeout_ms` 1 to
    /// [`MAX_TIMEOUT_MS`], `max_retries` at most [`MAX_RETRIES`],
    /// `max_response_bytes` 1 KiB to 256 MiB) without
    /// building anything or reading the environment, so a configuration
    /// loader can refuse them with the key's line.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        let range = |key, value: u64, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ModelConfigError::OutOfRange {
                    key,
                    value,
                    min,
                    max,
                })
            }
        };
        if let Some(ms) = self.timeout_ms {
            range("timeout_ms", ms, 1, MAX_TIMEOUT_MS)?;
        }
        if let Some(n) = self.max_retries {
            range("max_retries", u64::from(n), 0, u64::from(MAX_RETRIES))?;
        }
        if let Some(n) = self.max_response_bytes {
            range(
                "max_response_bytes",
                n,
                MIN_RESPONSE_BYTES,
                MAX_RESPONSE_BYTES,
            )?;
        }
        Ok(())
    }
}

/// Why a `[model]` section could not become a model. Each names the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelConfigError {
    /// `provider = "openai"` without `model`.
    #[error("[model] provider = \"openai\" needs `model` (the model name, e.g. \"gpt-4o-mini\")")]
    MissingModel,
    /// The variable named by `api_key_env` is unset or empty.
    #[error(
        "[model] api_key_env = \"{var}\": the environment variable `{var}` is not set or empty"
    )]
    MissingApiKey {
        /// The variable.
        var: String,
    },
    /// A key that only applies to `openai` was given with `offline`.
    #[error(
        "[model] `{key}` has no meaning with provider = \"offline\"; remove it or set provider = \"openai\""
    )]
    NotForOffline {
        /// The key.
        key: &'static str,
    },
    /// A number outside its documented range.
    #[error("[model] {key} is {value}: it must be between {min} and {max}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The configured value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// `base_url` is invalid or the client could not be built.
    #[error("[model] {0}")]
    Client(#[from] ClientBuildError),
}

/// Builds the configured model, reading the key from the process environment.
pub fn build_model(config: &ModelConfig) -> Result<Arc<dyn ChatModel>, ModelConfigError> {
    build_model_with_env(config, |name| std::env::var(name).ok())
}

/// Like [`build_model`], with `env` looking up environment variables (for
/// tests and embedders that keep secrets elsewhere).
pub fn build_model_with_env(
    config: &ModelConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ChatModel>, ModelConfigError> {
    match config.provider {
        Provider::Offline => {
            let extra = [
                ("base_url", config.base_url.is_some()),
                ("model", config.model.is_some()),
                ("api_key_env", config.api_key_env.is_some()),
                ("timeout_ms", config.timeout_ms.is_some()),
                ("max_retries", config.max_retries.is_some()),
                ("max_response_bytes", config.max_response_bytes.is_some()),
            ];
            if let Some((key, _)) = extra.iter().find(|(_, set)| *set) {
                return Err(ModelConfigError::NotForOffline { key });
            }
            Ok(Arc::new(OfflineModel))
        }
        Provider::Openai => {
            let model = config
                .model
                .as_deref()
                .filter(|m| !m.trim().is_empty())
                .ok_or(ModelConfigError::MissingModel)?;
            config.validate()?;
            let timeout_ms = config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
            let key = match &config.api_key_env {
                Some(var) => Some(
                    env(var)
                        .filter(|k| !k.is_empty())
                        .ok_or_else(|| ModelConfigError::MissingApiKey { var: var.clone() })?,
                ),
                None => env(DEFAULT_API_KEY_ENV).filter(|k| !k.is_empty()),
            };
            let mut builder = OpenAiClient::builder(
                config.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
                model,
            )
            .timeout(Duration::from_millis(timeout_ms))
            .max_retries(config.max_retries.unwrap_or(DEFAULT_MAX_RETRIES));
            if let Some(limit) = config.max_response_bytes {
                builder = builder.max_response_bytes(limit);
            }
            if let Some(key) = key {
                builder = builder.api_key(ApiKey::new(key));
            }
            Ok(Arc::new(builder.build()?))
        }
    }
}
