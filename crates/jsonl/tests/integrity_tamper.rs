//! Tampering with real logs written by the real sink: each change is
//! found, at the right line, with the right kind.

mod integrity_support;

use agent_audit_jsonl::JsonlOptions;
use agent_audit_jsonl::verify::{self, ProblemKind, VerifyOptions};
use agent_audit_jsonl::{ChainKey, files};
use integrity_support::*;

async fn ten(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path), 10).await;
    assert_eq!(lines(&path).len(), 10);
    path
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let report = plain(&[&path]);
    expect_intact(&report);
    assert_eq!(report.records, 10);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(10)));
    assert!(report.starts_at_genesis);
    // The head is what the next line's prev will be: the hash of line 10.
    assert_eq!(
        report.head.as_deref(),
        Some(sha256_hex(&lines(&path)[9]).as_str())
    );
    // The directory form finds the same single file.
    let by_dir = plain(&[dir.path()]);
    expect_intact(&by_dir);
    assert_eq!(by_dir.files.len(), 1);
}

#[tokio::test]
async fn one_changed_byte_is_an_edit_of_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    let text = String::from_utf8(l[3].clone()).unwrap();
    l[3] = text.replacen("\"12345\"", "\"12346\"", 1).into_bytes();
    write_lines(&path, &l);
    let p = expect_problem(&plain(&[&path]), ProblemKind::Edited, 4);
    assert_eq!(p.seq, Some(4));
    assert_eq!(p.file, path);
}

#[tokio::test]
async fn a_changed_seq_is_an_edit_not_a_reorder() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    for new_seq in [2, 9] {
        let mut l = lines(&path);
        let orig = l.clone();
        l[4] = set_seq(&l[4], new_seq);
        write_lines(&path, &l);
        expect_problem(&plain(&[&path]), ProblemKind::Edited, 5);
        write_lines(&path, &orig);
    }
}

#[tokio::test]
async fn a_deleted_line_is_reported_where_it_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    l.remove(4);
    write_lines(&path, &l);
    let p = expect_problem(&plain(&[&path]), ProblemKind::Deleted, 5);
    assert_eq!(p.seq, Some(6));
    assert!(p.message.contains("seq 5"), "{p}");
}

#[tokio::test]
async fn an_inserted_line_is_found_with_or_without_a_fitting_prev() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let orig = lines(&path);
    // A copy of line 3 with another payload, put after line 6.
    let fake = String::from_utf8(orig[2].clone())
        .unwrap()
        .replacen("get_account_balance", "transfer_funds", 1)
        .into_bytes();

    // Naive: its prev is whatever line 3 had.
    let mut l = orig.clone();
    l.insert(6, fake.clone());
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::Inserted, 7);

    // Careful: its prev is the hash of line 6, so only line 8 breaks.
    let mut l = orig.clone();
    l.insert(6, set_prev(&fake, &sha256_hex(&orig[5])));
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::Inserted, 7);

    // Thorough: the whole plain chain recomputed after it; the repeated seq
    // still gives it away.
    let mut l = orig.clone();
    l.insert(6, set_seq(&fake, 6));
    rechain_plain(&mut l, 6);
    write_lines(&path, &l);
    let p = expect_problem(&plain(&[&path]), ProblemKind::Inserted, 7);
    assert!(p.message.contains("twice"), "{p}");
}

#[tokio::test]
async fn swapped_lines_are_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    l.swap(4, 5);
    write_lines(&path, &l);
    let p = expect_problem(&plain(&[&path]), ProblemKind::Reordered, 5);
    assert_eq!(p.seq, Some(6));

    // With the chain recomputed, the seq going back still shows it.
    let mut l = lines(&path);
    rechain_plain(&mut l, 4);
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::Reordered, 6);
}

#[tokio::test]
async fn a_tail_cut_mid_line_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 40).unwrap();
    let p = expect_problem(&plain(&[&path]), ProblemKind::TornTail, 10);
    assert!(
        p.message.contains("seq 10"),
        "the seq the torn line was written for: {p}"
    );
}

