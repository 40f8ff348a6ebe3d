//! Rotation by age (`rotate_every`) on the real file system, through the
//! real dispatcher, checked by reading the files back and by `verify`.
//!
//! The intervals are short so the tests run quickly, but no assertion
//! depends on how fast the machine is: sleeps only guarantee that at least
//! the interval has passed, and what is checked is the files' content (the
//! records' own timestamps), which is exact whatever the timing.

mod common;

use std::path::Path;
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, EventType, Timestamp};
use agent_audit_jsonl::checkpoint::{CheckpointPayload, CheckpointReason};
use agent_audit_jsonl::verify::{self, VerifyOptions};
use agent_audit_jsonl::{JsonlOptions, Line, files};
use common::*;

fn nanos(line: &Line) -> i128 {
    Timestamp::parse(&line.record.ts)
        .unwrap_or_else(|| panic!("ts of seq {}", line.record.seq))
        .unix_nanos()
}

/// Every file of the log holds records stamped within `every` of its first
/// one; with `age_only`, each file also starts with a record stamped
/// `every` or more after the previous file's first: rotation happened at
/// the first write past the age, and only then.
fn assert_files_span_at_most(path: &Path, every: Duration, age_only: bool) -> usize {
    let every = every.as_nanos() as i128;
    let list = files::list(path).unwrap();
    let mut prev_first: Option<i128> = None;
    for f in &list {
        let lines = records(&f.path);
        assert!(!lines.is_empty(), "{} is empty", f.path.display());
        let first = nanos(&lines[0]);
        for l in &lines {
            assert!(
                nanos(l) - first < every,
                "{}: seq {} is {} ns after the file's first record, past rotate_every",
                f.path.display(),
                l.record.seq,
                nanos(l) - first
            );
        }
        if let Some(p) = prev_first.filter(|_| age_only) {
            assert!(
                first - p >= every,
                "{} was started only {} ns after the previous file's first record",
                f.path.display(),
                first - p
            );
        }
        if let Some((a, b)) = f.seqs {
            assert_eq!(
                (lines[0].record.seq, lines.last().unwrap().record.seq),
                (a, b),
                "{}",
                f.path.display()
            );
        }
        prev_first = Some(first);
    }
    list.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_rotation_carries_the_chain_signs_a_checkpoint_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let every = Duration::from_millis(300);
    let Signed {
        dispatcher: d,
        head,
        signer,
        checkpointer: cp,
    } = start_signed(JsonlOptions::new(&path).rotate_every(every)).await;
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    for i in 0..12 {
        a.emit_wait(EventType::ToolCall, &tool_call(i), AckLevel::Durable)
            .await
            .unwrap();
        // 11 pauses of 100 ms: the records span at least 1.1 s, so at least
        // three files, whatever the machine's speed.
        if i < 11 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let summary = cp.finish().await.unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());

    let n_files = assert_files_span_at_most(&path, every, false);
    assert!(n_files >= 3, "{n_files} files");
    assert!(head.get().rotations >= 2, "{:?}", head.get());
    let all = log_records(&path);
    assert_chain(&all);
    let calls = all
        .iter()
        .filter(|l| l.record.event_type == EventType::ToolCall)
        .count();
    assert_eq!(calls, 12);

    // A checkpoint after rotation, as with size rotation.
    let cps: Vec<CheckpointPayload> = all
        .iter()
        .filter(|l| l.record.event_type == EventType::Checkpoint)
        .map(|l| CheckpointPayload::from_value(&l.record.payload).unwrap())
        .collect();
    assert!(
        cps.iter().any(|c| c.reason == CheckpointReason::Rotation),
        "{cps:#?}"
    );
    assert_eq!(cps.len() as u64, summary.emitted);

    // `agent-audit verify DIR` over the age-rotated files.
    let options = VerifyOptions {
        public_keys: vec![signer.public_key()],
        ..VerifyOptions::default()
    };
    let report = verify::verify(&[dir.path()], &options, &mut |_| {}).unwrap();
    assert!(report.intact, "{report}");
    assert_eq!(report.files.len(), n_files);
    assert_eq!(report.records, all.len() as u64);
    assert!(report.starts_at_genesis);
    assert_eq!(report.checkpoints.signatures_verified, cps.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_reset_the_files_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let long = JsonlOptions::new(&path).rotate_every(Duration::from_secs(3600));

    // Run 1: two records 400 ms apart, well within an hour.
    let d = start(long.clone()).await;
    let a = Auditor::new(d.clone());
    a.emit_wait(EventType::ToolCall, &tool_call(1), AckLevel::Durable)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.emit_wait(EventType::ToolCall, &tool_call(2), AckLevel::Durable)
        .await
        .unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    assert_eq!(files::list(&path).unwrap().len(), 1);

    // Run 2, an hour's limit still: a restart is not a reason to rotate.
    let d = start(long).await;
    Auditor::new(d.clone())
        .emit_wait(EventType::ToolCall, &tool_call(3), AckLevel::Durable)
        .await
        .unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    assert_eq!(files::list(&path).unwrap().len(), 1);
    assert_eq!(records(&path).len(), 3);

    // Run 3 with a 300 ms limit: the file's first record is at least 400 ms
    // old, though this process just opened the file and its last record is
    // recent. The first write rotates.
    let short = JsonlOptions::new(&path).rotate_every(Duration::from_millis(300));
    let d = start(short).await;
    let r = Auditor::new(d.clone())
        .emit_wait(EventType::ToolCall, &tool_call(4), AckLevel::Durable)
        .await
        .unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let list = files::list(&path).unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].seqs, Some((1, 3)));
    let active = records(&path);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].record.seq, r.seq);
    assert_eq!(
        active[0].record.prev,
        sha256_hex(&records(&list[0].path)[2].bytes)
    );
    assert_chain(&log_records(&path));
    let report = verify::verify(&[dir.path()], &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.intact, "{report}");
    assert_eq!(report.records, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_and_size_rotation_together_whichever_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let every = Duration::from_millis(250);
    let d = start(
        JsonlOptions::new(&path)
            .rotate_every(every)
            .rotate_bytes(1500),
    )
    .await;
    let a = Auditor::new(d.clone());
    // A burst (size rotation), a pause past the age, another burst.
    for i in 0..8 {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    a.emit_wait(EventType::ToolCall, &tool_call(8), AckLevel::Durable)
        .await
        .unwrap();
    let before_pause = files::list(&path).unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.emit_wait(EventType::ToolCall, &tool_call(9), AckLevel::Durable)
        .await
        .unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    assert!(before_pause >= 2, "size rotation: {before_pause} files");
    let list = files::list(&path).unwrap();
    assert_eq!(list.len(), before_pause + 1, "age rotation after the pause");
    for f in &list {
        assert!(std::fs::metadata(&f.path).unwrap().len() <= 1500);
    }
    assert_eq!(records(&path).len(), 1);
    assert_files_span_at_most(&path, every, false);
    assert_chain(&log_records(&path));
}

#[test]
fn rotate_every_in_toml_takes_units_or_seconds_and_errors_name_the_key() {
    let parse = |text: &str| toml::from_str::<JsonlOptions>(text);
    let o = parse("path = \"a.jsonl\"\nrotate_every = \"1d\"\n").unwrap();
    assert_eq!(o.rotate_every, Some(Duration::from_secs(86_400)));
    let o = parse("path = \"a.jsonl\"\nrotate_every = 3600\n").unwrap();
    assert_eq!(o.rotate_every, Some(Duration::from_secs(3600)));
    for bad in ["\"1 week\"", "\"0d\"", "0", "-1", "1.5", "\"\""] {
        let err = parse(&format!("path = \"a.jsonl\"\nrotate_every = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rotate_every"), "{bad}: {err}");
    }
}
