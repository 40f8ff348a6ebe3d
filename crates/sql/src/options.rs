//! The `[[sinks]] type = "sql"` keys.

use std::fmt;
use std::time::Duration;

use crate::schema::{DEFAULT_TABLE, check_table_name};
use crate::url::SqlUrl;

/// Records per write (one transaction) unless `batch_size` says.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// The most `batch_size` may be.
pub const MAX_BATCH_SIZE: usize = 100_000;

/// The SQL sink's options, as `audit.toml` gives them:
///
/// ```toml
/// [[sinks]]
/// type = "sql"
/// url = "sqlite://audit.db"      # or url_env = "AUDIT_DB_URL"
/// table = "audit_records"        # default
/// required = true
/// ```
///
/// `Debug` masks a password should one be in `url` (validation refuses it).
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SqlOptions {
    /// The database, without a password (`sqlite://PATH`,
    /// `postgres://USER@HOST:PORT/DB`). Exactly one of `url` and `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable that holds the URL, password included.
    #[serde(default)]
    pub url_env: Option<String>,
    /// The table (default `audit_records`): a plain identifier.
    #[serde(default = "default_table")]
    pub table: String,
    /// Records per write, one transaction each (default 1000).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// How long a connection attempt may take, in ms (default 5000).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// How long a transaction (a batch's insert and commit, or the checks
    /// at open) may take, in ms (default 10000); a server that does not
    /// answer within it fails the write as transient.
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
}

fn default_table() -> String {
    DEFAULT_TABLE.to_string()
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            url: None,
            url_env: None,
            table: default_table(),
            batch_size: None,
            connect_timeout_ms: None,
            statement_timeout_ms: None,
        }
    }
}

impl fmt::Debug for SqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self
            .url
            .as_deref()
            .map(|u| SqlUrl::parse(u).map_or_else(|e| e.to_string(), |u| u.to_string()));
        f.debug_struct("SqlOptions")
            .field("url", &url)
            .field("url_env", &self.url_env)
            .field("table", &self.table)
            .field("batch_size", &self.batch_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
}

/// A key of [`SqlOptions`] the sink cannot use: the key and why (never
/// quoting a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {reason}")]
pub struct OptionsError {
    /// The key at fault.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

fn bad(key: &'static str, reason: impl Into<String>) -> OptionsError {
    OptionsError {
        key,
        reason: reason.into(),
    }
}

impl SqlOptions {
    /// Options for `url` (tests, programs that build the sink in code).
    pub fn for_url(url: impl Into<String>) -> SqlOptions {
        SqlOptions {
            url: Some(url.into()),
            ..SqlOptions::default()
        }
    }

    /// Checks every key, reading `url_env` from the process environment.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.resolve_with(|k| std::env::var(k).ok()).map(|_| ())
    }

    /// The URL to connect to: `url`, or the value of the variable
    /// `url_env` names, read through `env`. Checks the other keys too.
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<SqlUrl, OptionsError> {
        check_table_name(&self.table).map_err(|e| bad("table", e.to_string()))?;
        if let Some(n) = self.batch_size
            && !(1..=MAX_BATCH_SIZE).contains(&n)
        {
            return Err(bad(
                "batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE}, got {n}"),
            ));
        }
        if let Some(ms) = self.connect_timeout_ms
            && !(1..=600_000).contains(&ms)
        {
            return Err(bad(
                "connect_timeout_ms",
                format!("must be between 1 and 600000, got {ms}"),
            ));
        }
        if let Some(ms) = self.statement_timeout_ms
            && !(1..=600_000).contains(&ms)
        {
            return Err(bad(
                "statement_timeout_ms",
                format!("must be between 1 and 600000, got {ms}"),
            ));
        }
        match (&self.url, &self.url_env) {
            (Some(_), Some(_)) => Err(bad("url_env", "give either `url` or `url_env`, not both")),
            (None, None) => Err(bad(
                "url",
                "missing: give `url` (sqlite://PATH, postgres://USER@HOST/DB) or `url_env` (a variable holding it)",
            )),
            (Some(url), None) => {
                let url = SqlUrl::parse(url).map_err(|e| bad("url", e.to_string()))?;
                if url.has_password() {
                    return Err(bad(
                        "url",
                        format!(
                            "`{url}` holds a password, which must not be written in a configuration file: name a variable holding the whole URL with `url_env`, or leave the password to PGPASSWORD or ~/.pgpass"
                        ),
                    ));
                }
                Ok(url)
            }
            (None, Some(var)) => {
                if var.trim().is_empty() {
                    return Err(bad("url_env", "names no variable"));
                }
                let value = env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    bad("url_env", format!("environment variable {var} is not set"))
                })?;
                SqlUrl::parse(&value)
                    .map_err(|e| bad("url_env", format!("environment variable {var}: {e}")))
            }
        }
    }

    /// `batch_size`, or its default.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// `connect_timeout_ms` as a duration, or its default.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout_ms
            .map_or(crate::conn::CONNECT_TIMEOUT, Duration::from_millis)
    }
}

