//! An upgrade: a log written by a schema v1 writer and continued by this
//! (v2) writer is one chain, its seqs continue, verify passes across the
//! boundary and the reader yields every line; a v3 record is refused
//! naming the key `v`.

mod common;

use agent_audit_core::{Auditor, EventType};
use agent_audit_jsonl::chain::Chain;
use agent_audit_jsonl::verify::{ProblemKind, VerifyOptions, verify};
use agent_audit_jsonl::{JsonlOptions, ReadError, Reader};
use common::{SHUTDOWN, assert_chain, records, start};
use serde_json::json;

/// What a v1 writer (agent-audit before issue 14) wrote: the v1 key set.
fn v1_line(seq: u64, prev: &str) -> String {
    format!(
        r#"{{"v":1,"seq":{seq},"ts":"2026-11-25T23:32:2{seq}.000000000Z","event_type":"tool_call","request_id":"r1","correlation_id":"r1","trace_id":"d9387a1adc2ae95227663fa3379b7460","span_id":"85e560ee9765b72c","parent_span_id":null,"agent":"user_proxy","payload":{{"tool":"get_account_balance","n":{seq}}},"prev":"{prev}"}}"#
    )
}

fn write_v1_log(path: &std::path::Path, n: u64) -> Chain {
    let mut chain = Chain::plain();
    let mut text = String::new();
    for seq in 1..=n {
        let line = v1_line(seq, chain.head());
        chain.next(line.as_bytes());
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    chain
}

fn verify_plain(path: &std::path::Path) -> agent_audit_jsonl::verify::VerifyReport {
    verify(&[path], &VerifyOptions::default(), &mut |_| {}).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_log_continued_by_a_v2_writer_is_one_chain_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_v1_log(&path, 3);
    assert!(verify_plain(&path).intact);

    let d = start(JsonlOptions::new(&path)).await;
    let a = Auditor::new(d.clone())
        .with_user("u-42")
        .with_session("s-7")
        .with_attribute("purpose", "support")
        .unwrap()
        .for_request(Some("r2"));
    for i in 0..3 {
        a.emit(EventType::ToolCall, &json!({"i": i})).await.unwrap();
    }
    d.shutdown(SHUTDOWN).await;

    let lines = records(&path);
    assert_chain(&lines);
    let versions: Vec<u32> = lines.iter().map(|l| l.record.v).collect();
    assert_eq!(versions, [1, 1, 1, 2, 2, 2]);
    for l in &lines[3..] {
        assert_eq!(l.record.user_id.as_deref(), Some("u-42"));
        assert_eq!(l.record.session_id.as_deref(), Some("s-7"));
        assert_eq!(l.record.attributes["purpose"], "support");
    }
    for l in &lines[..3] {
        assert_eq!(
            (l.record.user_id.as_deref(), l.record.attributes.len()),
            (None, 0)
        );
    }
    let report = verify_plain(&path);
    assert!(report.intact, "{report}");
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(6)));
}

#[test]
fn a_v3_record_is_refused_naming_the_key_v() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let mut chain = write_v1_log(&path, 2);
    let v3 = v1_line(3, chain.head()).replacen(r#"{"v":1,"#, r#"{"v":3,"#, 1);
    chain.next(v3.as_bytes());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&v3);
    text.push('\n');
    std::fs::write(&path, text).unwrap();

    let read: Vec<_> = Reader::open(&path).unwrap().collect();
    assert!(read[0].is_ok() && read[1].is_ok());
    match &read[2] {
        Err(ReadError::NotSchemaV1 {
            key, reason, line, ..
        }) => {
            assert_eq!((key.as_deref(), *line), (Some("v"), 3));
            assert!(reason.contains("`v`") && reason.contains('3'), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let report = verify_plain(&path);
    let p = report.problem.expect("a v3 line is a problem");
    assert_eq!((p.kind, p.line), (ProblemKind::BadRecord, 3));
    assert!(p.message.contains("`v`"), "{}", p.message);
}

#[test]
fn a_v1_record_carrying_a_v2_key_is_refused_naming_it() {
    let line = v1_line(1, agent_audit_jsonl::chain::GENESIS).replacen(
        r#""payload""#,
        r#""user_id":"u-1","payload""#,
        1,
    );
    let record = serde_json::from_str(&line).unwrap();
    let err = agent_audit_jsonl::check_schema(&record).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("user_id"));
    let nested = line.replacen(r#""v":1"#, r#""v":2"#, 1).replacen(
        r#""user_id":"u-1""#,
        r#""user_id":"u-1","attributes":{"deep":{"a":{"b":1}}}"#,
        1,
    );
    let record = serde_json::from_str(&nested).unwrap();
    let err = agent_audit_jsonl::check_schema(&record).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("attributes"));
    assert!(err.reason.contains("`deep`"), "{}", err.reason);
}
