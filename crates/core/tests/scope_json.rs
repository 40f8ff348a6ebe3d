//! The scope keys of a record's body are copied from a per-thread cache
//! when consecutive records share a scope: records of handles that differ
//! in any one scope field, interleaved on one thread, must each carry
//! their own scope, never the previous handle's.

use std::time::Duration;

use agent_audit_core::{Auditor, Dispatcher, EventType, MemorySink, SinkOptions};
use serde_json::{Value, json};

#[test]
fn interleaved_handles_each_write_their_own_scope() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = MemorySink::new();
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("memory"), sink.clone())
            .start()
            .await
            .unwrap();
        let base = Auditor::new(d.clone()).for_request(Some("req-1"));
        let handles = [
            base.with_agent("assistant"),
            base.with_agent("assistant").child_span(),
            base.with_agent("user_proxy"),
            base.with_agent("assistant").with_user("u-1"),
            base.with_agent("assistant").with_user("u-2"),
            base.with_agent("assistant").with_session("s-1"),
            base.with_agent("assistant")
                .with_attribute("tenant", "a")
                .unwrap(),
            base.with_agent("assistant")
                .with_attribute("tenant", "b")
                .unwrap(),
            base.with_agent("assistant").with_correlation_id("corr-2"),
            Auditor::new(d.clone()).for_request(Some("req-2")),
        ];
        for round in 0..3 {
            for (i, h) in handles.iter().enumerate() {
                // Twice in a row (a cache hit), then the next handle (a miss).
                for _ in 0..2 {
                    h.emit(EventType::ToolCall, &json!({"i": i, "round": round}))
                        .await
                        .unwrap();
                }
            }
        }
        d.shutdown(Duration::from_secs(5)).await;
        let records = sink.records();
        assert_eq!(records.len(), 3 * handles.len() * 2);
        for r in &records {
            let body: Value = serde_json::from_str(&format!("{{{}}}", r.body())).unwrap();
            let i = body["payload"]["i"].as_u64().unwrap() as usize;
            let s = handles[i].scope();
            let text = |v: &Option<std::sync::Arc<str>>| v.as_deref().map(str::to_string);
            assert_eq!(
                body["request_id"].as_str().map(str::to_string),
                text(&s.request_id),
                "record {}",
                r.seq
            );
            assert_eq!(
                body["correlation_id"].as_str().map(str::to_string),
                text(&s.correlation_id)
            );
            assert_eq!(body["agent"].as_str().map(str::to_string), text(&s.agent));
            assert_eq!(
                body["user_id"].as_str().map(str::to_string),
                text(&s.user_id)
            );
            assert_eq!(
                body["session_id"].as_str().map(str::to_string),
                text(&s.session_id)
            );
            assert_eq!(body["trace_id"], s.trace_id.to_string());
            assert_eq!(body["span_id"], s.span_id.to_string());
            assert_eq!(
                body["parent_span_id"].as_str().map(str::to_string),
                s.parent_span_id.map(|p| p.to_string())
            );
            assert_eq!(body["attributes"].to_string(), s.attributes.json());
            // The record's typed scope and its body agree.
            assert_eq!(*r.scope, *s);
        }
    });
}
