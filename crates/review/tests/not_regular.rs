//! A FIFO (or a device) where a log is expected is refused at once, naming
//! it, by every way the review crate reads: `Source` (show, stats,
//! timeline, report) and `Follower` (tail, tail -f), at the start and after
//! a rotation. Before, each opened it blocking and waited for a writer
//! forever.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use agent_audit_review::{FollowEvent, Follower, ReviewError, Source, SourceOptions, StartAt};

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.unwrap().success(), "mkfifo");
}

/// Runs `f` on a thread; a hang fails the test instead of blocking it.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("hung on a FIFO (no answer within 10 s)")
}

fn assert_names_fifo(e: &ReviewError, path: &Path) {
    let text = e.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("a FIFO (named pipe)"),
        "{text}"
    );
}

const LINE: &str = r#"{"v":1,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user_proxy","payload":{},"prev":""}"#;

#[test]
fn source_refuses_a_fifo_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit-log.jsonl");
    mkfifo(&fifo);
    for rotated in [true, false] {
        let f = fifo.clone();
        let e = within(move || {
            Source::open(
                &[&f],
                SourceOptions {
                    include_rotated: rotated,
                },
            )
            .map(|_| ())
        })
        .unwrap_err();
        assert_names_fifo(&e, &fifo);
    }
    let dev = Source::open(&["/dev/zero"], SourceOptions::default()).unwrap_err();
    assert!(dev.to_string().contains("a character device"), "{dev}");
}

#[test]
fn follower_refuses_a_fifo_at_open_and_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit-log.jsonl");
    mkfifo(&fifo);
    let f = fifo.clone();
    let e = within(move || Follower::open(&f, StartAt::Last(10)).map(|_| ())).unwrap_err();
    assert_names_fifo(&e, &fifo);

    // A regular file followed, then replaced by a FIFO.
    let path = dir.path().join("other.jsonl");
    std::fs::write(&path, format!("{LINE}\n")).unwrap();
    let mut follower = Follower::open(&path, StartAt::Beginning).unwrap();
    let first = follower.poll().unwrap();
    assert!(matches!(first.as_slice(), [FollowEvent::Record(_)]));
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let p = path.clone();
    let e = within(move || follower.poll().map(|_| ())).unwrap_err();
    assert_names_fifo(&e, &p);
}
