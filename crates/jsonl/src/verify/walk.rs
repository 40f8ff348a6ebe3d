//! The walk over lines: each record is linked to the one before, its seq
//! checked, and kept in a short window for classification; lines that are
//! not records wait for the restart notices that may name them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::chain::GENESIS;
use crate::checkpoint::{ChainAlgorithm, Origin};
use crate::tail::MAX_BAD;

use super::checkpoints::{Deferred, OffHost, origin_of, origin_of_store};
use super::classify::{self, Context, Finding};
use super::source::{Bad, Entry, Item, Source};
use super::{
    CheckpointReport, FileReport, HEADS_KEPT, MAX_NOTICES, Notice, Problem, ProblemKind, Progress,
    VerifyError, VerifyOptions, VerifyReport, WINDOW, decode_head,
};
use crate::store::LineStore;

/// Lines that are not records, with the chain continuing over them: only
/// legitimate as torn writes an earlier version of the writer kept on
/// restart, each named (by byte offset and length) in the `sink_notice`
/// gap records that the restart wrote first. Writers of this version cut
/// a torn write off the file instead, so they never leave such a line.
pub(super) struct Recovery {
    lines: Vec<Bad>,
    named: Vec<bool>,
    /// The line of a restart notice of this version that reported the
    /// lines as found after the last record (and left in place).
    reported: Option<u64>,
}

/// Whether a restart's notice names the line at `offset` (`None`: any
/// offset) of `len` bytes as a torn write it kept, in the exact words of
/// the writers that kept them (`JsonlSink::open_file` up to this version:
/// "torn final line at byte offset {offset} of {path} ({len} bytes, no
/// newline: ...); kept as is and terminated with a newline; ..." or "line
/// at byte offset {offset} of {path} ({len} bytes) is not a record (...);
/// kept as is; ..."). A writer of this version never writes these words.
fn legacy_notice_names(detail: &str, offset: Option<u64>, len: u64) -> bool {
    let starts = |what: &str| match offset {
        Some(o) => detail.starts_with(&format!("{what} at byte offset {o} of ")),
        None => detail.starts_with(&format!("{what} at byte offset ")),
    };
    (starts("torn final line") || starts("line"))
        && detail.contains(&format!(" ({len} bytes"))
        && detail.contains("; kept as is")
}

/// Whether a restart notice of this version reports the line at `offset`
/// (`None`: any offset) of `len` bytes as found after the last record and
/// left in place: the writer saw it, but did not write it.
fn current_notice_reports(detail: &str, offset: Option<u64>, len: u64) -> bool {
    match offset {
        Some(o) => detail.contains(&format!(": {len} bytes at byte offset {o} (SHA-256 ")),
        None => detail.contains(&format!(": {len} bytes at byte offset ")),
    }
}

/// One verification in progress: the lines read so far, as much of them
/// as the checks ahead still need, and what was found.
pub(super) struct Walk<'a> {
    pub(super) options: &'a VerifyOptions,
    pub(super) log: String,
    pub(super) src: Source<'a>,
    pub(super) keyed: bool,
    /// Recent records, newest last.
    pub(super) ring: VecDeque<Entry>,
    /// (seq, hash, ordinal, is a checkpoint) of recent records, for
    /// in-file checkpoints.
    pub(super) heads: VecDeque<(u64, [u8; 32], u64, bool)>,
    /// First and last seq per file.
    pub(super) file_seqs: Vec<(Option<u64>, Option<u64>)>,
    pub(super) ordinal: u64,
    pub(super) first: Option<(u64, bool)>,
    pub(super) links_ok: u64,
    pub(super) pending_bad: Vec<Bad>,
    /// A run of bad lines the chain continued over, waiting for the
    /// restart's notices to name them.
    pub(super) recovery: Option<Recovery>,
    /// The first line of the log, when the files start the chain.
    pub(super) origin: Option<Origin>,
    pub(super) problem: Option<Problem>,
    pub(super) notices: Vec<Notice>,
    pub(super) notices_omitted: u64,
    pub(super) cps: CheckpointReport,
    /// The off-host checkpoints of this log.
    pub(super) off_host: OffHost,
    /// In-file checkpoints further behind their lines than `heads` keeps,
    /// for the second pass.
    pub(super) deferred: Deferred,
}

