//! A whole valid-looking record appended at the end of a keyed log must
//! not steer the writer (resume its chain and seq numbering from it): on
//! opening a keyed log the sink checks that its last record links under
//! the key to the record before it, and refuses to start otherwise,
//! naming the file and line and changing nothing.
//!
//! (Attack review of issue 10, finding 5.)

mod integrity_support;

use std::path::Path;

use agent_audit_jsonl::{JsonlError, JsonlOptions, JsonlSink};
use integrity_support::*;

fn open_keyed(path: &Path) -> Result<agent_audit_core::SinkOpen, JsonlError> {
    JsonlSink::new(JsonlOptions::new(path).chain_key(KEY))?.open_file()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_appended_to_a_keyed_log_without_the_key_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path).chain_key(KEY), 5).await;
    let genuine = lines(&path);
    let n = genuine.len();

    // Three shapes of an appended whole record: a replay of the last line,
    // one with a plain SHA-256 link, one with a seq far ahead.
    let last = genuine[n - 1].clone();
    let plain = set_seq(&set_prev(&last, &sha256_hex(&last)), 1_000_000);
    let far = set_seq(&last, u64::MAX - 10);
    for planted in [last.clone(), plain, far] {
        let mut all = genuine.clone();
        all.push(planted);
        write_lines(&path, &all);
        let before = std::fs::read(&path).unwrap();
        let err = open_keyed(&path).unwrap_err();
        match &err {
            JsonlError::UnlinkedLastRecord { path: p, line, .. } => {
                assert_eq!(p, &path);
                assert_eq!(*line, n as u64 + 1);
            }
            other => panic!("expected UnlinkedLastRecord, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("audit-log.jsonl") && text.contains(&format!("line {}", n + 1)),
            "{text}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file is left alone"
        );
    }

    // The genuine log opens, and resumes after its own last record.
    write_lines(&path, &genuine);
    let opened = open_keyed(&path).unwrap();
    assert_eq!(opened.last_seq, Some(n as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_log_the_writer_restarted_over_damage_still_opens() {
    // A whole line that is not a record, left in place by a restart, sits
    // between two records: the link is to the record before it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path).chain_key(KEY), 3).await;
    let mut all = lines(&path);
    all.push(b"not a record".to_vec());
    write_lines(&path, &all);
    write_log(JsonlOptions::new(&path).chain_key(KEY), 2).await;
    assert!(open_keyed(&path).is_ok());
}
