//! The seq lease: no seq is given to two records, even when a process stops
//! without shutting down while one sink is ahead of another.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::{
    Auditor, Dispatcher, EmitError, LeaseError, MemoryLease, MemorySink, SeqLease, SinkOptions,
    StartError,
};
use serde_json::json;

/// A lease that keeps every value stored and can be told to fail, like a
/// full disk under the lease file.
#[derive(Clone, Default)]
struct Recording {
    stored: Arc<Mutex<Vec<u64>>>,
    failing: Arc<Mutex<bool>>,
}

impl SeqLease for Recording {
    fn load(&self) -> Result<Option<u64>, LeaseError> {
        Ok(self.stored.lock().unwrap().last().copied())
    }
    fn store(&self, upto: u64) -> Result<(), LeaseError> {
        if *self.failing.lock().unwrap() {
            return Err(LeaseError::new("test-lease", "No space left on device"));
        }
        self.stored.lock().unwrap().push(upto);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_reserved_before_a_crash_are_skipped_named_and_never_reused() {
    let lease = MemoryLease::new();
    let (file, collector) = (MemorySink::new(), MemorySink::new());
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("file"), file.clone())
        .sink(SinkOptions::new("collector"), collector.clone())
        .seq_lease(Arc::new(lease.clone()))
        .lease_block(100)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    for i in 0..10 {
        a.emit("x", &json!({"i": i})).await.unwrap();
    }
    // The process dies: no shutdown, so the lease still reserves a block
    // ahead, as it would when the collector held records the file lost.
    while file.len() < 10 || collector.len() < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reserved = lease.load().unwrap().unwrap();
    assert!(
        reserved >= 10 + 50,
        "half a block stays reserved: {reserved}"
    );
    std::mem::forget(d);

    let d = Dispatcher::builder()
        .sink(SinkOptions::new("file"), file.clone())
        .seq_lease(Arc::new(lease.clone()))
        .lease_block(100)
        .start()
        .await
        .unwrap();
    let r = Auditor::new(d.clone()).emit("x", &json!({})).await.unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");

    let recs = file.records();
    let gap = &recs[10];
    assert_eq!(gap.event_type.as_str(), "audit_gap");
    let p = gap.payload_value();
    assert_eq!(p["reason"], "seq_skipped");
    assert_eq!(
        (p["from_seq"].as_u64(), p["to_seq"].as_u64()),
        (Some(11), Some(reserved))
    );
    assert_eq!(gap.seq, reserved + 1, "numbering resumes after the lease");
    assert_eq!(r.seq, reserved + 2);
    // Nothing the collector got before the crash shares a seq with a
    // record numbered after it.
    let before: Vec<u64> = collector.records().iter().map(|r| r.seq).collect();
    assert!(recs[10..].iter().all(|r| !before.contains(&r.seq)));
    assert_eq!(lease.load().unwrap(), Some(r.seq), "shutdown releases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_leaves_no_gap() {
    let lease = MemoryLease::new();
    let file = MemorySink::new();
    for round in 0..3u64 {
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("file"), file.clone())
            .seq_lease(Arc::new(lease.clone()))
            .start()
            .await
            .unwrap();
        for _ in 0..5 {
            Auditor::new(d.clone()).emit("x", &json!({})).await.unwrap();
        }
        let report = d.shutdown(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(lease.load().unwrap(), Some(5 * (round + 1)));
    }
    let seqs: Vec<u64> = file.records().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_stored_ahead_of_every_seq_once_per_half_block() {
    let lease = Recording::default();
    let file = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("file"), file.clone())
        .seq_lease(Arc::new(lease.clone()))
        .lease_block(8)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    for _ in 0..100 {
        let r = a.emit("x", &json!({})).await.unwrap();
        let held = *lease.stored.lock().unwrap().last().unwrap();
        assert!(
            held >= r.seq,
            "seq {} handed out beyond the lease {held}",
            r.seq
        );
    }
    d.shutdown(Duration::from_secs(5)).await;
    let stored = lease.stored.lock().unwrap().clone();
    // 100 seqs, a store whenever fewer than 4 are left: about 25, not 100.
    assert!((20..=30).contains(&stored.len()), "{stored:?}");
    assert_eq!(stored.last(), Some(&100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_stored_refuses_records_without_using_a_seq() {
    let lease = Recording::default();
    let file = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("file"), file.clone())
        .seq_lease(Arc::new(lease.clone()))
        .lease_block(4)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    a.emit("x", &json!({})).await.unwrap();
    *lease.failing.lock().unwrap() = true;
    let mut refused = 0;
    for _ in 0..10 {
        match a.emit("x", &json!({})).await {
            Ok(_) => {}
            Err(EmitError::Lease(e)) => {
                assert!(e.to_string().contains("test-lease"), "{e}");
                assert!(e.to_string().contains("No space left"), "{e}");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused >= 7, "only the seqs already reserved are used");
    *lease.failing.lock().unwrap() = false;
    a.emit("x", &json!({})).await.unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let seqs: Vec<u64> = file.records().iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no seq lost to a refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_read_stops_the_start_naming_it() {
    struct Unreadable;
    impl SeqLease for Unreadable {
        fn load(&self) -> Result<Option<u64>, LeaseError> {
            Err(LeaseError::new(
                "/var/log/audit-log.jsonl.seq",
                "line 1: not a number",
            ))
        }
        fn store(&self, _: u64) -> Result<(), LeaseError> {
            Ok(())
        }
    }
    let err = Dispatcher::builder()
        .sink(SinkOptions::new("file"), MemorySink::new())
        .seq_lease(Arc::new(Unreadable))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Lease { .. }));
    assert!(err.to_string().contains("audit-log.jsonl.seq"), "{err}");
}
