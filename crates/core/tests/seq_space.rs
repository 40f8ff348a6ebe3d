//! The end of the seq space is an error, never a wrap: a lease or a sink
//! at the top refuses the start; a dispatcher that reaches the top refuses
//! records with a typed error. And a trail needs at least one sink.

use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, EmitError, EventType, MAX_SEQ, MemoryLease, MemorySink,
    SeqLease, Sink, SinkError, SinkOpen, SinkOptions, StartError,
};
use serde_json::json;

/// A sink whose storage already ends at `last_seq` (a log whose last line
/// says so).
struct EndsAt(u64);

impl Sink for EndsAt {
    fn max_level(&self) -> AckLevel {
        AckLevel::Durable
    }
    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        Ok(SinkOpen {
            last_seq: Some(self.0),
            notices: Vec::new(),
        })
    }
    fn write(&mut self, _: &Batch<'_>) -> Result<AckLevel, SinkError> {
        Ok(AckLevel::Durable)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_at_the_top_of_the_seq_space_refuses_the_start_and_is_left_alone() {
    for top in [u64::MAX, MAX_SEQ] {
        let lease = MemoryLease::new();
        lease.store(top).unwrap();
        let sink = MemorySink::new();
        let err = Dispatcher::builder()
            .sink(SinkOptions::new("file"), sink.clone())
            .seq_lease(Arc::new(lease.clone()))
            .start()
            .await
            .expect_err("no seq is left to number records with");
        assert!(
            matches!(err, StartError::SeqExhausted { last_seq, .. } if last_seq == top),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("seq lease") && msg.contains("wrap"), "{msg}");
        assert_eq!(lease.load().unwrap(), Some(top), "the lease is not lowered");
        assert!(sink.is_empty(), "nothing was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_holding_the_top_seq_refuses_the_start() {
    for top in [u64::MAX, MAX_SEQ] {
        let err = Dispatcher::builder()
            .sink(SinkOptions::new("log"), EndsAt(top))
            .start()
            .await
            .expect_err("no seq is left");
        assert!(
            matches!(&err, StartError::SeqExhausted { last_seq, held_by } if *last_seq == top && held_by.contains("`log`")),
            "{err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbering_stops_at_the_last_seq_with_a_typed_error_and_never_wraps() {
    // Four seqs are left under the lease: the seq_skipped note takes one.
    let lease = MemoryLease::new();
    lease.store(MAX_SEQ - 4).unwrap();
    let sink = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("file"), sink.clone())
        .seq_lease(Arc::new(lease.clone()))
        .lease_block(8)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    let mut got = Vec::new();
    let mut refused = 0;
    for i in 0..10 {
        match a
            .emit_wait(EventType::ToolCall, &json!({"i": i}), AckLevel::Durable)
            .await
        {
            Ok(r) => got.push(r.seq),
            Err(EmitError::SeqExhausted { last_seq }) => {
                assert_eq!(last_seq, MAX_SEQ);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, vec![MAX_SEQ - 2, MAX_SEQ - 1, MAX_SEQ]);
    assert_eq!(refused, 7);
    assert_eq!(d.next_seq().await, u64::MAX, "nothing after the last seq");
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    let seqs: Vec<u64> = sink.records().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![MAX_SEQ - 3, MAX_SEQ - 2, MAX_SEQ - 1, MAX_SEQ]);
    assert_eq!(lease.load().unwrap(), Some(MAX_SEQ));
    // The next start finds no seq left and says so.
    let err = Dispatcher::builder()
        .sink(SinkOptions::new("file"), sink.clone())
        .seq_lease(Arc::new(lease.clone()))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::SeqExhausted { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_room_for_its_own_notices_is_refused_before_any_write() {
    // One seq left, but the skipped range needs a note and the first
    // record a seq of its own: refused up front, not half started.
    let lease = MemoryLease::new();
    lease.store(MAX_SEQ - 1).unwrap();
    let sink = MemorySink::new();
    let err = Dispatcher::builder()
        .sink(SinkOptions::new("file"), sink.clone())
        .seq_lease(Arc::new(lease.clone()))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::SeqExhausted { .. }), "{err}");
    assert!(sink.is_empty());
    assert_eq!(lease.load().unwrap(), Some(MAX_SEQ - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_without_a_sink_is_refused() {
    let err = Dispatcher::builder().start().await.unwrap_err();
    assert!(matches!(err, StartError::NoSinks), "{err:?}");
    assert!(err.to_string().contains("at least one sink"), "{err}");
}
