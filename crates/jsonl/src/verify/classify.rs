//! Classification: what a record line that breaks the chain, or does not
//! follow the seq before it, means. The walk finds the line; these
//! functions name the problem from seq and chain evidence together,
//! looking up to [`WINDOW`](super::WINDOW) lines ahead and behind. Each
//! row of these tables is a function below and a unit test in
//! `classify/tests.rs` (the last column); the module docs of
//! [`verify`](super) show the same tables without that column, and a test
//! keeps the two alike.
//!
//! | evidence at the first broken link (line `n`'s `prev` is not the hash of line `n-1`) | kind | line reported | test |
//! |---|---|---|---|
//! | keyed: `prev` is the *plain* SHA-256 of line `n-1` | `forged` | `n` | `row_forged` |
//! | keyed: no link so far held, and line `n+1` too carries a plain SHA-256 `prev` | `key_mismatch` | `n` | `row_plain_log_under_a_key` |
//! | `prev` is the hash of a line further down | `reordered` | `n` | `row_reordered` |
//! | a later line continues the chain from line `n-1` | `inserted` | `n` | `row_inserted_ahead` |
//! | `prev` is the hash of a line before `n-1` | `inserted` | the first line after that one | `row_inserted_behind` |
//! | seq jumps forward | `deleted` | `n` | `row_deleted` |
//! | seq jumps forward from one file to the next | `file_chain_break` | `n` | `row_file_missing` |
//! | only this link is broken | `edited` | `n-1` | `row_edited` |
//! | this link and the next few are all broken | `key_mismatch` | `n` | `row_key_mismatch` |
//! | this link and a few more, not all, are broken | `edited` | `n` | `row_replaced` |
//! | across two files, only this link is broken | `file_chain_break` | `n` | `row_file_chain_break` |
//!
//! | the first record read (line `n`), unless `--partial` | kind | line reported | test |
//! |---|---|---|---|
//! | `prev` is not the genesis value, a later line's is | `inserted` | `n` | `row_inserted_before_genesis` |
//! | `prev` is not the genesis value | `truncated` | `n` | `row_truncated` |
//!
//! | the chain links, line `n`'s seq does not follow line `n-1`'s | kind | line reported | test |
//! |---|---|---|---|
//! | seq not above, and line `n+1` continues the chain from line `n-1` | `inserted` | `n` | `row_inserted_beside` |
//! | seq not above, and only the link after line `n` is broken | `edited` | `n` | `row_edited_seq` |
//! | seq repeats | `inserted` | `n` | `row_seq_repeats` |
//! | seq goes back | `reordered` | `n` | `row_seq_goes_back` |
//! | seq jumps forward | a notice (the writer skips seqs it could not write) | `n` | `row_seq_skipped` |
//!
//! Lines that are not records (`bad_json`, `bad_record`, `torn_tail`, a
//! torn write recovered on restart) are the walk's to judge; checkpoints
//! (`rewritten`, `bad_signature`, ...) are [`checkpoints`](super::checkpoints)'.

use std::collections::VecDeque;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::source::Entry;
use super::{ProblemKind, decode_head};
use crate::chain::GENESIS;
use crate::files;

/// A problem as classification names it; the walk turns it into the
/// report's [`Problem`](super::Problem).
#[derive(Debug)]
pub(super) struct Finding {
    pub(super) kind: ProblemKind,
    /// The index of the file among those verified.
    pub(super) file: usize,
    pub(super) line: u64,
    pub(super) seq: Option<u64>,
    pub(super) message: String,
    /// A hint that replaces the walk's default one.
    pub(super) hint: Option<&'static str>,
}

impl Finding {
    fn at(kind: ProblemKind, e: &Entry, message: String) -> Finding {
        Finding {
            kind,
            file: e.file,
            line: e.line,
            seq: Some(e.seq),
            message,
            hint: None,
        }
    }

