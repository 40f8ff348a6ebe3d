//! Verifying a log: the `prev` chain, `seq` continuity, every line's syntax
//! and, given keys, signed checkpoints, across rotated files.
//!
//! [`verify`] reads a log's files in chain order and stops at the first
//! problem, which it names with its file, line and [`ProblemKind`]. The
//! kind comes from seq and chain evidence together, looking a few lines
//! ahead and behind:
//!
//! | evidence at the first broken link (line `n`'s `prev` is not the hash of line `n-1`) | kind | line reported |
//! |---|---|---|
//! | keyed: `prev` is the *plain* SHA-256 of line `n-1` | `forged` | `n` |
//! | `prev` is the hash of a line further down | `reordered` | `n` |
//! | a later line continues the chain from line `n-1` | `inserted` | `n` |
//! | `prev` is the hash of a line before `n-1` | `inserted` | the first line after that one |
//! | seq jumps forward | `deleted` | `n` |
//! | only this link is broken | `edited` | `n-1` |
//! | this link and the next few are all broken | `key_mismatch` | `n` |
//! | across two files, none of the above | `file_chain_break` | `n` |
//!
//! With the chain intact, a seq that repeats is `inserted` and one that
//! goes back is `reordered` (the chain was recomputed, which anyone can do
//! with a plain chain); a seq that jumps forward is a notice, since the
//! writer itself skips seqs it could not write (and records an `audit_gap`).
//! A line that is not a record is `bad_json`, or `torn_tail` when it is the
//! unterminated last line, even when the chain continues over it, with one
//! exception, a notice: a torn write the writer recovered from on restart.
//! That is a proper prefix of a record, the last line before the restart,
//! and named (by byte offset and length) by the `sink_notice` `audit_gap`
//! records the restart writes first. A line
//! that is JSON but not a schema v1 record (a key missing, unknown or
//! mistyped, `v` other than 1, see [`crate::check_schema`]) is
//! `bad_record` wherever it is: a cut-short write is never valid JSON, so
//! the writer did not leave it.
//!
//! ## Keyed chains
//!
//! The verifier decides the algorithm, never the file: with
//! [`VerifyOptions::key`] it checks HMAC-SHA256 under the key, otherwise
//! plain SHA-256. A file carries no "keyed" mark, because whoever rewrites
//! a file could rewrite the mark too. A keyed file verified without its key
//! fails at its first link, and since every following link fails too the
//! kind is `key_mismatch` with a hint to pass the key; a plain file (or a
//! line forged with a recomputed plain chain) verified with a key is
//! `key_mismatch` or `forged`. Signed checkpoints name the algorithm
//! (`chain`), signed, so their reader learns it from a trusted statement.
//!
//! ## Checkpoints
//!
//! Every `checkpoint` record in the file is checked: its head must be the
//! hash of its `upto_seq` line and its `records` the number of lines since
//! `from_seq`; with [`VerifyOptions::public_keys`] its signature is checked
//! too. A checkpoint in the files is compared whatever the files are called:
//! the log is named by its first line (the checkpoint's signed `origin`),
//! not by a file name. Checkpoints kept elsewhere ([`load_checkpoints`],
//! [`VerifyOptions::checkpoints`]) are compared with the file: a head that
//! differs means the lines up to it were rewritten, and a log that ends
//! before a checkpoint's seq (or lacks the checkpoint record itself) was
//! truncated.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_jsonl::verify::{self, ProblemKind, VerifyOptions};
//! # let dir = std::env::temp_dir().join(format!("agent-audit-verify-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("audit-log.jsonl");
//! # let mut text = String::new();
//! # let mut chain = agent_audit_jsonl::chain::Chain::plain();
//! # for seq in 1..=3 {
//! #     let line = format!(r#"{{"v":1,"seq":{seq},"ts":"2026-11-25T23:32:22.000000000Z","event_type":"tool_call","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"a","payload":{{"n":{seq}}},"prev":"{}"}}"#, chain.head());
//! #     chain.next(line.as_bytes());
//! #     text.push_str(&line);
//! #     text.push('\n');
//! # }
//! # std::fs::write(&path, &text)?;
//! // `path` holds three chained records.
//! let report = verify::verify(&[&path], &VerifyOptions::default(), &mut |_| {})?;
//! assert!(report.intact);
//! assert_eq!(report.records, 3);
//!
//! // Change one byte of the first record's payload.
//! std::fs::write(&path, text.replacen(r#"{"n":1}"#, r#"{"n":7}"#, 1))?;
//! let report = verify::verify(&[&path], &VerifyOptions::default(), &mut |_| {})?;
//! let problem = report.problem.unwrap();
//! assert_eq!((problem.kind, problem.line), (ProblemKind::Edited, 1));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::chain::{Chain, GENESIS};
use crate::checkpoint::{ChainAlgorithm, CheckpointPayload, Origin};
use crate::error::ReadError;
use crate::files;
use crate::keys::PublicKey;
use crate::options::ChainKey;
use crate::reader::{Reader, is_torn_write, seq_hint};
use crate::tail::MAX_BAD;

/// How many lines the classifier looks ahead of and behind a broken link.
const WINDOW: usize = 8;
/// How many recent lines' hashes are kept to check in-file checkpoints,
/// whose covered line precedes them by at most the writer's queue backlog.
const HEADS_KEPT: usize = 1 << 20;
/// Progress is reported at least every this many bytes.
const PROGRESS_EVERY: u64 = 4 << 20;
/// Notices kept in full; later ones are only counted, so a hostile file
/// of many small oddities cannot make the report grow without bound.
pub const MAX_NOTICES: usize = 100;

/// What to verify against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Verify an HMAC-SHA256 chain under this key instead of plain SHA-256.
    pub key: Option<ChainKey>,
    /// Check every checkpoint's signature with these keys (matched by key
    /// id). Empty: signatures are not checked (heads still are).
    pub public_keys: Vec<PublicKey>,
    /// Checkpoints kept elsewhere (see [`load_checkpoints`]).
    pub checkpoints: Vec<OffHostCheckpoint>,
    /// The files are a later part of the log (older ones were removed on
    /// purpose): do not require the first line to start the chain.
    pub partial: bool,
    /// The log's name as checkpoints carry it; default: derived from the
    /// file names (`audit-log.000000000001-000000000100.jsonl` and
    /// `audit-log.jsonl` are both `audit-log.jsonl`).
    pub log_name: Option<String>,
}

/// A checkpoint kept off the writer's host, as [`load_checkpoints`] read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffHostCheckpoint {
    /// The file it was read from.
    pub source: PathBuf,
    /// Its line in that file.
    pub line: u64,
    /// The seq of the checkpoint record itself, when the copy has it.
    pub seq: Option<u64>,
    /// The payload.
    pub payload: CheckpointPayload,
}

