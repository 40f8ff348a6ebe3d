//! The `[integrity]` section of `audit.toml`: the chain key and signed
//! checkpoints.
//!
//! ```toml
//! [integrity]
//! key_env = "AUDIT_CHAIN_KEY"              # HMAC-SHA256 chain under this variable's value
//! signing_key_file = "keys/audit-signing-key.pem"   # Ed25519, from `agent-audit keygen`
//! checkpoint_every = 1000                  # records
//! checkpoint_interval_secs = 60            # while records flow
//! sink = "jsonl"                           # which JSONL sink's chain to checkpoint
//! ```
//!
//! Every key is optional. Without `key_env` the chain is plain SHA-256;
//! without `signing_key_file` no checkpoints are emitted.
//!
//! ```
//! use agent_audit_jsonl::integrity::IntegrityConfig;
//! use agent_audit_jsonl::JsonlOptions;
//!
//! let config: IntegrityConfig = toml_like(r#"{"key_env": "DOC_CHAIN_KEY", "checkpoint_every": 500}"#);
//! assert_eq!(config.checkpoint_every, 500);
//! assert_eq!(config.checkpoint_interval_secs, 60);
//!
//! // The key comes from the environment, never from the file: an unset
//! // variable is an error naming it, not a silently plain chain.
//! let mut options = JsonlOptions::new("audit-log.jsonl");
//! let err = config.apply_chain_key(&mut options).unwrap_err();
//! assert!(err.to_string().contains("DOC_CHAIN_KEY is not set"));
//! assert!(!options.has_chain_key());
//!
//! // Unknown keys are errors.
//! assert!(serde_json::from_str::<IntegrityConfig>(r#"{"key_envv": "X"}"#).is_err());
//! # fn toml_like(s: &str) -> IntegrityConfig { serde_json::from_str(s).unwrap() }
//! ```

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_audit_core::Auditor;
use serde::Deserialize;

use crate::checkpoint::{CheckpointOptions, Checkpointer, DEFAULT_EVERY, DEFAULT_INTERVAL};
use crate::head::HeadHandle;
use crate::keys::{KeyError, Signer};
use crate::options::{ChainKey, JsonlOptions};

/// A chain key shorter than this is refused: HMAC is only as strong as its
/// key, and the chain can be brute-forced offline from any two lines.
pub const MIN_KEY_BYTES: usize = 16;

fn default_every() -> u64 {
    DEFAULT_EVERY
}

fn default_interval_secs() -> u64 {
    DEFAULT_INTERVAL.as_secs()
}

/// The `[integrity]` section. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrityConfig {
    /// Environment variable holding the chain key (its bytes, at least
    /// [`MIN_KEY_BYTES`]); the chain is then HMAC-SHA256 under it.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Ed25519 private key (PKCS#8 PEM, mode 0600) to sign checkpoints with.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// A checkpoint after this many records. Default 1000.
    #[serde(default = "default_every")]
    pub checkpoint_every: u64,
    /// A checkpoint after this many seconds while records flow. Default 60.
    #[serde(default = "default_interval_secs")]
    pub checkpoint_interval_secs: u64,
    /// Name of the JSONL sink whose chain checkpoints cover; default: the
    /// first JSONL sink.
    #[serde(default)]
    pub sink: Option<String>,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig {
            key_env: None,
            signing_key_file: None,
            checkpoint_every: default_every(),
            checkpoint_interval_secs: default_interval_secs(),
            sink: None,
        }
    }
}