#[tokio::test]
async fn a_line_that_is_not_json_is_bad_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    l[6][0] = b'x';
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::BadJson, 7);
}

#[tokio::test]
async fn a_keyed_log_passes_with_its_key_and_fails_plainly_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path).chain_key(KEY), 10).await;
    let report = verify_with(&[&path], &keyed());
    expect_intact(&report);
    assert_eq!(report.chain.as_str(), "hmac-sha256");

    let p = expect_problem(&plain(&[&path]), ProblemKind::KeyMismatch, 2);
    assert!(p.hint.unwrap().contains("--key-env"));

    let wrong = VerifyOptions {
        key: Some(ChainKey::new(b"another key of thirty-two bytes!")),
        ..VerifyOptions::default()
    };
    expect_problem(&verify_with(&[&path], &wrong), ProblemKind::KeyMismatch, 2);
}

#[tokio::test]
async fn a_plain_log_fails_keyed_verification() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let p = expect_problem(
        &verify_with(&[&path], &keyed()),
        ProblemKind::KeyMismatch,
        2,
    );
    assert!(p.message.contains("plain SHA-256"), "{p}");
}

#[tokio::test]
async fn a_forged_line_with_a_plain_chain_is_caught_by_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path).chain_key(KEY), 10).await;
    let mut l = lines(&path);
    let forged = set_seq(&l[9], 11);
    let forged =
        String::from_utf8(forged)
            .unwrap()
            .replacen("get_account_balance", "approve_refund", 1);
    let forged = set_prev(forged.as_bytes(), &sha256_hex(&l[9]));
    l.push(forged);
    write_lines(&path, &l);
    let p = expect_problem(&verify_with(&[&path], &keyed()), ProblemKind::Forged, 11);
    assert!(p.message.contains("without the key"), "{p}");
}

#[tokio::test]
async fn rotated_files_verify_as_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(
        JsonlOptions::new(&path).rotate_bytes(2000).chain_key(KEY),
        40,
    )
    .await;
    let list: Vec<_> = files::list(&path)
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(list.len() >= 4, "rotation happened: {list:?}");

    let report = verify_with(&[dir.path()], &keyed());
    expect_intact(&report);
    assert_eq!(report.records, 40);
    assert_eq!(report.files.len(), list.len());
    for pair in report.files.windows(2) {
        assert_eq!(pair[0].last_seq.unwrap() + 1, pair[1].first_seq.unwrap());
    }

    // The same files listed in order.
    let refs: Vec<&std::path::Path> = list.iter().map(|p| p.as_path()).collect();
    expect_intact(&verify_with(&refs, &keyed()));

    // A middle file missing.
    let mut gap = refs.clone();
    gap.remove(1);
    let p = expect_problem(&verify_with(&gap, &keyed()), ProblemKind::FileChainBreak, 1);
    assert_eq!(p.file, list[2]);

    // Files out of order.
    let mut swapped = refs.clone();
    swapped.swap(1, 2);
    let p = verify_with(&swapped, &keyed()).problem.unwrap();
    assert_eq!(
        (p.kind, p.file.clone()),
        (ProblemKind::Reordered, list[2].clone()),
        "{p}"
    );

    // Only the active file, without the rotated ones: its start is missing,
    // and the report says where the rest is.
    let p = expect_problem(&verify_with(&[&path], &keyed()), ProblemKind::Truncated, 1);
    assert!(p.message.contains("give the directory"), "{p}");
    // ... unless older files were removed on purpose.
    let partial = VerifyOptions {
        partial: true,
        ..keyed()
    };
    expect_intact(&verify_with(&[&path], &partial));
}