/// Why a log could not be verified at all (as opposed to a [`Problem`]
/// found in it).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No file was given.
    #[error("no file to verify: give the log's files in order, or its directory")]
    NoInput,
    /// An input does not exist or cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Reading an input failed.
    #[error("{path}:{line}: read error: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The line being read.
        line: u64,
        /// Cause.
        #[source]
        source: io::Error,
    },
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
    /// A line is not a schema v1 record (not JSON, or cut short but not
    /// at the end).
    BadJson,
    /// A line is JSON but not a schema v1 record (a key missing, unknown
    /// or mistyped, `v` other than 1): the writer never leaves one, even
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

/// The outcome of [`verify`]. `--json` prints it as is.
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
    /// [`MAX_NOTICES`] of them.
    pub notices: Vec<Notice>,
    /// Notices found beyond the first [`MAX_NOTICES`], counted only.
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

/// Where [`verify`] is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The file being read.
    pub file: &'a Path,
    /// Bytes read over all files.
    pub bytes_done: u64,
    /// Bytes of all files.
    pub bytes_total: u64,
}

/// The name of the log a file belongs to: a rotated name
/// `<stem>.<seq>-<seq>.<ext>` maps to `<stem>.<ext>`, others to themselves.
pub fn log_name_of(file_name: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let strip = |base: &str| -> Option<String> {
        let (stem, range) = base.rsplit_once('.')?;
        let (a, b) = range.split_once('-')?;
        (digits(a) && digits(b) && !stem.is_empty()).then(|| stem.to_string())
    };
    if let Some((base, ext)) = file_name.rsplit_once('.')
        && let Some(stem) = strip(base)
    {
        return format!("{stem}.{ext}");
    }
    strip(file_name).unwrap_or_else(|| file_name.to_string())
}

/// Turns the inputs into the files to read, in chain order: one directory
/// becomes its log's files (rotated ones by seq, then the active one); files
/// are taken in the order given.
pub fn resolve_inputs<P: AsRef<Path>>(inputs: &[P]) -> Result<Vec<PathBuf>, VerifyError> {
    if inputs.is_empty() {
        return Err(VerifyError::NoInput);
    }
    let open_err = |path: &Path, source| VerifyError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for input in inputs {
        let path = input.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| open_err(path, e))?;
        if meta.is_dir() {
            if inputs.len() > 1 {
                return Err(VerifyError::DirectoryAmongFiles {
                    path: path.to_path_buf(),
                });
            }
            return files_of_directory(path);
        }
        out.push(path.to_path_buf());
    }
    Ok(out)
}

fn files_of_directory(dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let mut logs: BTreeMap<String, ()> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|source| VerifyError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| VerifyError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        // Keys, seq leases (`<log>.seq`) and dot files are not logs.
        if !is_file || name.starts_with('.') || name.ends_with(".pem") || name.ends_with(".seq") {
            continue;
        }
        logs.insert(log_name_of(&name), ());
    }
    let logs: Vec<String> = logs.into_keys().collect();
    match logs.as_slice() {
        [] => Err(VerifyError::EmptyDirectory {
            dir: dir.to_path_buf(),
        }),
        [one] => Ok(files::list(&dir.join(one))?
            .into_iter()
            .map(|f| f.path)
            .collect()),
        _ => Err(VerifyError::SeveralLogs {
            dir: dir.to_path_buf(),
            logs,
        }),
    }
}

/// Reads checkpoints kept elsewhere: a JSONL file whose lines are
/// `checkpoint` records (as in an audit log), objects with the checkpoint
/// payload under `payload` or `body` (an OTLP log record exported as JSON,
/// its seq in `attributes."audit.seq"`), or bare payloads. Lines of other
/// event types are skipped, so a full copy of the log's records will do.
pub fn load_checkpoints(path: impl AsRef<Path>) -> Result<Vec<OffHostCheckpoint>, VerifyError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| VerifyError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| VerifyError::BadCheckpointFile {
            path: path.to_path_buf(),
            line: number,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Some(obj) = value.as_object() else {
            return Err(bad("not a JSON object".into()));
        };
        let is_payload = |v: &serde_json::Value| {
            v.get("signature").is_some() && v.get("upto_seq").is_some() && v.get("head").is_some()
        };
        let event_type = obj
            .get("event_type")
            .or_else(|| obj.get("event_name"))
            .and_then(|v| v.as_str());
        if let Some(t) = event_type
            && t != "checkpoint"
            && t != "agent_audit.checkpoint"
        {
            continue;
        }
        let payload = if is_payload(&value) {
            &value
        } else if let Some(p) = obj.get("payload").filter(|p| is_payload(p)) {
            p
        } else if let Some(p) = obj.get("body").filter(|p| is_payload(p)) {
            p
        } else if event_type.is_some() {
            return Err(bad(
                "a checkpoint record without a checkpoint payload".into()
            ));
        } else {
            continue;
        };
        let payload = CheckpointPayload::from_value(payload).map_err(bad)?;
        let seq_of = |v: &serde_json::Value| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        };
        let seq = obj
            .get("seq")
            .and_then(seq_of)
            .or_else(|| obj.get("attributes")?.get("audit.seq").and_then(seq_of));
        out.push(OffHostCheckpoint {
            source: path.to_path_buf(),
            line: number,
            seq,
            payload,
        });
    }
    Ok(out)
}

