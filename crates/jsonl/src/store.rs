//! Logs kept somewhere other than files: a [`LineStore`] yields the same
//! lines a JSONL file holds, in chain order, so that the verifier
//! ([`verify::verify_store`](crate::verify::verify_store)) and the review
//! commands read them through the same [`Reader`](crate::Reader), with the
//! same bounded lines and the same integrity checks.
//!
//! The SQL sink's table is one (`agent_audit_sql::SqlLines`: the `line`
//! column in seq order); a path still means the JSONL files.

use std::io::BufRead;

/// A log's lines, kept elsewhere than in files (a database table).
pub trait LineStore: Send + Sync {
    /// How the log is named in reports, errors and problems (a URL with
    /// its password masked, and the table). Never a secret.
    fn label(&self) -> &str;

    /// The log's lines from the first, in chain order, each followed by a
    /// newline, as one stream that owns what it reads with (a reader may
    /// keep it beside the store). Called again for a second pass; each
    /// call reads the store afresh.
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>>;
}