#[tokio::test]
async fn a_torn_write_the_writer_recovered_from_is_cut_and_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let whole = std::fs::read(&path).unwrap();
    // A crash in the middle of writing seq 11.
    let torn = br#"{"v":1,"seq":11,"ts":"2026-11"#;
    let mut data = whole.clone();
    data.extend_from_slice(torn);
    std::fs::write(&path, &data).unwrap();
    expect_problem(&plain(&[&path]), ProblemKind::TornTail, 11);

    // The writer restarts: it cuts the torn bytes off, records an
    // audit_gap naming their place, length and SHA-256, and continues the
    // chain from line 10.
    write_log(JsonlOptions::new(&path), 3).await;
    let after = std::fs::read(&path).unwrap();
    assert!(after.starts_with(&whole));
    let report = plain(&[&path]);
    expect_intact(&report);
    assert_eq!(report.records, 14);
    assert!(
        report.notices.iter().any(|n| n.line == 11
            && n.message.contains("cut a torn final line")
            && n.message.contains(&format!(
                "{} bytes at byte offset {}",
                torn.len(),
                whole.len()
            ))
            && n.message.contains(&sha256_hex(torn))),
        "{report}"
    );
}

#[tokio::test]
async fn a_line_after_the_torn_one_that_breaks_the_chain_is_bad_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    // Breaking a middle line's syntax (not a recovery: the next line still
    // chains from the original).
    l[4].truncate(30);
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::BadJson, 5);
}

#[tokio::test]
async fn unreadable_input_is_an_error_not_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let err = verify::verify(&[&missing], &VerifyOptions::default(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("nope.jsonl"), "{err}");
    let empty: [&std::path::Path; 0] = [];
    assert!(verify::verify(&empty, &VerifyOptions::default(), &mut |_| {}).is_err());
}

#[tokio::test]
async fn progress_reaches_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut last = (0, 0);
    verify::verify(&[&path], &VerifyOptions::default(), &mut |p| {
        last = (p.bytes_done, p.bytes_total)
    })
    .unwrap();
    assert_eq!(last.0, std::fs::metadata(&path).unwrap().len());
    assert_eq!(last.0, last.1);
}

#[tokio::test]
async fn the_json_report_names_kind_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    l.remove(2);
    write_lines(&path, &l);
    let report = plain(&[&path]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["intact"], false);
    assert_eq!(json["problem"]["kind"], "deleted");
    assert_eq!(json["problem"]["line"], 3);
    assert_eq!(json["problem"]["file"], path.to_str().unwrap());
}