/// Verifies a log given as files in chain order or as its directory. See
/// the [module docs](self). `progress` is called as bytes are read.
///
/// Returns a report whether or not the log is intact; an `Err` only when
/// the input cannot be read at all.
pub fn verify<P: AsRef<Path>>(
    inputs: &[P],
    options: &VerifyOptions,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<VerifyReport, VerifyError> {
    let files = resolve_inputs(inputs)?;
    verify_files(&files, options, progress)
}

/// [`verify`] over files already in chain order.
pub fn verify_files(
    files: &[PathBuf],
    options: &VerifyOptions,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<VerifyReport, VerifyError> {
    if files.is_empty() {
        return Err(VerifyError::NoInput);
    }
    let log = match &options.log_name {
        Some(l) => l.clone(),
        None => files
            .last()
            .and_then(|p| p.file_name())
            .map(|n| log_name_of(&n.to_string_lossy()))
            .unwrap_or_default(),
    };
    let mut walk = Walk::new(files, options, log)?;
    walk.run(progress)?;
    Ok(walk.finish())
}

/// One record line, hashed.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    line: u64,
    seq: u64,
    /// `prev` decoded; `None` when it is not 64 hex digits.
    prev: Option<[u8; 32]>,
    hash: [u8; 32],
    bytes: Vec<u8>,
    /// The payload, for checkpoint records.
    checkpoint: Option<serde_json::Value>,
    /// The `detail` of an `audit_gap` record of reason `sink_notice`: what
    /// a sink found on opening its file (a torn line it skipped).
    sink_notice: Option<String>,
}

impl Entry {
    fn links_to(&self, hash: &[u8; 32]) -> bool {
        self.prev.as_ref() == Some(hash)
    }
}

/// A line that is not a record.
#[derive(Debug)]
struct Bad {
    file: usize,
    line: u64,
    /// Byte offset of its first byte in its file.
    offset: u64,
    /// Its length, without the newline.
    len: u64,
    terminated: bool,
    /// JSON, but not a record: never a torn write.
    json: bool,
    /// Its bytes could be what a write cut short leaves (see
    /// [`is_torn_write`]).
    torn: bool,
    message: String,
}

/// Lines that are not records, with the chain continuing over them: only
/// legitimate as torn writes a restart of the writer skipped, each named
/// (by byte offset and length) in the `sink_notice` gap records that the
/// restart wrote first.
struct Recovery {
    lines: Vec<Bad>,
    named: Vec<bool>,
}

/// Whether a sink's open notice names the line at `offset` (`None`: any
/// offset) of `len` bytes. The wording is the JSONL sink's
/// (`JsonlSink::open_file`): "... at byte offset {offset} of {path} ({len}
/// bytes...".
fn notice_names(detail: &str, offset: Option<u64>, len: u64) -> bool {
    offset.is_none_or(|o| detail.contains(&format!("byte offset {o} of ")))
        && detail.contains(&format!(" ({len} bytes"))
}

enum Item {
    Record(Entry),
    Bad(Bad),
}

/// Reads items from the files in order.
struct Source<'a> {
    files: &'a [PathBuf],
    idx: usize,
    reader: Option<Reader>,
    chain: Chain,
    bytes_done: u64,
    bytes_total: u64,
    reported_at: u64,
    sizes: Vec<u64>,
    lines: Vec<(u64, u64)>,
}

impl<'a> Source<'a> {
    fn next(
        &mut self,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Option<Item>, VerifyError> {
        loop {
            if self.idx >= self.files.len() {
                return Ok(None);
            }
            let path = &self.files[self.idx];
            if self.reader.is_none() {
                self.reader = Some(Reader::open(path).map_err(|e| match e {
                    ReadError::Open { path, source } => VerifyError::Open { path, source },
                    other => VerifyError::Open {
                        path: path.clone(),
                        source: io::Error::other(other.to_string()),
                    },
                })?);
                progress(&Progress {
                    file: path,
                    bytes_done: self.bytes_done,
                    bytes_total: self.bytes_total,
                });
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let raw = match reader.next_raw() {
                None => {
                    self.reader = None;
                    self.idx += 1;
                    continue;
                }
                Some(Err(ReadError::Io { path, line, source })) => {
                    return Err(VerifyError::Read { path, line, source });
                }
                Some(Err(e)) => {
                    return Err(VerifyError::Read {
                        path: path.clone(),
                        line: e.line().unwrap_or(0),
                        source: io::Error::other(e.to_string()),
                    });
                }
                Some(Ok(raw)) => raw,
            };
            self.bytes_done += raw.len + u64::from(raw.terminated);
            if self.bytes_done - self.reported_at >= PROGRESS_EVERY {
                self.reported_at = self.bytes_done;
                progress(&Progress {
                    file: path,
                    bytes_done: self.bytes_done,
                    bytes_total: self.bytes_total,
                });
            }
            self.lines[self.idx].0 = raw.number;
            let file = self.idx;
            let number = raw.number;
            let terminated = raw.terminated;
            let hint = seq_hint(&raw.bytes);
            return Ok(Some(match reader.parse_or_return(raw) {
                Ok(line) => {
                    self.lines[self.idx].1 += 1;
                    let mut prev = [0u8; 32];
                    let prev = hex::decode_to_slice(&line.record.prev, &mut prev)
                        .ok()
                        .filter(|()| line.record.prev.bytes().all(|b| !b.is_ascii_uppercase()))
                        .map(|()| prev);
                    let checkpoint = (line.record.event_type
                        == agent_audit_core::EventType::Checkpoint)
                        .then(|| line.record.payload.clone());
                    let sink_notice = (line.record.event_type
                        == agent_audit_core::EventType::AuditGap
                        && line.record.payload.get("reason")
                            == Some(&serde_json::Value::from("sink_notice")))
                    .then(|| {
                        line.record
                            .payload
                            .get("detail")?
                            .as_str()
                            .map(str::to_string)
                    })
                    .flatten();
                    Item::Record(Entry {
                        file,
                        line: number,
                        seq: line.record.seq,
                        prev,
                        hash: self.chain.hash(&line.bytes),
                        bytes: line.bytes,
                        checkpoint,
                        sink_notice,
                    })
                }
                Err(bad) => {
                    let (e, raw) = *bad;
                    let json = matches!(e, ReadError::NotSchemaV1 { .. });
                    let detail = match &e {
                        ReadError::NotSchemaV1 { reason, .. } => {
                            format!("JSON, but not a schema v1 record: {reason}")
                        }
                        ReadError::BadRecord { source, .. } => {
                            format!("not a valid record: {source}")
                        }
                        ReadError::NotUtf8 { column, .. } => {
                            format!("not UTF-8 (invalid byte at column {column})")
                        }
                        ReadError::TornFinalLine { len, .. } => {
                            format!("incomplete line of {len} bytes without a newline")
                        }
                        ReadError::TooLong { max, .. } => format!("longer than {max} bytes"),
                        other => other.to_string(),
                    };
                    let was = hint
                        .map(|s| format!(" (it was being written for seq {s})"))
                        .unwrap_or_default();
                    Item::Bad(Bad {
                        file,
                        line: number,
                        offset: raw.offset,
                        len: raw.len,
                        terminated,
                        json,
                        torn: !raw.too_long && is_torn_write(&raw.bytes),
                        message: format!("{detail}{was}"),
                    })
                }
            }));
        }
    }
}

/// An off-host checkpoint's expectations.
struct Expect {
    cp: OffHostCheckpoint,
    head: Option<[u8; 32]>,
    head_seen: bool,
    record_seen: bool,
}

struct Walk<'a> {
    options: &'a VerifyOptions,
    log: String,
    src: Source<'a>,
    keyed: bool,
    /// Recent records, newest last.
    ring: VecDeque<Entry>,
    /// (seq, hash, ordinal, is a checkpoint) of recent records, for
    /// in-file checkpoints.
    heads: VecDeque<(u64, [u8; 32], u64, bool)>,
    /// First and last seq per file.
    file_seqs: Vec<(Option<u64>, Option<u64>)>,
    ordinal: u64,
    first: Option<(u64, bool)>,
    links_ok: u64,
    pending_bad: Vec<Bad>,
    /// A run of bad lines the chain continued over, waiting for the
    /// restart's notices to name them.
    recovery: Option<Recovery>,
    /// The first line of the log, when the files start the chain.
    origin: Option<Origin>,
    problem: Option<Problem>,
    notices: Vec<Notice>,
    notices_omitted: u64,
    cps: CheckpointReport,
    last_cp_record: Option<u64>,
    expect: Vec<Expect>,
    expect_heads: HashMap<u64, Vec<usize>>,
    expect_records: HashMap<u64, Vec<usize>>,
}

fn decode_head(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|()| out)
}