    fn hint(mut self, hint: &'static str) -> Finding {
        self.hint = Some(hint);
        self
    }
}

/// What classification looks at besides the line and those ahead of it.
pub(super) struct Context<'a> {
    /// The files verified, to name them.
    pub(super) files: &'a [PathBuf],
    /// The records before the line, newest last.
    pub(super) ring: &'a VecDeque<Entry>,
    /// Verifying under a chain key.
    pub(super) keyed: bool,
    /// Links that held so far.
    pub(super) links_ok: u64,
}

impl Context<'_> {
    fn at(&self, e: &Entry) -> String {
        format!("line {} (seq {})", e.line, e.seq)
    }

    fn at_file(&self, e: &Entry) -> String {
        format!(
            "line {} of {} (seq {})",
            e.line,
            self.files[e.file].display(),
            e.seq
        )
    }
}

fn plain_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Names the first broken link: `e` does not link to the previous record
/// (the last of the ring; `None` when there is none).
pub(super) fn broken_link(cx: &Context<'_>, e: &Entry, ahead: &[Entry]) -> Option<Finding> {
    let p1 = cx.ring.back()?;
    Some(
        forged(cx, e, p1, ahead)
            .or_else(|| reordered(cx, e, ahead))
            .or_else(|| inserted_ahead(cx, e, p1, ahead))
            .or_else(|| inserted_behind(cx, e))
            .or_else(|| deleted(cx, e, p1))
            .unwrap_or_else(|| broken_run(cx, e, p1, ahead)),
    )
}

/// Under a key, a plain SHA-256 prev is a line forged without it, or the
/// whole log written without the key.
fn forged(cx: &Context<'_>, e: &Entry, p1: &Entry, ahead: &[Entry]) -> Option<Finding> {
    if !(cx.keyed && e.links_to(&plain_hash(&p1.bytes))) {
        return None;
    }
    let all_plain = cx.links_ok == 0
        && ahead
            .first()
            .is_none_or(|n1| n1.links_to(&plain_hash(&e.bytes)));
    Some(if all_plain && !ahead.is_empty() {
        let msg = "the chain is plain SHA-256, not HMAC-SHA256 under the given key: the log was written without a chain key, or rewritten by someone without it".to_string();
        Finding::at(ProblemKind::KeyMismatch, e, msg)
    } else {
        let msg = format!(
            "prev is the plain SHA-256 of {}, not its HMAC under the chain key: this line was written by someone without the key",
            cx.at(p1)
        );
        Finding::at(ProblemKind::Forged, e, msg)
    })
}

/// prev points at a line further down: out of order.
fn reordered(cx: &Context<'_>, e: &Entry, ahead: &[Entry]) -> Option<Finding> {
    let n = ahead.iter().find(|n| e.links_to(&n.hash))?;
    let msg = format!(
        "this line belongs after {} (its prev is that line's hash): lines were reordered",
        cx.at_file(n)
    );
    Some(Finding::at(ProblemKind::Reordered, e, msg))
}

/// A later line continues from `p1`: the lines in between are extra.
fn inserted_ahead(cx: &Context<'_>, e: &Entry, p1: &Entry, ahead: &[Entry]) -> Option<Finding> {
    let m = ahead.iter().position(|n| n.links_to(&p1.hash))?;
    let count = m + 1;
    let msg = format!(
        "{count} line(s) from here were inserted: {} continues the chain from {}",
        cx.at_file(&ahead[m]),
        cx.at_file(p1)
    );
    Some(Finding::at(ProblemKind::Inserted, e, msg))
}

/// `e` continues from an older line: the lines after that one are extra.
fn inserted_behind(cx: &Context<'_>, e: &Entry) -> Option<Finding> {
    let back = cx.ring.len();
    let r = (2..=back).find(|&r| e.links_to(&cx.ring[back - r].hash))?;
    let older = &cx.ring[back - r];
    let first_extra = &cx.ring[back - r + 1];
    let msg = format!(
        "{} line(s) from here were inserted: {} continues the chain from {}",
        r - 1,
        cx.at_file(e),
        cx.at_file(older)
    );
    Some(Finding::at(ProblemKind::Inserted, first_extra, msg))
}

