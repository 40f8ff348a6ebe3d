//! Options of the JSONL sink, as written in configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::OptionsError;

/// When the sink calls `fdatasync`, and so which ack level its writes reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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

/// Largest `fsync_interval_ms`: one hour. A longer period leaves records
/// at `Written` for longer than anyone means by "interval", and an
/// unbounded one would overflow the timer.
pub const MAX_FSYNC_INTERVAL_MS: u64 = 3_600_000;

/// Largest `rotate_bytes`: 1 TiB per file.
pub const MAX_ROTATE_BYTES: u64 = 1 << 40;

/// Largest `rotate_every`: 366 days (a yearly rotation, leap years too).
pub const MAX_ROTATE_EVERY: Duration = Duration::from_secs(366 * 86_400);

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
    /// Rotate before the first record stamped `rotate_every` or more after
    /// the active file's first record. In configuration a number of seconds
    /// or a string with a unit `s`, `m`, `h` or `d` (`"1h"`, `"1d"`); see
    /// [`parse_rotate_every`]. Default: never rotate by age.
    #[serde(default, deserialize_with = "de_rotate_every")]
    pub rotate_every: Option<Duration>,
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
            rotate_every: None,
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

    /// Rotates the file before the first record stamped `every` or more
    /// after the file's first record (see the [crate docs](crate#rotation)).
    pub fn rotate_every(mut self, every: Duration) -> Self {
        self.rotate_every = Some(every);
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

    /// Checks values serde cannot: a zero or too large interval, rotation
    /// size or age (the bounds are [`MAX_FSYNC_INTERVAL_MS`],
    /// [`MAX_ROTATE_BYTES`] and [`MAX_ROTATE_EVERY`]), an empty path, an
    /// empty key.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let bad = |field: &'static str, reason: &str| {
            Err(OptionsError {
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
        if self.fsync_interval_ms > MAX_FSYNC_INTERVAL_MS {
            return bad(
                "fsync_interval_ms",
                &format!(
                    "is {}: at most {MAX_FSYNC_INTERVAL_MS} (one hour)",
                    self.fsync_interval_ms
                ),
            );
        }
        if self.rotate_bytes == Some(0) {
            return bad(
                "rotate_bytes",
                "must be at least 1 (omit it to never rotate)",
            );
        }
        if let Some(n) = self.rotate_bytes.filter(|n| *n > MAX_ROTATE_BYTES) {
            return bad(
                "rotate_bytes",
                &format!("is {n}: at most {MAX_ROTATE_BYTES} (1 TiB; omit it to never rotate)"),
            );
        }
        if self.rotate_every == Some(Duration::ZERO) {
            return bad(
                "rotate_every",
                "must be longer than zero (omit it to never rotate by age)",
            );
        }
        if let Some(d) = self.rotate_every.filter(|d| *d > MAX_ROTATE_EVERY) {
            return bad(
                "rotate_every",
                &format!(
                    "is {} seconds: at most {} (366 days; omit it to never rotate by age)",
                    d.as_secs(),
                    MAX_ROTATE_EVERY.as_secs()
                ),
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

const ROTATE_EVERY_FORMAT: &str = "a number of seconds, or a whole number with a unit s, m, h or d such as \"90s\", \"15m\", \"1h\", \"1d\"";

/// Parses a `rotate_every` value written as a string: a whole number of
/// seconds (`"3600"`) or a whole number with a unit `s`, `m`, `h` or `d`
/// (`"90s"`, `"15m"`, `"1h"`, `"1d"`, `"7d"`). A day is 86,400 seconds of
/// elapsed time, not a calendar day. Zero is refused. The error says what
/// is wrong, for messages that also name the key.
///
/// ```
/// use std::time::Duration;
/// use agent_audit_jsonl::parse_rotate_every;
///
/// assert_eq!(parse_rotate_every("1d"), Ok(Duration::from_secs(86_400)));
/// assert_eq!(parse_rotate_every("90s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_rotate_every("3600"), Ok(Duration::from_secs(3600)));
/// assert!(parse_rotate_every("1 fortnight").is_err());
/// assert!(parse_rotate_every("0h").is_err());
/// ```
pub fn parse_rotate_every(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let bad = |why: &str| format!("`{text}` {why}: expected {ROTATE_EVERY_FORMAT}");
    if number.is_empty() {
        return Err(bad("does not start with a whole number"));
    }
    let n: u64 = number.parse().map_err(|_| bad("is too large a number"))?;
    let scale: u64 = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(bad(&format!("has an unknown unit `{other}`"))),
    };
    let secs = n.checked_mul(scale).ok_or_else(|| bad("is too long"))?;
    if secs == 0 {
        return Err(format!(
            "`{text}` is zero: rotate_every must be at least 1 second (omit it to never rotate by age)"
        ));
    }
    Ok(Duration::from_secs(secs))
}

fn de_rotate_every<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct Visit;
    impl serde::de::Visitor<'_> for Visit {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "rotate_every as {ROTATE_EVERY_FORMAT}")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_rotate_every(v).map_err(|e| E::custom(format!("invalid rotate_every {e}")))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            if v == 0 {
                return Err(E::custom(
                    "invalid rotate_every 0: must be at least 1 second (omit it to never rotate by age)",
                ));
            }
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!(
                    "invalid rotate_every {v}: must be at least 1 second (omit it to never rotate by age)"
                ))),
            }
        }
    }
    d.deserialize_any(Visit).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_every_accepts_units_and_seconds_and_names_itself_when_wrong() {
        for (text, secs) in [
            ("1d", 86_400),
            ("12h", 43_200),
            ("15m", 900),
            ("45s", 45),
            ("7", 7),
            (" 2 d ", 172_800),
        ] {
            assert_eq!(
                parse_rotate_every(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        let parse = |json: &str| serde_json::from_str::<JsonlOptions>(json);
        assert_eq!(
            parse(r#"{"path":"a","rotate_every":"1d"}"#)
                .unwrap()
                .rotate_every,
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse(r#"{"path":"a","rotate_every":3600}"#)
                .unwrap()
                .rotate_every,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse(r#"{"path":"a"}"#).unwrap().rotate_every, None);
        for bad in [
            r#""1w""#,
            r#""d""#,
            r#""0d""#,
            "0",
            "-5",
            "1.5",
            r#""99999999999999999999s""#,
            r#""999999999999999999d""#,
            "true",
        ] {
            let err = parse(&format!(r#"{{"path":"a","rotate_every":{bad}}}"#))
                .unwrap_err()
                .to_string();
            assert!(err.contains("rotate_every"), "{bad}: {err}");
        }
        let err = JsonlOptions::new("a")
            .rotate_every(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("rotate_every"), "{err}");
    }
}
