//! Dispatcher behaviour every sink relies on, shown with the in-memory sink
//! (the real file and collector sinks prove the same in their own crates).

use std::collections::BTreeSet;
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Dispatcher, EmitError, EventType, FailureKind, MemorySink, Overflow,
    SinkOptions, StoredRecord,
};
use serde_json::json;

fn payloads(sink: &MemorySink) -> Vec<StoredRecord> {
    sink.records().iter().map(|r| r.to_stored("")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_contiguous_and_every_sink_gets_every_record() {
    let (a, b) = (MemorySink::new(), MemorySink::new());
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("a").queue(8), a.clone())
        .sink(SinkOptions::new("b").queue(8), b.clone())
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone()).for_request(Some("r1"));
    for i in 0..1000 {
        aud.emit(EventType::ToolCall, &json!({"i": i}))
            .await
            .unwrap();
    }
    let report = d.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    for s in [&a, &b] {
        let seqs: Vec<u64> = s.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_counts_exactly_and_gap_records_name_every_lost_seq() {
    let slow = MemorySink::new().with_delay(Duration::from_millis(2));
    let fast = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("slow")
                .queue(16)
                .max_batch(4)
                .overflow(Overflow::DropNewest)
                .required(false),
            slow.clone(),
        )
        .sink(SinkOptions::new("fast"), fast.clone())
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    let mut user_seqs = BTreeSet::new();
    for i in 0..10_000 {
        user_seqs.insert(aud.emit("burst", &json!({"i": i})).await.unwrap().seq);
    }
    let report = d.shutdown(Duration::from_secs(30)).await;
    let slow_h = &report.sinks[0].health;
    assert!(
        slow_h.dropped > 0,
        "the slow sink should have dropped: {report}"
    );

    let fast_recs = payloads(&fast);
    let fast_user: BTreeSet<u64> = fast_recs
        .iter()
        .filter(|r| r.event_type.as_str() == "burst")
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        fast_user, user_seqs,
        "the fast sink must receive all 10,000"
    );

    let slow_recs = payloads(&slow);
    let got: BTreeSet<u64> = slow_recs
        .iter()
        .filter(|r| r.event_type.as_str() == "burst")
        .map(|r| r.seq)
        .collect();
    let mut named = BTreeSet::new();
    for gap in fast_recs
        .iter()
        .filter(|r| r.event_type == EventType::AuditGap)
    {
        assert_eq!(gap.payload["sink"], "slow");
        for range in gap.payload["ranges"].as_array().unwrap() {
            let (from, to) = (range[0].as_u64().unwrap(), range[1].as_u64().unwrap());
            named.extend(from..=to);
        }
    }
    let lost: BTreeSet<u64> = user_seqs.difference(&got).copied().collect();
    let lost_user_named: BTreeSet<u64> = named.intersection(&user_seqs).copied().collect();
    assert_eq!(
        lost_user_named, lost,
        "gap records must name exactly the lost seqs"
    );
    // Dropped counts every record the sink lost, gap notes included.
    assert_eq!(slow_h.dropped as usize, named.len());
    // The slow sink also holds the gap notes about itself.
    assert!(
        slow_recs
            .iter()
            .any(|r| r.event_type == EventType::AuditGap)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_optional_sink_is_counted_and_the_others_stay_complete() {
    let broken = MemorySink::new();
    broken.fail_with(FailureKind::Permanent, "disk on fire");
    let good = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("broken").required(false), broken.clone())
        .sink(SinkOptions::new("good"), good.clone())
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    for i in 0..50 {
        let r = aud
            .emit_wait(EventType::ToolResult, &json!({"i": i}), AckLevel::Durable)
            .await
            .unwrap();
        assert_eq!(r.failed.len(), 1);
        assert!(r.failed[0].error.to_string().contains("disk on fire"));
    }
    let h = d.health();
    assert_eq!(h.sinks[0].failed, 50);
    assert!(
        h.sinks[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("disk on fire")
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(!report.is_clean());
    let recs = payloads(&good);
    assert_eq!(
        recs.iter()
            .filter(|r| r.event_type == EventType::ToolResult)
            .count(),
        50
    );
    let gap = recs
        .iter()
        .find(|r| r.event_type == EventType::AuditGap)
        .expect("the failure is written to the surviving sink");
    assert_eq!(gap.payload["reason"], "sink_failed");
    assert_eq!(gap.payload["sink"], "broken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_required_sink_fails_emit_naming_the_sink_and_cause() {
    let broken = MemorySink::new();
    broken.fail_with(FailureKind::Permanent, "no space left on device");
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("audit-file"), broken)
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    let err = aud
        .emit_wait(EventType::ToolCall, &json!({}), AckLevel::Durable)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmitError::SinkFailed { .. }), "{msg}");
    assert!(
        msg.contains("audit-file") && msg.contains("no space left"),
        "{msg}"
    );
    // Later emits refuse at once: the agent must not act without its audit.
    let err = aud.emit(EventType::ToolCall, &json!({})).await.unwrap_err();
    assert!(err.to_string().contains("audit-file"));
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_without_using_a_seq() {
    let slow = MemorySink::new().with_delay(Duration::from_millis(200));
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("slow")
                .queue(2)
                .max_batch(1)
                .overflow(Overflow::FailClosed),
            slow.clone(),
        )
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    let mut refused = 0;
    let mut seqs = Vec::new();
    for i in 0..10 {
        match aud.emit("x", &json!({"i": i})).await {
            Ok(r) => seqs.push(r.seq),
            Err(EmitError::QueueFull { sink }) => {
                assert_eq!(sink, "slow");
                refused += 1
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0);
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no seq is burnt by a refusal"
    );
    let report = d.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.sinks[0].health.dropped, refused);
    assert_eq!(slow.len(), seqs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_continues_after_the_highest_seq_a_sink_holds() {
    let keep = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("keep"), keep.clone())
        .start()
        .await
        .unwrap();
    for _ in 0..5 {
        Auditor::new(d.clone()).emit("x", &json!({})).await.unwrap();
    }
    d.shutdown(Duration::from_secs(5)).await;
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("keep"), keep.clone())
        .sink(SinkOptions::new("fresh"), MemorySink::new())
        .start()
        .await
        .unwrap();
    let r = Auditor::new(d.clone()).emit("x", &json!({})).await.unwrap();
    assert_eq!(r.seq, 6);
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_under_a_stalled_sink_ends_at_the_shutdown_deadline_with_exact_counts() {
    let stalled = MemorySink::new().with_delay(Duration::from_millis(300));
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("stalled")
                .queue(4)
                .max_batch(1)
                .required(false),
            stalled.clone(),
        )
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    for i in 0..5 {
        aud.emit("x", &json!({"i": i})).await.unwrap();
    }
    let report = d.shutdown(Duration::from_millis(400)).await;
    let s = &report.sinks[0];
    assert_eq!(s.health.delivered + s.undelivered, 5, "{report}");
    assert!(s.undelivered > 0, "{report}");
    assert!(matches!(
        aud.emit("x", &json!({})).await,
        Err(EmitError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_must_be_objects_and_bounded() {
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("m"), MemorySink::new())
        .max_record_bytes(4096)
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    let e = aud.emit("x", &json!([1, 2])).await.unwrap_err();
    assert!(e.to_string().contains("an array"), "{e}");
    let big = "a".repeat(10_000);
    let e = aud.emit("x", &json!({"big": big})).await.unwrap_err();
    assert!(matches!(e, EmitError::TooLarge { max: 4096, .. }), "{e}");
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_carry_request_correlation_agent_and_span_parents() {
    let m = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("m"), m.clone())
        .start()
        .await
        .unwrap();
    let root = Auditor::new(d.clone()).for_request(Some("req-1"));
    let triage = root.with_agent("triage").child_span();
    let specialist = triage.with_agent("specialist").child_span();
    triage
        .emit(EventType::AgentMessage, &json!({}))
        .await
        .unwrap();
    specialist
        .emit(EventType::FinalResult, &json!({"answer": "ok"}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let recs = payloads(&m);
    assert_eq!(recs[0].request_id.as_deref(), Some("req-1"));
    assert_eq!(recs[1].correlation_id.as_deref(), Some("req-1"));
    assert_eq!(recs[1].agent.as_deref(), Some("specialist"));
    assert_eq!(recs[1].parent_span_id, recs[0].span_id);
    assert_eq!(recs[0].trace_id, recs[1].trace_id);
    // Each line is valid JSON in schema order.
    let mut line = Vec::new();
    m.records()[1].encode_line("abc", &mut line);
    let text = String::from_utf8(line).unwrap();
    assert!(text.starts_with("{\"v\":2,\"seq\":2,\"ts\":\""), "{text}");
    assert!(text.ends_with(",\"prev\":\"abc\"}"));
    let back: StoredRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back.payload["answer"], "ok");
}

/// A sink that reports one notice after its first write.
struct NoticingSink {
    told: bool,
    inner: MemorySink,
}

impl agent_audit_core::Sink for NoticingSink {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
    fn write(
        &mut self,
        batch: &agent_audit_core::Batch<'_>,
    ) -> Result<AckLevel, agent_audit_core::SinkError> {
        agent_audit_core::Sink::write(&mut self.inner, batch)?;
        Ok(AckLevel::Written)
    }
    fn take_notices(&mut self) -> Vec<String> {
        if self.told {
            return Vec::new();
        }
        self.told = true;
        vec!["log file was moved away; reopened the path".into()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_notices_become_records_in_every_sink_and_show_in_health() {
    let seen = MemorySink::new();
    let other = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("noticing"),
            NoticingSink {
                told: false,
                inner: seen.clone(),
            },
        )
        .sink(SinkOptions::new("other"), other.clone())
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    aud.emit_wait("x", &json!({}), AckLevel::Written)
        .await
        .unwrap();
    aud.emit("y", &json!({})).await.unwrap();
    let h = d.health();
    assert_eq!(h.sinks[0].notices, 1);
    assert!(
        h.sinks[0]
            .last_notice
            .as_deref()
            .unwrap()
            .contains("moved away")
    );
    d.shutdown(Duration::from_secs(5)).await;
    for s in [&seen, &other] {
        let note = payloads(s)
            .into_iter()
            .find(|r| r.event_type == EventType::AuditGap)
            .expect("the notice is a record");
        assert_eq!(note.payload["reason"], "sink_notice");
        assert_eq!(note.payload["sink"], "noticing");
    }
}

/// A sink may ask for batches far larger than memory (a configuration's
/// `batch_size * max_in_flight`): the worker's batch buffer is sized by the
/// queue, so this is an ordinary run, not an allocation failure that
/// aborts the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_max_batch_allocates_by_the_queue_not_by_the_batch() {
    let sink = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("m").queue(64).max_batch(usize::MAX / 64),
            sink.clone(),
        )
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    for i in 0..200 {
        aud.emit(EventType::ToolCall, &json!({"i": i}))
            .await
            .unwrap();
    }
    let report = d.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(sink.len(), 200);
}
