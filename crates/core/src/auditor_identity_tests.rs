//! An over-long `user_id` or `session_id` given to the infallible setters
//! never reaches a sink: every emit of the handle, and of the handles made
//! from it, fails with [`EmitError::IdTooLong`] naming the field and the
//! limit, never the id, and no seq is used.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::{
    AckLevel, AttributeError, Auditor, Dispatcher, EmitError, EventType, IdRewrite, MAX_ID_BYTES,
    MemorySink, PayloadFilter, SinkOptions,
};

/// Notes the length of every id the rules see, and hashes `user_id` the
/// way a `hash` rule would (a stand-in for the redact crate, which core
/// cannot depend on).
#[derive(Default)]
struct SeenIds(Mutex<Vec<(String, usize)>>);

impl PayloadFilter for SeenIds {
    fn apply(&self, _payload: &mut serde_json::Value) -> Vec<String> {
        Vec::new()
    }

    fn may_apply(&self, _payload_json: &str) -> bool {
        false
    }

    fn apply_id(&self, field: &str, id: &str) -> IdRewrite {
        self.0.lock().unwrap().push((field.to_string(), id.len()));
        match field {
            "user_id" => IdRewrite::Replace(format!("pseudo:{}", id.len())),
            _ => IdRewrite::Keep,
        }
    }
}

impl SeenIds {
    /// The rules never saw (nor hashed) an id over the limit.
    fn assert_all_within_limit(&self) {
        let seen = self.0.lock().unwrap();
        assert!(seen.iter().all(|(_, len)| *len <= MAX_ID_BYTES), "{seen:?}");
    }
}

async fn memory(filter: Option<Arc<SeenIds>>) -> (Dispatcher, MemorySink) {
    let sink = MemorySink::new();
    let mut builder = Dispatcher::builder().sink(SinkOptions::new("m"), sink.clone());
    if let Some(f) = filter {
        builder = builder.filter(f);
    }
    (builder.start().await.unwrap(), sink)
}

fn assert_refused(result: Result<crate::Receipt, EmitError>, field: &str, len: usize) {
    match result {
        Err(EmitError::IdTooLong {
            field: f,
            len: l,
            max,
        }) => {
            assert_eq!((f, l, max), (field, len, MAX_ID_BYTES));
        }
        other => panic!("expected IdTooLong for {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn an_over_long_user_id_fails_every_emit_of_the_handle_and_its_children() {
    let seen = Arc::new(SeenIds::default());
    let (d, sink) = memory(Some(seen.clone())).await;
    // A hostile header: 10 MB.
    let hostile = "u".repeat(10 * 1024 * 1024);
    let root = Auditor::new(d.clone()).with_user(&hostile);
    assert_eq!(root.scope().user_id, None, "the id is not kept");
    let request = root.for_request(Some("req-1"));
    let child = request.child_span().with_agent("assistant");
    for handle in [&root, &request, &child] {
        assert_refused(
            handle.emit(EventType::UserRequest, &json!({})).await,
            "user_id",
            hostile.len(),
        );
        assert_refused(
            handle
                .emit_wait(EventType::ToolCall, &json!({}), AckLevel::Durable)
                .await,
            "user_id",
            hostile.len(),
        );
    }
    let err = request
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`user_id`") && err.contains("1024"), "{err}");
    assert!(!err.contains("uuuu"), "the error quotes the id: {err}");
    // The rules never scanned (nor hashed) the id.
    seen.assert_all_within_limit();
    // Given an id within the limit, the handle emits again; the refusals
    // used no seq.
    let fixed = request.with_user("u-42");
    let receipt = fixed
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap();
    assert_eq!(receipt.seq, 1);
    d.shutdown(Duration::from_secs(5)).await;
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].user_id.as_deref(), Some("pseudo:4"));
}

