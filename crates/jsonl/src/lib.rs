//! # agent-audit-jsonl
//!
//! The JSONL file sink of agent-audit: one schema v1 or v2 record per line,
//! appended to a locked file with a hash chain, synced by policy, rotated by
//! size or age; plus a streaming [`Reader`] and the ordered list of a log's files
//! ([`files::list`]).
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
//! use agent_audit_jsonl::{FsyncPolicy, JsonlOptions, JsonlSink, Reader};
//!
//! # let dir = std::env::temp_dir().join(format!("agent-audit-jsonl-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let path = dir.join("audit-log.jsonl");
//! let sink = JsonlSink::new(JsonlOptions::new(&path).fsync(FsyncPolicy::Batch))?;
//! let dispatcher = Dispatcher::builder()
//!     .sink(SinkOptions::new("jsonl"), sink)
//!     .start()
//!     .await?;
//! let auditor = Auditor::new(dispatcher.clone()).for_request(Some("r1")).with_agent("assistant");
//! // Audit before act: the tool runs once its call is on disk.
//! let receipt = auditor
//!     .emit_wait(EventType::ToolCall, &serde_json::json!({"tool": "get_account_balance"}), AckLevel::Durable)
//!     .await?;
//! assert_eq!(receipt.level, AckLevel::Durable);
//! assert!(dispatcher.shutdown(Duration::from_secs(5)).await.is_clean());
//!
//! let lines: Vec<_> = Reader::open(&path)?.collect::<Result<_, _>>()?;
//! assert_eq!(lines[0].record.event_type, EventType::ToolCall);
//! assert_eq!(lines[0].record.prev, agent_audit_jsonl::chain::GENESIS);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## The file
//!
//! Each line is `{"v":2,"seq":…,"ts":"…",…,"payload":{…},"prev":"…"}` and a
//! newline. `prev` is the [`chain`] value of the previous line's exact bytes
//! (without its newline): SHA-256, or HMAC-SHA256 with
//! [`JsonlOptions::chain_key`]. The first line of a log has
//! `prev` = [`chain::GENESIS`] (64 zeros). Python's `json.loads` per line
//! reads every line.
//!
//! ## Opening
//!
//! [`Sink::open`](agent_audit_core::Sink::open) opens the file append-only
//! with `O_NOFOLLOW` (a symlink planted at the path is refused), creating it
//! with mode 0600 (an existing file keeps its mode), and takes an exclusive
//! lock (`flock`, released by the kernel when the process exits, even on
//! SIGKILL). A second writer, in this process or another, gets
//! [`JsonlError::InUse`] naming the path instead of interleaving the chain.
//! The path must be a regular file or not exist yet: a FIFO, a device
//! (`/dev/null`, `/dev/full`) or a socket is refused with
//! [`JsonlError::NotRegular`], checked on the opened descriptor (`fstat`)
//! and opened `O_NONBLOCK`, so a FIFO never hangs the writer and records
//! never go where they cannot be read back. With any fsync policy but
//! `never`, the directory is synced so a new file's name survives a power
//! loss.
//!
//! It then reads the file from its end to the last whole record: its seq
//! becomes [`SinkOpen::last_seq`](agent_audit_core::SinkOpen) (the
//! dispatcher continues after it) and its chain value the `prev` of the next
//! line. If the active file holds no record (say, a crash right after a
//! rotation), the chain and seq continue from the newest rotated file.
//!
//! ## Torn lines: cut off, reported by length and SHA-256
//!
//! A crash in the middle of a write can leave a last line without a
//! newline: the start of a record the writer never finished, never
//! acknowledged and never will. On open such a **torn line is cut off the
//! file** (truncated back to the end of the last whole line, then synced)
//! and a notice is returned in
//! [`SinkOpen::notices`](agent_audit_core::SinkOpen) naming the file, the
//! byte offset, the length and the SHA-256 of the bytes cut, never the
//! bytes themselves. The dispatcher turns each notice into an `audit_gap`
//! record, which becomes the next line of the file, where the torn line
//! was. The chain resumes from the last whole record, so in the file:
//!
//! ```text
//! line n     {"v":2,"seq":41,…,"prev":"…"}          last whole record, hash H
//! line n+1   {"v":2,"seq":42,…"audit_gap"…,"prev":"H"}   "cut a torn final line off …: 57 bytes at byte offset … (SHA-256 …)"
//! ```
//!
//! Kept, the bytes would be anyone's to choose: whoever can append to the
//! file could plant the start of a record the next open would carry into
//! the log as the writer's own torn write. A line before it that is only
//! the start of a record, ended with a newline (how earlier versions kept
//! their torn lines), is cut the same way. No line after the last record
//! sets the seq, whatever its prefix says: the dispatcher continues after
//! the last whole record, and seqs a dead writer handed out to other sinks
//! are kept from reuse by the seq lease ([`FileLease`]), not by bytes in
//! the file. A whole line after the last record that is not a record and
//! not the start of one is no write of the writer's: it is left in place
//! (the writer deletes no whole line), named by length and SHA-256, and
//! `verify` reports it. More than 64 such lines and the file is refused as
//! not an audit log ([`JsonlError::NotAnAuditLog`]). A last line that lacks
//! only its newline but is a whole record is a record: it gets its newline
//! and the chain continues from it, with no notice.
//!
//! ## Writing
//!
//! Each batch from the dispatcher is encoded (the record's pre-serialised
//! body is copied, not re-serialised), chained and appended in `write`
//! calls of about 128 KiB (still in the CPU cache when the kernel copies
//! them). The fsync policy ([`FsyncPolicy`]) decides the ack level:
//!
//! | `fsync` | a write returns | then |
//! |---|---|---|
//! | `never` | `Written` | |
//! | `interval` | `Written` | `Durable` at the next tick (`fsync_interval_ms`) |
//! | `batch` | `Durable` (one `fdatasync` per batch: group commit) | |
//! | `every` | `Durable` (one `fdatasync` per record) | |
//!
//! A failed write or sync is a permanent error naming the file and the
//! operation. The failed batch's bytes were never acknowledged, so before the
//! next write they are cut off (the file never holds half a line followed by
//! more records) and the chain is rewound to the last written line.
//!
//! ## Rotation
//!
//! By size, by age, or both, whichever comes first:
//!
//! - `rotate_bytes`: before a line that would take the active file past
//!   that size.
//! - `rotate_every` ([`JsonlOptions::rotate_every`], in configuration
//!   `"1d"`, `"12h"` or seconds, see [`parse_rotate_every`]): before the
//!   first record stamped that long or longer after the active file's first
//!   record. The age is the records' own wall-clock time, so a restart does
//!   not reset it: on open, the file's first record's `ts` is read back
//!   (its creation time if that record cannot be read). A quiet log rotates
//!   when its next record comes; a file holds records stamped within
//!   `rotate_every` of its first.
//!
//! Either way the file is synced (unless `fsync = "never"`), renamed to
//! `<stem>.<first_seq>-<last_seq>.<ext>` (12-digit zero-padded seqs, see
//! [`files`]) and a fresh file is created and locked. The chain carries on:
//! the new file's first `prev` is the hash of the old file's last line, and
//! the [`HeadHandle`] counts the rotation, so a
//! [`Checkpointer`](checkpoint::Checkpointer) signs a checkpoint after it.
//! [`files::list`] returns a log's files in chain order.
//!
//! ## Feature flags
//!
//! None. The sink has no optional parts.

pub mod chain;
mod error;
pub mod files;
mod lease;
mod options;
mod reader;
mod sink;
pub mod store;
mod tail;

pub use error::{JsonlError, OptionsError, ReadError};
pub use lease::FileLease;
pub use options::{
    ChainKey, FsyncPolicy, JsonlOptions, MAX_FSYNC_INTERVAL_MS, MAX_ROTATE_BYTES, MAX_ROTATE_EVERY,
    parse_rotate_every,
};
pub use reader::{DEFAULT_MAX_LINE, Line, RawLine, Reader, SchemaViolation, check_schema};
pub use sink::JsonlSink;

// Integrity: verification, keyed chains, signed checkpoints (see docs/integrity.md).
pub mod checkpoint;
mod head;
pub mod integrity;
pub mod keys;
pub mod verify;

pub use head::{ChainHead, HeadHandle};
