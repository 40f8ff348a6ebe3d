//! Records are reused by the dispatcher once every sink is done with them
//! (core's `dispatcher::recycle`): the file must hold each record exactly
//! as emitted, byte for byte, whatever record it was filled into (a long
//! one before a short one, a full scope before a bare one), and the chain
//! must verify. Core's `tests/reuse_attacks.rs` attacks the dispatcher
//! side; this is the real file.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use agent_audit_core::ids::TraceContext;
use agent_audit_core::{
    AckLevel, Auditor, Dispatcher, Scope, SinkOptions, SpanId, TraceFlags, TraceId,
};
use agent_audit_jsonl::verify::{VerifyOptions, verify};
use agent_audit_jsonl::{JsonlOptions, JsonlSink};
use common::{SHUTDOWN, assert_chain, records};
use serde_json::{Value, json};

/// The body a record with these parts must have, built key by key here.
fn expected_body(event: &str, s: &Scope, payload: &Value) -> String {
    let text = |v: &Option<Arc<str>>| serde_json::to_string(&v.as_deref()).unwrap();
    let parent = s
        .parent_span_id
        .map_or("null".to_string(), |p| format!("\"{p}\""));
    format!(
        "\"event_type\":{},\"request_id\":{},\"correlation_id\":{},\"trace_id\":\"{}\",\"span_id\":\"{}\",\"parent_span_id\":{parent},\"agent\":{},\"user_id\":{},\"session_id\":{},\"attributes\":{},\"payload\":{}",
        serde_json::to_string(event).unwrap(),
        text(&s.request_id),
        text(&s.correlation_id),
        s.trace_id,
        s.span_id,
        text(&s.agent),
        text(&s.user_id),
        text(&s.session_id),
        serde_json::to_string(&s.attributes.to_json_map()).unwrap(),
        serde_json::to_string(payload).unwrap(),
    )
}

/// A bare handle, and one with every scope field set (another trace,
/// unsampled, a child span, attributes).
fn handles(d: &Dispatcher, task: usize) -> [Auditor; 2] {
    let bare = Auditor::new(d.clone());
    let full = bare
        .with_agent(&format!("agent-{task}-{}", "a".repeat(40)))
        .with_trace_context(TraceContext::new(
            TraceId::random(),
            Some(SpanId::random()),
            TraceFlags::NONE,
        ))
        .for_request(Some(&format!("request-{task}-{}", "r".repeat(60))))
        .with_correlation_id(&format!("correlation-{task}"))
        .with_user(&format!("user-{task}"))
        .with_session(&format!("session-{task}"))
        .with_attribute("task", task as i64)
        .unwrap()
        .with_attribute("note", "x".repeat(200).as_str())
        .unwrap()
        .child_span();
    [full, bare]
}

/// Long (and, now and then, longer than a reused body is kept at), then
/// short, then empty.
fn payload(task: usize, i: usize) -> Value {
    match i % 3 {
        0 if i.is_multiple_of(30) => {
            json!({"t": task, "i": i, "huge": format!("HUGE-{i}-").repeat(2_000)})
        }
        0 => json!({"t": task, "i": i, "long": format!("LONG-{i}-").repeat(150 + i % 97)}),
        1 => json!({"t": task, "i": i}),
        _ => json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_holds_each_reused_record_exactly_as_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let sink = JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    // A queue of 2 and batches of 1: every record is written on its own
    // and handed back for the next emit to fill in.
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(2).max_batch(1), sink)
        .start()
        .await
        .unwrap();
    let mut sent: HashMap<u64, (&'static str, Scope, Value)> = HashMap::new();
    // One at a time, each written before the next: each record is filled
    // into the one just written.
    let [full, bare] = handles(&d, 0);
    for i in 0..600 {
        let (a, event) = if i % 2 == 0 {
            (&full, "a_custom_event_with_a_long_name")
        } else {
            (&bare, "x")
        };
        let p = payload(0, i);
        let r = a.emit_wait(event, &p, AckLevel::Written).await.unwrap();
        sent.insert(r.seq, (event, a.scope().clone(), p));
    }
    // Then four tasks at once.
    let mut tasks = Vec::new();
    for t in 1..=4 {
        let hs = handles(&d, t);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..400 {
                let a = &hs[(i + t) % 2];
                let p = payload(t, i);
                let r = a.emit("tool_call", &p).await.unwrap();
                out.push((r.seq, ("tool_call", a.scope().clone(), p)));
            }
            out
        }));
    }
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    assert!(d.shutdown(SHUTDOWN).await.is_clean());

    let lines = records(&path);
    assert_chain(&lines);
    assert_eq!(lines.len(), sent.len());
    for l in &lines {
        let (event, scope, payload) = &sent[&l.record.seq];
        let expected = format!(
            "{{\"v\":2,\"seq\":{},\"ts\":\"{}\",{},\"prev\":\"{}\"}}",
            l.record.seq,
            l.record.ts,
            expected_body(event, scope, payload),
            l.record.prev
        );
        assert_eq!(
            String::from_utf8_lossy(&l.bytes),
            expected,
            "line {}",
            l.number
        );
    }
    // Time never runs backwards along the file (a time left from a reused
    // record would).
    for w in lines.windows(2) {
        assert!(w[1].record.ts >= w[0].record.ts, "seq {}", w[1].record.seq);
    }
    let report = verify(&[&path], &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.records, sent.len() as u64);
}
