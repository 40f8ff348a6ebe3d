//! # agent-audit-sql
//!
//! The audit trail in a database: a sink that writes every record as one
//! row of a SQLite file or a PostgreSQL table (through
//! [sqlx](https://docs.rs/sqlx)), so that compliance teams can query it
//! with plain SQL and still verify it.
//!
//! - **One row per record**, with the record's exact JSONL line and its
//!   `prev` chain value ([`schema`] lists the columns), so the hash chain
//!   verifies from the table alone.
//! - **Durable means committed**: one multi-row insert per batch in one
//!   transaction; SQLite in WAL with `synchronous = FULL`, PostgreSQL
//!   with `synchronous_commit = on`.
//! - **One writer per table**: an advisory lock on PostgreSQL, a `flock`
//!   on the SQLite database file itself. Seq and the chain continue
//!   from the table's last row.
//! - **The table is created if absent** with its indexes; a table of
//!   another shape is refused, never altered.
//! - **The password stays secret**: refused in a configuration file
//!   (`url_env` names a variable holding the URL instead), masked in every
//!   error and notice ([`SqlUrl`]).
//!
//! In `audit.toml`, through the `agent-audit` facade's `sql` feature:
//!
//! ```toml
//! [[sinks]]
//! type = "sql"
//! url = "sqlite://audit.db"      # or "postgres://user@host:5432/db"
//! # url_env = "AUDIT_DB_URL"     # the URL, password included, from the environment
//! table = "audit_records"        # default
//! required = true
//! ```
//!
//! In code, [`SqlSink`] is an [`AsyncSink`](agent_audit_core::AsyncSink):
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_core::{Dispatcher, SinkOptions};
//! use agent_audit_sql::{SqlOptions, SqlSink};
//!
//! let sink = SqlSink::new(&SqlOptions::for_url("sqlite://audit.db"))?;
//! let dispatcher = Dispatcher::builder()
//!     .async_sink(SinkOptions::new("sql").required(true), sink)
//!     .start()
//!     .await?;
//! # let _ = dispatcher; Ok(()) }
//! ```
//!
//! ## Feature flags
//!
//! - `testing`: core's conformance suite, for this crate's own tests.
#![warn(missing_docs)]

mod conn;
mod error;
mod lines;
mod options;
pub mod schema;
mod sink;
mod url;

pub use error::SqlError;
pub use lines::SqlLines;
pub use options::{DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, OptionsError, SqlOptions};
pub use schema::{LineReader, StoredLine, open_read_only};
pub use sink::SqlSink;
pub use url::{Engine, SqlUrl, UrlError};
