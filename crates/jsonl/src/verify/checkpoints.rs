//! Checkpoints: the signed heads in the files and those kept elsewhere,
//! compared with the chain the walk computes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chain::{Chain, GENESIS};
use crate::checkpoint::{ChainAlgorithm, CheckpointPayload, Origin};

use super::source::{Entry, Item};
use super::walk::Walk;
use super::{HEADS_KEPT, ProblemKind, VerifyError, decode_head};

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

mod load;
pub use load::load_checkpoints;

/// An off-host checkpoint's expectations.
pub(super) struct Expect {
    pub(super) cp: OffHostCheckpoint,
    pub(super) head: Option<[u8; 32]>,
    pub(super) head_seen: bool,
    pub(super) record_seen: bool,
}

/// The first line of the log `first` begins, if its first record starts
/// the chain (its `prev` is the genesis value).
pub(super) fn origin_of(first: &Path, chain: &Chain) -> Option<Origin> {
    // Only a regular file: opening a pipe here would hang, and reading one
    // would take its lines from the verifier.
    let file =
        crate::files::open_regular_for_reading(first, crate::files::Symlinks::Follow).ok()?;
    let (seq, bytes, prev) = crate::tail::first_record_line(&file).ok()??;
    (prev == GENESIS).then(|| Origin {
        seq,
        head: hex::encode(chain.hash(&bytes)),
    })
}

/// [`origin_of`] for a log in a store: its first record line, among the
/// first lines read (a store that starts with many bad lines has none).
pub(super) fn origin_of_store(
    store: &dyn crate::store::LineStore,
    chain: &Chain,
) -> Option<Origin> {
    let stream = store.open().ok()?;
    let mut reader = crate::reader::Reader::new(store.label(), stream);
    let line = reader
        .by_ref()
        .take(crate::tail::MAX_BAD)
        .find_map(Result::ok)?;
    (line.record.prev == GENESIS).then(|| Origin {
        seq: line.record.seq,
        head: hex::encode(chain.hash(&line.bytes)),
    })
}

/// The off-host checkpoints given for this log, indexed by the seq whose
/// head each signs and by the seq of its own record.
pub(super) struct OffHost {
    pub(super) expect: Vec<Expect>,
    by_head: HashMap<u64, Vec<usize>>,
    by_record: HashMap<u64, Vec<usize>>,
}

