//! Why a configuration could not be loaded, or not started.

use agent_audit_core::StartError;

#[cfg(doc)]
use super::MAX_CONFIG_BYTES;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path}: configuration is {size} bytes; the limit is {max} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{path}:{line}: configuration is not UTF-8 text (binary file?)")]
    NotUtf8 {
        /// The file.
        path: String,
        /// First line with an invalid byte.
        line: usize,
    },
    /// The path names a directory, a FIFO, a device or a socket.
    #[error(
        "{path}: cannot read configuration: it is {kind}, not a regular file (a configuration is a regular file)"
    )]
    NotRegular {
        /// The file.
        path: String,
        /// What it is instead ("a FIFO (named pipe)", "a directory", ...).
        kind: &'static str,
    },
    /// A section whose values are well-formed but do not fit together.
    #[error("{path}: [{section}]: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The section.
        section: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A syntax error, unknown key, wrong type or bad value.
    #[error("{}", format_parse(path, *line, *column, key.as_deref(), message))]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The offending key, dotted (`sinks[1].fsync`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

fn format_parse(
    path: &str,
    line: usize,
    column: usize,
    key: Option<&str>,
    message: &str,
) -> String {
    match key {
        Some(k) => format!("{path}:{line}:{column}: key `{k}`: {message}"),
        None => format!("{path}:{line}:{column}: {message}"),
    }
}

/// Why a configuration could not be turned into a running dispatcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A sink's options are unusable (a missing key file, say).
    #[error("{source_file}: sink `{sink}` (line {line}): {message}")]
    Sink {
        /// Configuration file.
        source_file: String,
        /// Sink name.
        sink: String,
        /// Line of its entry.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The redaction rules are unusable.
    #[cfg(feature = "redact")]
    #[error("{source_file}: [redaction]: {source}")]
    Redaction {
        /// Configuration file.
        source_file: String,
        /// Cause.
        #[source]
        source: agent_audit_redact::RedactError,
    },
    /// The chain key or signing key could not be loaded, or checkpoints
    /// could not start.
    #[cfg(feature = "jsonl")]
    #[error("{source_file}: [integrity]: {source}")]
    Integrity {
        /// Configuration file.
        source_file: String,
        /// Cause.
        #[source]
        source: agent_audit_jsonl::integrity::IntegrityError,
    },
    /// A sink failed to open, or the dispatcher could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}
