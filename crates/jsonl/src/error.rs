//! Errors of the sink and the reader. Each names the file and the operation.

use std::io;
use std::path::PathBuf;

/// An option has a value serde accepts but the sink cannot use: the one
/// error [`crate::JsonlOptions::validate`] and [`crate::JsonlSink::new`]
/// can return (nothing is opened before [`agent_audit_core::Sink::open`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSONL sink for {path}: option `{field}` {reason}")]
pub struct OptionsError {
    /// The configured path.
    pub path: PathBuf,
    /// The option.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Why the sink could not open, write, sync or rotate its file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonlError {
    /// An option has a value serde accepts but the sink cannot use.
    #[error(transparent)]
    InvalidOption(#[from] OptionsError),
    /// The file could not be opened or created.
    #[error("cannot open audit log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The path names a directory.
    #[error(
        "cannot open audit log {path}: it is a directory; give a file path such as {path}/audit-log.jsonl"
    )]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The path is a symbolic link; the sink opens with `O_NOFOLLOW` so a
    /// planted link cannot redirect the audit trail.
    #[error(
        "refusing to open audit log {path}: it is a symbolic link (opened with O_NOFOLLOW); point the configuration at the real file"
    )]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// The path is a FIFO, a device, a socket: something that is not a
    /// regular file. Records written there go to whoever reads the pipe,
    /// or nowhere (`/dev/null`), and nothing can be read back or
    /// verified, so a trail could be lost without an error.
    #[error(
        "refusing audit log {path}: it is {kind}, not a regular file; records written there would not be kept where they can be read back and verified. A JSONL path must be a regular file or not exist yet"
    )]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead (`a FIFO (named pipe)`, `a character device`...).
        kind: &'static str,
    },
    /// Another writer (this process or another) holds the file's lock.
    #[error(
        "audit log {path} is in use: another writer holds its lock; two writers would interleave the chain, so only one may append at a time"
    )]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// Taking the lock failed for another reason.
    #[error("cannot lock audit log {path}: {source}")]
    Lock {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Reading the existing file (its tail, on open) failed.
    #[error("cannot read audit log {path} on open: {source}")]
    ReadTail {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The existing file does not end in audit records.
    #[error(
        "audit log {path} does not end in agent-audit records: the last {lines} lines are not records; refusing to append to it (move it aside or run `agent-audit verify`)"
    )]
    NotAnAuditLog {
        /// The file.
        path: PathBuf,
        /// How many trailing lines were examined.
        lines: usize,
    },
    /// The file's last line runs on past the longest line a record may
    /// have without a newline (a sparse file, a file overwritten with
    /// zeros): where its last record ends cannot be found, so the writer
    /// cannot know which chain it would continue. Nothing was changed.
    #[error(
        "refusing to append to audit log {path}: there is no newline in the {len} bytes before byte {end}, longer than any record ({max} bytes), so where its last record ends cannot be found (a sparse file, or one overwritten?); the file was left as it is: move it aside and run `agent-audit verify` on it"
    )]
    UnreadableTail {
        /// The file (the active file, or the rotated file the chain would
        /// resume from).
        path: PathBuf,
        /// Where the line without a newline ends (the file's length, or
        /// the start of the line after it).
        end: u64,
        /// How many bytes before `end` were searched for a newline.
        len: u64,
        /// The longest line a record may have.
        max: usize,
    },
    /// Under a chain key, the file's last record does not link to the
    /// record before it: someone without the key appended it (a replayed
    /// line, a plain SHA-256 link, a made-up seq), or the key is not the
    /// one the log was written with. Resuming from it would let it set the
    /// chain and the seq numbering. Nothing was changed.
    #[error(
        "refusing to append to keyed audit log {path}: its last record (line {line}, seq {seq}, byte offset {offset}) does not link under the chain key to the record before it (its `prev` is not the HMAC of that line): it was put there without the key, or this is not the key the log was written with. The file was left as it is: check it with `agent-audit verify --key-env VAR` and move it aside"
    )]
    UnlinkedLastRecord {
        /// The file.
        path: PathBuf,
        /// The last record's line number (1-based).
        line: u64,
        /// Its seq.
        seq: u64,
        /// Its byte offset.
        offset: u64,
    },
    /// Appending failed (disk full, I/O error, file too large).
    #[error("cannot write to audit log {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Undoing a failed write's partial bytes before the next write failed.
    #[error("cannot cut the partial write off audit log {path} at byte {len}: {source}")]
    Truncate {
        /// The file.
        path: PathBuf,
        /// The length it was cut back to.
        len: u64,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// `fdatasync` of the file (or `fsync` of its directory) failed.
    #[error("cannot fsync {path}: {source}")]
    Fsync {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Rotation could not rename the full file.
    #[error("cannot rotate audit log {from} to {to}: {source}")]
    Rename {
        /// The active file.
        from: PathBuf,
        /// The rotated name.
        to: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Listing the rotated files failed.
    #[error("cannot list the rotated files of {path} in {dir}: {source}")]
    List {
        /// The active file.
        path: PathBuf,
        /// The directory listed.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A write was attempted before `open` or after `close`.
    #[error("audit log {path} is not open (write before open or after close)")]
    NotOpen {
        /// The file.
        path: PathBuf,
    },
}

/// Why a line could not be read as a record.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Reading failed; the reader stops.
    #[error("{path}:{line}: read error: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The line being read (1-based).
        line: u64,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The line is not UTF-8.
    #[error(
        "{path}:{line}: not UTF-8 (invalid byte at column {column}, byte offset {offset} of the file)"
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: u64,
        /// Byte offset of the line in the file.
        offset: u64,
        /// 1-based column of the first invalid byte.
        column: usize,
    },
    /// The line is not JSON (or not UTF-8 JSON text, or empty); see
    /// [`ReadError::NotSchemaV1`] for JSON that is not a record.
    #[error("{path}:{line}: not a valid record: {source}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: u64,
        /// Byte offset of the line in the file.
        offset: u64,
        /// What serde_json found.
        #[source]
        source: serde_json::Error,
    },
    /// The line is JSON, but not a schema v1 or v2 record: a required key is
    /// missing, a key is unknown, or a value has the wrong type or form
    /// (`v` other than 1 or 2, `ts` not RFC 3339, `payload` not an object, an id
    /// not lowercase hex of its length). A write cut short never leaves
    /// one (a cut record is not valid JSON), so it was put there by
    /// something else than the writer.
    #[error("{path}:{line}: JSON, but not a schema v1 or v2 record: {reason}")]
    NotSchemaV1 {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: u64,
        /// Byte offset of the line in the file.
        offset: u64,
        /// The key at fault, when one is.
        key: Option<String>,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The last line has no newline and is not a whole record: a write cut
    /// short (crash, power loss, full disk).
    #[error(
        "{path}:{line}: torn final line ({len} bytes at byte offset {offset}, no newline): a write was cut short"
    )]
    TornFinalLine {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: u64,
        /// Byte offset of the line in the file.
        offset: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// The line is longer than the reader's limit; it was skipped.
    #[error("{path}:{line}: line longer than {max} bytes at byte offset {offset}; skipped")]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: u64,
        /// Byte offset of the line in the file.
        offset: u64,
        /// The limit.
        max: usize,
    },
}

impl ReadError {
    /// The 1-based line number the error is about, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            ReadError::Open { .. } => None,
            ReadError::Io { line, .. }
            | ReadError::NotUtf8 { line, .. }
            | ReadError::BadRecord { line, .. }
            | ReadError::NotSchemaV1 { line, .. }
            | ReadError::TornFinalLine { line, .. }
            | ReadError::TooLong { line, .. } => Some(*line),
        }
    }
}
