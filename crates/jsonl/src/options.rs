//! Options of the JSONL sink, as written in configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::JsonlError;

/// When the sink calls `fdatasync`, and so which ack level its writes reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Never: writes reach `Written` (the OS has them; a power loss may
    /// lose them, a process crash does not).
    Never,
    /// Every `fsync_interval_ms`: writes reach `Written`, and `Durable` at
    /// the next interval.
    Interval,
    /// Once per batch (group commit): a batch reaches `Durable` before its
    /// receipts say so.
    #[default]
    Batch,
    /// After every record: slowest, each record `Durable` on its own.
    Every,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Never => "never",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Batch => "batch",
            FsyncPolicy::Every => "every",
        })
    }
}

/// A chain key; its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct ChainKey(Arc<[u8]>);

impl ChainKey {
    /// Wraps key bytes.
    pub fn new(key: impl AsRef<[u8]>) -> ChainKey {
        ChainKey(Arc::from(key.as_ref()))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainKey(<{} bytes, redacted>)", self.0.len())
    }
}

fn default_interval_ms() -> u64 {
    1000
}

/// Options of a [`crate::JsonlSink`].
///
/// Deserialises from the `[[sinks]] type = "jsonl"` table of `audit.toml`
/// once the dispatcher's own keys (`type`, `name`, `required`, `overflow`,
/// `queue`) are taken out; unknown keys are errors. The chain key is not a
/// configuration value (it comes from the environment): set it with
/// [`JsonlOptions::chain_key`].
///
/// ```
/// use agent_audit_jsonl::{FsyncPolicy, JsonlOptions};
///
/// let opts: JsonlOptions = serde_json::from_str(r#"{"path": "audit-log.jsonl", "fsync": "never"}"#).unwrap();
/// assert_eq!(opts.fsync, FsyncPolicy::Never);
/// assert_eq!(opts.fsync_interval_ms, 1000);
/// assert!(serde_json::from_str::<JsonlOptions>(r#"{"path": "a", "fsynk": "never"}"#).is_err());
/// let opts = JsonlOptions::new("audit-log.jsonl").rotate_bytes(64 << 20).chain_key(b"k");
/// assert!(opts.has_chain_key());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlOptions {
    /// The active log file. Rotated files live next to it (see
    /// [`crate::files`]).
    pub path: PathBuf,
    /// When to `fdatasync`. Default `batch`.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Period of `fsync = "interval"`, in milliseconds. Default 1000.
    #[serde(default = "default_interval_ms")]
    pub fsync_interval_ms: u64,
    /// Rotate once the active file would exceed this many bytes. Default:
    /// never rotate.
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
    #[serde(skip)]
    chain_key: Option<ChainKey>,
}

impl JsonlOptions {
    /// Defaults (`fsync = "batch"`, no rotation, plain chain) for `path`.
    pub fn new(path: impl Into<PathBuf>) -> JsonlOptions {
        JsonlOptions {
            path: path.into(),
            fsync: FsyncPolicy::default(),
            fsync_interval_ms: default_interval_ms(),
            rotate_bytes: None,
            chain_key: None,
        }
    }

    /// Sets the fsync policy.
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    /// Sets the period of `fsync = "interval"`.
    pub fn fsync_interval(mut self, every: Duration) -> Self {
        self.fsync_interval_ms = every.as_millis().min(u64::MAX as u128) as u64;
        self
    }

    /// Rotates the file once it would exceed `bytes`.
    pub fn rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = Some(bytes);
        self
    }

    /// Makes the chain HMAC-SHA256 under `key` instead of plain SHA-256.
    pub fn chain_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.chain_key = Some(ChainKey::new(key));
        self
    }

    /// Sets or clears the chain key (for configuration code that may or may
    /// not have one).
    pub fn set_chain_key(&mut self, key: Option<ChainKey>) {
        self.chain_key = key;
    }

    /// Whether a chain key is set.
    pub fn has_chain_key(&self) -> bool {
        self.chain_key.is_some()
    }

    pub(crate) fn key(&self) -> Option<&ChainKey> {
        self.chain_key.as_ref()
    }

    /// The path of the active file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks values serde cannot: a zero interval or rotation size, an
    /// empty path, an empty key.
    pub fn validate(&self) -> Result<(), JsonlError> {
        let bad = |field: &'static str, reason: &str| {
            Err(JsonlError::InvalidOption {
                path: self.path.clone(),
                field,
                reason: reason.to_string(),
            })
        };
        if self.path.as_os_str().is_empty() {
            return bad("path", "must not be empty");
        }
        if self.fsync_interval_ms == 0 {
            return bad("fsync_interval_ms", "must be at least 1");
        }
        if self.rotate_bytes == Some(0) {
            return bad(
                "rotate_bytes",
                "must be at least 1 (omit it to never rotate)",
            );
        }
        if self
            .chain_key
            .as_ref()
            .is_some_and(|k| k.bytes().is_empty())
        {
            return bad("chain_key", "must not be empty");
        }
        Ok(())
    }
}
