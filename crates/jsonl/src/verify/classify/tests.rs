//! The unit tests of classification: one per row of its tables.

use super::*;
use crate::chain::Chain;

/// Lines as the verifier reads them: `hash` under `verifier`, `prev`
/// as written.
struct Log {
    verifier: Chain,
    files: Vec<PathBuf>,
}

impl Log {
    fn plain() -> Log {
        Log::under(Chain::plain())
    }

    fn under(verifier: Chain) -> Log {
        Log {
            verifier,
            files: vec![
                PathBuf::from("/nonexistent/audit-log.000000000001-000000000002.jsonl"),
                PathBuf::from("/nonexistent/audit-log.jsonl"),
            ],
        }
    }

    /// A record of `seq` at `line` of `file`, whose `prev` is `prev`.
    fn line(&self, file: usize, line: u64, seq: u64, prev: [u8; 32], body: &str) -> Entry {
        let bytes = format!(r#"{{"seq":{seq},"body":"{body}"}}"#).into_bytes();
        Entry {
            file,
            line,
            seq,
            prev: Some(prev),
            hash: self.verifier.hash(&bytes),
            bytes,
            checkpoint: None,
            sink_notice: None,
        }
    }

    /// Records `seqs` in file 0 from line 1, chained under `writer`
    /// (genesis first).
    fn written(&self, writer: &Chain, seqs: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        let mut prev = [0u8; 32];
        seqs.map(|seq| {
            let e = self.line(0, seq, seq, prev, "x");
            prev = writer.hash(&e.bytes);
            e
        })
        .collect()
    }

    fn cx<'a>(&'a self, ring: &'a VecDeque<Entry>, links_ok: u64) -> Context<'a> {
        Context {
            files: &self.files,
            ring,
            keyed: self.verifier.is_keyed(),
            links_ok,
        }
    }
}

/// `lines` renumbered as they stand in one file, from line 1.
fn in_order(mut lines: Vec<Entry>) -> Vec<Entry> {
    for (i, e) in lines.iter_mut().enumerate() {
        e.line = i as u64 + 1;
    }
    lines
}

/// Classifies `lines[at]` as the first broken link, the lines before
/// it read and linked.
fn broken_at(log: &Log, lines: &[Entry], at: usize) -> Finding {
    let ring: VecDeque<Entry> = lines[..at].iter().cloned().collect();
    let links_ok = at.saturating_sub(1) as u64;
    broken_link(&log.cx(&ring, links_ok), &lines[at], &lines[at + 1..]).expect("a record before it")
}

fn kind_line(f: &Finding) -> (ProblemKind, usize, u64) {
    (f.kind, f.file, f.line)
}

#[test]
fn row_forged() {
    let log = Log::under(Chain::keyed(b"key"));
    let writer = Chain::keyed(b"key");
    let mut lines = log.written(&writer, 1..=5);
    // Line 4 rewritten by someone without the key: a plain prev.
    lines[3] = log.line(0, 4, 4, plain_hash(&lines[2].bytes), "forged");
    let f = broken_at(&log, &lines, 3);
    assert_eq!(kind_line(&f), (ProblemKind::Forged, 0, 4));
    assert!(f.message.contains("written by someone without the key"));
}

#[test]
fn row_plain_log_under_a_key() {
    let log = Log::under(Chain::keyed(b"key"));
    let lines = log.written(&Chain::plain(), 1..=4);
    let ring: VecDeque<Entry> = lines[..1].iter().cloned().collect();
    let f = broken_link(&log.cx(&ring, 0), &lines[1], &lines[2..]).unwrap();
    assert_eq!(kind_line(&f), (ProblemKind::KeyMismatch, 0, 2));
    assert!(f.message.contains("the chain is plain SHA-256"));
}

#[test]
fn row_reordered() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=6);
    lines.swap(2, 3);
    let lines = in_order(lines);
    let f = broken_at(&log, &lines, 2);
    assert_eq!(
        (kind_line(&f), f.seq),
        ((ProblemKind::Reordered, 0, 3), Some(4))
    );
    assert!(f.message.contains("belongs after line 4 of"));
}

#[test]
fn row_inserted_ahead() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=5);
    lines.insert(2, log.line(0, 0, 3, [7; 32], "extra"));
    let lines = in_order(lines);
    let f = broken_at(&log, &lines, 2);
    assert_eq!(kind_line(&f), (ProblemKind::Inserted, 0, 3));
    assert!(f.message.starts_with("1 line(s) from here were inserted"));
}