#[tokio::test]
async fn json_that_is_not_a_schema_v1_record_is_bad_record_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let original = lines(&path);
    let text = |i: usize| String::from_utf8(original[i].clone()).unwrap();
    // (what the line becomes, the key the report must name)
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            text(3).replacen(r#"{"v":2,"#, r#"{"v":3,"#, 1).into_bytes(),
            "`v`",
        ),
        (
            text(3).replacen(r#""ts":"#, r#""time":"#, 1).into_bytes(),
            "ts",
        ),
        (
            text(3)
                .replacen(r#""seq":4,"#, r#""seq":"4","#, 1)
                .into_bytes(),
            "`seq`",
        ),
        (
            text(3)
                .replacen(r#""payload":{"#, r#""payload":[{"#, 1)
                .replacen(r#"},"prev""#, r#"}],"prev""#, 1)
                .into_bytes(),
            "`payload`",
        ),
        (
            text(3)
                .replacen(r#""ts":"2"#, r#""ts":"yesterday 2"#, 1)
                .into_bytes(),
            "`ts`",
        ),
    ];
    for (line, key) in cases {
        let mut l = original.clone();
        l[3] = line;
        write_lines(&path, &l);
        let p = expect_problem(&plain(&[&path]), ProblemKind::BadRecord, 4);
        assert!(p.message.contains(key), "{key}: {p}");
        assert_eq!(p.file, path);
    }
}

#[tokio::test]
async fn an_inserted_json_line_the_chain_skips_over_is_not_taken_for_a_torn_write() {
    // Before schema checks in verify, such a line passed as "a torn write
    // the writer recovered from": a notice, and the log intact. A line-by-line
    // reader (the tutorial's json.loads) would take it for a real event.
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    l.insert(
        5,
        br#"{"event_type":"tool_call","payload":{"tool":"transfer_funds","arguments":{"amount":1000000}}}"#.to_vec(),
    );
    write_lines(&path, &l);
    let p = expect_problem(&plain(&[&path]), ProblemKind::BadRecord, 6);
    assert!(p.message.contains("missing field"), "{p}");
    let json = serde_json::to_value(plain(&[&path])).unwrap();
    assert_eq!(json["problem"]["kind"], "bad_record");

    // The same line unterminated at the end is not a torn tail either.
    let mut l = lines(&path);
    let forged = l.remove(5);
    write_lines(&path, &l);
    expect_intact(&plain(&[&path]));
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&forged);
    std::fs::write(&path, &data).unwrap();
    expect_problem(&plain(&[&path]), ProblemKind::BadRecord, 11);
}

#[tokio::test]
async fn the_reader_names_file_line_and_key_and_reads_on() {
    use agent_audit_jsonl::{ReadError, Reader};
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    let t = String::from_utf8(l[1].clone()).unwrap();
    l[1] = t.replacen(r#"{"v":2,"#, r#"{"v":7,"#, 1).into_bytes();
    let t = String::from_utf8(l[2].clone()).unwrap();
    l[2] = t
        .replacen(r#""span_id":""#, r#""span_id":"XYZ"#, 1)
        .into_bytes();
    let t = String::from_utf8(l[4].clone()).unwrap();
    l[4] = t
        .replacen(r#"{"v":2,"#, r#"{"v":2,"extra":0,"#, 1)
        .into_bytes();
    l[6] = b"[1,2,3]".to_vec();
    write_lines(&path, &l);
    let got: Vec<_> = Reader::open(&path).unwrap().collect();
    assert_eq!(got.len(), 10);
    let name = path.display().to_string();
    for (i, key) in [(1, "v"), (2, "span_id"), (4, "extra")] {
        match &got[i] {
            Err(e @ ReadError::NotSchemaV1 { line, key: k, .. }) => {
                assert_eq!(*line, i as u64 + 1);
                assert_eq!(k.as_deref(), Some(key), "{e}");
                let msg = e.to_string();
                assert!(
                    msg.starts_with(&format!("{name}:{}: ", i + 1))
                        && msg.contains(&format!("`{key}`")),
                    "{msg}"
                );
            }
            other => panic!("line {}: {other:?}", i + 1),
        }
    }
    assert!(
        matches!(&got[6], Err(ReadError::NotSchemaV1 { line: 7, .. })),
        "{:?}",
        got[6]
    );
    for i in [0, 3, 5, 7, 8, 9] {
        assert_eq!(got[i].as_ref().unwrap().number, i as u64 + 1);
    }
}

#[tokio::test]
async fn the_sink_does_not_resume_its_chain_from_a_line_of_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = ten(dir.path()).await;
    let mut l = lines(&path);
    let v3 = String::from_utf8(l[9].clone()).unwrap().replacen(
        r#"{"v":2,"seq":10,"#,
        r#"{"v":3,"seq":11,"#,
        1,
    );
    l.push(v3.into_bytes());
    write_lines(&path, &l);
    let mut sink = agent_audit_jsonl::JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    let open = sink.open_file().unwrap();
    assert_eq!(open.notices.len(), 1, "{:?}", open.notices);
    assert!(
        open.notices[0].contains("not a record"),
        "{}",
        open.notices[0]
    );
    // The chain resumes from line 10, the last record of a version this
    // writer knows.
    assert_eq!(sink.chain_head(), sha256_hex(&l[9]));
    assert_eq!(open.last_seq, Some(10));
}
