//! A task emitting flat out gives its thread back now and then: emits
//! count against tokio's cooperative budget, so a task waiting beside it on
//! the same thread (audit before act: a Durable receipt) is polled long
//! before the flood ends. On a current-thread runtime, where nothing can
//! steal the waiter; counted in records emitted, not timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, MemorySink, SinkOptions};
use serde_json::json;

const FLOOD: u64 = 100_000;

#[tokio::test(flavor = "current_thread")]
async fn a_waiter_beside_a_flat_out_emitter_is_polled_before_the_flood_ends() {
    // A queue the flood never fills: the flooding task never waits for room.
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("m").queue(FLOOD as usize * 2),
            MemorySink::new(),
        )
        .start()
        .await
        .unwrap();
    let emitted = Arc::new(AtomicU64::new(0));
    let flood = {
        let (a, emitted) = (Auditor::new(d.clone()), emitted.clone());
        tokio::spawn(async move {
            for i in 0..FLOOD {
                a.emit("flood", &json!({ "i": i })).await.unwrap();
                emitted.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let waiter = {
        let (a, emitted) = (Auditor::new(d.clone()), emitted.clone());
        tokio::spawn(async move {
            let r = a
                .emit_wait("tool_call", &json!({"tool": "t"}), AckLevel::Durable)
                .await
                .unwrap();
            assert_eq!(r.level, AckLevel::Durable);
            emitted.load(Ordering::Relaxed)
        })
    };
    let seen = waiter.await.unwrap();
    flood.await.unwrap();
    assert!(
        seen < FLOOD / 2,
        "the waiter got its Durable receipt only after {seen} of {FLOOD} flood records"
    );
    assert!(d.shutdown(Duration::from_secs(30)).await.is_clean());
}
