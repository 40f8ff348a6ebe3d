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
//! | keyed: no link so far held, and line `n+1` too carries a plain SHA-256 `prev` | `key_mismatch` | `n` |
//! | `prev` is the hash of a line further down | `reordered` | `n` |
//! | a later line continues the chain from line `n-1` | `inserted` | `n` |
//! | `prev` is the hash of a line before `n-1` | `inserted` | the first line after that one |
//! | seq jumps forward | `deleted` | `n` |
//! | seq jumps forward from one file to the next | `file_chain_break` | `n` |
//! | only this link is broken | `edited` | `n-1` |
//! | this link and the next few are all broken | `key_mismatch` | `n` |
//! | this link and a few more, not all, are broken | `edited` | `n` |
//! | across two files, only this link is broken | `file_chain_break` | `n` |
//!
//! | the first record read (line `n`), unless `--partial` | kind | line reported |
//! |---|---|---|
//! | `prev` is not the genesis value, a later line's is | `inserted` | `n` |
//! | `prev` is not the genesis value | `truncated` | `n` |
//!
//! | the chain links, line `n`'s seq does not follow line `n-1`'s | kind | line reported |
//! |---|---|---|
//! | seq not above, and line `n+1` continues the chain from line `n-1` | `inserted` | `n` |
//! | seq not above, and only the link after line `n` is broken | `edited` | `n` |
//! | seq repeats | `inserted` | `n` |
//! | seq goes back | `reordered` | `n` |
//! | seq jumps forward | a notice (the writer skips seqs it could not write) | `n` |
//!
//! With the chain intact, a seq that repeats is `inserted` and one that
//! goes back is `reordered` (the chain was recomputed, which anyone can do
//! with a plain chain); a seq that jumps forward is a notice, since the
//! writer itself skips seqs it could not write (and records an `audit_gap`).
//! A line that is not a record is `bad_json`, or `torn_tail` when it is the
//! unterminated last line, even when the chain continues over it. The
//! writer never leaves one behind: on restart it cuts a torn write off the
//! file and names it (byte offset, length, SHA-256) in a `sink_notice`
//! `audit_gap` record, which the report shows as a notice. One exception
//! is kept, a notice, for logs earlier versions wrote: a torn write such a
//! version kept on restart. That is a proper prefix of a record, the last
//! line before the restart, and named (by byte offset and length) by the
//! `sink_notice` records the restart wrote first, in those versions' exact
//! words ("torn final line at byte offset …" or "line at byte offset …",
//! "… kept as is"), which no writer of this version writes. A line
//! that is JSON but not a schema v1 or v2 record (a key missing, unknown or
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
//! not by a file name. The lines it names must be there whenever they
//! should be among the lines verified: in files that start the log (their
//! first line's `prev` is the genesis value) every seq a checkpoint names
//! lies in them, so one naming a seq before the first line is `rewritten`
//! (the seqs were moved or lines dropped and the chain recomputed); in any
//! files, a seq at or after the first line that no line has is `deleted`.
//! Only in a later part of a log (`--partial`, older files removed) may a
//! checkpoint name a line before the first: it is then noted, not
//! compared. A checkpoint further behind its line than the walk keeps
//! heads (2^20 lines) is compared by a second pass over the files.
//! Checkpoints kept elsewhere ([`load_checkpoints`],
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

// Where a verification goes: `inputs` (which files make up the log) ->
// `source` (their lines, hashed) -> `walk` (each line against the one
// before) -> `classify` (what a broken link means) and `checkpoints`
// (signed heads against the chain) -> `report` (what is returned).
mod checkpoints;
mod classify;
mod inputs;
mod report;
mod source;
mod walk;

use std::path::{Path, PathBuf};

use crate::keys::PublicKey;
use crate::options::ChainKey;

pub use checkpoints::{OffHostCheckpoint, load_checkpoints};
pub use inputs::{log_name_of, resolve_inputs};
pub use report::{
    CheckpointReport, FileReport, Notice, Problem, ProblemKind, Progress, VerifyError, VerifyReport,
};

use walk::Walk;

/// How many lines the classifier looks ahead of and behind a broken link.
const WINDOW: usize = 8;
/// How many recent lines' hashes are kept to check in-file checkpoints,
/// whose covered line normally precedes them by at most the writer's queue
/// backlog; a checkpoint further behind its line is compared by a second
/// pass over the files at the end.
const HEADS_KEPT: usize = if cfg!(test) { 64 } else { 1 << 20 };
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
    let mut walk = Walk::new(files, None, options, log)?;
    walk.run(progress)?;
    Ok(walk.finish())
}

/// [`verify`] over a log kept in a [`LineStore`](crate::store::LineStore) (a database table): the
/// same checks on the same lines, read through the same bounded reader.
/// Problems and notices name the store's label as their file and the
/// row's position (from 1, in chain order) as their line; a problem's
/// [`Problem::seq`] is the seq of that row. The log's name for
/// checkpoints is [`VerifyOptions::log_name`], else the label.
pub fn verify_store(
    store: &dyn crate::store::LineStore,
    options: &VerifyOptions,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<VerifyReport, VerifyError> {
    let log = options
        .log_name
        .clone()
        .unwrap_or_else(|| store.label().to_string());
    let files = [PathBuf::from(store.label())];
    let mut walk = Walk::new(&files, Some(store), options, log)?;
    walk.run(progress)?;
    Ok(walk.finish())
}

/// The chain the options verify: keyed under their key, else plain.
fn chain_of(options: &VerifyOptions) -> crate::chain::Chain {
    match &options.key {
        Some(k) => crate::chain::Chain::keyed(k.bytes()),
        None => crate::chain::Chain::plain(),
    }
}

fn decode_head(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|()| out)
}