impl<'a> Walk<'a> {
    /// A walk over `files`, or over `store` (then `files` is its label
    /// alone).
    pub(super) fn new(
        files: &'a [PathBuf],
        store: Option<&'a dyn LineStore>,
        options: &'a VerifyOptions,
        log: String,
    ) -> Result<Self, VerifyError> {
        let mut sizes = Vec::with_capacity(files.len());
        for f in files.iter().filter(|_| store.is_none()) {
            let meta = std::fs::metadata(f).map_err(|source| VerifyError::open(f, source))?;
            if meta.is_dir() {
                return Err(VerifyError::DirectoryAmongFiles { path: f.clone() });
            }
            sizes.push(meta.len());
        }
        // A store's size is not known before it is read.
        sizes.resize(files.len(), 0);
        let chain = super::chain_of(options);
        let origin = match store {
            // Only checkpoints use the origin: without them a store (a
            // database) is opened once, not twice (issue 12 review 3).
            Some(_) if options.checkpoints.is_empty() => None,
            Some(store) => origin_of_store(store, &chain),
            None => origin_of(&files[0], &chain),
        };
        let off_host = OffHost::select(&options.checkpoints, &log, &origin)?;
        let cps = CheckpointReport {
            off_host: off_host.expect.len() as u64,
            ..CheckpointReport::default()
        };
        Ok(Walk {
            options,
            log,
            keyed: options.key.is_some(),
            src: Source {
                files,
                store,
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
            off_host,
            deferred: Deferred::default(),
        })
    }

    fn path(&self, file: usize) -> PathBuf {
        self.src.files[file].clone()
    }

    pub(super) fn problem(
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

    pub(super) fn set_hint(&mut self, hint: &str) {
        if let Some(p) = self.problem.as_mut() {
            p.hint = Some(hint.to_string());
        }
    }

    pub(super) fn notice(&mut self, file: usize, line: u64, message: String) {
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

    /// What classification looks at.
    fn context(&self) -> Context<'_> {
        Context {
            files: self.src.files,
            ring: &self.ring,
            keyed: self.keyed,
            links_ok: self.links_ok,
        }
    }

    /// Reports what classification found.
    fn report(&mut self, f: Finding) {
        self.problem(f.kind, f.file, f.line, f.seq, f.message);
        if let Some(hint) = f.hint {
            self.set_hint(hint);
        }
    }

    pub(super) fn run(
        &mut self,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<(), VerifyError> {
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
            self.at_end()?;
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
            let finding = classify::unstarted(&self.context(), &e, &ahead);
            self.report(finding);
            return Ok(());
        }
        if !linked {
            if let Some(b) = self.pending_bad.first() {
                let (file, line, msg) = (b.file, b.line, b.message.clone());
                self.problem(ProblemKind::BadJson, file, line, None, msg);
                return Ok(());
            }
            let ahead = self.lookahead(progress)?;
            if let Some(finding) = classify::broken_link(&self.context(), &e, &ahead) {
                self.report(finding);
            }
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
                reported: None,
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
            let offset = |b: &Bad| (!self.options.partial).then_some(b.offset);
            for (b, named) in recovery.lines.iter().zip(recovery.named.iter_mut()) {
                *named |= legacy_notice_names(detail, offset(b), b.len);
                if current_notice_reports(detail, offset(b), b.len) {
                    recovery.reported.get_or_insert(e.line);
                }
            }
            if recovery.named.iter().all(|&n| n) {
                for b in recovery.lines {
                    self.notice(
                        b.file,
                        b.line,
                        format!(
                            "not a record: {}; a torn write an earlier version of the writer kept on restart: the chain continues over it from the record before, and that restart names it in its audit_gap (line {})",
                            b.message, e.line
                        ),
                    );
                }
            } else {
                self.recovery = Some(recovery);
            }
        } else if let Some(detail) = e
            .sink_notice
            .as_deref()
            .filter(|d| d.starts_with(crate::sink::CUT_TORN))
        {
            // Nothing of the torn write is left in the file; the notice is
            // all there is to show.
            self.notice(e.file, e.line, format!("the writer's restart {detail}"));
        }
        if self.ring.back().is_some_and(|p| e.seq <= p.seq) {
            let ahead = self.lookahead(progress)?;
            if let Some(finding) = classify::seq_not_above(&self.context(), &e, &ahead) {
                self.report(finding);
            }
            return Ok(());
        }
        if let Some(p_seq) = self.ring.back().map(|p| p.seq)
            && let Some(msg) = classify::seq_skipped(p_seq, e.seq)
        {
            self.notice(e.file, e.line, msg);
        }
        self.accept(e);
        Ok(())
    }

    /// Checks a linked record against checkpoints and keeps it.
    fn accept(&mut self, e: Entry) {
        if !self.check_checkpoints(&e) {
            return;
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
        let msg = match recovery.reported {
            Some(at) => format!(
                "{}; the chain continues over it and the writer's restart reported finding it after the last record and leaving it in place (audit_gap at line {at}), but no writer leaves such a line (a torn write is cut off the file): it was put there or damaged on disk",
                b.message
            ),
            None => format!(
                "{}; the chain continues over it, but the writer did not record skipping it (a restart that recovers from a torn write names each line it skips, by byte offset and length, in an audit_gap record right after it): it was put there afterwards",
                b.message
            ),
        };
        self.problem(ProblemKind::BadJson, file, line, None, msg);
    }

    fn at_end(&mut self) -> Result<(), VerifyError> {
        if let Some(recovery) = self.recovery.take() {
            self.unnamed(recovery);
            return Ok(());
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
            return Ok(());
        }
        if !self.second_pass()? {
            return Ok(());
        }
        let last = self.ring.back().cloned();
        if !self.off_host_at_end(last.as_ref()) {
            return Ok(());
        }
        self.checkpoint_notices(last.as_ref());
        if last.is_none() {
            let f = self.src.files.len() - 1;
            self.notice(f, 0, "the log holds no record".to_string());
        }
        Ok(())
    }

    pub(super) fn finish(self) -> VerifyReport {
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
