//! # agent-audit-stdout
//!
//! A sink that prints audit records to standard output, or to any
//! [`std::io::Write`] (a pipe, a buffer, stderr), in one of two formats:
//!
//! - `pretty` (the default): one readable line per record — time, seq,
//!   agent, event type and a short summary (tool name and arguments, the
//!   first words of a message or answer, which rules redacted it):
//!
//!   ```text
//!   2026-11-25T23:32:22.123Z #4     assistant  tool_call         get_account_balance({"account_id":"12345"})
//!   ```
//!
//! - `json`: the exact schema v2 JSONL line, one per record, as the JSONL
//!   file sink writes it. The stream carries its **own** `prev` chain (see
//!   [`StdoutFormat::Json`]) so a captured stdout stream (container logs) is
//!   tamper-evident on its own; the JSONL file sink owns the durable chain.
//!
//! A closed pipe (`agent | head`) is a typed [`FailureKind::Permanent`]
//! [`SinkError`] whose source is [`StdoutError::ClosedPipe`], never a panic:
//! Rust programs ignore `SIGPIPE`, so the write returns `EPIPE` and the sink
//! reports it. With `required = true` the next `emit` fails; with
//! `required = false` the failure is counted in the dispatcher's health.
//!
//! A record counts as [`AckLevel::Written`] once its bytes were written and
//! the writer flushed.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
//! use agent_audit_stdout::{StdoutFormat, StdoutOptions, StdoutSink};
//!
//! // Options usually come from the `[[sinks]]` table of audit.toml.
//! let options: StdoutOptions = serde_json::from_value(serde_json::json!({"format": "pretty"}))?;
//! assert_eq!(options.format, StdoutFormat::Pretty);
//! let dispatcher = Dispatcher::builder()
//!     .sink(SinkOptions::new("stdout").required(false), StdoutSink::stdout(options))
//!     .start()
//!     .await?;
//! let auditor = Auditor::new(dispatcher.clone()).for_request(Some("r-1")).with_agent("assistant");
//! let payload = serde_json::json!({"tool": "get_account_balance", "arguments": {"account_id": "12345"}});
//! let receipt = auditor.emit_wait(EventType::ToolCall, &payload, AckLevel::Written).await?;
//! assert_eq!(receipt.level, AckLevel::Written);
//! assert!(dispatcher.shutdown(Duration::from_secs(5)).await.is_clean());
//! # Ok(()) }
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Feature flags
//!
//! None.

use std::io::{self, Write};

use agent_audit_core::{AckLevel, Batch, FailureKind, Record, Sink, SinkError, SinkOpen};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use agent_audit_core::text::format_pretty;

/// Whether this process's standard output is `/dev/null`, where nothing
/// would keep what a stdout sink prints (`agent-audit run > /dev/null`, or
/// a closed fd 1 that the runtime reopened on `/dev/null`). A required
/// stdout sink there is a run with no trail, so the facade refuses it.
pub fn stdout_is_discarded() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() else {
            return false;
        };
        let (Ok(out), Ok(null)) = (
            std::fs::File::from(fd).metadata(),
            std::fs::metadata("/dev/null"),
        ) else {
            return false;
        };
        out.file_type().is_char_device() && out.rdev() == null.rdev()
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// How records are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StdoutFormat {
    /// One readable line per record: time (milliseconds, UTC), `#seq`,
    /// agent, event type, summary. For people; not meant to be parsed.
    /// Control and bidirectional-override characters from payloads are
    /// escaped so a record cannot rewrite the terminal.
    #[default]
    Pretty,
    /// The schema v2 JSON line, exactly as [`Record::encode_line`] writes it.
    ///
    /// `prev` is this stream's own chain: [`GENESIS`] (64 zeros, as the
    /// JSONL sink's first line) on the first line the sink prints after it
    /// opens, then the lowercase hex SHA-256 of the previous printed line's
    /// bytes (without its `\n`), the JSONL sink's plain chain rule. A
    /// stream captured from one process run therefore verifies on its own,
    /// and each restart starts a new chain at [`GENESIS`]. The JSONL file
    /// sink keeps the durable chain that continues across restarts (and the
    /// keyed one); this one is a bonus for container logs.
    Json,
}

/// `prev` of the first JSON line a [`StdoutSink`] prints: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The stdout-specific keys of a `[[sinks]]` entry with `type = "stdout"`.
///
/// Only `format` (`"pretty"` | `"json"`, default `"pretty"`); the keys every
/// sink shares (`required`, `overflow`, `queue`) belong to the caller's
/// sink table. Unknown keys are an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutOptions {
    /// Output format.
    #[serde(default)]
    pub format: StdoutFormat,
}

