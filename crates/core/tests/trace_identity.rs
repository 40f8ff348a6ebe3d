//! Which trace a request's records land in: a trace of its own, or the
//! application's when it gave its context.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agent_audit_core::{
    Auditor, Dispatcher, EventType, MemorySink, Record, SinkOptions, SpanId, TraceContext,
    TraceFlags, TraceId,
};
use serde_json::json;

async fn memory() -> (Dispatcher, MemorySink) {
    let sink = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .start()
        .await
        .unwrap();
    (d, sink)
}

/// What an agent does with a request handle: records on the request's
/// span, and on a step's span under it.
async fn handle(request: &Auditor) {
    request
        .emit(EventType::UserRequest, &json!({"text": "balance?"}))
        .await
        .unwrap();
    let step = request.with_agent("assistant").child_span();
    step.emit(EventType::ToolCall, &json!({"tool": "get_balance"}))
        .await
        .unwrap();
    request
        .emit(EventType::FinalResult, &json!({"answer": "1"}))
        .await
        .unwrap();
}

fn by_request(records: &[std::sync::Arc<Record>]) -> BTreeMap<String, Vec<&Record>> {
    let mut out: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        out.entry(r.request_id.as_deref().unwrap_or("").to_string())
            .or_default()
            .push(r);
    }
    out
}

#[tokio::test]
async fn each_request_of_one_root_auditor_is_a_trace_of_its_own() {
    let (d, sink) = memory().await;
    let root = Auditor::new(d.clone()).with_correlation_id("conv-1");
    handle(&root.for_request(Some("r1"))).await;
    handle(&root.for_request(Some("r2"))).await;
    d.shutdown(Duration::from_secs(5)).await;
    let records = sink.records();
    let requests = by_request(&records);
    assert_eq!(requests.len(), 2);
    let mut traces = BTreeSet::new();
    for (id, recs) in &requests {
        let trace = recs[0].trace_id;
        assert!(recs.iter().all(|r| r.trace_id == trace), "{id}");
        // The request's span is the root of its trace; steps hang under it.
        assert_eq!(recs[0].parent_span_id, None, "{id}");
        assert_eq!(recs[1].parent_span_id, Some(recs[0].span_id), "{id}");
        assert!(recs.iter().all(|r| r.trace_flags.is_sampled()), "{id}");
        traces.insert(trace);
    }
    assert_eq!(traces.len(), 2, "two requests, two traces");
    assert_ne!(traces.iter().next(), Some(&root.scope().trace_id));
    // The conversation still joins them.
    assert!(
        records
            .iter()
            .all(|r| r.correlation_id.as_deref() == Some("conv-1"))
    );
}

#[tokio::test]
async fn a_traceparent_holds_for_every_request_under_it() {
    let (d, sink) = memory().await;
    let cx: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        .parse()
        .unwrap();
    let app_trace: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
    let app_span: SpanId = "00f067aa0ba902b7".parse().unwrap();
    let joined = Auditor::new(d.clone()).with_trace_context(cx);
    assert_eq!(joined.trace_context(), Some(&cx));
    joined
        .emit(EventType::SessionStart, &json!({}))
        .await
        .unwrap();
    handle(&joined.for_request(Some("r1"))).await;
    handle(&joined.with_agent("a").for_request(Some("r2"))).await;
    d.shutdown(Duration::from_secs(5)).await;
    let records = sink.records();
    assert_eq!(records.len(), 7);
    let spans: BTreeMap<SpanId, Option<SpanId>> = records
        .iter()
        .map(|r| (r.span_id, r.parent_span_id))
        .collect();
    for r in &records {
        assert_eq!(r.trace_id, app_trace, "seq {}", r.seq);
        // Flags as given: this trace is not sampled.
        assert_eq!(r.trace_flags, TraceFlags::NONE, "seq {}", r.seq);
        // Every record's span reaches the application's span.
        let mut span = r.span_id;
        let mut hops = 0;
        while let Some(Some(parent)) = spans.get(&span) {
            span = *parent;
            hops += 1;
            assert!(hops < 10, "a cycle");
        }
        assert_eq!(span, app_span, "seq {}", r.seq);
    }
    for (id, recs) in by_request(&records) {
        if !id.is_empty() {
            assert_eq!(recs[0].parent_span_id, Some(app_span), "{id}");
        }
    }
}

#[tokio::test]
async fn ids_without_flags_join_as_a_sampled_trace() {
    let (d, sink) = memory().await;
    let trace = TraceId::random();
    let parent = SpanId::random();
    let request = Auditor::new(d.clone())
        .with_trace_context((trace, Some(parent)))
        .for_request(None);
    request
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let r = &sink.records()[0];
    assert_eq!((r.trace_id, r.parent_span_id), (trace, Some(parent)));
    assert!(r.trace_flags.is_sampled());
}
