//! A signed checkpoint in the log must meet the line it covers whenever
//! that line should be among the lines verified: the log starts at its
//! first line (genesis), or the covered seq lies at or after the first
//! line verified. A plain log rewritten so that its checkpoints cover seqs
//! it no longer holds (every seq moved, the covered range dropped, the
//! first line relabelled as genesis) fails `verify --public-key`; logs the
//! writer really leaves (rotated sets, a later part verified with
//! `--partial`, restarts that skip seqs) still pass.
//!
//! (Attack review, finding 1: a plain chain rewritten with every seq moved
//! by 1,000,000 passed `verify --public-key`, each checkpoint only noted as
//! "not among the lines verified".)

mod integrity_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SeqLease, SinkOptions};
use agent_audit_jsonl::checkpoint::{CheckpointOptions, CheckpointPayload, Checkpointer};
use agent_audit_jsonl::keys::Signer;
use agent_audit_jsonl::verify::{ProblemKind, VerifyOptions};
use agent_audit_jsonl::{FileLease, JsonlOptions, JsonlSink, Reader, files};
use integrity_support::*;

/// (line, seq, payload) of every checkpoint record of `path`.
fn checkpoints_in(path: &Path) -> Vec<(u64, u64, CheckpointPayload)> {
    Reader::open(path)
        .unwrap()
        .map(|l| l.unwrap())
        .filter(|l| l.record.event_type == EventType::Checkpoint)
        .map(|l| {
            let cp = CheckpointPayload::from_value(&l.record.payload).unwrap();
            (l.number, l.record.seq, cp)
        })
        .collect()
}

fn signed_by(signer: &Signer) -> VerifyOptions {
    VerifyOptions {
        public_keys: vec![signer.public_key()],
        ..VerifyOptions::default()
    }
}

