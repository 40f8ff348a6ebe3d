//! The report types: what [`verify`](super::verify()) returns, the kinds of
//! problem it names, and why it may not run at all.

use std::fmt;
use std::io;

use crate::error::ReadError;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::ChainAlgorithm;

/// found in it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No file was given.
    #[error("no file to verify: give the log's files in order, or its directory")]
    NoInput,
    /// An input does not exist, cannot be opened, or reading it failed
    /// ([`ReadError::Open`] or [`ReadError::Io`]: the reader's own words).
    #[error(transparent)]
    Input(ReadError),
    /// A directory was given among several inputs.
    #[error("{path} is a directory: give either one directory or the log's files")]
    DirectoryAmongFiles {
        /// The directory.
        path: PathBuf,
    },
    /// The directory holds no log file.
    #[error("{dir} holds no audit log (no regular file)")]
    EmptyDirectory {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory holds files of more than one log.
    #[error("{dir} holds several logs ({}); give one log's files", logs.join(", "))]
    SeveralLogs {
        /// The directory.
        dir: PathBuf,
        /// The logs' names.
        logs: Vec<String>,
    },
    /// Listing a log's files failed.
    #[error(transparent)]
    List(#[from] crate::error::JsonlError),
    /// A checkpoints file has a line that is not a checkpoint.
    #[error("{path}:{line}: not a checkpoint: {reason}")]
    BadCheckpointFile {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// Why.
        reason: String,
    },
    /// A checkpoints file holds no checkpoint of this log.
    #[error("{path} holds no checkpoint of log {log:?} (it has checkpoints of: {}); pass --log-name if the log was renamed", if found.is_empty() { "none".to_string() } else { found.join(", ") })]
    NoCheckpointsForLog {
        /// The checkpoints file(s).
        path: PathBuf,
        /// The log verified.
        log: String,
        /// The logs it does have checkpoints of.
        found: Vec<String>,
    },
}

impl VerifyError {
    /// `path` could not be opened (or listed).
    pub(crate) fn open(path: &std::path::Path, source: io::Error) -> VerifyError {
        VerifyError::Input(ReadError::Open {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reading `path` failed at `line`.
    pub(crate) fn read(path: &std::path::Path, line: u64, source: io::Error) -> VerifyError {
        VerifyError::Input(ReadError::Io {
            path: path.to_path_buf(),
            line,
            source,
        })
    }
}

/// The kind of the first problem found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A line was changed after it was written.
    Edited,
    /// A line that the writer did not write in this place was added.
    Inserted,
    /// Lines are missing from the middle of the log.
    Deleted,
    /// Lines are out of order.
    Reordered,
    /// Lines are missing from the start or the end of the log.
    Truncated,
    /// The last line is incomplete (a write cut short, or the file cut).
    TornTail,
    /// A line is not a schema v1 or v2 record (not JSON, or cut short but not
    /// at the end).
    BadJson,
    /// A line is JSON but not a schema v1 or v2 record (a key missing, unknown
    /// or mistyped, `v` other than 1 or 2): the writer never leaves one, even
    /// when cut short, so it was put there or changed afterwards.
    BadRecord,
    /// A file does not continue the chain of the file before it.
    FileChainBreak,
    /// Under a chain key, a line carries a plain SHA-256 `prev`: written by
    /// someone without the key.
    Forged,
    /// No link holds under the verifier's algorithm or key: the log was
    /// written with a key (or another key, or none).
    KeyMismatch,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// A checkpoint is signed by a key not among those given.
    UnknownKey,
    /// A checkpoint record is malformed or contradicts itself.
    BadCheckpoint,
    /// The chain holds, but a checkpoint shows the lines it covers were
    /// replaced by others (a chain recomputed after the fact).
    Rewritten,
}

impl ProblemKind {
    /// The kind's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::TornTail => "torn_tail",
            ProblemKind::BadJson => "bad_json",
            ProblemKind::BadRecord => "bad_record",
            ProblemKind::FileChainBreak => "file_chain_break",
            ProblemKind::Forged => "forged",
            ProblemKind::KeyMismatch => "key_mismatch",
            ProblemKind::BadSignature => "bad_signature",
            ProblemKind::UnknownKey => "unknown_key",
            ProblemKind::BadCheckpoint => "bad_checkpoint",
            ProblemKind::Rewritten => "rewritten",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The file it is in.
    pub file: PathBuf,
    /// The 1-based line in `file` (one past the last line for a log cut
    /// short at its end).
    pub line: u64,
    /// The seq of that line, when it has one.
    pub seq: Option<u64>,
    /// What was found, in a sentence.
    pub message: String,
    /// What to do about it, when there is something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.kind,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Something worth knowing that is not a problem (a seq gap the writer
/// left, a torn write it recovered from, a tail no checkpoint covers yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// The file.
    pub file: PathBuf,
    /// The line.
    pub line: u64,
    /// What.
    pub message: String,
}

/// One file's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Lines read: all of them, or on a problem those up to it and the
    /// few read past it to tell its kind.
    pub lines: u64,
    /// Record lines among them.
    pub records: u64,
    /// Seq of its first record.
    pub first_seq: Option<u64>,
    /// Seq of its last record.
    pub last_seq: Option<u64>,
}

/// What was found about checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    /// Checkpoint records in the files.
    pub in_file: u64,
    /// Their signatures verified with a given public key.
    pub signatures_verified: u64,
    /// Their heads found equal to the chain.
    pub heads_matched: u64,
    /// Those covering a line before the first line verified, in files that
    /// do not start the log (`--partial`): not compared.
    pub not_compared: u64,
    /// Off-host checkpoints given for this log.
    pub off_host: u64,
    /// Off-host checkpoints whose head and record matched the files.
    pub off_host_matched: u64,
    /// The highest seq a matching checkpoint (in the file or off-host) covers.
    pub covered_upto: Option<u64>,
    /// Records after `covered_upto` other than checkpoints: what no
    /// checkpoint vouches for yet.
    pub uncovered_records: u64,
}

/// The outcome of [`verify`](super::verify()). `--json` prints it as is.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// No problem found.
    pub intact: bool,
    /// The log's name (as checkpoints carry it).
    pub log: String,
    /// The algorithm verified.
    pub chain: ChainAlgorithm,
    /// The files, in chain order.
    pub files: Vec<FileReport>,
    /// Record lines read.
    pub records: u64,
    /// Seq of the first record.
    pub first_seq: Option<u64>,
    /// Seq of the last record read.
    pub last_seq: Option<u64>,
    /// The chain value after the last record read: the `prev` the next line
    /// must carry.
    pub head: Option<String>,
    /// Whether the first record starts the chain (`prev` = genesis).
    pub starts_at_genesis: bool,
    /// Checkpoint figures.
    pub checkpoints: CheckpointReport,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// Things worth knowing that are not problems: the first
    /// [`MAX_NOTICES`](super::MAX_NOTICES) of them.
    pub notices: Vec<Notice>,
    /// Notices found beyond the first [`MAX_NOTICES`](super::MAX_NOTICES), counted only.
    pub notices_omitted: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Some(p) => writeln!(f, "NOT INTACT: {p}")?,
            None => {
                let seqs = match (self.first_seq, self.last_seq) {
                    (Some(a), Some(b)) => format!(", seq {a}..{b}"),
                    _ => String::new(),
                };
                writeln!(
                    f,
                    "intact: {} records in {} file(s){seqs}, chain {}",
                    self.records,
                    self.files.len(),
                    self.chain
                )?;
            }
        }
        let c = &self.checkpoints;
        if c.in_file > 0 || c.off_host > 0 {
            write!(
                f,
                "checkpoints: {} in the log ({} signatures verified, {} heads matched)",
                c.in_file, c.signatures_verified, c.heads_matched
            )?;
            if c.not_compared > 0 {
                write!(
                    f,
                    ", {} covering lines before these files not compared",
                    c.not_compared
                )?;
            }
            if c.off_host > 0 {
                write!(
                    f,
                    ", {} off-host ({} matched)",
                    c.off_host, c.off_host_matched
                )?;
            }
            if let Some(u) = c.covered_upto {
                write!(f, "; covered up to seq {u}")?;
                if c.uncovered_records > 0 {
                    write!(
                        f,
                        ", {} record(s) after it not yet covered",
                        c.uncovered_records
                    )?;
                }
            }
            writeln!(f)?;
        }
        for n in &self.notices {
            writeln!(f, "note: {}:{}: {}", n.file.display(), n.line, n.message)?;
        }
        if self.notices_omitted > 0 {
            writeln!(f, "note: and {} more notice(s)", self.notices_omitted)?;
        }
        Ok(())
    }
}

/// Where [`verify`](super::verify()) is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The file being read.
    pub file: &'a Path,
    /// Bytes read over all files.
    pub bytes_done: u64,
    /// Bytes of all files.
    pub bytes_total: u64,
}