impl SqlOptions {
    /// `statement_timeout_ms` as a duration, or its default.
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout_ms
            .map_or(crate::conn::STATEMENT_TIMEOUT, Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_password_in_the_file_is_refused_without_being_quoted() {
        let o = SqlOptions::for_url("postgres://audit:Pa55word@db/trail");
        let e = o.resolve_with(env(&[])).unwrap_err();
        assert_eq!(e.key, "url");
        assert!(!e.to_string().contains("Pa55word"), "{e}");
        assert!(!format!("{o:?}").contains("Pa55word"));
    }

    #[test]
    fn url_env_carries_the_password_and_nothing_shows_it() {
        let o = SqlOptions {
            url_env: Some("DB".into()),
            ..SqlOptions::default()
        };
        let u = o
            .resolve_with(env(&[("DB", "postgres://audit:Pa55word@db/trail")]))
            .unwrap();
        assert!(!u.to_string().contains("Pa55word"));
        let e = o.resolve_with(env(&[])).unwrap_err();
        assert_eq!(
            (e.key, e.reason.as_str()),
            ("url_env", "environment variable DB is not set")
        );
        let e = o
            .resolve_with(env(&[("DB", "mysql://a:Pa55word@x/y")]))
            .unwrap_err();
        assert!(!e.to_string().contains("Pa55word"), "{e}");
    }

    #[test]
    fn exactly_one_of_url_and_url_env() {
        let both = SqlOptions {
            url: Some("sqlite://a.db".into()),
            url_env: Some("X".into()),
            ..SqlOptions::default()
        };
        assert_eq!(both.resolve_with(env(&[])).unwrap_err().key, "url_env");
        assert_eq!(
            SqlOptions::default()
                .resolve_with(env(&[]))
                .unwrap_err()
                .key,
            "url"
        );
    }

    #[test]
    fn table_batch_and_timeout_are_checked() {
        let mut o = SqlOptions::for_url("sqlite://a.db");
        o.table = "a;b".into();
        assert_eq!(o.resolve_with(env(&[])).unwrap_err().key, "table");
        let mut o = SqlOptions::for_url("sqlite://a.db");
        o.batch_size = Some(0);
        assert_eq!(o.resolve_with(env(&[])).unwrap_err().key, "batch_size");
        let mut o = SqlOptions::for_url("sqlite://a.db");
        o.connect_timeout_ms = Some(0);
        assert_eq!(
            o.resolve_with(env(&[])).unwrap_err().key,
            "connect_timeout_ms"
        );
        for ms in [0, 600_001] {
            let mut o = SqlOptions::for_url("sqlite://a.db");
            o.statement_timeout_ms = Some(ms);
            assert_eq!(
                o.resolve_with(env(&[])).unwrap_err().key,
                "statement_timeout_ms"
            );
        }
    }
}
