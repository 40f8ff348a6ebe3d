//! A batch the worker is done with is freed by the next emitter, not by
//! the worker: records must still be freed (none kept past the next
//! emit), and at most one written batch waits to be freed meanwhile.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, EventType, Record, Sink, SinkError, SinkOptions,
};
use serde_json::json;

/// Keeps a weak reference to every record it writes.
struct Watching(Arc<Mutex<Vec<Weak<Record>>>>);

impl Sink for Watching {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        self.0
            .lock()
            .unwrap()
            .extend(batch.records.iter().map(Arc::downgrade));
        Ok(AckLevel::Written)
    }
}

fn alive(seen: &Mutex<Vec<Weak<Record>>>) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|w| w.strong_count() > 0)
        .count()
}

#[tokio::test]
async fn written_records_are_freed_by_the_next_emit_and_at_most_one_batch_waits() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("watching"), Watching(seen.clone()))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(None);
    for round in 0..20u64 {
        let mut last = 0;
        for i in 0..50 {
            last = a
                .emit(EventType::ToolCall, &json!({"round": round, "i": i}))
                .await
                .unwrap()
                .seq;
        }
        d.wait(last, AckLevel::Written).await.unwrap();
        // Every record of this round is written; the worker may still be
        // handing its last batch back, but earlier rounds' records were
        // handed back before their receipts and freed by this round's
        // emits, but for at most one batch (50 records) per hand-back
        // not yet collected.
        let written = seen.lock().unwrap().len();
        assert_eq!(written as u64, (round + 1) * 50);
        let held = alive(&seen);
        assert!(
            held <= 100,
            "round {round}: {held} written records still alive"
        );
    }
    // One more emit frees what was handed back.
    let r = a
        .emit_wait(EventType::ToolCall, &json!({}), AckLevel::Written)
        .await
        .unwrap();
    a.emit(EventType::ToolCall, &json!({})).await.unwrap();
    assert!(r.seq > 1000);
    d.shutdown(Duration::from_secs(5)).await;
    drop(a);
    drop(d);
    assert_eq!(alive(&seen), 0, "a record outlived the dispatcher");
}
