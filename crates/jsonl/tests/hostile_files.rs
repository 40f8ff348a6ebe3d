//! Files a hostile neighbour leaves beside or inside a log: the writer's
//! start and the readers must refuse them or get through them promptly,
//! never hang. Each open runs under a watchdog, so a hang fails the test
//! instead of hanging CI.
//!
//! (Attack review of issue 10: a FIFO behind a symlink under a rotated
//! file's name hung `run` in `open(O_RDONLY)`.)

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use agent_audit_jsonl::{JsonlError, JsonlOptions, JsonlSink, files};

/// Runs `f` on its own thread and fails the test if it has not returned
/// within `secs`: a hang guard, not a speed claim.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not return within {secs} s (hung)"))
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.unwrap().success(), "mkfifo");
}

fn open_sink(path: &Path) -> Result<agent_audit_core::SinkOpen, JsonlError> {
    let path = path.to_path_buf();
    within(20, "the sink's open", move || {
        JsonlSink::new(JsonlOptions::new(&path))?.open_file()
    })
}

#[test]
fn a_fifo_behind_a_symlink_under_a_rotated_name_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let pipe = dir.path().join("pipe");
    mkfifo(&pipe);
    let rotated = dir.path().join("audit-log.000000000001-000000000005.jsonl");
    std::os::unix::fs::symlink(&pipe, &rotated).unwrap();
    let err = open_sink(&log).unwrap_err();
    match &err {
        JsonlError::NotRegular { path, kind } => {
            assert_eq!(path, &rotated);
            assert_eq!(*kind, "a symbolic link");
        }
        other => panic!("expected NotRegular naming the rotated file, got {other}"),
    }
    assert!(
        err.to_string().contains("000000000001-000000000005"),
        "{err}"
    );
    // Readers list the log the same way and refuse the same entry.
    let listed = files::list(&log).unwrap_err();
    assert!(matches!(listed, JsonlError::NotRegular { .. }), "{listed}");
}

#[test]
fn a_symlink_to_a_regular_file_under_a_rotated_name_is_refused_too() {
    // The writer only renames its own regular file to a rotated name; a
    // link there would put any file (or, later, a FIFO) into the chain.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let elsewhere = dir.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, "").unwrap();
    let rotated = dir.path().join("audit-log.000000000001-000000000005.jsonl");
    std::os::unix::fs::symlink(&elsewhere, &rotated).unwrap();
    let err = open_sink(&log).unwrap_err();
    assert!(
        matches!(&err, JsonlError::NotRegular { path, .. } if path == &rotated),
        "{err}"
    );
}

#[test]
fn a_fifo_under_a_rotated_name_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let rotated = dir.path().join("audit-log.000000000001-000000000005.jsonl");
    mkfifo(&rotated);
    let err = open_sink(&log).unwrap_err();
    assert!(
        matches!(
            &err,
            JsonlError::NotRegular {
                kind: "a FIFO (named pipe)",
                ..
            }
        ),
        "{err}"
    );
}

/// A sparse file of `gib` GiB of NULs (no disk used), ending in `tail`.
fn sparse(path: &Path, gib: u64, tail: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(gib << 30).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(tail).unwrap();
}

fn record_line(seq: u64, prev: &str) -> String {
    format!(
        r#"{{"v":1,"seq":{seq},"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user_proxy","payload":{{}},"prev":"{prev}"}}"#
    )
}

#[test]
fn the_writer_refuses_a_sparse_active_file_promptly_naming_it_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    sparse(&log, 4, b"");
    let err = open_sink(&log).unwrap_err();
    assert!(
        matches!(&err, JsonlError::UnreadableTail { path, .. } if path == &log),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("audit-log.jsonl") && text.contains("no newline"),
        "{text}"
    );
    // Nothing was cut: an operator must look at it.
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 4 << 30);
}

#[test]
fn the_writer_refuses_a_sparse_rotated_file_it_would_resume_from() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let rotated = dir.path().join("audit-log.000000000001-000000000005.jsonl");
    let mut tail = record_line(1, &"0".repeat(64)).into_bytes();
    tail.push(b'\n');
    // A record, then gigabytes of NULs with no newline.
    std::fs::write(&rotated, &tail).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&rotated)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let err = open_sink(&log).unwrap_err();
    assert!(
        matches!(&err, JsonlError::UnreadableTail { path, .. } if path == &rotated),
        "{err}"
    );
}

#[test]
fn the_reader_gets_through_gigabytes_of_nuls_reporting_them_once() {
    use agent_audit_jsonl::{ReadError, Reader};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let mut tail = b"\n".to_vec();
    tail.extend_from_slice(record_line(1, &"0".repeat(64)).as_bytes());
    tail.push(b'\n');
    sparse(&log, 3, &tail);
    let lines: Vec<_> = within(120, "reading 3 GiB of NULs", move || {
        Reader::open(&log).unwrap().collect::<Vec<_>>()
    });
    assert_eq!(lines.len(), 2, "one bad region, then the record");
    assert!(
        matches!(&lines[0], Err(ReadError::TooLong { line: 1, .. })),
        "{:?}",
        lines[0]
    );
    assert_eq!(lines[1].as_ref().unwrap().record.seq, 1);
}