/// The seq jumps: lines are missing, within a file or between two.
fn deleted(cx: &Context<'_>, e: &Entry, p1: &Entry) -> Option<Finding> {
    if e.seq <= p1.seq.saturating_add(1) {
        return None;
    }
    let (a, b) = (p1.seq + 1, e.seq - 1);
    let range = if a == b {
        format!("seq {a}")
    } else {
        format!("seqs {a}..{b}")
    };
    Some(if e.file != p1.file {
        let msg = format!(
            "{range} missing between {} and this file's first line: a file, or lines at the end of the previous file, are missing",
            cx.at_file(p1)
        );
        Finding::at(ProblemKind::FileChainBreak, e, msg)
    } else {
        let msg = format!(
            "{} record(s) ({range}) were deleted between {} and this line",
            b - a + 1,
            cx.at(p1)
        );
        Finding::at(ProblemKind::Deleted, e, msg)
    })
}

/// How many links from `e` on are broken (at least its own).
fn broken_count(e: &Entry, ahead: &[Entry]) -> usize {
    let mut broken = 1;
    let mut prev = e;
    for n in ahead {
        if n.links_to(&prev.hash) {
            break;
        }
        broken += 1;
        prev = n;
    }
    broken
}

/// None of the above: the run of broken links from `e` on tells.
fn broken_run(cx: &Context<'_>, e: &Entry, p1: &Entry, ahead: &[Entry]) -> Finding {
    let broken = broken_count(e, ahead);
    let all_broken = broken == ahead.len() + 1;
    if e.file != p1.file && broken == 1 {
        file_chain_break(cx, e, p1)
    } else if broken == 1 {
        edited(cx, e, p1)
    } else if all_broken && ahead.len() >= 2 {
        key_mismatch(cx, e, broken)
    } else {
        replaced(cx, e, p1, broken)
    }
}

/// A file's first line does not continue the file before.
fn file_chain_break(cx: &Context<'_>, e: &Entry, p1: &Entry) -> Finding {
    let msg = if e.seq <= p1.seq {
        format!(
            "this file does not continue {}: its seq {} does not follow {}; the files are out of order",
            cx.at_file(p1),
            e.seq,
            p1.seq
        )
    } else {
        format!(
            "this file's first line does not continue the chain of {}: that line was changed, or this file does not follow that one",
            cx.at_file(p1)
        )
    };
    Finding::at(ProblemKind::FileChainBreak, e, msg)
}

/// Only the link into `e` is broken: the line before it was changed.
fn edited(cx: &Context<'_>, e: &Entry, p1: &Entry) -> Finding {
    let msg = format!(
        "this line was changed after it was written: its hash is not the prev of the next line ({}){}",
        cx.at(e),
        if p1.seq.checked_add(1) == Some(e.seq) {
            ""
        } else {
            ", and the seqs around it do not follow"
        }
    );
    Finding::at(ProblemKind::Edited, p1, msg)
}