/// The first line of the log `first` begins, if its first record starts
/// the chain (its `prev` is the genesis value).
fn origin_of(first: &Path, chain: &Chain) -> Option<Origin> {
    let file = std::fs::File::open(first).ok()?;
    // Reading a pipe here would take its lines from the verifier.
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let (seq, bytes, prev) = crate::tail::first_record_line(&file).ok()??;
    (prev == GENESIS).then(|| Origin {
        seq,
        head: hex::encode(chain.hash(&bytes)),
    })
}

fn plain_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl<'a> Walk<'a> {
    fn new(
        files: &'a [PathBuf],
        options: &'a VerifyOptions,
        log: String,
    ) -> Result<Self, VerifyError> {
        let mut sizes = Vec::with_capacity(files.len());
        for f in files {
            let meta = std::fs::metadata(f).map_err(|source| VerifyError::Open {
                path: f.clone(),
                source,
            })?;
            if meta.is_dir() {
                return Err(VerifyError::DirectoryAmongFiles { path: f.clone() });
            }
            sizes.push(meta.len());
        }
        let chain = match &options.key {
            Some(k) => Chain::keyed(k.bytes()),
            None => Chain::plain(),
        };
        let origin = origin_of(&files[0], &chain);
        // Off-host checkpoints name the log by its first line; by name
        // only those without one, or all of the name when none names this
        // log's first line (a log rewritten from its first line on must
        // still meet the checkpoints of its name).
        let by_origin = |cp: &OffHostCheckpoint| origin.is_some() && cp.payload.origin == origin;
        let any_by_origin = options.checkpoints.iter().any(by_origin);
        let mut expect = Vec::new();
        let mut others = Vec::new();
        for cp in &options.checkpoints {
            let by_name = cp.payload.log == log && (cp.payload.origin.is_none() || !any_by_origin);
            if by_origin(cp) || by_name {
                expect.push(Expect {
                    head: decode_head(&cp.payload.head),
                    cp: cp.clone(),
                    head_seen: false,
                    record_seen: false,
                });
            } else if !others.contains(&cp.payload.log) {
                others.push(cp.payload.log.clone());
            }
        }
        if !options.checkpoints.is_empty() && expect.is_empty() {
            return Err(VerifyError::NoCheckpointsForLog {
                path: options.checkpoints[0].source.clone(),
                log,
                found: others,
            });
        }
        let mut expect_heads: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut expect_records: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, e) in expect.iter().enumerate() {
            expect_heads
                .entry(e.cp.payload.upto_seq)
                .or_default()
                .push(i);
            if let Some(seq) = e.cp.seq {
                expect_records.entry(seq).or_default().push(i);
            }
        }
        let cps = CheckpointReport {
            off_host: expect.len() as u64,
            ..CheckpointReport::default()
        };
        Ok(Walk {
            options,
            log,
            keyed: options.key.is_some(),
            src: Source {
                files,
                idx: 0,
                reader: None,
                chain,
                bytes_done: 0,
                bytes_total: sizes.iter().sum(),
                reported_at: 0,
                sizes,
                lines: vec![(0, 0); files.len()],
            },
            ring: VecDeque::with_capacity(WINDOW + 1),
            heads: VecDeque::new(),
            file_seqs: vec![(None, None); files.len()],
            ordinal: 0,
            first: None,
            links_ok: 0,
            pending_bad: Vec::new(),
            recovery: None,
            origin,
            problem: None,
            notices: Vec::new(),
            notices_omitted: 0,
            cps,
            last_cp_record: None,
            expect,
            expect_heads,
            expect_records,
        })
    }

    fn path(&self, file: usize) -> PathBuf {
        self.src.files[file].clone()
    }

    fn problem(
        &mut self,
        kind: ProblemKind,
        file: usize,
        line: u64,
        seq: Option<u64>,
        message: String,
    ) {
        // Lines are read in order, so bad lines still waiting for their
        // notices come before whatever was found since.
        if let Some(recovery) = self.recovery.take() {
            self.unnamed(recovery);
            return;
        }
        let hint = match kind {
            _ if self.keyed => None,
            ProblemKind::Edited | ProblemKind::KeyMismatch | ProblemKind::Deleted | ProblemKind::Inserted | ProblemKind::Reordered
                if self.links_ok == 0 =>
            {
                Some("no link of this chain held under plain SHA-256: if the log was written with a chain key ([integrity] key_env), verify with --key-env VAR".to_string())
            }
            _ => None,
        };
        self.problem = Some(Problem {
            kind,
            file: self.path(file),
            line,
            seq,
            message,
            hint,
        });
    }

    fn set_hint(&mut self, hint: &str) {
        if let Some(p) = self.problem.as_mut() {
            p.hint = Some(hint.to_string());
        }
    }

    fn notice(&mut self, file: usize, line: u64, message: String) {
        if self.notices.len() >= MAX_NOTICES {
            self.notices_omitted += 1;
            return;
        }
        self.notices.push(Notice {
            file: self.path(file),
            line,
            message,
        });
    }

    fn at(&self, e: &Entry) -> String {
        format!("line {} (seq {})", e.line, e.seq)
    }

    fn at_file(&self, e: &Entry) -> String {
        format!(
            "line {} of {} (seq {})",
            e.line,
            self.src.files[e.file].display(),
            e.seq
        )
    }

    fn run(&mut self, progress: &mut dyn FnMut(&Progress<'_>)) -> Result<(), VerifyError> {
        while self.problem.is_none() {
            match self.src.next(progress)? {
                None => break,
                // Unlike a torn write, it is damage even when the chain
                // continues over it: a reader taking the file line by line
                // (the tutorial's `json.loads`) would read it as an event.
                Some(Item::Bad(b)) if b.json => {
                    let msg = format!(
                        "{}; the writer never writes such a line (a write cut short is not valid JSON), so it was added or changed afterwards",
                        b.message
                    );
                    self.problem(ProblemKind::BadRecord, b.file, b.line, None, msg);
                }
                Some(Item::Bad(b)) => {
                    self.pending_bad.push(b);
                    // More lines in a row than the writer ever skips on a
                    // restart: no recovery, so no need to keep them.
                    if self.pending_bad.len() > MAX_BAD {
                        let b = &self.pending_bad[0];
                        let (file, line) = (b.file, b.line);
                        let msg = format!(
                            "{}; it starts a run of more than {MAX_BAD} lines that are not records, more than a restart of the writer ever skips",
                            b.message
                        );
                        self.problem(ProblemKind::BadJson, file, line, None, msg);
                    }
                }
                Some(Item::Record(e)) => self.record(e, progress)?,
            }
        }
        progress(&Progress {
            file: self
                .src
                .files
                .last()
                .map(PathBuf::as_path)
                .unwrap_or(Path::new("")),
            bytes_done: self.src.bytes_done,
            bytes_total: self.src.bytes_total,
        });
        if self.problem.is_none() {
            self.at_end();
        }
        Ok(())
    }

    /// Reads up to [`WINDOW`] more records, stopping at a line that is not one.
    fn lookahead(
        &mut self,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Vec<Entry>, VerifyError> {
        let mut out = Vec::new();
        while out.len() < WINDOW {
            match self.src.next(progress)? {
                Some(Item::Record(e)) => out.push(e),
                Some(Item::Bad(_)) | None => break,
            }
        }
        Ok(out)
    }

    fn record(
        &mut self,
        e: Entry,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<(), VerifyError> {
        let linked = match self.ring.back() {
            None => {
                let genesis = e.prev == decode_head(GENESIS);
                self.first = Some((e.seq, genesis));
                genesis || self.options.partial
            }
            Some(p) => e.links_to(&p.hash),
        };
        if !linked && self.ring.is_empty() {
            if let Some(b) = self.pending_bad.first() {
                let (file, line, msg) = (b.file, b.line, b.message.clone());
                self.problem(ProblemKind::BadJson, file, line, None, msg);
                return Ok(());
            }
            let ahead = self.lookahead(progress)?;
            let genesis = decode_head(GENESIS);
            if let Some(m) = ahead.iter().position(|n| n.prev == genesis) {
                let msg = format!(
                    "{} line(s) from here were inserted before the start of the chain: {} starts it (its prev is the genesis value)",
                    m + 1,
                    self.at_file(&ahead[m])
                );
                self.problem(ProblemKind::Inserted, e.file, e.line, Some(e.seq), msg);
                return Ok(());
            }
            let more = if files::list(&self.src.files[e.file])
                .map(|l| l.len() > 1)
                .unwrap_or(false)
                && self.src.files.len() == 1
            {
                " Rotated files of this log lie next to it: give the directory to verify them all."
            } else {
                ""
            };
            let message = format!(
                "the log does not start at the beginning of its chain: the first record (seq {}) has a prev other than the genesis value, so lines before it are missing (earlier files removed, the head of the file cut, or files given out of order).{more}",
                e.seq
            );
            self.problem(ProblemKind::Truncated, e.file, e.line, Some(e.seq), message);
            self.set_hint("if older files were removed on purpose (retention), pass --partial");
            return Ok(());
        }
        if !linked {
            if let Some(b) = self.pending_bad.first() {
                let (file, line, msg) = (b.file, b.line, b.message.clone());
                self.problem(ProblemKind::BadJson, file, line, None, msg);
                return Ok(());
            }
            let ahead = self.lookahead(progress)?;
            self.classify(&e, &ahead);
            return Ok(());
        }
        if !self.ring.is_empty() {
            self.links_ok += 1;
        }
        if !self.pending_bad.is_empty() {
            let lines = std::mem::take(&mut self.pending_bad);
            if let Some(b) = lines.iter().find(|b| !b.torn) {
                let (file, line) = (b.file, b.line);
                let msg = format!(
                    "{}; the chain continues over it, but it is not what a write cut short leaves (the beginning of a record, strict JSON up to where it stops): it was put there or changed afterwards",
                    b.message
                );
                self.problem(ProblemKind::BadJson, file, line, None, msg);
                return Ok(());
            }
            self.recovery = Some(Recovery {
                named: vec![false; lines.len()],
                lines,
            });
        }
        if let Some(mut recovery) = self.recovery.take() {
            // The restart writes its notices before anything else, so the
            // records right after the skipped lines must be those notices.
            let Some(detail) = &e.sink_notice else {
                self.unnamed(recovery);
                return Ok(());
            };
            // A later part of a log may be a copy cut anywhere (its offsets
            // are not the writer's): there the length must match, and the
            // place is still only right before the notices.
            let partial = self.options.partial;
            for (b, named) in recovery.lines.iter().zip(recovery.named.iter_mut()) {
                *named |= notice_names(detail, (!partial).then_some(b.offset), b.len);
            }
            if recovery.named.iter().all(|&n| n) {
                for b in recovery.lines {
                    self.notice(
                        b.file,
                        b.line,
                        format!(
                            "not a record: {}; a torn write recovered on restart: the chain continues over it from the record before, and the writer's restart names it in its audit_gap (line {})",
                            b.message, e.line
                        ),
                    );
                }
            } else {
                self.recovery = Some(recovery);
            }
        }
        if let Some((p_seq, p_line, p_hash)) = self.ring.back().map(|p| (p.seq, p.line, p.hash)) {
            if e.seq <= p_seq {
                let ahead = self.lookahead(progress)?;
                let single_break = match ahead.as_slice() {
                    [n1, n2, ..] => !n1.links_to(&e.hash) && n2.links_to(&n1.hash),
                    [n1] => !n1.links_to(&e.hash),
                    [] => false,
                };
                if ahead.first().is_some_and(|n1| n1.links_to(&p_hash)) {
                    let msg = format!(
                        "this line was inserted: its prev fits line {p_line}, but the next line continues the chain from line {p_line} too, and its seq {} does not follow seq {p_seq}",
                        e.seq
                    );
                    self.problem(ProblemKind::Inserted, e.file, e.line, Some(e.seq), msg);
                } else if single_break {
                    let msg = format!(
                        "this line was changed after it was written: its hash no longer matches the prev of the next line, and its seq {} does not follow seq {}",
                        e.seq, p_seq
                    );
                    self.problem(ProblemKind::Edited, e.file, e.line, Some(e.seq), msg);
                } else if e.seq == p_seq {
                    let msg = format!(
                        "seq {} appears twice ({} and this line) although the chain links: a line was inserted and the chain recomputed after it (anyone can recompute a plain chain: use a chain key or signed checkpoints)",
                        e.seq,
                        format_args!("line {p_line}")
                    );
                    self.problem(ProblemKind::Inserted, e.file, e.line, Some(e.seq), msg);
                } else {
                    let msg = format!(
                        "seq goes back from {} to {} although the chain links: lines were reordered and the chain recomputed (anyone can recompute a plain chain: use a chain key or signed checkpoints)",
                        p_seq, e.seq
                    );
                    self.problem(ProblemKind::Reordered, e.file, e.line, Some(e.seq), msg);
                }
                return Ok(());
            }
            // Saturating: a hostile seq of u64::MAX must not overflow.
            if e.seq > p_seq.saturating_add(1) {
                let (a, b) = (p_seq + 1, e.seq - 1);
                let range = if a == b {
                    format!("seq {a} is")
                } else {
                    format!("seqs {a}..{b} are")
                };
                self.notice(
                    e.file,
                    e.line,
                    format!("{range} absent before this line, but the chain links: the writer skipped them (records dropped by overflow policy or a torn write; see the audit_gap records)"),
                );
            }
        }
        self.accept(e);
        Ok(())
    }

    /// Checks a linked record against checkpoints and keeps it.
    fn accept(&mut self, e: Entry) {
        if let Some(idxs) = self.expect_heads.get(&e.seq).cloned() {
            for i in idxs {
                let x = &mut self.expect[i];
                x.head_seen = true;
                if x.head != Some(e.hash) {
                    let msg = format!(
                        "the off-host checkpoint at line {} of {} signed head {} for seq {}, but this line's chain value differs: the lines up to here were rewritten and the chain recomputed",
                        x.cp.line,
                        x.cp.source.display(),
                        x.cp.payload.head,
                        e.seq
                    );
                    self.problem(ProblemKind::Rewritten, e.file, e.line, Some(e.seq), msg);
                    return;
                }
            }
        }
        if let Some(idxs) = self.expect_records.get(&e.seq).cloned() {
            let here = e
                .checkpoint
                .as_ref()
                .and_then(|v| CheckpointPayload::from_value(v).ok());
            for i in idxs {
                let x = &mut self.expect[i];
                x.record_seen = true;
                if here.as_ref().map(|p| &p.signature) != Some(&x.cp.payload.signature) {
                    let msg = format!(
                        "the off-host copy (line {} of {}) has checkpoint record seq {} covering up to seq {}, but this line is a different record: the log after seq {} was rewritten",
                        x.cp.line,
                        x.cp.source.display(),
                        e.seq,
                        x.cp.payload.upto_seq,
                        x.cp.payload.upto_seq
                    );
                    self.problem(ProblemKind::Rewritten, e.file, e.line, Some(e.seq), msg);
                    return;
                }
            }
        }
        if let Some(value) = &e.checkpoint
            && !self.check_in_file(&e, value)
        {
            return;
        }
        if self.expect_heads.contains_key(&e.seq) {
            self.cps.covered_upto = self.cps.covered_upto.max(Some(e.seq));
        }
        let fs = &mut self.file_seqs[e.file];
        fs.0 = fs.0.or(Some(e.seq));
        fs.1 = Some(e.seq);
        self.heads
            .push_back((e.seq, e.hash, self.ordinal, e.checkpoint.is_some()));
        if self.heads.len() > HEADS_KEPT {
            self.heads.pop_front();
        }
        self.ordinal += 1;
        self.ring.push_back(e);
        if self.ring.len() > WINDOW + 1 {
            self.ring.pop_front();
        }
    }

    fn find_head(&self, seq: u64) -> Option<&(u64, [u8; 32], u64, bool)> {
        let i = self.heads.partition_point(|h| h.0 < seq);
        self.heads.get(i).filter(|h| h.0 == seq)
    }

    /// Checks a checkpoint record in the file. Returns false on a problem.
    fn check_in_file(&mut self, e: &Entry, value: &serde_json::Value) -> bool {
        self.cps.in_file += 1;
        self.last_cp_record = Some(e.seq);
        let cp = match CheckpointPayload::from_value(value) {
            Ok(cp) => cp,
            Err(reason) => {
                self.problem(
                    ProblemKind::BadCheckpoint,
                    e.file,
                    e.line,
                    Some(e.seq),
                    format!("malformed checkpoint: {reason}"),
                );
                return false;
            }
        };
        if !self.options.public_keys.is_empty() {
            let Some(key) = self
                .options
                .public_keys
                .iter()
                .find(|k| k.key_id() == cp.key_id)
            else {
                let ids: Vec<&str> = self
                    .options
                    .public_keys
                    .iter()
                    .map(|k| k.key_id())
                    .collect();
                let msg = format!(
                    "checkpoint signed by key {} but the public keys given are {}",
                    cp.key_id,
                    ids.join(", ")
                );
                self.problem(ProblemKind::UnknownKey, e.file, e.line, Some(e.seq), msg);
                return false;
            };
            if let Err(err) = cp.verify(key) {
                let msg = format!("checkpoint covering up to seq {}: {err}", cp.upto_seq);
                self.problem(ProblemKind::BadSignature, e.file, e.line, Some(e.seq), msg);
                return false;
            }
            self.cps.signatures_verified += 1;
        }
        if cp.upto_seq >= e.seq {
            let msg = format!(
                "checkpoint claims to cover seq {}, at or after its own seq",
                cp.upto_seq
            );
            self.problem(ProblemKind::BadCheckpoint, e.file, e.line, Some(e.seq), msg);
            return false;
        }
        // A checkpoint in the log speaks for the log, whatever its files
        // are called now and whatever its `log` label says: a file renamed
        // after its lines were rewritten must not escape the comparison.
        let Some(&(_, hash, ordinal, _)) = self.find_head(cp.upto_seq) else {
            let oldest = self.heads.front().map(|h| h.0);
            if oldest.is_some_and(|o| o < cp.upto_seq) {
                let msg = format!(
                    "checkpoint covers seq {}, but no line of the log has that seq: it was deleted",
                    cp.upto_seq
                );
                self.problem(ProblemKind::Deleted, e.file, e.line, Some(e.seq), msg);
                return false;
            }
            self.notice(
                e.file,
                e.line,
                format!("checkpoint of log {:?} covers seq {}, which is not among the lines verified; its head was not compared", cp.log, cp.upto_seq),
            );
            return true;
        };
        if Some(hash) != decode_head(&cp.head) {
            let mode = ChainAlgorithm::of(self.keyed);
            if cp.chain != mode {
                let msg = format!(
                    "checkpoint says the chain is {} but it is being verified as {}",
                    cp.chain, mode
                );
                self.problem(ProblemKind::KeyMismatch, e.file, e.line, Some(e.seq), msg);
                self.set_hint(if cp.chain == ChainAlgorithm::HmacSha256 {
                    "give the chain key with --key-env VAR"
                } else {
                    "this log was written without a chain key: verify without --key-env"
                });
                return false;
            }
            let began = match (&cp.origin, &self.origin) {
                (Some(signed), Some(here)) if signed != here => format!(
                    "; it says the log began at seq {} with chain value {}, but this log begins at seq {} with {}",
                    signed.seq, signed.head, here.seq, here.head
                ),
                _ => String::new(),
            };
            let msg = format!(
                "checkpoint signed head {} for seq {}, but that line's chain value differs: lines up to seq {} were rewritten and the chain recomputed{began}",
                cp.head, cp.upto_seq, cp.upto_seq
            );
            self.problem(ProblemKind::Rewritten, e.file, e.line, Some(e.seq), msg);
            return false;
        }
        self.cps.heads_matched += 1;
        // `records` counts lines with a seq in (from_seq, upto_seq].
        let from_ordinal = if cp.from_seq == 0 {
            self.first.filter(|f| f.1).map(|_| -1i128)
        } else {
            self.find_head(cp.from_seq).map(|h| h.2 as i128)
        };
        if let Some(from) = from_ordinal {
            let count = ordinal as i128 - from;
            if count != cp.records as i128 {
                let msg = format!(
                    "checkpoint says {} records lie in seq {}..={}, the log has {count}: lines were removed or added and the chain recomputed",
                    cp.records,
                    cp.from_seq.saturating_add(1),
                    cp.upto_seq
                );
                self.problem(ProblemKind::Rewritten, e.file, e.line, Some(e.seq), msg);
                return false;
            }
        }
        self.cps.covered_upto = self.cps.covered_upto.max(Some(cp.upto_seq));
        true
    }

    /// Names the first broken link: `e` does not link to the previous record.
    fn classify(&mut self, e: &Entry, ahead: &[Entry]) {
        let Some(p1) = self.ring.back().cloned() else {
            return;
        };
        let boundary = e.file != p1.file;
        // 1. Under a key, a plain SHA-256 prev is a line forged without it.
        if self.keyed && e.links_to(&plain_hash(&p1.bytes)) {
            let all_plain = self.links_ok == 0
                && ahead
                    .first()
                    .is_none_or(|n1| n1.links_to(&plain_hash(&e.bytes)));
            if all_plain && !ahead.is_empty() {
                let msg = "the chain is plain SHA-256, not HMAC-SHA256 under the given key: the log was written without a chain key, or rewritten by someone without it".to_string();
                self.problem(ProblemKind::KeyMismatch, e.file, e.line, Some(e.seq), msg);
            } else {
                let msg = format!(
                    "prev is the plain SHA-256 of {}, not its HMAC under the chain key: this line was written by someone without the key",
                    self.at(&p1)
                );
                self.problem(ProblemKind::Forged, e.file, e.line, Some(e.seq), msg);
            }
            return;
        }
        // 2. prev points at a line further down: out of order.
        if let Some(n) = ahead.iter().find(|n| e.links_to(&n.hash)) {
            let msg = format!(
                "this line belongs after {} (its prev is that line's hash): lines were reordered",
                self.at_file(n)
            );
            self.problem(ProblemKind::Reordered, e.file, e.line, Some(e.seq), msg);
            return;
        }
        // 3. A later line continues from p1: the lines in between are extra.
        if let Some(m) = ahead.iter().position(|n| n.links_to(&p1.hash)) {
            let count = m + 1;
            let msg = format!(
                "{count} line(s) from here were inserted: {} continues the chain from {}",
                self.at_file(&ahead[m]),
                self.at_file(&p1)
            );
            self.problem(ProblemKind::Inserted, e.file, e.line, Some(e.seq), msg);
            return;
        }
        // 4. e continues from an older line: the lines after it are extra.
        let back = self.ring.len();
        for r in 2..=back {
            let older = &self.ring[back - r];
            if e.links_to(&older.hash) {
                let first_extra = self.ring[back - r + 1].clone();
                let msg = format!(
                    "{} line(s) from here were inserted: {} continues the chain from {}",
                    r - 1,
                    self.at_file(e),
                    self.at_file(older)
                );
                self.problem(
                    ProblemKind::Inserted,
                    first_extra.file,
                    first_extra.line,
                    Some(first_extra.seq),
                    msg,
                );
                return;
            }
        }
        // 5. The seq jumps: lines are missing.
        if e.seq > p1.seq.saturating_add(1) {
            let (a, b) = (p1.seq + 1, e.seq - 1);
            let range = if a == b {
                format!("seq {a}")
            } else {
                format!("seqs {a}..{b}")
            };
            if boundary {
                let msg = format!(
                    "{range} missing between {} and this file's first line: a file, or lines at the end of the previous file, are missing",
                    self.at_file(&p1)
                );
                self.problem(
                    ProblemKind::FileChainBreak,
                    e.file,
                    e.line,
                    Some(e.seq),
                    msg,
                );
            } else {
                let msg = format!(
                    "{} record(s) ({range}) were deleted between {} and this line",
                    b - a + 1,
                    self.at(&p1)
                );
                self.problem(ProblemKind::Deleted, e.file, e.line, Some(e.seq), msg);
            }
            return;
        }
        // 6. How many links from here on are broken?
        let mut broken = 1;
        let mut prev = e;
        for n in ahead {
            if n.links_to(&prev.hash) {
                break;
            }
            broken += 1;
            prev = n;
        }
        let all_broken = broken == ahead.len() + 1;
        if boundary && broken == 1 {
            let msg = if e.seq <= p1.seq {
                format!(
                    "this file does not continue {}: its seq {} does not follow {}; the files are out of order",
                    self.at_file(&p1),
                    e.seq,
                    p1.seq
                )
            } else {
                format!(
                    "this file's first line does not continue the chain of {}: that line was changed, or this file does not follow that one",
                    self.at_file(&p1)
                )
            };
            self.problem(
                ProblemKind::FileChainBreak,
                e.file,
                e.line,
                Some(e.seq),
                msg,
            );
            return;
        }
        if broken == 1 {
            let msg = format!(
                "this line was changed after it was written: its hash is not the prev of the next line ({}){}",
                self.at(e),
                if p1.seq.checked_add(1) == Some(e.seq) {
                    ""
                } else {
                    ", and the seqs around it do not follow"
                }
            );
            self.problem(ProblemKind::Edited, p1.file, p1.line, Some(p1.seq), msg);
            return;
        }
        if all_broken && ahead.len() >= 2 {
            let (what, hint) = if self.keyed {
                (
                    "HMAC-SHA256 under the given key",
                    "check the key: the log may be written with another key, or without one",
                )
            } else {
                (
                    "SHA-256",
                    "if the log was written with a chain key ([integrity] key_env), verify with --key-env VAR",
                )
            };
            let msg = format!(
                "from this line on no prev is the {what} of the line before ({} links checked): the log was written under a different chain key from here, or every one of these lines was changed",
                broken
            );
            self.problem(ProblemKind::KeyMismatch, e.file, e.line, Some(e.seq), msg);
            self.set_hint(hint);
            return;
        }
        let msg = if broken == 2 {
            format!(
                "this line does not fit between {} and the next line (neither link holds): it was changed or replaced",
                self.at(&p1)
            )
        } else {
            format!("{broken} lines from here do not link: they were changed or replaced")
        };
        self.problem(ProblemKind::Edited, e.file, e.line, Some(e.seq), msg);
    }

    /// Reports the first line of `recovery` no notice of the writer named.
    fn unnamed(&mut self, recovery: Recovery) {
        let Some(b) = recovery
            .lines
            .iter()
            .zip(&recovery.named)
            .find_map(|(b, &named)| (!named).then_some(b))
        else {
            return;
        };
        let (file, line) = (b.file, b.line);
        let msg = format!(
            "{}; the chain continues over it, but the writer did not record skipping it (a restart that recovers from a torn write names each line it skips, by byte offset and length, in an audit_gap record right after it): it was put there afterwards",
            b.message
        );
        self.problem(ProblemKind::BadJson, file, line, None, msg);
    }

    fn at_end(&mut self) {
        if let Some(recovery) = self.recovery.take() {
            self.unnamed(recovery);
            return;
        }
        if let Some(b) = self.pending_bad.first() {
            let last_file = self.src.files.len().saturating_sub(1);
            let torn = self
                .pending_bad
                .last()
                .is_some_and(|l| !l.terminated && l.file == last_file);
            let (file, line) = (b.file, b.line);
            // A restart ends a torn line with a newline before it writes
            // anything else, and can itself be cut short: the log then ends
            // with torn writes, the last one terminated.
            let all_torn = self
                .pending_bad
                .iter()
                .all(|l| l.torn && l.file == last_file);
            if torn && self.pending_bad.len() == 1 {
                let msg = format!(
                    "the last line is incomplete: {}; a write was cut short (crash, full disk) or the file was cut",
                    b.message
                );
                self.problem(ProblemKind::TornTail, file, line, None, msg);
            } else if all_torn {
                let msg = format!(
                    "the log ends with {} incomplete line(s) from here: {}; writes were cut short (a crash, then a restart that ended the torn line and was cut short too)",
                    self.pending_bad.len(),
                    b.message
                );
                self.problem(ProblemKind::TornTail, file, line, None, msg);
            } else {
                let msg = format!("{}; nothing after it continues the chain", b.message);
                self.problem(ProblemKind::BadJson, file, line, None, msg);
            }
            return;
        }
        let last = self.ring.back().cloned();
        let last_seq = last.as_ref().map(|l| l.seq);
        for i in 0..self.expect.len() {
            let x = &self.expect[i];
            let upto = x.cp.payload.upto_seq;
            let missing = if !x.head_seen {
                Some(upto)
            } else if x.cp.seq.is_some() && !x.record_seen {
                x.cp.seq
            } else {
                None
            };
            let Some(seq) = missing else {
                self.cps.off_host_matched += 1;
                continue;
            };
            let (file, line) = match &last {
                Some(l) => (l.file, l.line + 1),
                None => (self.src.files.len() - 1, 1),
            };
            let ends = match last_seq {
                Some(s) => format!("the log ends at seq {s}"),
                None => "the log has no record".to_string(),
            };
            let (kind, msg) = if last_seq.is_some_and(|s| s >= seq) {
                (
                    ProblemKind::Deleted,
                    format!(
                        "the off-host checkpoint at line {} of {} covers seq {upto}, but no line has seq {seq}: it was deleted",
                        x.cp.line,
                        x.cp.source.display()
                    ),
                )
            } else {
                (
                    ProblemKind::Truncated,
                    format!(
                        "{ends}, but the off-host checkpoint at line {} of {} shows seq {seq} was written (it covers up to seq {upto}): the log was truncated or its tail rewritten",
                        x.cp.line,
                        x.cp.source.display()
                    ),
                )
            };
            self.problem(kind, file, line, last_seq, msg);
            return;
        }
        if let Some(c) = self.cps.covered_upto {
            self.cps.uncovered_records = self
                .heads
                .iter()
                .rev()
                .take_while(|h| h.0 > c)
                .filter(|h| !h.3)
                .count() as u64;
        }
        if let (Some(l), Some(c)) = (&last, self.cps.covered_upto)
            && self.cps.uncovered_records > 0
        {
            let (file, line) = (l.file, l.line);
            let n = self.cps.uncovered_records;
            self.notice(
                file,
                line,
                format!("{n} record(s) after seq {c} are not covered by a checkpoint yet (the writer is running, crashed, or the log was cut after its last checkpoint: compare with an off-host copy)"),
            );
        }
        if !self.options.public_keys.is_empty() && self.cps.in_file == 0 {
            let f = last.as_ref().map_or(self.src.files.len() - 1, |l| l.file);
            self.notice(
                f,
                0,
                "no checkpoint record in the log: the public key had nothing to check (is [integrity] signing_key_file set on the writer?)".to_string(),
            );
        }
        if self.options.public_keys.is_empty() && self.cps.in_file > 0 {
            let f = last.as_ref().map_or(self.src.files.len() - 1, |l| l.file);
            self.notice(
                f,
                0,
                format!(
                    "{} checkpoint(s) found; their heads were compared but their signatures not checked: pass --public-key",
                    self.cps.in_file
                ),
            );
        }
        if last.is_none() {
            let f = self.src.files.len() - 1;
            self.notice(f, 0, "the log holds no record".to_string());
        }
    }

    fn finish(self) -> VerifyReport {
        let first_seq = self.first.map(|f| f.0);
        let files = self
            .src
            .files
            .iter()
            .enumerate()
            .map(|(i, path)| FileReport {
                path: path.clone(),
                bytes: self.src.sizes[i],
                lines: self.src.lines[i].0,
                records: self.src.lines[i].1,
                first_seq: self.file_seqs[i].0,
                last_seq: self.file_seqs[i].1,
            })
            .collect();
        let mut report = VerifyReport {
            intact: self.problem.is_none(),
            log: self.log,
            chain: ChainAlgorithm::of(self.keyed),
            files,
            records: self.ordinal,
            first_seq,
            last_seq: self.ring.back().map(|l| l.seq),
            head: self.ring.back().map(|l| hex::encode(l.hash)),
            starts_at_genesis: self.first.is_some_and(|f| f.1),
            checkpoints: self.cps,
            problem: self.problem,
            notices: self.notices,
            notices_omitted: self.notices_omitted,
        };
        // A gap notice about the line a problem is at (or the one before)
        // is part of that problem, not a separate fact.
        if let Some(p) = &report.problem {
            let (file, line) = (p.file.clone(), p.line);
            report.notices.retain(|n| {
                !(n.file == file && n.line + 1 >= line && n.message.contains("absent before"))
            });
        }
        report
    }
}