#[test]
fn row_inserted_behind() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=5);
    // An extra line chained from line 2, so it links; line 3 of the
    // writer then links to line 2, not to it.
    let extra = log.line(0, 0, 3, lines[1].hash, "extra");
    lines.insert(2, extra);
    let lines = in_order(lines);
    let f = broken_at(&log, &lines, 3);
    assert_eq!(
        (kind_line(&f), f.seq),
        ((ProblemKind::Inserted, 0, 3), Some(3))
    );
    assert!(f.message.contains("line 4 of"));
}

#[test]
fn row_deleted() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=6);
    lines.drain(2..4);
    let lines = in_order(lines);
    let f = broken_at(&log, &lines, 2);
    assert_eq!(
        (kind_line(&f), f.seq),
        ((ProblemKind::Deleted, 0, 3), Some(5))
    );
    assert!(
        f.message
            .starts_with("2 record(s) (seqs 3..4) were deleted")
    );
}

#[test]
fn row_file_missing() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=5);
    lines.remove(2);
    lines[2].file = 1;
    lines[2].line = 1;
    let f = broken_at(&log, &lines, 2);
    assert_eq!(
        (kind_line(&f), f.seq),
        ((ProblemKind::FileChainBreak, 1, 1), Some(4))
    );
    assert!(f.message.starts_with("seq 3 missing between line 2 of"));
}

#[test]
fn row_edited() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=5);
    // Line 3 changed in place: its own prev still fits.
    lines[2] = log.line(0, 3, 3, lines[2].prev.unwrap(), "changed");
    let f = broken_at(&log, &lines, 3);
    assert_eq!(
        (kind_line(&f), f.seq),
        ((ProblemKind::Edited, 0, 3), Some(3))
    );
    assert!(f.message.ends_with("(line 4 (seq 4))"));
}

#[test]
fn row_key_mismatch() {
    let log = Log::plain();
    let lines = log.written(&Chain::keyed(b"another key"), 1..=4);
    let f = broken_at(&log, &lines, 1);
    assert_eq!(kind_line(&f), (ProblemKind::KeyMismatch, 0, 2));
    assert!(f.message.contains("(3 links checked)"));
    assert_eq!(
        f.hint,
        Some(
            "if the log was written with a chain key ([integrity] key_env), verify with --key-env VAR"
        )
    );
    let keyed = Log::under(Chain::keyed(b"key"));
    let lines = keyed.written(&Chain::keyed(b"another key"), 1..=4);
    let f = broken_at(&keyed, &lines, 1);
    assert_eq!(kind_line(&f), (ProblemKind::KeyMismatch, 0, 2));
    assert!(f.hint.unwrap().starts_with("check the key"));
}

#[test]
fn row_replaced() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=6);
    lines[3] = log.line(0, 4, 4, [7; 32], "replaced");
    let f = broken_at(&log, &lines, 3);
    assert_eq!(kind_line(&f), (ProblemKind::Edited, 0, 4));
    assert!(f.message.contains("does not fit between line 3 (seq 3)"));
}

#[test]
fn row_file_chain_break() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=4);
    lines[2] = log.line(1, 1, 3, [7; 32], "next file");
    lines[3] = log.line(1, 2, 4, lines[2].hash, "x");
    let f = broken_at(&log, &lines, 2);
    assert_eq!(kind_line(&f), (ProblemKind::FileChainBreak, 1, 1));
    assert!(
        f.message
            .contains("does not continue the chain of line 2 of")
    );
    // The same with the seq not following: files out of order.
    lines[2] = log.line(1, 1, 1, [7; 32], "older file");
    lines[3] = log.line(1, 2, 2, lines[2].hash, "x");
    let f = broken_at(&log, &lines, 2);
    assert_eq!(kind_line(&f), (ProblemKind::FileChainBreak, 1, 1));
    assert!(f.message.ends_with("the files are out of order"));
}

#[test]
fn row_inserted_before_genesis() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=3);
    lines.insert(0, log.line(0, 0, 9, [7; 32], "before"));
    let lines = in_order(lines);
    let ring = VecDeque::new();
    let f = unstarted(&log.cx(&ring, 0), &lines[0], &lines[1..]);
    assert_eq!(kind_line(&f), (ProblemKind::Inserted, 0, 1));
    assert!(f.message.contains("line 2 of"));
    assert_eq!(f.hint, None);
}

