//! `FailureKind::Transient`: the dispatcher writes a batch the sink took
//! none of again, a few times with backoff and never past the shutdown
//! deadline, before the failure counts; other failures count at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, EmitError, EventType, FailureKind, MemorySink, Sink,
    SinkError, SinkOptions, StoredRecord,
};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error("collector refused the connection")]
struct Refused;

/// Fails the first `fail_first` writes with `kind` (holding `held` records
/// of the batch), then takes everything; remembers when each write began.
struct Flaky {
    kind: FailureKind,
    fail_first: u32,
    held: u64,
    write_takes: Duration,
    writes: Arc<AtomicU32>,
    began: Arc<Mutex<Vec<Instant>>>,
}

impl Flaky {
    fn new(kind: FailureKind, fail_first: u32) -> Flaky {
        Flaky {
            kind,
            fail_first,
            held: 0,
            write_takes: Duration::ZERO,
            writes: Arc::default(),
            began: Arc::default(),
        }
    }
}

impl Sink for Flaky {
    fn max_level(&self) -> AckLevel {
        AckLevel::Exported
    }
    fn write(&mut self, _batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        self.began.lock().unwrap().push(Instant::now());
        std::thread::sleep(self.write_takes);
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Err(SinkError::new(self.kind, Refused).holding(self.held, AckLevel::Exported));
        }
        Ok(AckLevel::Exported)
    }
}

async fn start(sink: Flaky, required: bool) -> (Dispatcher, MemorySink) {
    let other = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("flaky").required(required).max_batch(1),
            sink,
        )
        .sink(SinkOptions::new("other").required(false), other.clone())
        .start()
        .await
        .unwrap();
    (d, other)
}

fn gap_reasons(memory: &MemorySink) -> Vec<String> {
    memory
        .records()
        .iter()
        .map(|r| r.to_stored(""))
        .filter(|r: &StoredRecord| r.event_type == EventType::AuditGap)
        .map(|r| r.payload["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_with_backoff_before_a_required_sink_counts_as_failed() {
    let sink = Flaky::new(FailureKind::Transient, 2);
    let (writes, began) = (sink.writes.clone(), sink.began.clone());
    let (d, other) = start(sink, true).await;
    let a = Auditor::new(d.clone());
    let receipt = a
        .emit_wait(EventType::ToolCall, &json!({"i": 1}), AckLevel::Exported)
        .await
        .expect("two transient failures are retried, and the third write succeeds");
    assert_eq!(receipt.level, AckLevel::Durable, "the memory sink's level");
    assert_eq!(writes.load(Ordering::SeqCst), 3);
    let began = began.lock().unwrap().clone();
    assert!(
        began[1] - began[0] >= Duration::from_millis(50),
        "{began:?}"
    );
    assert!(
        began[2] - began[1] >= Duration::from_millis(100),
        "{began:?}"
    );
    // The sink is not broken: the next emit goes through.
    a.emit(EventType::ToolCall, &json!({"i": 2})).await.unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.sinks[0].health.failed, 0, "{report}");
    assert!(gap_reasons(&other).is_empty(), "no gap: nothing was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_that_lasts_fails_a_required_sink_after_three_retries() {
    let sink = Flaky::new(FailureKind::Transient, u32::MAX);
    let writes = sink.writes.clone();
    let (d, other) = start(sink, true).await;
    let a = Auditor::new(d.clone());
    let t0 = Instant::now();
    let e = a
        .emit_wait(EventType::ToolCall, &json!({"i": 1}), AckLevel::Exported)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EmitError::SinkFailed { sink, .. } if sink == "flaky"),
        "{e}"
    );
    assert_eq!(writes.load(Ordering::SeqCst), 4, "one write, three retries");
    // 50 + 100 + 200 ms of backoff, and not much more.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(matches!(
        a.emit(EventType::ToolCall, &json!({"i": 2})).await,
        Err(EmitError::SinkFailed { .. })
    ));
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.sinks[0].health.failed, 1, "{report}");
    assert_eq!(gap_reasons(&other), ["sink_failed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_or_one_that_holds_records_of_its_batch_is_not_retried() {
    let permanent = Flaky::new(FailureKind::Permanent, u32::MAX);
    let mut partial = Flaky::new(FailureKind::Transient, u32::MAX);
    partial.held = 1;
    for (sink, what) in [(permanent, "permanent"), (partial, "held")] {
        let writes = sink.writes.clone();
        let (d, _other) = start(sink, false).await;
        let a = Auditor::new(d.clone());
        let receipt = a
            .emit_wait(EventType::ToolCall, &json!({"i": 1}), AckLevel::Written)
            .await
            .unwrap();
        d.shutdown(Duration::from_secs(5)).await;
        assert_eq!(writes.load(Ordering::SeqCst), 1, "{what}: written once");
        // The permanent failure lost the record; the other says it holds it.
        assert_eq!(
            receipt.failed.len(),
            usize::from(what == "permanent"),
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_retries_stop_at_the_shutdown_deadline() {
    let mut sink = Flaky::new(FailureKind::Transient, u32::MAX);
    sink.write_takes = Duration::from_millis(30);
    let writes = sink.writes.clone();
    let (d, _other) = start(sink, false).await;
    let a = Auditor::new(d.clone());
    a.emit(EventType::ToolCall, &json!({"i": 1})).await.unwrap();
    let t0 = Instant::now();
    let report = d.shutdown(Duration::from_millis(150)).await;
    let s = &report.sinks[0];
    assert!(s.finished, "the retries outlived the shutdown: {report}");
    assert_eq!((s.health.failed, s.undelivered), (1, 0), "{report}");
    assert!(
        writes.load(Ordering::SeqCst) < 4,
        "the last retries would pass the deadline"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
}