impl OffHost {
    /// Picks the checkpoints of the log named `log` whose first line is
    /// `origin` among those given; an error when some are given but none
    /// is this log's.
    pub(super) fn select(
        checkpoints: &[OffHostCheckpoint],
        log: &str,
        origin: &Option<Origin>,
    ) -> Result<Self, VerifyError> {
        // Off-host checkpoints name the log by its first line; by name
        // only those without one, or all of the name when none names this
        // log's first line (a log rewritten from its first line on must
        // still meet the checkpoints of its name).
        let by_origin = |cp: &OffHostCheckpoint| origin.is_some() && cp.payload.origin == *origin;
        let any_by_origin = checkpoints.iter().any(by_origin);
        let mut expect = Vec::new();
        let mut others = Vec::new();
        for cp in checkpoints {
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
        if !checkpoints.is_empty() && expect.is_empty() {
            return Err(VerifyError::NoCheckpointsForLog {
                path: checkpoints[0].source.clone(),
                log: log.to_string(),
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
        Ok(OffHost {
            expect,
            by_head: expect_heads,
            by_record: expect_records,
        })
    }

    /// Whether an off-host checkpoint covers `seq`.
    fn covers(&self, seq: u64) -> bool {
        self.by_head.contains_key(&seq)
    }
}

/// Where a seq a checkpoint names stands among the lines verified.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lookup {
    /// A line has it: its chain value and ordinal.
    Found([u8; 32], u64),
    /// It lies among the lines verified, but no line has it.
    Absent,
    /// It lies before the first line verified.
    Before,
    /// It lies among the lines verified, further back than the walk keeps
    /// heads: found by a second pass over the files.
    Dropped,
}

/// Where a checkpoint record is.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    pub(super) file: usize,
    pub(super) line: u64,
    pub(super) seq: u64,
}

/// In-file checkpoints whose lines lie further back than the walk keeps
/// heads, compared by a second pass over the files at the end. Each
/// distinct payload is kept once, so copies of one signed checkpoint cost
/// nothing; more than [`MAX_DEFERRED`] distinct ones are a problem rather
/// than unbounded memory.
#[derive(Default)]
pub(super) struct Deferred {
    pub(super) list: Vec<(At, CheckpointPayload)>,
    seen: HashSet<(u64, u64, u64, String)>,
}

/// The most checkpoints compared in the second pass. A writer's checkpoint
/// follows its line within the writer's queue; this many lying over
/// [`HEADS_KEPT`] lines behind is not a log the writer left.
pub(super) const MAX_DEFERRED: usize = if cfg!(test) { 4 } else { 1 << 14 };

impl Walk<'_> {
    pub(super) fn find_head(&self, seq: u64) -> Option<&(u64, [u8; 32], u64, bool)> {
        let i = self.heads.partition_point(|h| h.0 < seq);
        self.heads.get(i).filter(|h| h.0 == seq)
    }

    /// Where `seq` stands among the lines read so far.
    fn lookup(&self, seq: u64) -> Lookup {
        if let Some(&(_, hash, ordinal, _)) = self.find_head(seq) {
            return Lookup::Found(hash, ordinal);
        }
        match self.first {
            Some((first, _)) if seq >= first => {
                if self.heads.front().is_some_and(|h| h.0 > seq) {
                    Lookup::Dropped
                } else {
                    Lookup::Absent
                }
            }
            _ => Lookup::Before,
        }
    }

    /// Checks a checkpoint record in the file. Returns false on a problem.
    pub(super) fn check_in_file(&mut self, e: &Entry, value: &serde_json::Value) -> bool {
        self.cps.in_file += 1;
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
        let at = At {
            file: e.file,
            line: e.line,
            seq: e.seq,
        };
        let upto = self.lookup(cp.upto_seq);
        let from = (cp.from_seq != 0).then(|| self.lookup(cp.from_seq));
        if matches!(upto, Lookup::Dropped) || matches!(from, Some(Lookup::Dropped)) {
            return self.defer(at, cp);
        }
        self.judge(at, &cp, upto, from)
    }

    /// Keeps a checkpoint for the second pass. Returns false on a problem.
    fn defer(&mut self, at: At, cp: CheckpointPayload) -> bool {
        let key = (cp.upto_seq, cp.from_seq, cp.records, cp.head.clone());
        if self.deferred.seen.contains(&key) {
            // The same statement again: compared once is enough, but it
            // must be compared.
            return true;
        }
        if self.deferred.list.len() >= MAX_DEFERRED {
            let msg = format!(
                "checkpoint covers seq {}, more than {HEADS_KEPT} lines before it, and so do {MAX_DEFERRED} checkpoints before it: a writer's checkpoint follows its line within the writer's queue, so checkpoints were moved away from their lines",
                cp.upto_seq
            );
            self.problem(
                ProblemKind::BadCheckpoint,
                at.file,
                at.line,
                Some(at.seq),
                msg,
            );
            return false;
        }
        self.deferred.seen.insert(key);
        self.deferred.list.push((at, cp));
        true
    }

    /// Compares a checkpoint with the lines its seqs name (`from`: `None`
    /// when its range starts at the log's start). Returns false on a
    /// problem.
    pub(super) fn judge(
        &mut self,
        at: At,
        cp: &CheckpointPayload,
        upto: Lookup,
        from: Option<Lookup>,
    ) -> bool {
        let At { file, line, seq } = at;
        // Files that start the log (their first line's prev is the genesis
        // value) hold every line a checkpoint in them covers.
        let genesis = self.first.filter(|f| f.1).map(|f| f.0);
        let first = self.first.map_or(0, |f| f.0);
        let (hash, ordinal) = match upto {
            Lookup::Found(hash, ordinal) => (hash, ordinal),
            Lookup::Absent | Lookup::Dropped => {
                let msg = format!(
                    "checkpoint covers seq {}, but no line of the log has that seq: it was deleted",
                    cp.upto_seq
                );
                self.problem(ProblemKind::Deleted, file, line, Some(seq), msg);
                return false;
            }
            Lookup::Before => match genesis {
                Some(g) => {
                    let msg = format!(
                        "checkpoint covers seq {}, but this log begins at seq {g} with its first line (its prev is the genesis value), so it would hold that line: the seqs were changed or lines removed and the chain recomputed, or the checkpoint was copied from another log",
                        cp.upto_seq
                    );
                    self.problem(ProblemKind::Rewritten, file, line, Some(seq), msg);
                    return false;
                }
                None => {
                    self.cps.not_compared += 1;
                    self.notice(
                        file,
                        line,
                        format!(
                            "checkpoint covers seq {}, before the first line verified (seq {first}): these files are a later part of the log (--partial), so its head was not compared",
                            cp.upto_seq
                        ),
                    );
                    return true;
                }
            },
        };
        if Some(hash) != decode_head(&cp.head) {
            let mode = ChainAlgorithm::of(self.keyed);
            if cp.chain != mode {
                let msg = format!(
                    "checkpoint says the chain is {} but it is being verified as {}",
                    cp.chain, mode
                );
                self.problem(ProblemKind::KeyMismatch, file, line, Some(seq), msg);
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
            self.problem(ProblemKind::Rewritten, file, line, Some(seq), msg);
            return false;
        }
        self.cps.heads_matched += 1;
        // `records` counts lines with a seq in (from_seq, upto_seq]; the
        // line at `from_seq` is the previous checkpoint's, or the last one
        // in the log when its writer opened it: a line of the log.
        let from_ordinal = match from {
            None => genesis.map(|_| -1i128),
            Some(Lookup::Found(_, o)) => Some(o as i128),
            Some(Lookup::Absent | Lookup::Dropped) => {
                let msg = format!(
                    "checkpoint covers the lines after seq {}, but no line of the log has that seq: it was deleted",
                    cp.from_seq
                );
                self.problem(ProblemKind::Deleted, file, line, Some(seq), msg);
                return false;
            }
            Some(Lookup::Before) => match genesis {
                Some(g) => {
                    let msg = format!(
                        "checkpoint covers the lines after seq {}, but this log begins at seq {g} with its first line (its prev is the genesis value), so it would hold that line: the seqs were changed or lines removed and the chain recomputed",
                        cp.from_seq
                    );
                    self.problem(ProblemKind::Rewritten, file, line, Some(seq), msg);
                    return false;
                }
                None => None,
            },
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
                self.problem(ProblemKind::Rewritten, file, line, Some(seq), msg);
                return false;
            }
        }
        self.cps.covered_upto = self.cps.covered_upto.max(Some(cp.upto_seq));
        true
    }

    /// At the end of a log read without a problem: compares the deferred
    /// checkpoints with their lines, read again from the first file.
    /// Returns false on a problem.
    pub(super) fn second_pass(&mut self) -> Result<bool, VerifyError> {
        let deferred = std::mem::take(&mut self.deferred.list);
        if deferred.is_empty() {
            return Ok(true);
        }
        let mut want: HashMap<u64, Option<([u8; 32], u64)>> = HashMap::new();
        for (_, cp) in &deferred {
            want.insert(cp.upto_seq, None);
            if cp.from_seq != 0 {
                want.insert(cp.from_seq, None);
            }
        }
        let last = want.keys().copied().max().unwrap_or(0);
        let mut src = self.src.again(super::chain_of(self.options));
        let mut ordinal = 0u64;
        while let Some(item) = src.next(&mut |_| {})? {
            let Item::Record(e) = item else { continue };
            if let Some(slot @ None) = want.get_mut(&e.seq) {
                *slot = Some((e.hash, ordinal));
            }
            ordinal += 1;
            if e.seq >= last {
                break;
            }
        }
        let first = self.first.map_or(0, |f| f.0);
        let look = |seq: u64| match want.get(&seq).copied().flatten() {
            Some((hash, ordinal)) => Lookup::Found(hash, ordinal),
            None if seq < first => Lookup::Before,
            None => Lookup::Absent,
        };
        for (at, cp) in deferred {
            let upto = look(cp.upto_seq);
            let from = (cp.from_seq != 0).then(|| look(cp.from_seq));
            if !self.judge(at, &cp, upto, from) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Checks a linked record against the off-host checkpoints (the head
    /// they sign for its seq, the checkpoint record they say has its seq)
    /// and, if it is a checkpoint, against the chain. Returns false on a
    /// problem.
    pub(super) fn check_checkpoints(&mut self, e: &Entry) -> bool {
        if let Some(idxs) = self.off_host.by_head.get(&e.seq).cloned() {
            for i in idxs {
                let x = &mut self.off_host.expect[i];
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
                    return false;
                }
            }
        }
        if let Some(idxs) = self.off_host.by_record.get(&e.seq).cloned() {
            let here = e
                .checkpoint
                .as_ref()
                .and_then(|v| CheckpointPayload::from_value(v).ok());
            for i in idxs {
                let x = &mut self.off_host.expect[i];
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
                    return false;
                }
            }
        }
        if let Some(value) = &e.checkpoint
            && !self.check_in_file(e, value)
        {
            return false;
        }
        if self.off_host.covers(e.seq) {
            self.cps.covered_upto = self.cps.covered_upto.max(Some(e.seq));
        }
        true
    }

    /// At the end of the log: an off-host checkpoint whose head or record
    /// was never met shows lines deleted or the log truncated. Returns
    /// false on a problem.
    pub(super) fn off_host_at_end(&mut self, last: Option<&Entry>) -> bool {
        let last_seq = last.map(|l| l.seq);
        for i in 0..self.off_host.expect.len() {
            let x = &self.off_host.expect[i];
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
            let (file, line) = match last {
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
            return false;
        }
        true
    }

    /// At the end of an intact log: what no checkpoint covers yet, and
    /// checkpoints with no key to check them (or a key with none to check).
    pub(super) fn checkpoint_notices(&mut self, last: Option<&Entry>) {
        if let Some(c) = self.cps.covered_upto {
            self.cps.uncovered_records = self
                .heads
                .iter()
                .rev()
                .take_while(|h| h.0 > c)
                .filter(|h| !h.3)
                .count() as u64;
        }
        if let (Some(l), Some(c)) = (last, self.cps.covered_upto)
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
        if self.cps.heads_matched == 0 && self.cps.not_compared > 0 {
            let f = last.map_or(self.src.files.len() - 1, |l| l.file);
            self.notice(
                f,
                0,
                format!(
                    "none of the {} checkpoint(s) here covers a line of these files: no signature vouches for them; verify them with the log's earlier files, or with the off-host copy (--checkpoints)",
                    self.cps.in_file
                ),
            );
        }
        if !self.options.public_keys.is_empty() && self.cps.in_file == 0 {
            let f = last.map_or(self.src.files.len() - 1, |l| l.file);
            self.notice(
                f,
                0,
                "no checkpoint record in the log: the public key had nothing to check (is [integrity] signing_key_file set on the writer?)".to_string(),
            );
        }
        if self.options.public_keys.is_empty() && self.cps.in_file > 0 {
            let f = last.map_or(self.src.files.len() - 1, |l| l.file);
            self.notice(
                f,
                0,
                format!(
                    "{} checkpoint(s) found; their heads were compared but their signatures not checked: pass --public-key",
                    self.cps.in_file
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
