//! Following a log while the real dispatcher writes to it flat out and the
//! JSONL sink rotates every few records: the follower, on its own thread,
//! sees every record exactly once and in order, across every rotation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_audit::jsonl::{FsyncPolicy, JsonlOptions, JsonlSink, files};
use agent_audit::{Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_review::{FollowEvent, Follower, StartAt};
use serde_json::json;

const RECORDS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_every_record_once_while_the_sink_rotates_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let dispatcher = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(
                JsonlOptions::new(&path)
                    .fsync(FsyncPolicy::Never)
                    .rotate_bytes(16 * 1024),
            )
            .unwrap(),
        )
        .start()
        .await
        .unwrap();
    let audit = Auditor::new(dispatcher.clone())
        .for_request(Some("req-follow"))
        .with_agent("user_proxy");
    // The first record, so the active file exists before the follower opens it.
    audit
        .emit_wait(
            EventType::UserRequest,
            &json!({"content": "start"}),
            agent_audit::AckLevel::Written,
        )
        .await
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let follower = {
        let done = done.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            let mut f = Follower::open(&path, StartAt::Beginning).unwrap();
            // From here on the writer may rotate as fast as it likes.
            opened_tx.send(()).unwrap();
            let (mut seqs, mut rotations, mut bad) = (Vec::new(), 0usize, Vec::new());
            loop {
                // Read the flag before polling: the poll after the writer
                // finished sees everything.
                let last_round = done.load(Ordering::Acquire);
                for e in f.poll().unwrap() {
                    match e {
                        FollowEvent::Record(entry) => seqs.push(entry.record.seq),
                        FollowEvent::Rotated { .. } => rotations += 1,
                        FollowEvent::Bad(e) => bad.push(e.to_string()),
                        FollowEvent::Truncated { len } => panic!("truncated to {len}?"),
                    }
                }
                if last_round {
                    return (seqs, rotations, bad);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    opened_rx.recv().unwrap();
    for i in 1..RECORDS {
        audit
            .emit(
                EventType::ToolResult,
                &json!({"tool": "get_account_balance", "call_id": format!("call_{i}"),
                        "result": {"account_id": "12345", "balance": 1024.5, "currency": "EUR"},
                        "duration_ms": 0.05}),
            )
            .await
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_clean(), "{report}");
    done.store(true, Ordering::Release);
    let (seqs, rotations, bad) = follower.join().unwrap();

    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(seqs.last().copied(), Some(RECORDS), "up to the last record");
    if let Some(i) = seqs
        .iter()
        .enumerate()
        .position(|(i, s)| *s != i as u64 + 1)
    {
        panic!(
            "out of order at index {i}: {:?}",
            &seqs[i.saturating_sub(3)..(i + 5).min(seqs.len())]
        );
    }
    assert_eq!(seqs.len() as u64, RECORDS, "every record once");
    let rotated = files::list(&path).unwrap().len() - 1;
    assert!(rotated > 50, "the sink rotated {rotated} times");
    assert!(rotations >= 1, "the follower saw rotations");
}