#[test]
fn row_truncated() {
    let log = Log::plain();
    let lines = in_order(log.written(&Chain::plain(), 1..=4).split_off(2));
    let ring = VecDeque::new();
    let f = unstarted(&log.cx(&ring, 0), &lines[0], &lines[1..]);
    assert_eq!(
        (kind_line(&f), f.seq),
        ((ProblemKind::Truncated, 0, 1), Some(3))
    );
    assert_eq!(
        f.hint,
        Some("if older files were removed on purpose (retention), pass --partial")
    );
}

/// Classifies `lines[at]`, which links to `lines[at - 1]`.
fn not_above_at(log: &Log, lines: &[Entry], at: usize) -> Option<Finding> {
    let ring: VecDeque<Entry> = lines[..at].iter().cloned().collect();
    seq_not_above(&log.cx(&ring, at as u64), &lines[at], &lines[at + 1..])
}

#[test]
fn row_inserted_beside() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=4);
    lines.insert(2, log.line(0, 0, 2, lines[1].hash, "beside"));
    let lines = in_order(lines);
    let f = not_above_at(&log, &lines, 2).unwrap();
    assert_eq!(kind_line(&f), (ProblemKind::Inserted, 0, 3));
    assert!(
        f.message
            .starts_with("this line was inserted: its prev fits line 2")
    );
}

#[test]
fn row_edited_seq() {
    let log = Log::plain();
    let mut lines = log.written(&Chain::plain(), 1..=5);
    // Line 3's seq changed to 1: its prev still fits, its hash does not.
    lines[2] = log.line(0, 3, 1, lines[2].prev.unwrap(), "x");
    let f = not_above_at(&log, &lines, 2).unwrap();
    assert_eq!(
        (kind_line(&f), f.seq),
        ((ProblemKind::Edited, 0, 3), Some(1))
    );
}

#[test]
fn row_seq_repeats() {
    let log = Log::plain();
    let writer = Chain::plain();
    // seqs 1 2 2 3, the chain recomputed over all four.
    let mut lines = Vec::new();
    let mut prev = [0u8; 32];
    for (i, seq) in [1, 2, 2, 3].into_iter().enumerate() {
        let e = log.line(0, i as u64 + 1, seq, prev, &format!("r{i}"));
        prev = writer.hash(&e.bytes);
        lines.push(e);
    }
    let f = not_above_at(&log, &lines, 2).unwrap();
    assert_eq!(kind_line(&f), (ProblemKind::Inserted, 0, 3));
    assert!(
        f.message
            .starts_with("seq 2 appears twice (line 2 and this line)")
    );
}

#[test]
fn row_seq_goes_back() {
    let log = Log::plain();
    let writer = Chain::plain();
    // seqs 1 3 2 4, the chain recomputed.
    let mut lines = Vec::new();
    let mut prev = [0u8; 32];
    for (i, seq) in [1, 3, 2, 4].into_iter().enumerate() {
        let e = log.line(0, i as u64 + 1, seq, prev, "x");
        prev = writer.hash(&e.bytes);
        lines.push(e);
    }
    let f = not_above_at(&log, &lines, 2).unwrap();
    assert_eq!(kind_line(&f), (ProblemKind::Reordered, 0, 3));
    assert!(f.message.starts_with("seq goes back from 3 to 2"));
    // A seq that follows is none of these rows.
    assert!(not_above_at(&log, &lines, 3).is_none());
}

#[test]
fn row_seq_skipped() {
    assert_eq!(seq_skipped(2, 3), None);
    assert_eq!(seq_skipped(u64::MAX, u64::MAX), None);
    assert!(
        seq_skipped(2, 4)
            .unwrap()
            .starts_with("seq 3 is absent before this line")
    );
    assert!(
        seq_skipped(2, 6)
            .unwrap()
            .starts_with("seqs 3..5 are absent")
    );
    assert!(seq_skipped(0, u64::MAX).is_some());
}

/// The tables above, without their test column, are those of the
/// module docs of `verify`.
#[test]
fn the_tables_are_those_of_the_verify_docs() {
    let rows = |text: &str, drop_last: bool| -> Vec<String> {
        text.lines()
            .take_while(|l| l.starts_with("//!"))
            .filter_map(|l| l.strip_prefix("//! |"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_end_matches('|').split('|').map(str::trim).collect();
                cells[..cells.len() - usize::from(drop_last)].join(" | ")
            })
            .collect()
    };
    let here = rows(include_str!("../classify.rs"), true);
    let there = rows(include_str!("../mod.rs"), false);
    assert_eq!(here.len(), 24);
    assert_eq!(here, there);
}
