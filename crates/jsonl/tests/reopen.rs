//! The log moved away, replaced or deleted underneath a running sink (what
//! logrotate and operators do): the sink reopens its path, the new file
//! continues the chain from the last line written, and the published chain
//! head (what signed checkpoints name) stays the head of what the files
//! hold. Real files, the real dispatcher and checkpointer, and `verify`.

mod common;

use std::path::{Path, PathBuf};

use agent_audit_core::{AckLevel, Auditor, EventType};
use agent_audit_jsonl::checkpoint::{CheckpointPayload, CheckpointReason};
use agent_audit_jsonl::keys::Signer;
use agent_audit_jsonl::verify::{self, ProblemKind, VerifyOptions, VerifyReport};
use agent_audit_jsonl::{HeadHandle, JsonlOptions};
use common::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Underneath {
    /// `mv audit-log.jsonl audit-log.jsonl.1` (logrotate `nocreate`).
    Moved,
    /// `mv`, then an empty file at the path (logrotate `create`).
    MovedAndCreated,
    /// `rm audit-log.jsonl`.
    Deleted,
    /// `mv`, then a file at the path holding bytes without a final newline.
    MovedAndReplacedByATornFile,
}

struct Run {
    dir: tempfile::TempDir,
    log: PathBuf,
    old: PathBuf,
    signer: Signer,
    head: HeadHandle,
    /// The head published just before the file was changed underneath.
    before: agent_audit_jsonl::ChainHead,
}

fn assert_head_is_the_files_end(head: &HeadHandle, path: &Path) {
    let lines = records_of(path);
    let last = lines.last().unwrap();
    let h = head.get();
    assert_eq!(h.seq, last.record.seq, "published seq");
    assert_eq!(h.head, sha256_hex(&last.bytes), "published head");
}

async fn run(how: Underneath) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let old = dir.path().join("moved").join("audit-log.jsonl.1");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    let Signed {
        dispatcher: d,
        head,
        signer,
        checkpointer: cp,
    } = start_signed(JsonlOptions::new(&log)).await;
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    for i in 0..5 {
        a.emit_wait(EventType::ToolCall, &tool_call(i), AckLevel::Durable)
            .await
            .unwrap();
    }
    assert_head_is_the_files_end(&head, &log);
    let before = head.get();
    match how {
        Underneath::Moved => std::fs::rename(&log, &old).unwrap(),
        Underneath::MovedAndCreated => {
            std::fs::rename(&log, &old).unwrap();
            std::fs::write(&log, b"").unwrap();
        }
        Underneath::Deleted => std::fs::remove_file(&log).unwrap(),
        Underneath::MovedAndReplacedByATornFile => {
            std::fs::rename(&log, &old).unwrap();
            std::fs::write(&log, b"leftover without a newline").unwrap();
        }
    }
    let r = a
        .emit_wait(EventType::ToolCall, &tool_call(5), AckLevel::Durable)
        .await
        .unwrap();
    assert!(r.failed.is_empty(), "{r:?}");
    // The reopened file's first record continues from the head published
    // before the move: the last line of the old file.
    let first_new = records_of(&log)[0].clone();
    assert_eq!(first_new.record.prev, before.head);
    assert_eq!(first_new.record.seq, r.seq);
    assert_head_is_the_files_end(&head, &log);
    assert_eq!(head.get().rotations, before.rotations + 1);
    for i in 6..10 {
        a.emit_wait(EventType::ToolCall, &tool_call(i), AckLevel::Durable)
            .await
            .unwrap();
    }
    assert_head_is_the_files_end(&head, &log);
    // The checkpointer signs the reopen on its own task; under load it may
    // not have seen the new file yet, and finish() would then sign it as the
    // shutdown checkpoint. Wait (bounded) for the rotation checkpoint.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !checkpoints(&log)
        .iter()
        .any(|c| c.reason == CheckpointReason::Rotation)
        && std::time::Instant::now() < until
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cp.finish().await.unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    assert_head_is_the_files_end(&head, &log);
    Run {
        dir,
        log,
        old,
        signer,
        head,
        before,
    }
}

