//! Signed checkpoints on real logs: emitted by the real `Checkpointer`
//! through a real dispatcher into the real sink, with a second sink
//! standing for the off-host copy (as the OTLP collector would keep it).

mod integrity_support;

use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions, StoredRecord};
use agent_audit_jsonl::checkpoint::{
    CheckpointOptions, CheckpointPayload, CheckpointReason, Checkpointer,
};
use agent_audit_jsonl::keys::{self, PublicKey, Signer};
use agent_audit_jsonl::verify::{self, ProblemKind, VerifyOptions};
use agent_audit_jsonl::{ChainKey, JsonlOptions, JsonlSink, Reader};
use integrity_support::*;

fn checkpoints_in(path: &std::path::Path) -> Vec<(u64, u64, CheckpointPayload)> {
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

fn with_key(public: PublicKey) -> VerifyOptions {
    VerifyOptions {
        public_keys: vec![public],
        ..VerifyOptions::default()
    }
}

fn with_off_host(signed: &Signed) -> VerifyOptions {
    VerifyOptions {
        public_keys: vec![signed.signer.public_key()],
        checkpoints: verify::load_checkpoints(&signed.off_host).unwrap(),
        ..VerifyOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_every_n_records_and_at_shutdown_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let cps = checkpoints_in(&s.log);
    // A count checkpoint covers exactly the next 10 application records
    // (its own lines do not count): after 10 and 20. The shutdown
    // checkpoint covers the rest.
    let (last, counts) = cps.split_last().unwrap();
    assert_eq!(last.2.reason, CheckpointReason::Shutdown, "{cps:#?}");
    assert_eq!(counts.len(), 2, "{cps:#?}");
    let mut from = 0;
    for (_, seq, cp) in &cps {
        assert_eq!(cp.from_seq, from, "coverage chains: {cps:#?}");
        if cp.reason == CheckpointReason::Count {
            assert_eq!(
                records_between(&s.log, cp.from_seq, cp.upto_seq),
                10,
                "{cps:#?}"
            );
        }
        assert!(cp.upto_seq < *seq);
        from = cp.upto_seq;
    }
    assert_eq!(cps[0].2.records, cps[0].2.upto_seq);
    // The final checkpoint covers the line right before it: nothing is left
    // uncovered.
    assert_eq!(last.2.upto_seq + 1, last.1);
    assert_eq!(s.summary.emitted, cps.len() as u64);
    let n = cps.len() as u64;

    let report = verify_with(&[&s.log], &with_key(s.signer.public_key()));
    expect_intact(&report);
    assert_eq!(report.checkpoints.in_file, n);
    assert_eq!(report.checkpoints.signatures_verified, n);
    assert_eq!(report.checkpoints.heads_matched, n);
    assert_eq!(report.checkpoints.uncovered_records, 0);

    // The off-host copy holds the same checkpoints and matches.
    let off = verify::load_checkpoints(&s.off_host).unwrap();
    assert_eq!(off.len() as u64, n);
    assert!(off.iter().all(|c| c.seq.is_some()));
    let report = verify_with(&[&s.log], &with_off_host(&s));
    expect_intact(&report);
    assert_eq!(report.checkpoints.off_host_matched, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_over_a_modified_head_fails() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let (line_no, _, cp) = checkpoints_in(&s.log)[1].clone();
    // Rewrite the checkpoint's head to a value of the attacker's choosing and
    // recompute the plain chain after it, so only the signature can tell.
    let mut l = lines(&s.log);
    let i = line_no as usize - 1;
    let text = String::from_utf8(l[i].clone()).unwrap();
    l[i] = text.replacen(&cp.head, &"ab".repeat(32), 1).into_bytes();
    rechain_plain(&mut l, i + 1);
    write_lines(&s.log, &l);
    let p = expect_problem(
        &verify_with(&[&s.log], &with_key(s.signer.public_key())),
        ProblemKind::BadSignature,
        line_no,
    );
    assert!(p.message.contains("altered after signing"), "{p}");

    // Without the public key, the head no longer matches the chain.
    expect_problem(&plain(&[&s.log]), ProblemKind::Rewritten, line_no);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_middle_with_a_recomputed_chain_is_caught_by_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let cps = checkpoints_in(&s.log);
    let mut l = lines(&s.log);
    // Change record 5's payload and recompute the whole plain chain: the
    // chain alone cannot see it.
    let text = String::from_utf8(l[4].clone()).unwrap();
    l[4] = text.replacen("12345", "99999", 1).into_bytes();
    rechain_plain(&mut l, 5);
    write_lines(&s.log, &l);
    let p = expect_problem(&plain(&[&s.log]), ProblemKind::Rewritten, cps[0].0);
    assert!(p.message.contains("rewritten"), "{p}");
    // With the key, the signature still holds (the attacker did not touch
    // the checkpoint) and the head is what gives it away.
    expect_problem(
        &verify_with(&[&s.log], &with_key(s.signer.public_key())),
        ProblemKind::Rewritten,
        cps[0].0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_after_the_last_checkpoint_needs_and_gets_the_off_host_copy() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let cps = checkpoints_in(&s.log);
    let second = &cps[cps.len() - 2];
    // Cut the log right after the second checkpoint's record: the third
    // (shutdown) checkpoint and the 5 records before it disappear, at a line
    // boundary, and every remaining checkpoint still verifies.
    let mut l = lines(&s.log);
    l.truncate(second.0 as usize);
    write_lines(&s.log, &l);
    let local = verify_with(&[&s.log], &with_key(s.signer.public_key()));
    expect_intact(&local);

    let report = verify_with(&[&s.log], &with_off_host(&s));
    let p = expect_problem(&report, ProblemKind::Truncated, second.0 + 1);
    assert!(p.message.contains("truncated"), "{p}");
    assert!(
        p.message.contains(&format!("ends at seq {}", second.1)),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_rewritten_after_a_checkpoint_is_caught_by_the_off_host_copy() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let cps = checkpoints_in(&s.log);
    let (cp_line, cp_seq, cp) = cps[cps.len() - 2].clone();
    // Keep everything up to the line the second checkpoint covers, then
    // replace what follows (the checkpoint record included) with other
    // records carrying the same seqs, chained with plain SHA-256.
    let mut l = lines(&s.log);
    let kept = l
        .iter()
        .position(|b| serde_json::from_slice::<StoredRecord>(b).unwrap().seq == cp.upto_seq)
        .unwrap()
        + 1;
    let template = l[kept - 1].clone();
    let mut tail = Vec::new();
    for (n, seq) in (cp.upto_seq + 1..cp.upto_seq + 8).enumerate() {
        let t = String::from_utf8(set_seq(&template, seq))
            .unwrap()
            .replacen("12345", &format!("{:05}", 70000 + n), 1);
        tail.push(t.into_bytes());
    }
    l.truncate(kept);
    l.extend(tail);
    rechain_plain(&mut l, kept);
    write_lines(&s.log, &l);
    // Locally the log looks fine: the chain holds and no checkpoint was
    // touched.
    expect_intact(&verify_with(&[&s.log], &with_key(s.signer.public_key())));

    let p = expect_problem(
        &verify_with(&[&s.log], &with_off_host(&s)),
        ProblemKind::Rewritten,
        cp_line,
    );
    assert_eq!(p.seq, Some(cp_seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_cover_a_keyed_chain_and_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 40, 1000, Some(KEY), Some(2500)).await;
    let mut all = Vec::new();
    for f in agent_audit_jsonl::files::list(&s.log).unwrap() {
        all.extend(checkpoints_in(&f.path));
    }
    assert!(
        all.iter().any(|c| c.2.reason == CheckpointReason::Rotation),
        "{all:#?}"
    );
    assert!(all.iter().all(|c| c.2.chain.as_str() == "hmac-sha256"));
    let options = VerifyOptions {
        key: Some(ChainKey::new(KEY)),
        ..with_off_host(&s)
    };
    let report = verify_with(&[dir.path()], &options);
    expect_intact(&report);
    assert_eq!(report.checkpoints.signatures_verified, all.len() as u64);
    assert_eq!(report.checkpoints.off_host_matched, all.len() as u64);
    // Without the key, a checkpoint says why nothing links.
    let p = verify_with(&[dir.path()], &with_key(s.signer.public_key()))
        .problem
        .unwrap();
    assert_eq!(p.kind, ProblemKind::KeyMismatch, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_checkpoint_comes_while_records_flow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let sink = JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    let head = sink.head_handle();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl"), sink)
        .start()
        .await
        .unwrap();
    let signer = Signer::generate();
    // Never by count: only the interval can trigger it.
    let cp = Checkpointer::start(
        Auditor::new(d.clone()),
        head.clone(),
        signer.clone(),
        CheckpointOptions {
            every: 1_000_000,
            interval: Duration::from_millis(20),
        },
    )
    .unwrap();
    let a = Auditor::new(d.clone());
    let r = a
        .emit_wait(EventType::ToolCall, &tool_call(1), AckLevel::Written)
        .await
        .unwrap();
    // Wait (bounded, as a guard against a hang, not a timing assertion) for
    // the checkpoint record to reach the file.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while head.get().seq <= r.seq {
            head.changed().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "no interval checkpoint within 30 s");
    let summary = cp.finish().await.unwrap();
    d.shutdown(SHUTDOWN).await;
    let cps = checkpoints_in(&path);
    assert_eq!(cps[0].2.reason, CheckpointReason::Interval, "{cps:#?}");
    assert_eq!(cps[0].2.upto_seq, r.seq);
    // The checkpoint's own line is not a reason for another one.
    assert_eq!(summary.emitted, 1, "{cps:#?}");
    expect_intact(&verify_with(&[&path], &with_key(signer.public_key())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_signed_by_another_key_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 5, 10, None, None).await;
    let other = Signer::generate().public_key();
    let p = verify_with(&[&s.log], &with_key(other)).problem.unwrap();
    assert_eq!(p.kind, ProblemKind::UnknownKey, "{p}");
    assert!(p.message.contains(s.signer.key_id()), "{p}");
}

#[tokio::test]
async fn keygen_writes_safe_files_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let files = keys::generate_key_pair(&out).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.private_key), 0o600);
    assert_eq!(mode(&files.public_key), 0o644);
    assert_eq!(mode(&out), 0o700);
    let private = std::fs::read_to_string(&files.private_key).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    let public = std::fs::read_to_string(&files.public_key).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    let signer = Signer::load(&files.private_key).unwrap();
    assert_eq!(signer.key_id(), files.key_id);
    assert_eq!(
        PublicKey::load(&files.public_key).unwrap().key_id(),
        files.key_id
    );

    let before = std::fs::read(&files.private_key).unwrap();
    let err = keys::generate_key_pair(&out).unwrap_err();
    assert!(matches!(err, keys::KeyError::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(&files.private_key).unwrap(), before);

    // A private key others can read is refused.
    std::fs::set_permissions(&files.private_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Signer::load(&files.private_key).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    // A public key is not a private key.
    let err = PublicKey::load(&files.private_key).unwrap_err();
    assert!(matches!(err, keys::KeyError::BadPublicKey { .. }), "{err}");
}

#[test]
fn the_integrity_section_parses_from_toml_and_rejects_unknown_keys() {
    use agent_audit_jsonl::integrity::IntegrityConfig;
    let c: IntegrityConfig = toml::from_str(
        "key_env = \"AUDIT_CHAIN_KEY\"\nsigning_key_file = \"keys/audit-signing-key.pem\"\ncheckpoint_every = 500\n",
    )
    .unwrap();
    assert_eq!(c.key_env.as_deref(), Some("AUDIT_CHAIN_KEY"));
    assert_eq!(c.checkpoint_every, 500);
    assert_eq!(c.checkpoint_interval_secs, 60);
    let err = toml::from_str::<IntegrityConfig>("checkpoint_evry = 5\n").unwrap_err();
    assert!(err.to_string().contains("checkpoint_evry"), "{err}");
    let zero: IntegrityConfig = toml::from_str("checkpoint_every = 0\n").unwrap();
    assert!(zero.validate().is_err());
    let mut rel = c.clone();
    rel.resolve_paths(std::path::Path::new("/etc/agent-audit"));
    assert_eq!(
        rel.signing_key_file.as_deref(),
        Some(std::path::Path::new(
            "/etc/agent-audit/keys/audit-signing-key.pem"
        ))
    );
    let unset = IntegrityConfig {
        key_env: Some("AGENT_AUDIT_TEST_SURELY_UNSET_KEY".into()),
        ..IntegrityConfig::default()
    };
    let err = unset.chain_key().unwrap_err();
    assert!(
        err.to_string()
            .contains("AGENT_AUDIT_TEST_SURELY_UNSET_KEY is not set"),
        "{err}"
    );
}

#[test]
fn a_checkpointer_outside_a_runtime_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = JsonlSink::new(JsonlOptions::new(dir.path().join("a.jsonl"))).unwrap();
    let head = sink.head_handle();
    let d = rt.block_on(async {
        Dispatcher::builder()
            .sink(SinkOptions::new("jsonl"), sink)
            .start()
            .await
            .unwrap()
    });
    // Called from a plain thread, not from inside the runtime.
    let err = Checkpointer::start(
        Auditor::new(d.clone()),
        head,
        Signer::generate(),
        CheckpointOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
    rt.block_on(d.shutdown(SHUTDOWN));
}

/// Emits `n` records as fast as the dispatcher takes them (so the sink
/// writes batches of thousands), with a checkpoint every `every`, and
/// returns the log's path and its checkpoints.
async fn flat_out(
    dir: &std::path::Path,
    n: u64,
    every: u64,
) -> (
    std::path::PathBuf,
    Signer,
    Vec<(u64, u64, CheckpointPayload)>,
) {
    let path = dir.join("audit-log.jsonl");
    let sink = JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    let head = sink.head_handle();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(65_536), sink)
        .start()
        .await
        .unwrap();
    let signer = Signer::generate();
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
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    cp.finish().await.unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let cps = checkpoints_in(&path);
    (path, signer, cps)
}

/// The application records (not checkpoints) with a seq in `(from, upto]`.
fn records_between(path: &std::path::Path, from: u64, upto: u64) -> u64 {
    app_seqs(path)
        .iter()
        .filter(|&&seq| seq > from && seq <= upto)
        .count() as u64
}

/// The seqs of the application records (not checkpoints) of a log.
fn app_seqs(path: &std::path::Path) -> Vec<u64> {
    Reader::open(path)
        .unwrap()
        .map(|l| l.unwrap().record)
        .filter(|r| r.event_type != EventType::Checkpoint)
        .map(|r| r.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_come_every_n_records_however_large_the_sinks_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (path, signer, cps) = flat_out(dir.path(), 20_500, 1000).await;
    let seqs = app_seqs(&path);
    let (last, counted) = cps.split_last().unwrap();
    assert_eq!(last.2.reason, CheckpointReason::Shutdown, "{:#?}", last.2);
    // Each checkpoint covers exactly the next 1000 application records
    // (batches of up to 4096 records do not stretch that), and the last
    // one the remaining 500.
    assert_eq!(counted.len(), 20, "{}", counted.len());
    let mut from = 0;
    for (i, (_, seq, cp)) in cps.iter().enumerate() {
        assert_eq!(cp.from_seq, from, "checkpoint {i}: coverage chains");
        let apps = seqs
            .iter()
            .filter(|&&q| q > cp.from_seq && q <= cp.upto_seq)
            .count() as u64;
        if cp.reason == CheckpointReason::Count {
            assert_eq!(
                apps, 1000,
                "checkpoint {i} covers {apps} application records: {cp:#?}"
            );
        } else {
            assert!(apps <= 1000, "checkpoint {i}: {apps}");
        }
        // `records` counts every line in the range, earlier checkpoints too.
        let lines = apps
            + cps
                .iter()
                .filter(|c| c.1 > cp.from_seq && c.1 <= cp.upto_seq)
                .count() as u64;
        assert_eq!(cp.records, lines, "checkpoint {i}");
        assert!(cp.upto_seq < *seq);
        from = cp.upto_seq;
    }
    let report = verify_with(&[&path], &with_key(signer.public_key()));
    expect_intact(&report);
    assert_eq!(report.checkpoints.heads_matched, cps.len() as u64);
    assert_eq!(report.checkpoints.uncovered_records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_every_record_covers_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, signer, cps) = flat_out(dir.path(), 300, 1).await;
    let counted: Vec<_> = cps
        .iter()
        .filter(|c| c.2.reason == CheckpointReason::Count)
        .collect();
    assert_eq!(counted.len(), 300, "{}", counted.len());
    for (_, _, cp) in &counted {
        assert_eq!(
            records_between(&path, cp.from_seq, cp.upto_seq),
            1,
            "{cp:#?}"
        );
    }
    expect_intact(&verify_with(&[&path], &with_key(signer.public_key())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_log_under_another_name_is_still_compared_with_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let cps = checkpoints_in(&s.log);
    let renamed = dir.path().join("renamed").join("quiet.jsonl");
    std::fs::create_dir_all(renamed.parent().unwrap()).unwrap();

    // Renamed untouched: every signed head matches, whatever the name.
    std::fs::copy(&s.log, &renamed).unwrap();
    let report = verify_with(&[&renamed], &with_key(s.signer.public_key()));
    expect_intact(&report);
    assert_eq!(
        report.checkpoints.heads_matched,
        cps.len() as u64,
        "{report}"
    );

    // Record 5 changed, the plain chain recomputed, the checkpoints left as
    // they are (their signatures hold), the file renamed.
    let mut l = lines(&s.log);
    l[4] = String::from_utf8(l[4].clone())
        .unwrap()
        .replacen("12345", "99999", 1)
        .into_bytes();
    rechain_plain(&mut l, 5);
    write_lines(&renamed, &l);
    std::fs::remove_file(&s.log).unwrap();
    let p = expect_problem(
        &verify_with(&[&renamed], &with_key(s.signer.public_key())),
        ProblemKind::Rewritten,
        cps[0].0,
    );
    assert!(p.message.contains("rewritten"), "{p}");

    // Every line rewritten, the first included, so the log seems to start
    // another chain: the checkpoints inside it still speak for it.
    let mut l = lines(&renamed);
    for line in l
        .iter_mut()
        .filter(|l| !l.windows(12).any(|w| w == b"\"checkpoint\""))
    {
        *line = String::from_utf8(line.clone())
            .unwrap()
            .replacen("12345", "54321", 1)
            .into_bytes();
    }
    rechain_plain(&mut l, 1);
    write_lines(&renamed, &l);
    let report = verify_with(&[&renamed], &with_key(s.signer.public_key()));
    let p = expect_problem(&report, ProblemKind::Rewritten, cps[0].0);
    assert!(p.message.contains("began"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_host_checkpoints_are_found_for_a_renamed_log_by_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 25, 10, None, None).await;
    let renamed = dir.path().join("quiet.jsonl");
    let mut l = lines(&s.log);
    // Cut after the second checkpoint's line, and rename.
    let cps = checkpoints_in(&s.log);
    l.truncate(cps[1].0 as usize - 3);
    write_lines(&renamed, &l);
    let report = verify_with(&[&renamed], &with_off_host(&s));
    let p = expect_problem(&report, ProblemKind::Truncated, l.len() as u64 + 1);
    assert!(p.message.contains("off-host checkpoint"), "{p}");
}

#[test]
fn a_checkpoint_signed_before_origins_were_signed_still_verifies() {
    let signer = Signer::generate();
    let mut cp = CheckpointPayload::sign_with_origin(
        &signer,
        "audit-log.jsonl",
        None,
        agent_audit_jsonl::checkpoint::ChainAlgorithm::Sha256,
        0,
        3,
        3,
        &"ab".repeat(32),
        CheckpointReason::Manual,
    );
    assert!(cp.origin.is_none());
    assert!(cp.verify(&signer.public_key()).is_ok());
    let v1 = String::from_utf8(cp.canonical_message()).unwrap();
    assert!(v1.starts_with("agent-audit-checkpoint-v1\n"), "{v1}");
    // Claiming an origin the signer did not sign breaks the signature.
    cp.origin = Some(agent_audit_jsonl::checkpoint::Origin {
        seq: 1,
        head: "cd".repeat(32),
    });
    assert!(cp.verify(&signer.public_key()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_checkpoint_names_the_logs_first_line_across_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = write_signed_log(dir.path(), 20, 5, Some(KEY), Some(2_000)).await;
    let s = write_signed_log(dir.path(), 20, 5, Some(KEY), Some(2_000)).await;
    let all = agent_audit_jsonl::files::list(&s.log).unwrap();
    assert!(all.len() > 3, "{all:?}");
    let first = lines(&all[0].path)[0].clone();
    let expected = agent_audit_jsonl::checkpoint::Origin {
        seq: 1,
        head: hex::encode(agent_audit_jsonl::chain::Chain::keyed(KEY).hash(&first)),
    };
    let mut n = 0;
    for f in &all {
        for (_, _, cp) in checkpoints_in(&f.path) {
            assert_eq!(cp.origin.as_ref(), Some(&expected), "{cp:#?}");
            n += 1;
        }
    }
    assert!(n >= 8, "{n}");
    let options = VerifyOptions {
        public_keys: vec![before.signer.public_key(), s.signer.public_key()],
        ..keyed()
    };
    let paths: Vec<&std::path::Path> = all.iter().map(|f| f.path.as_path()).collect();
    let report = verify_with(&paths, &options);
    expect_intact(&report);
    assert_eq!(report.checkpoints.heads_matched, n, "{report}");
}
