//! An [`AsyncSink`] through the dispatcher's bridge: on a private runtime
//! and on the application's; a write that never answers cancelled at the
//! shutdown deadline and its records reported failed; writes in flight
//! answered out of order still acknowledged in seq order; a transient
//! failure written again; the conformance suite.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::conformance::{AsyncTarget, run_all_async};
use agent_audit_core::{
    AckLevel, AsyncSink, Auditor, Batch, DeliveryError, Dispatcher, EventType, FailureKind,
    MemorySink, Record, SinkError, SinkOpen, SinkOptions, StartError, StoredRecord, WriteCancelled,
};
use serde_json::json;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot};

/// Stores records in memory; notes where its writes ran.
#[derive(Clone, Default)]
struct Memory {
    records: Arc<Mutex<Vec<Arc<Record>>>>,
    /// The flavor of the runtime and the thread name of each write.
    ran_on: Arc<Mutex<Vec<(String, String)>>>,
    closed: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl AsyncSink for Memory {
    fn max_level(&self) -> AckLevel {
        AckLevel::Durable
    }
    async fn open(&mut self) -> Result<SinkOpen, SinkError> {
        let last_seq = self.records.lock().unwrap().last().map(|r| r.seq);
        Ok(SinkOpen {
            last_seq,
            notices: Vec::new(),
        })
    }
    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        // A real await on the runtime's timer: a write that needs the
        // runtime's drivers must make progress on either runtime.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let flavor = tokio::runtime::Handle::current().runtime_flavor();
        let thread = std::thread::current().name().unwrap_or("").to_string();
        self.ran_on
            .lock()
            .unwrap()
            .push((format!("{flavor:?}"), thread));
        self.records
            .lock()
            .unwrap()
            .extend(batch.records.iter().cloned());
        Ok(AckLevel::Durable)
    }
    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(None)
    }
}

impl Memory {
    fn seqs(&self) -> Vec<u64> {
        self.records.lock().unwrap().iter().map(|r| r.seq).collect()
    }
}

async fn emit_some(d: &Dispatcher, n: u32) -> Vec<u64> {
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.push(
            a.emit(EventType::ToolCall, &json!({"i": i}))
                .await
                .unwrap()
                .seq,
        );
    }
    seqs
}