/// The record lines of a file, skipping lines that are not records (the
/// leftover of the torn-file case).
fn records_of(path: &Path) -> Vec<agent_audit_jsonl::Line> {
    read(path).into_iter().filter_map(Result::ok).collect()
}

fn verify_files(files: &[&Path], run: &Run, partial: bool) -> VerifyReport {
    let options = VerifyOptions {
        public_keys: vec![run.signer.public_key()],
        partial,
        log_name: Some("audit-log.jsonl".into()),
        ..VerifyOptions::default()
    };
    verify::verify(files, &options, &mut |_| {}).unwrap()
}

fn checkpoints(path: &Path) -> Vec<CheckpointPayload> {
    records_of(path)
        .iter()
        .filter(|l| l.record.event_type == EventType::Checkpoint)
        .map(|l| CheckpointPayload::from_value(&l.record.payload).unwrap())
        .collect()
}

async fn moved_and_followed(how: Underneath) {
    let r = run(how).await;
    // The old file is untouched and ends where the head was.
    let old = records(&r.old);
    assert_eq!(old.len(), 5);
    assert_eq!(sha256_hex(&old[4].bytes), r.before.head);
    assert_eq!(old[4].record.seq, r.before.seq);

    // Old + new verify as one chain, every checkpoint signature and head
    // included; a checkpoint was signed after the reopen.
    let report = verify_files(&[&r.old, &r.log], &r, false);
    assert!(report.intact, "{report}");
    assert!(report.starts_at_genesis);
    assert_eq!(report.last_seq, Some(r.head.get().seq));
    assert_eq!(report.head.as_deref(), Some(r.head.get().head.as_str()));
    let cps = checkpoints(&r.log);
    assert!(
        cps.iter().any(|c| c.reason == CheckpointReason::Rotation),
        "{cps:#?}"
    );
    assert_eq!(report.checkpoints.signatures_verified, cps.len() as u64);
    assert_eq!(report.checkpoints.heads_matched, cps.len() as u64);

    // The new file alone does not start the chain: reported exactly, and
    // intact as a later part of the log.
    let alone = verify_files(&[&r.log], &r, false);
    let p = alone.problem.unwrap();
    assert_eq!(
        (p.kind, p.line),
        (ProblemKind::Truncated, first_record_line(&r.log))
    );
    assert!(verify_files(&[&r.log], &r, true).intact);
    drop(r.dir);
}

fn first_record_line(path: &Path) -> u64 {
    records_of(path)[0].number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_away_the_new_file_continues_the_published_head() {
    moved_and_followed(Underneath::Moved).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_create_the_new_file_continues_the_published_head() {
    moved_and_followed(Underneath::MovedAndCreated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_without_a_final_newline_is_ended_not_glued_to() {
    let r = run(Underneath::MovedAndReplacedByATornFile).await;
    let bytes = std::fs::read(&r.log).unwrap();
    assert!(bytes.starts_with(b"leftover without a newline\n{\"v\":2,"));
    let all = read(&r.log);
    assert!(all[0].is_err(), "the leftover line is kept, not a record");
    assert!(all[1..].iter().all(Result::is_ok));
    // The chain continues over the leftover, but the writer did not write
    // it and it is no torn write of its: damage, named at its line (a
    // reader taking the file line by line would meet it).
    let report = verify_files(&[&r.old, &r.log], &r, false);
    let p = report.problem.clone().unwrap();
    assert_eq!(
        (p.kind, &p.file, p.line),
        (ProblemKind::BadJson, &r.log, 1),
        "{report}"
    );
    assert!(
        p.message.contains("not what a write cut short leaves"),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_the_new_file_continues_a_head_only_checkpoints_keep() {
    let r = run(Underneath::Deleted).await;
    assert!(!r.old.exists());
    let report = verify_files(&[&r.log], &r, false);
    let p = report.problem.unwrap();
    assert_eq!((p.kind, p.line), (ProblemKind::Truncated, 1));
    // As a later part of the log it verifies, checkpoints included.
    let report = verify_files(&[&r.log], &r, true);
    assert!(report.intact, "{report}");
    assert!(report.checkpoints.signatures_verified >= 1);
}