/// Every link from `e` on is broken: another key, or none.
fn key_mismatch(cx: &Context<'_>, e: &Entry, broken: usize) -> Finding {
    let (what, hint) = if cx.keyed {
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
    Finding::at(ProblemKind::KeyMismatch, e, msg).hint(hint)
}

/// A few links from `e` on are broken, then the chain holds again.
fn replaced(cx: &Context<'_>, e: &Entry, p1: &Entry, broken: usize) -> Finding {
    let msg = if broken == 2 {
        format!(
            "this line does not fit between {} and the next line (neither link holds): it was changed or replaced",
            cx.at(p1)
        )
    } else {
        format!("{broken} lines from here do not link: they were changed or replaced")
    };
    Finding::at(ProblemKind::Edited, e, msg)
}

/// The first record read does not start the chain (and `--partial` was
/// not given): lines were inserted before the genesis line, or lines
/// before it are missing.
pub(super) fn unstarted(cx: &Context<'_>, e: &Entry, ahead: &[Entry]) -> Finding {
    let genesis = decode_head(GENESIS);
    if let Some(m) = ahead.iter().position(|n| n.prev == genesis) {
        let msg = format!(
            "{} line(s) from here were inserted before the start of the chain: {} starts it (its prev is the genesis value)",
            m + 1,
            cx.at_file(&ahead[m])
        );
        return Finding::at(ProblemKind::Inserted, e, msg);
    }
    let more = if files::list(&cx.files[e.file])
        .map(|l| l.len() > 1)
        .unwrap_or(false)
        && cx.files.len() == 1
    {
        " Rotated files of this log lie next to it: give the directory to verify them all."
    } else {
        ""
    };
    let message = format!(
        "the log does not start at the beginning of its chain: the first record (seq {}) has a prev other than the genesis value, so lines before it are missing (earlier files removed, the head of the file cut, or files given out of order).{more}",
        e.seq
    );
    Finding::at(ProblemKind::Truncated, e, message)
        .hint("if older files were removed on purpose (retention), pass --partial")
}

/// `e` links to the record before it but its seq is not above that one's
/// (`None` when it is, or there is no record before).
pub(super) fn seq_not_above(cx: &Context<'_>, e: &Entry, ahead: &[Entry]) -> Option<Finding> {
    let p = cx.ring.back().filter(|p| e.seq <= p.seq)?;
    let (p_seq, p_line) = (p.seq, p.line);
    let single_break = match ahead {
        [n1, n2, ..] => !n1.links_to(&e.hash) && n2.links_to(&n1.hash),
        [n1] => !n1.links_to(&e.hash),
        [] => false,
    };
    Some(if ahead.first().is_some_and(|n1| n1.links_to(&p.hash)) {
        let msg = format!(
            "this line was inserted: its prev fits line {p_line}, but the next line continues the chain from line {p_line} too, and its seq {} does not follow seq {p_seq}",
            e.seq
        );
        Finding::at(ProblemKind::Inserted, e, msg)
    } else if single_break {
        let msg = format!(
            "this line was changed after it was written: its hash no longer matches the prev of the next line, and its seq {} does not follow seq {}",
            e.seq, p_seq
        );
        Finding::at(ProblemKind::Edited, e, msg)
    } else if e.seq == p_seq {
        let msg = format!(
            "seq {} appears twice ({} and this line) although the chain links: a line was inserted and the chain recomputed after it (anyone can recompute a plain chain: use a chain key or signed checkpoints)",
            e.seq,
            format_args!("line {p_line}")
        );
        Finding::at(ProblemKind::Inserted, e, msg)
    } else {
        let msg = format!(
            "seq goes back from {} to {} although the chain links: lines were reordered and the chain recomputed (anyone can recompute a plain chain: use a chain key or signed checkpoints)",
            p_seq, e.seq
        );
        Finding::at(ProblemKind::Reordered, e, msg)
    })
}

/// The notice for a record that links to the one before but whose seq
/// jumps forward from `p_seq`: the writer skipped seqs it could not write.
pub(super) fn seq_skipped(p_seq: u64, seq: u64) -> Option<String> {
    // Saturating: a hostile seq of u64::MAX must not overflow.
    if seq <= p_seq.saturating_add(1) {
        return None;
    }
    let (a, b) = (p_seq + 1, seq - 1);
    let range = if a == b {
        format!("seq {a} is")
    } else {
        format!("seqs {a}..{b} are")
    };
    Some(format!(
        "{range} absent before this line, but the chain links: the writer skipped them (records dropped by overflow policy or a torn write; see the audit_gap records)"
    ))
}

#[cfg(test)]
mod tests;
