//! Schema v2's who and under which policy: `user_id`, `session_id` and
//! `attributes` set on a handle reach every record of it and of the
//! handles made from it, the dispatcher's attributes reach every record
//! (its own included), and the redaction hook sees the ids and values.

use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{
    AttrValue, AttributeError, Attributes, Auditor, Dispatcher, EventType, IdRewrite,
    MAX_ATTRIBUTE_VALUE_BYTES, MemorySink, PayloadFilter, SinkOptions, StoredRecord,
};
use serde_json::json;

/// Pseudonymises `user_id` and drops a `secret_note` attribute, the
/// way a redactor's `hash` and `drop` rules would.
struct Pseudonyms;

impl PayloadFilter for Pseudonyms {
    fn apply(&self, _payload: &mut serde_json::Value) -> Vec<String> {
        Vec::new()
    }

    fn may_apply(&self, _payload_json: &str) -> bool {
        false
    }

    fn apply_id(&self, field: &str, id: &str) -> IdRewrite {
        match field {
            "user_id" => IdRewrite::Replace(format!("pseudo:{}", id.len())),
            "secret_note" => IdRewrite::Drop,
            _ => IdRewrite::Keep,
        }
    }
}

fn lines(sink: &MemorySink) -> Vec<String> {
    sink.records()
        .iter()
        .map(|r| {
            let mut line = Vec::new();
            r.encode_line("p", &mut line);
            String::from_utf8(line).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_session_and_attributes_reach_every_record_of_the_request_and_its_children() {
    let m = MemorySink::new();
    let base = Attributes::new().with("tenant", "emea-retail").unwrap();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("m"), m.clone())
        .attributes(base)
        .start()
        .await
        .unwrap();
    let conversation = Auditor::new(d.clone())
        .with_user("u-42")
        .with_session("s-7")
        .with_attribute("purpose", "support")
        .unwrap()
        .with_attribute("tier", 3)
        .unwrap();
    let request = conversation.for_request(Some("req-1"));
    let child = request.with_agent("assistant").child_span();
    request
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap();
    child
        .emit(EventType::AssistantInput, &json!({}))
        .await
        .unwrap();
    // A handle without them still has the dispatcher's attribute.
    Auditor::new(d.clone())
        .emit(EventType::Custom("heartbeat".into()), &json!({}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let text = lines(&m);
    assert_eq!(text.len(), 3);
    for line in &text[..2] {
        assert!(line.starts_with("{\"v\":2,\"seq\":"), "{line}");
        assert!(
            line.contains(r#""agent":"#)
                && line.contains(
                    r#","user_id":"u-42","session_id":"s-7","attributes":{"purpose":"support","tenant":"emea-retail","tier":3},"payload":{}"#
                ),
            "keys in schema order: {line}"
        );
        let r: StoredRecord = serde_json::from_str(line).unwrap();
        assert_eq!(r.v, 2);
        assert_eq!(r.user_id.as_deref(), Some("u-42"));
        assert_eq!(r.session_id.as_deref(), Some("s-7"));
        assert_eq!(r.attributes["purpose"], "support");
        // StoredRecord writes back the same line.
        assert_eq!(&serde_json::to_string(&r).unwrap(), line);
    }
    assert!(
        text[2]
            .contains(r#""user_id":null,"session_id":null,"attributes":{"tenant":"emea-retail"}"#),
        "{}",
        text[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_sees_user_ids_and_attribute_values_and_a_refused_attribute_keeps_the_rest() {
    let m = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("m"), m.clone())
        .filter(Arc::new(Pseudonyms))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone())
        .with_user("alice@example.com")
        .with_attribute("secret_note", "the vault code")
        .unwrap()
        .with_attribute("purpose", "support")
        .unwrap();
    let long = "x".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1);
    match a.with_attribute("ticket", long.as_str()) {
        Err(e @ AttributeError::ValueTooLarge { .. }) => {
            assert!(e.to_string().contains("`ticket`"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let nested = json!({"a": {"b": {"c": {"d": 1}}}});
    let e = AttrValue::from_json("classification", &nested).unwrap_err();
    assert!(e.to_string().contains("`classification`"), "{e}");
    // The handle is unchanged by the refusals, and emits.
    a.emit(EventType::UserRequest, &json!({"q": 1}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let line = &lines(&m)[0];
    assert!(!line.contains("alice"), "{line}");
    assert!(!line.contains("vault"), "{line}");
    let r: StoredRecord = serde_json::from_str(line).unwrap();
    assert_eq!(r.user_id.as_deref(), Some("pseudo:17"));
    assert_eq!(r.attributes.len(), 1);
    assert_eq!(r.attributes["purpose"], "support");
}

#[test]
fn a_v1_record_reads_without_the_v2_keys_and_writes_back_as_v1() {
    let line = r#"{"v":1,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user_proxy","payload":{},"prev":"00"}"#;
    let r: StoredRecord = serde_json::from_str(line).unwrap();
    assert_eq!((r.user_id.clone(), r.attributes.len()), (None, 0));
    assert_eq!(serde_json::to_string(&r).unwrap(), line);
}