fn seq_of(line: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// What someone without a key does: every seq moved by `by`, the first
/// line left starting the chain, the plain chain recomputed.
fn moved(lines: &[Vec<u8>], by: u64) -> Vec<Vec<u8>> {
    let mut l: Vec<Vec<u8>> = lines
        .iter()
        .map(|line| set_seq(line, seq_of(line) + by))
        .collect();
    rechain_plain(&mut l, 1);
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_log_with_every_seq_moved_and_its_chain_recomputed_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let cps = checkpoints_in(&s.log);
    assert!(cps.len() >= 3, "{cps:#?}");
    let options = signed_by(&s.signer);
    expect_intact(&verify_with(&[&s.log], &options));
    let original = lines(&s.log);
    let forged = dir.path().join("forged.jsonl");

    // The review's case: every seq moved past every checkpoint's range.
    write_lines(&forged, &moved(&original, 1_000_000));
    let report = verify_with(&[&forged], &options);
    let p = expect_problem(&report, ProblemKind::Rewritten, cps[0].0);
    assert!(
        p.message.contains(&format!("seq {}", cps[0].2.upto_seq))
            && p.message.contains("first line"),
        "{p}"
    );
    // The same under another name, and with the first line given as the
    // whole log (`--partial` changes nothing: the log starts at genesis).
    let renamed = dir.path().join("quiet.jsonl");
    std::fs::rename(&forged, &renamed).unwrap();
    for partial in [false, true] {
        let o = VerifyOptions {
            partial,
            ..options.clone()
        };
        expect_problem(
            &verify_with(&[&renamed], &o),
            ProblemKind::Rewritten,
            cps[0].0,
        );
    }

    // Any amount, small or huge: the checkpoints meet other lines (their
    // heads differ) or none (the seqs they cover are not in the log).
    for by in [1, 2, 9, 10, 11, 1_000, 1u64 << 40, u64::MAX / 4] {
        write_lines(&forged, &moved(&original, by));
        let report = verify_with(&[&forged], &options);
        assert!(!report.intact, "seqs moved by {by} verified:\n{report}");
        let p = report.problem.unwrap();
        assert!(
            matches!(p.kind, ProblemKind::Rewritten | ProblemKind::Deleted),
            "moved by {by}: {p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_log_cut_past_a_checkpoint_s_range_and_restarted_at_genesis_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let cps = checkpoints_in(&s.log);
    let options = signed_by(&s.signer);
    let l = lines(&s.log);
    let line_of_seq = |seq: u64| l.iter().position(|x| seq_of(x) == seq).unwrap();
    // Keep what follows the second checkpoint's covered line, without the
    // last checkpoint (which covers kept lines and would catch the rewrite
    // by its head): the kept checkpoint now covers a line before the first.
    let from = line_of_seq(cps[1].2.upto_seq) + 1;
    let to = cps.last().unwrap().0 as usize - 1;
    assert!(
        from < cps[1].0 as usize && cps[1].0 as usize <= to,
        "{cps:#?}"
    );
    let mut kept = l[from..to].to_vec();
    kept[0] = set_prev(&kept[0], agent_audit_jsonl::chain::GENESIS);
    rechain_plain(&mut kept, 1);
    let forged = dir.path().join("forged.jsonl");
    write_lines(&forged, &kept);
    let p = expect_problem(
        &verify_with(&[&forged], &options),
        ProblemKind::Rewritten,
        cps[1].0 - from as u64,
    );
    assert!(p.message.contains("first line"), "{p}");

    // Its first line left as it was (not genesis): the start is missing,
    // which verify reports unless told the start was removed on purpose.
    let mut kept = l[from..to].to_vec();
    rechain_plain(&mut kept, 1);
    write_lines(&forged, &kept);
    expect_problem(
        &verify_with(&[&forged], &options),
        ProblemKind::Truncated,
        1,
    );
}

/// A run of a writer with a checkpointer, on `log`, signed by `signer`.
async fn signed_run(
    log: &Path,
    n: u64,
    every: u64,
    signer: &Signer,
    lease: bool,
    rotate_bytes: Option<u64>,
) {
    let mut opts = JsonlOptions::new(log);
    if let Some(r) = rotate_bytes {
        opts = opts.rotate_bytes(r);
    }
    let sink = JsonlSink::new(opts).unwrap();
    let head = sink.head_handle();
    let mut b = Dispatcher::builder().sink(SinkOptions::new("jsonl").max_batch(5), sink);
    if lease {
        b = b
            .seq_lease(Arc::new(FileLease::for_log(log).unwrap()))
            .lease_block(16);
    }
    let d = b.start().await.unwrap();
    let cp = Checkpointer::start(
        Auditor::new(d.clone()).with_agent("agent-audit"),
        head,
        signer.clone(),
        CheckpointOptions {
            every,
            interval: Duration::from_secs(3600),
        },
    )
    .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    for i in 0..n {
        a.emit_wait(EventType::ToolCall, &tool_call(i), AckLevel::Written)
            .await
            .unwrap();
    }
    cp.finish().await.unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_the_writer_leaves_still_verify_rotated_partial_and_restarted_with_seq_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let signer = Signer::generate();
    let options = signed_by(&signer);

    // Two runs, the second after a crash of a process that had leased
    // seqs ahead: it skips them (a seq_skipped audit_gap) and signs on.
    signed_run(&log, 30, 7, &signer, true, Some(3_000)).await;
    FileLease::for_log(&log).unwrap().store(500).unwrap();
    signed_run(&log, 30, 7, &signer, true, Some(3_000)).await;
    let all: Vec<PathBuf> = files::list(&log)
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(all.len() >= 4, "{all:?}");
    let report = verify_with(&[dir.path()], &options);
    expect_intact(&report);
    let in_file: usize = all.iter().map(|f| checkpoints_in(f).len()).sum();
    assert_eq!(report.checkpoints.heads_matched, in_file as u64, "{report}");
    assert!(
        report
            .notices
            .iter()
            .any(|n| n.message.contains("absent before")),
        "{report}"
    );
    assert!(report.last_seq.unwrap() > 500, "{report}");

    // Retention removed the oldest files: every later part verifies with
    // --partial, the checkpoints covering lines of removed files noted.
    for start in 1..all.len() {
        let part: Vec<&Path> = all[start..].iter().map(PathBuf::as_path).collect();
        let report = verify_with(
            &part,
            &VerifyOptions {
                partial: true,
                ..options.clone()
            },
        );
        expect_intact(&report);
        assert!(
            start + 1 == all.len() || report.checkpoints.heads_matched > 0,
            "{report}"
        );
    }
    // A later part on its own whose first checkpoint covers the end of the
    // file before it: noted, not compared, not damage.
    let last = all.last().unwrap();
    let first_cp = checkpoints_in(last)[0].2.upto_seq;
    let first_seq = seq_of(&lines(last)[0]);
    if first_cp < first_seq {
        let report = verify_with(
            &[last.as_path()],
            &VerifyOptions {
                partial: true,
                ..options.clone()
            },
        );
        expect_intact(&report);
        assert!(
            report
                .notices
                .iter()
                .any(|n| n.message.contains("before the first line verified")),
            "{report}"
        );
    }
}