#[tokio::test]
async fn an_over_long_session_id_is_refused_naming_session_id_and_the_limit_is_inclusive() {
    let (d, sink) = memory(None).await;
    let base = Auditor::new(d.clone()).for_request(None);
    let at_limit = "s".repeat(MAX_ID_BYTES);
    let over = "s".repeat(MAX_ID_BYTES + 1);
    base.with_session(&at_limit)
        .with_user(&at_limit)
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap();
    let bad = base.with_user("u-42").with_session(&over);
    assert_refused(
        bad.emit(EventType::UserRequest, &json!({})).await,
        "session_id",
        MAX_ID_BYTES + 1,
    );
    // Both over: still refused (the user's is named first); fixing one
    // leaves the other refused.
    let both = base.with_user(&over).with_session(&over);
    assert_refused(
        both.emit(EventType::UserRequest, &json!({})).await,
        "user_id",
        MAX_ID_BYTES + 1,
    );
    assert_refused(
        both.with_user("u-1")
            .emit(EventType::UserRequest, &json!({}))
            .await,
        "session_id",
        MAX_ID_BYTES + 1,
    );
    bad.with_session("s-7")
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let records = sink.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].session_id.as_deref(), Some(at_limit.as_str()));
    assert_eq!(records[1].session_id.as_deref(), Some("s-7"));
    assert_eq!(records[1].user_id.as_deref(), Some("u-42"));
}

#[tokio::test]
async fn try_with_refuses_an_over_long_id_where_it_is_given() {
    let (d, _sink) = memory(None).await;
    let base = Auditor::new(d.clone()).with_user("u-1").with_session("s-1");
    let over = "x".repeat(MAX_ID_BYTES + 1);
    for (field, result) in [
        ("user_id", base.try_with_user(&over)),
        ("session_id", base.try_with_session(&over)),
    ] {
        match result {
            Err(AttributeError::IdTooLong { field: f, len, max }) => {
                assert_eq!((f, len, max), (field, MAX_ID_BYTES + 1, MAX_ID_BYTES))
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let ok = base.try_with_user("u-2").unwrap();
    assert_eq!(ok.scope().user_id.as_deref(), Some("u-2"));
    assert_eq!(base.scope().user_id.as_deref(), Some("u-1"));
    d.shutdown(Duration::from_secs(5)).await;
}

/// The same for the ids a request is filed under: a hostile request header
/// taken as the request id, or as the conversation's correlation id, is
/// refused at the next emit, never written, and the rules never see it.
#[tokio::test]
async fn over_long_request_and_correlation_ids_are_refused_naming_the_field() {
    let seen = Arc::new(SeenIds::default());
    let (d, sink) = memory(Some(seen.clone())).await;
    let over = "r".repeat(MAX_ID_BYTES + 1);
    let at_limit = "r".repeat(MAX_ID_BYTES);
    let root = Auditor::new(d.clone());
    let bad_request = root.for_request(Some(&over)).with_agent("assistant");
    assert_refused(
        bad_request.emit(EventType::UserRequest, &json!({})).await,
        "request_id",
        MAX_ID_BYTES + 1,
    );
    assert_refused(
        bad_request
            .child_span()
            .emit_wait(EventType::ToolCall, &json!({}), AckLevel::Written)
            .await,
        "request_id",
        MAX_ID_BYTES + 1,
    );
    // A request within the limit on the same handle clears it.
    bad_request
        .for_request(Some(&at_limit))
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap();
    let bad_correlation = root.with_correlation_id(&over).for_request(Some("req-2"));
    assert_refused(
        bad_correlation
            .emit(EventType::UserRequest, &json!({}))
            .await,
        "correlation_id",
        MAX_ID_BYTES + 1,
    );
    bad_correlation
        .with_correlation_id("conv-1")
        .emit(EventType::UserRequest, &json!({}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let records = sink.records();
    assert_eq!(records.len(), 2, "only the two good emits were written");
    assert_eq!(records[0].request_id.as_deref(), Some(at_limit.as_str()));
    assert_eq!(records[1].correlation_id.as_deref(), Some("conv-1"));
    assert_eq!(records[1].request_id.as_deref(), Some("req-2"));
    seen.assert_all_within_limit();
}