#[tokio::test]
async fn an_async_sink_runs_on_a_private_current_thread_runtime_on_its_own_thread() {
    let sink = Memory::default();
    let d = Dispatcher::builder()
        .async_sink(SinkOptions::new("db").max_batch(7), sink.clone())
        .start()
        .await
        .unwrap();
    let seqs = emit_some(&d, 50).await;
    let r = d
        .wait(*seqs.last().unwrap(), AckLevel::Exported)
        .await
        .unwrap();
    assert_eq!(
        r.level,
        AckLevel::Durable,
        "settles for the sink's max level"
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(sink.seqs(), seqs, "every record, in seq order");
    assert!(sink.closed.load(Ordering::SeqCst), "closed at shutdown");
    let ran_on = sink.ran_on.lock().unwrap().clone();
    assert!(
        ran_on.len() >= 50 / 7,
        "batches of at most 7: {}",
        ran_on.len()
    );
    for (flavor, thread) in ran_on {
        assert_eq!(flavor, format!("{:?}", RuntimeFlavor::CurrentThread));
        assert_eq!(thread, "audit-sink-db");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_sink_runs_on_the_runtime_it_is_given() {
    let sink = Memory::default();
    let d = Dispatcher::builder()
        .async_sink(SinkOptions::new("db"), sink.clone())
        .async_runtime(tokio::runtime::Handle::current())
        .start()
        .await
        .unwrap();
    let seqs = emit_some(&d, 20).await;
    d.wait(*seqs.last().unwrap(), AckLevel::Durable)
        .await
        .unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(sink.seqs(), seqs);
    let ran_on = sink.ran_on.lock().unwrap().clone();
    assert!(!ran_on.is_empty());
    for (flavor, _) in ran_on {
        assert_eq!(
            flavor,
            format!("{:?}", RuntimeFlavor::MultiThread),
            "the application's runtime"
        );
    }
}

#[tokio::test]
async fn a_current_thread_runtime_handle_is_refused_at_start() {
    // A current-thread runtime is driven only by its own block_on: the
    // sink's I/O would never progress from the sink's thread.
    let err = Dispatcher::builder()
        .async_sink(SinkOptions::new("db"), Memory::default())
        .async_runtime(tokio::runtime::Handle::current())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StartError::RuntimeHandle { sink, .. } if sink == "db"),
        "{err}"
    );
}

/// A write that never answers; notes that its future was dropped.
struct Hanging {
    started: mpsc::UnboundedSender<u64>,
    dropped: Arc<AtomicU32>,
    closed: Arc<AtomicBool>,
}

/// Counts a drop: the bridge cancelled the future holding it.
struct DropFlag(Arc<AtomicU32>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl AsyncSink for Hanging {
    fn max_level(&self) -> AckLevel {
        AckLevel::Exported
    }
    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let _flag = DropFlag(self.dropped.clone());
        let _ = self.started.send(batch.records.len() as u64);
        std::future::pending::<()>().await;
        Ok(AckLevel::Exported)
    }
    fn linger(&self) -> Option<Duration> {
        // With `max_batch(3)`: the three records go in one write.
        Some(Duration::from_secs(3600))
    }
    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_still_hanging_at_the_deadline_is_cancelled_and_its_records_reported_failed() {
    let dropped = Arc::new(AtomicU32::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let other = MemorySink::new();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let d = Dispatcher::builder()
        .async_sink(
            SinkOptions::new("hanging").required(false).max_batch(3),
            Hanging {
                started: started_tx,
                dropped: dropped.clone(),
                closed: closed.clone(),
            },
        )
        .sink(SinkOptions::new("other").required(false), other.clone())
        .start()
        .await
        .unwrap();
    let seqs = emit_some(&d, 3).await;
    let last = *seqs.last().unwrap();
    // The write of all three is under way.
    assert_eq!(started.recv().await.unwrap(), 3);

    let report = d.shutdown(Duration::from_millis(500)).await;

    // The bridge ended (a sync sink stuck in write never reaches close).
    assert!(closed.load(Ordering::SeqCst), "the sink was closed");
    assert!(
        dropped.load(Ordering::SeqCst) >= 1,
        "the write's future was dropped"
    );
    let hanging = &report.sinks[0];
    assert_eq!(hanging.health.failed, 3, "{report}");
    assert_eq!(hanging.health.delivered, 0, "{report}");
    // Named in an audit_gap record in the surviving sink, as on the sync path.
    let gaps: Vec<StoredRecord> = other
        .records()
        .iter()
        .map(|r| r.to_stored(""))
        .filter(|r| r.event_type == EventType::AuditGap)
        .collect();
    let gap = gaps
        .iter()
        .find(|g| g.payload["reason"] == "sink_failed")
        .unwrap_or_else(|| panic!("no sink_failed gap: {gaps:?}"));
    assert_eq!(gap.payload["sink"], "hanging");
    assert_eq!(gap.payload["from_seq"], seqs[0]);
    assert_eq!(gap.payload["to_seq"], last);
    assert_eq!(gap.payload["lost"], 3);
    assert!(
        gap.payload["error"].as_str().unwrap().contains("cancelled"),
        "{gap:?}"
    );
    // A waiting receipt learns of it, never of an ack.
    let r = d.wait(last, AckLevel::Exported).await.unwrap();
    assert_eq!(r.level, AckLevel::Durable, "the other sink's level");
    let failure = r.failed.iter().find(|f| f.sink == "hanging").unwrap();
    let DeliveryError::Failed(e) = &failure.error else {
        panic!("{:?}", failure.error);
    };
    let cancelled = std::error::Error::source(e).and_then(|s| s.downcast_ref::<WriteCancelled>());
    assert!(cancelled.is_some(), "{e:?}");
}

/// Every write waits for the test to release it, so that the test decides
/// in which order they answer.
struct Gated {
    /// Each write announces its first seq and waits for the release.
    started: mpsc::UnboundedSender<(u64, oneshot::Sender<()>)>,
    /// Each write announces its first seq once it is about to answer.
    answered: mpsc::UnboundedSender<u64>,
}

#[async_trait::async_trait]
impl AsyncSink for Gated {
    fn max_level(&self) -> AckLevel {
        AckLevel::Exported
    }
    fn max_in_flight(&self) -> usize {
        8
    }
    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let seq = batch.records[0].seq;
        let (release, released) = oneshot::channel();
        self.started.send((seq, release)).unwrap();
        released.await.unwrap();
        self.answered.send(seq).unwrap();
        Ok(AckLevel::Exported)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_answering_out_of_order_are_acknowledged_in_seq_order() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (answered_tx, mut answered) = mpsc::unbounded_channel();
    let d = Dispatcher::builder()
        .async_sink(
            SinkOptions::new("gated").max_batch(1),
            Gated {
                started: started_tx,
                answered: answered_tx,
            },
        )
        .start()
        .await
        .unwrap();
    let seqs = emit_some(&d, 4).await;
    // All four are under way at once.
    let mut gates = Vec::new();
    for want in &seqs {
        let (seq, gate) = started.recv().await.unwrap();
        assert_eq!(seq, *want, "writes start in seq order");
        gates.push(gate);
    }
    // The last three answer first, the fourth first of all.
    let first = gates.remove(0);
    for (gate, want) in gates.into_iter().zip(&seqs[1..]).rev() {
        gate.send(()).unwrap();
        assert_eq!(answered.recv().await.unwrap(), *want);
    }
    // A fifth write starts only after the bridge took those answers in.
    let fifth = emit_some(&d, 1).await[0];
    let (seq, fifth_gate) = started.recv().await.unwrap();
    assert_eq!(seq, fifth);
    let health = d.health();
    assert_eq!(
        health.sinks[0].delivered, 0,
        "nothing is acknowledged while the first write is under way"
    );
    first.send(()).unwrap();
    let r = d.wait(seqs[3], AckLevel::Exported).await.unwrap();
    assert_eq!(r.level, AckLevel::Exported);
    assert_eq!(d.health().sinks[0].delivered, 4);
    fifth_gate.send(()).unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
}

#[derive(Debug, thiserror::Error)]
#[error("database unavailable")]
struct Unavailable;

/// Fails its first writes as transient, then takes everything.
struct Flaky {
    fail_first: u32,
    writes: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl AsyncSink for Flaky {
    fn max_level(&self) -> AckLevel {
        AckLevel::Durable
    }
    async fn write(&self, _batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        if self.writes.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            return Err(SinkError::new(FailureKind::Transient, Unavailable));
        }
        Ok(AckLevel::Durable)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_written_again_and_acknowledged() {
    let writes = Arc::new(AtomicU32::new(0));
    let d = Dispatcher::builder()
        .async_sink(
            SinkOptions::new("db"),
            Flaky {
                fail_first: 2,
                writes: writes.clone(),
            },
        )
        .start()
        .await
        .unwrap();
    let r = Auditor::new(d.clone())
        .emit_wait(EventType::ToolCall, &json!({}), AckLevel::Durable)
        .await
        .unwrap();
    assert_eq!(r.level, AckLevel::Durable);
    assert!(r.failed.is_empty());
    assert_eq!(
        writes.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
}

/// The conformance suite's view of [`Memory`]: every sink it makes shares
/// the one store, so a new one continues the numbering.
struct MemoryTarget(Memory);

impl AsyncTarget for MemoryTarget {
    fn make(&self) -> Box<dyn AsyncSink> {
        Box::new(Memory {
            records: self.0.records.clone(),
            ..Memory::default()
        })
    }
    fn read_back(&self) -> Option<Vec<StoredRecord>> {
        Some(
            self.0
                .records
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.to_stored(""))
                .collect(),
        )
    }
    fn persistent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_through_the_bridge() {
    run_all_async(&MemoryTarget(Memory::default()))
        .await
        .unwrap();
}
