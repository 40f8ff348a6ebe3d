//! The two optional hooks a network sink uses: `Sink::linger` (the
//! dispatcher waits a little for a batch to fill) and
//! `Sink::watch_shutdown` (a sink retrying inside `write` learns the
//! shutdown deadline).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, EventType, FailureKind, ShutdownSignal, Sink, SinkError,
    SinkOptions,
};
use serde_json::json;

/// Records the size of every batch it is given.
struct Lingering {
    linger: Duration,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl Sink for Lingering {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        self.batches.lock().unwrap().push(batch.records.len());
        Ok(AckLevel::Written)
    }
    fn linger(&self) -> Option<Duration> {
        Some(self.linger)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_fills_a_batch_from_a_trickle_and_shutdown_does_not_wait_for_it() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("lingering").max_batch(4),
            Lingering {
                linger: Duration::from_secs(60),
                batches: batches.clone(),
            },
        )
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    let mut last = 0;
    for i in 0..4 {
        last = a
            .emit(EventType::ToolCall, &json!({"i": i}))
            .await
            .unwrap()
            .seq;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.wait(last, AckLevel::Written).await.unwrap();
    assert_eq!(
        *batches.lock().unwrap(),
        vec![4],
        "one batch of the trickle"
    );
    // Fewer than a batch, then shutdown: written at once, not after the
    // linger (which would be past the deadline: nothing written).
    for i in 4..6 {
        a.emit(EventType::ToolCall, &json!({"i": i})).await.unwrap();
    }
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.sinks[0].health.delivered, 6, "{report}");
    assert_eq!(*batches.lock().unwrap(), vec![4, 2]);
}

/// Retries every write until the shutdown deadline it was told about is
/// near, then fails: what a network sink does with a collector down.
struct RetriesUntilShutdown {
    signal: ShutdownSignal,
    writing: Arc<Mutex<bool>>,
}

#[derive(Debug, thiserror::Error)]
#[error("collector still down at the shutdown deadline")]
struct StillDown;

impl Sink for RetriesUntilShutdown {
    fn max_level(&self) -> AckLevel {
        AckLevel::Exported
    }
    fn watch_shutdown(&mut self, signal: ShutdownSignal) {
        self.signal = signal;
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        *self.writing.lock().unwrap() = true;
        let give_up_at = Instant::now() + Duration::from_secs(300);
        loop {
            let stop = self
                .signal
                .deadline()
                .into_iter()
                .chain(batch.deadline)
                .min()
                .map(|d| d - Duration::from_millis(50));
            if stop.is_some_and(|s| Instant::now() >= s) || Instant::now() >= give_up_at {
                return Err(SinkError::new(FailureKind::Transient, StillDown));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_begun_before_shutdown_sees_the_deadline_and_its_batch_is_reported_failed() {
    let writing = Arc::new(Mutex::new(false));
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("retrying").required(false),
            RetriesUntilShutdown {
                signal: ShutdownSignal::new(),
                writing: writing.clone(),
            },
        )
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    for i in 0..3 {
        a.emit(EventType::ToolCall, &json!({"i": i})).await.unwrap();
    }
    while !*writing.lock().unwrap() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = d.shutdown(Duration::from_secs(1)).await;
    let s = &report.sinks[0];
    assert!(s.finished, "the write never learned the deadline: {report}");
    assert_eq!((s.health.failed, s.undelivered), (3, 0), "{report}");
}

/// Says it is retrying, then waits until the test lets the write finish;
/// it never clears the status itself (the dispatcher must).
struct SaysRetrying {
    status: agent_audit_core::StatusSignal,
    release: Arc<Mutex<bool>>,
}

impl Sink for SaysRetrying {
    fn max_level(&self) -> AckLevel {
        AckLevel::Exported
    }
    fn watch_status(&mut self, status: agent_audit_core::StatusSignal) {
        self.status = status;
    }
    fn write(&mut self, _batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let now = agent_audit_core::Timestamp::now();
        self.status.set_retrying(agent_audit_core::Retrying {
            since: now,
            until: now,
            budget_ms: 300_000,
            attempts: 1,
            last_error: "connection refused".to_string(),
        });
        while !*self.release.lock().unwrap() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(AckLevel::Exported)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_sink_shows_in_health_until_its_write_returns() {
    let release = Arc::new(Mutex::new(false));
    // Boxed as a `dyn Sink` and boxed again by the builder, so the status
    // reaches the sink only if `impl Sink for Box<S>` forwards the hook.
    let sink: Box<dyn Sink> = Box::new(SaysRetrying {
        status: agent_audit_core::StatusSignal::new(),
        release: release.clone(),
    });
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("collector").required(false), sink)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    let seq = a.emit(EventType::ToolCall, &json!({})).await.unwrap().seq;
    let start = Instant::now();
    let shown = loop {
        if let Some(r) = d.health().sinks[0].retrying.clone() {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never shown");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(shown.last_error, "connection refused");
    assert_eq!(shown.budget_ms, 300_000);
    let json = serde_json::to_value(d.health()).unwrap();
    assert_eq!(
        json["sinks"][0]["retrying"]["since"].as_str(),
        Some(shown.since.as_str())
    );
    *release.lock().unwrap() = true;
    d.wait(seq, AckLevel::Exported).await.unwrap();
    assert_eq!(d.health().sinks[0].retrying, None);
    d.shutdown(Duration::from_secs(5)).await;
}