/// Why printing failed. Carried as the source of the [`SinkError`] the sink
/// returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdoutError {
    /// The reader went away (`EPIPE`): `agent-audit run | head -n1`.
    /// Permanent; later writes fail the same way.
    #[error(
        "{target}: the reading end of the pipe is closed (EPIPE); records after this point were not printed"
    )]
    ClosedPipe {
        /// What was written to (`stdout`, `stderr`, `writer`).
        target: String,
    },
    /// Any other write or flush error (a full disk behind a redirect, say).
    #[error("{target}: write failed: {source}")]
    Write {
        /// What was written to.
        target: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Prints records to a writer: standard output by default.
///
/// Each batch is formatted into one buffer, written with one `write_all`
/// and flushed, so lines of a batch are not interleaved with other output
/// written through the same `Stdout` lock.
pub struct StdoutSink<W: Write + Send + 'static = io::Stdout> {
    format: StdoutFormat,
    target: String,
    writer: W,
    buf: Vec<u8>,
    /// Chain value for the next JSON line.
    prev: String,
    /// Set after `EPIPE`: nothing can reach the reader any more.
    closed: bool,
}

impl<W: Write + Send + 'static> std::fmt::Debug for StdoutSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutSink")
            .field("format", &self.format)
            .field("target", &self.target)
            .field("closed", &self.closed)
            .finish()
    }
}

impl StdoutSink<io::Stdout> {
    /// Prints to the process's standard output.
    pub fn stdout(options: StdoutOptions) -> StdoutSink<io::Stdout> {
        StdoutSink::with_writer(options, "stdout", io::stdout())
    }
}

impl StdoutSink<io::Stderr> {
    /// Prints to standard error, e.g. when stdout carries the program's
    /// answer.
    pub fn stderr(options: StdoutOptions) -> StdoutSink<io::Stderr> {
        StdoutSink::with_writer(options, "stderr", io::stderr())
    }
}

impl<W: Write + Send + 'static> StdoutSink<W> {
    /// Prints to `writer`; `target` names it in errors.
    pub fn with_writer(
        options: StdoutOptions,
        target: impl Into<String>,
        writer: W,
    ) -> StdoutSink<W> {
        StdoutSink {
            format: options.format,
            target: target.into(),
            writer,
            buf: Vec::with_capacity(16 * 1024),
            prev: GENESIS.to_string(),
            closed: false,
        }
    }

    /// The format in use.
    pub fn format(&self) -> StdoutFormat {
        self.format
    }

    /// Consumes the sink and returns its writer.
    pub fn into_writer(self) -> W {
        self.writer
    }

    fn error(&self, e: io::Error) -> SinkError {
        match e.kind() {
            io::ErrorKind::BrokenPipe => SinkError::new(
                FailureKind::Permanent,
                StdoutError::ClosedPipe {
                    target: self.target.clone(),
                },
            ),
            // A non-blocking descriptor that was momentarily full may have
            // taken part of the batch: writing it again (as the dispatcher
            // does for a `Transient` failure) would repeat lines.
            _ => SinkError::new(
                FailureKind::Permanent,
                StdoutError::Write {
                    target: self.target.clone(),
                    source: e,
                },
            ),
        }
    }

    /// Formats `records` into `self.buf`; returns the chain value after the
    /// last JSON line (unchanged for pretty).
    fn render(&mut self, records: &[std::sync::Arc<Record>]) -> String {
        self.buf.clear();
        let mut prev = self.prev.clone();
        for record in records {
            match self.format {
                StdoutFormat::Pretty => format_pretty(record, &mut self.buf),
                StdoutFormat::Json => {
                    let start = self.buf.len();
                    record.encode_line(&prev, &mut self.buf);
                    prev = hex::encode(Sha256::digest(&self.buf[start..]));
                }
            }
            self.buf.push(b'\n');
        }
        prev
    }
}

impl<W: Write + Send + 'static> Sink for StdoutSink<W> {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }

    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        // Nothing to read back: stdout holds no seq to continue from.
        Ok(SinkOpen::default())
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        if self.closed {
            return Err(self.error(io::ErrorKind::BrokenPipe.into()));
        }
        let next_prev = self.render(batch.records);
        let result = self
            .writer
            .write_all(&self.buf)
            .and_then(|()| self.writer.flush());
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.closed = true;
            }
            return Err(self.error(e));
        }
        self.prev = next_prev;
        // A huge batch should not pin its buffer for the sink's lifetime.
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::with_capacity(16 * 1024);
        }
        Ok(AckLevel::Written)
    }

    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        if self.closed {
            return Ok(None);
        }
        self.writer.flush().map_err(|e| self.error(e))?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_pretty_and_reject_unknown_keys() {
        let o: StdoutOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o.format, StdoutFormat::Pretty);
        let o: StdoutOptions = serde_json::from_str(r#"{"format":"json"}"#).unwrap();
        assert_eq!(o.format, StdoutFormat::Json);
        let e = serde_json::from_str::<StdoutOptions>(r#"{"format":"json","colour":true}"#)
            .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = serde_json::from_str::<StdoutOptions>(r#"{"format":"xml"}"#).unwrap_err();
        assert!(e.to_string().contains("xml"), "{e}");
    }
}
