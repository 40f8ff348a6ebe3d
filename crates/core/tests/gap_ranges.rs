//! `sink_failed` gap records name exactly the seqs the failed sink does not
//! hold: not the batches it wrote between two failures, not the records of
//! a failed batch it had already written.

use std::collections::BTreeSet;
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, EventType, FailureKind, MemorySink, MemorySinkError,
    Sink, SinkError, SinkOptions, StoredRecord,
};
use serde_json::json;

fn stored(sink: &MemorySink) -> Vec<StoredRecord> {
    sink.records().iter().map(|r| r.to_stored("")).collect()
}

/// The seqs the `sink_failed` gap records about `sink` name, and the sum
/// of their `lost` counts.
fn named_failed(records: &[StoredRecord], sink: &str) -> (BTreeSet<u64>, u64) {
    let mut named = BTreeSet::new();
    let mut lost = 0;
    for r in records {
        let p = &r.payload;
        if r.event_type != EventType::AuditGap || p["reason"] != "sink_failed" || p["sink"] != sink
        {
            continue;
        }
        lost += p["lost"].as_u64().unwrap();
        for range in p["ranges"].as_array().unwrap() {
            let (from, to) = (range[0].as_u64().unwrap(), range[1].as_u64().unwrap());
            assert!(from <= to, "{p}");
            for s in from..=to {
                assert!(named.insert(s), "seq {s} named twice: {p}");
            }
        }
    }
    (named, lost)
}

/// Asserts that the gap records in `survivor` name exactly the seqs sent
/// to `failed` that it does not hold.
fn assert_exact(survivor: &MemorySink, failed: &MemorySink, name: &str) {
    let recs = stored(survivor);
    let held: BTreeSet<u64> = failed.records().iter().map(|r| r.seq).collect();
    // Everything but the notes about the failed sink's own failures was
    // sent to it.
    let sent: BTreeSet<u64> = recs
        .iter()
        .filter(|r| {
            !(r.event_type == EventType::AuditGap
                && r.payload["reason"] == "sink_failed"
                && r.payload["sink"] == name)
        })
        .map(|r| r.seq)
        .collect();
    let missing: BTreeSet<u64> = sent.difference(&held).copied().collect();
    let (named, lost) = named_failed(&recs, name);
    assert!(!missing.is_empty(), "the scenario lost nothing");
    let wrongly: Vec<u64> = named.intersection(&held).copied().collect();
    assert!(
        wrongly.is_empty(),
        "gap records name seqs the sink holds: {wrongly:?}"
    );
    assert_eq!(named, missing, "named vs really missing");
    assert_eq!(lost, missing.len() as u64, "`lost` counts the named seqs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_ranges_leave_out_the_batches_written_between_failures() {
    let flaky = MemorySink::new();
    let good = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("flaky").required(false), flaky.clone())
        .sink(SinkOptions::new("good"), good.clone())
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    // A disk that fills, frees a little (a failed write cut back), fills:
    // failures and successes alternate faster than the gap records, which
    // are written at most once a second per sink, so several failures go
    // into one record.
    for i in 0..30u64 {
        if i % 3 == 0 {
            flaky.fail_with(FailureKind::Permanent, "No space left on device");
        } else {
            flaky.heal();
        }
        a.emit_wait(EventType::ToolCall, &json!({"i": i}), AckLevel::Durable)
            .await
            .unwrap();
    }
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(!report.is_clean());
    assert_exact(&good, &flaky, "flaky");
}

/// Writes the first `hold` records of every batch, then fails the rest
/// and says how many it holds: a file whose disk filled in mid-batch after
/// some lines were committed (fsync = "every", or a rotation).
struct PartWay {
    inner: MemorySink,
    hold: usize,
}

impl Sink for PartWay {
    fn max_level(&self) -> AckLevel {
        AckLevel::Durable
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        // A little slow, so that records queue up into batches.
        std::thread::sleep(Duration::from_millis(2));
        let n = self.hold.min(batch.records.len());
        let part = Batch {
            records: &batch.records[..n],
            deadline: batch.deadline,
        };
        self.inner.write(&part)?;
        if n == batch.records.len() {
            return Ok(AckLevel::Durable);
        }
        Err(
            SinkError::permanent(MemorySinkError("No space left on device".into()))
                .holding(n as u64, AckLevel::Durable),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failed_part_way_names_only_the_records_after_those_written() {
    let held = MemorySink::new();
    let good = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("part").required(false).max_batch(5),
            PartWay {
                inner: held.clone(),
                hold: 2,
            },
        )
        .sink(SinkOptions::new("good"), good.clone())
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    let mut receipts = Vec::new();
    for i in 0..200u64 {
        receipts.push(a.emit(EventType::ToolCall, &json!({"i": i})).await.unwrap());
    }
    let last = receipts.last().unwrap().seq;
    d.wait(last, AckLevel::Durable).await.unwrap();
    // A record the sink holds is acknowledged at its level; one it does
    // not hold is reported failed.
    let in_part: BTreeSet<u64> = held.records().iter().map(|r| r.seq).collect();
    let mut ok = 0;
    for r in &receipts {
        let got = d.wait(r.seq, AckLevel::Durable).await.unwrap();
        if in_part.contains(&r.seq) {
            assert!(got.failed.is_empty(), "seq {} is held: {got:?}", r.seq);
            assert_eq!(got.level, AckLevel::Durable);
            ok += 1;
        } else {
            assert_eq!(got.failed.len(), 1, "seq {} was not written", r.seq);
        }
    }
    assert!(ok > 0 && ok < receipts.len(), "{ok}");
    let report = d.shutdown(Duration::from_secs(5)).await;
    let part = report
        .sinks
        .iter()
        .find(|s| s.health.name == "part")
        .unwrap();
    assert_eq!(part.health.delivered, held.len() as u64, "{report}");
    assert_exact(&good, &held, "part");
}