/// Why the integrity settings cannot be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// A value serde accepted is out of range.
    #[error("[integrity] {field}: {reason}")]
    InvalidValue {
        /// The key.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The chain key variable is not set.
    #[error(
        "chain key variable {var} is not set: export the chain key in it (e.g. `export {var}=$(openssl rand -hex 32)`), or drop key_env for a plain chain"
    )]
    KeyNotSet {
        /// The variable.
        var: String,
    },
    /// The chain key is too short.
    #[error(
        "chain key variable {var} holds {len} bytes; at least {min} are required (e.g. `openssl rand -hex 32`)"
    )]
    KeyTooShort {
        /// The variable.
        var: String,
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The signing key could not be loaded.
    #[error("[integrity] signing_key_file: {0}")]
    SigningKey(#[from] KeyError),
    /// The checkpointer could not start.
    #[error(transparent)]
    Checkpointer(#[from] crate::checkpoint::CheckpointError),
}

/// Reads a chain key from environment variable `var`: its bytes as they
/// are, at least [`MIN_KEY_BYTES`] of them.
pub fn chain_key_from_env(var: &str) -> Result<ChainKey, IntegrityError> {
    let value = std::env::var_os(var).ok_or_else(|| IntegrityError::KeyNotSet {
        var: var.to_string(),
    })?;
    let bytes = value.into_vec();
    if bytes.len() < MIN_KEY_BYTES {
        return Err(IntegrityError::KeyTooShort {
            var: var.to_string(),
            len: bytes.len(),
            min: MIN_KEY_BYTES,
        });
    }
    Ok(ChainKey::new(bytes))
}

/// Largest `checkpoint_every`: ten million records. Rarer checkpoints
/// leave a longer tail of the log that only the chain protects.
pub const MAX_CHECKPOINT_EVERY: u64 = 10_000_000;

/// Largest `checkpoint_interval_secs`: one day.
pub const MAX_CHECKPOINT_INTERVAL_SECS: u64 = 86_400;

impl IntegrityConfig {
    /// Checks values serde cannot: zero or too large counts and intervals
    /// (the bounds are [`MAX_CHECKPOINT_EVERY`] and
    /// [`MAX_CHECKPOINT_INTERVAL_SECS`]), an empty variable name.
    pub fn validate(&self) -> Result<(), IntegrityError> {
        let bad = |field, reason: &str| {
            Err(IntegrityError::InvalidValue {
                field,
                reason: reason.to_string(),
            })
        };
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every", "must be at least 1");
        }
        if self.checkpoint_every > MAX_CHECKPOINT_EVERY {
            return bad(
                "checkpoint_every",
                &format!(
                    "is {}: at most {MAX_CHECKPOINT_EVERY} records between checkpoints",
                    self.checkpoint_every
                ),
            );
        }
        if self.checkpoint_interval_secs == 0 {
            return bad("checkpoint_interval_secs", "must be at least 1");
        }
        if self.checkpoint_interval_secs > MAX_CHECKPOINT_INTERVAL_SECS {
            return bad(
                "checkpoint_interval_secs",
                &format!(
                    "is {}: at most {MAX_CHECKPOINT_INTERVAL_SECS} (one day)",
                    self.checkpoint_interval_secs
                ),
            );
        }
        if self.key_env.as_deref().is_some_and(str::is_empty) {
            return bad("key_env", "must name an environment variable");
        }
        Ok(())
    }

    /// Makes `signing_key_file` relative to `dir` (the configuration file's
    /// directory) when it is a relative path.
    pub fn resolve_paths(&mut self, dir: &Path) {
        if let Some(p) = &self.signing_key_file
            && p.is_relative()
        {
            self.signing_key_file = Some(dir.join(p));
        }
    }

    /// The chain key from `key_env`, or `None` without `key_env`.
    pub fn chain_key(&self) -> Result<Option<ChainKey>, IntegrityError> {
        self.key_env.as_deref().map(chain_key_from_env).transpose()
    }

    /// Sets the chain key on a JSONL sink's options (or leaves them plain
    /// without `key_env`). Call it for every JSONL sink before building it.
    pub fn apply_chain_key(&self, options: &mut JsonlOptions) -> Result<(), IntegrityError> {
        if let Some(key) = self.chain_key()? {
            options.set_chain_key(Some(key));
        }
        Ok(())
    }

    /// The checkpoint signing key, or `None` without `signing_key_file`.
    pub fn signer(&self) -> Result<Option<Signer>, IntegrityError> {
        Ok(self
            .signing_key_file
            .as_deref()
            .map(Signer::load)
            .transpose()?)
    }

    /// How often to checkpoint.
    pub fn checkpoint_options(&self) -> CheckpointOptions {
        CheckpointOptions {
            every: self.checkpoint_every.max(1),
            interval: Duration::from_secs(self.checkpoint_interval_secs.max(1)),
        }
    }

    /// Starts a [`Checkpointer`] on `head` when `signing_key_file` is set.
    /// Call it inside the Tokio runtime, after the dispatcher started; call
    /// [`Checkpointer::finish`] before the dispatcher's shutdown.
    pub fn start_checkpointer(
        &self,
        auditor: Auditor,
        head: HeadHandle,
    ) -> Result<Option<Checkpointer>, IntegrityError> {
        match self.signer()? {
            Some(signer) => Ok(Some(Checkpointer::start(
                auditor,
                head,
                signer,
                self.checkpoint_options(),
            )?)),
            None => Ok(None),
        }
    }
}
