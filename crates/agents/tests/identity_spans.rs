//! Who asked, on the runtime's GenAI spans: a conversation scoped to a
//! user, a session and an attribute has them on every span
//! (`invoke_agent`, `chat`, `execute_tool`), as the records do; under a
//! `hash` rule on `user_id` the spans carry the records' pseudonym and
//! never the clear id; a conversation given an over-long user id through
//! the infallible setter stops at its first record and no span carries
//! the id.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::{AgentError, OfflineModel, tutorial};
use agent_audit_core::otel::{Telemetry, TelemetryOptions};
use agent_audit_core::{Auditor, Dispatcher, EmitError, MAX_ID_BYTES, MemorySink, SinkOptions};
use agent_audit_redact::{RedactionConfig, Redactor};
use opentelemetry::Value;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const PROMPT: &str = "What is the balance of account 12345?";

#[derive(serde::Deserialize)]
struct AuditToml {
    redaction: RedactionConfig,
}

/// The redactor of an audit.toml that hashes `user_id` under `key`.
fn hashing_users(key: &str) -> Redactor {
    let toml = r#"
[redaction]
key_env = "AUDIT_REDACTION_KEY"

[[redaction.rules]]
name = "user"
fields = ["user_id"]
action = "hash"
"#;
    let config = toml::from_str::<AuditToml>(toml).unwrap().redaction;
    let key = key.to_string();
    Redactor::from_config_with_env(&config, |name| {
        (name == "AUDIT_REDACTION_KEY").then(|| OsString::from(key.clone()))
    })
    .unwrap()
}

/// One tutorial conversation (offline model: a tool call, then the
/// answer) by `scope(root)`, behind `redactor`: its result, records and
/// spans.
async fn conversation(
    redactor: Option<Redactor>,
    scope: impl FnOnce(Auditor) -> Auditor,
) -> (
    Result<String, AgentError>,
    Vec<Arc<agent_audit_core::Record>>,
    Vec<SpanData>,
) {
    let exporter = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let telemetry = Telemetry::new(
        &tracer_provider,
        &SdkMeterProvider::builder().build(),
        TelemetryOptions::default(),
    );
    let sink = MemorySink::new();
    let mut builder = Dispatcher::builder().sink(SinkOptions::new("memory"), sink.clone());
    if let Some(r) = redactor {
        builder = builder.filter(Arc::new(r));
    }
    let dispatcher = builder.start().await.unwrap();
    let root = Auditor::new(dispatcher.clone()).with_telemetry(telemetry);
    let request = scope(root).for_request(Some("req-1"));
    let result = tutorial::run(&request, Arc::new(OfflineModel::new()), PROMPT).await;
    dispatcher.shutdown(Duration::from_secs(5)).await;
    let mut spans = exporter.get_finished_spans().unwrap();
    spans.sort_by_key(|s| s.start_time);
    (result, sink.records(), spans)
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn string(s: &str) -> Option<Value> {
    Some(Value::String(s.to_string().into()))
}

/// Each operation the tutorial runs has at least one span.
fn assert_every_operation(spans: &[SpanData]) {
    for op in ["invoke_agent", "chat", "execute_tool"] {
        assert!(
            spans
                .iter()
                .any(|s| attr(s, "gen_ai.operation.name") == string(op).as_ref()),
            "no {op} span among {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_of_a_conversation_carries_its_user_session_and_attribute() {
    let (result, records, spans) = conversation(None, |a| {
        a.with_user("u-42")
            .with_session("s-7")
            .with_attribute("purpose", "support")
            .unwrap()
    })
    .await;
    result.unwrap();
    assert_eq!(records.len(), 8, "the tutorial's eight records");
    assert_every_operation(&spans);
    for s in &spans {
        assert_eq!(attr(s, "user.id").cloned(), string("u-42"), "{}", s.name);
        assert_eq!(attr(s, "session.id").cloned(), string("s-7"), "{}", s.name);
        assert_eq!(
            attr(s, "audit.attribute.purpose").cloned(),
            string("support"),
            "{}",
            s.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_user_id_is_the_records_pseudonym_on_every_span_never_the_clear_id() {
    const USER: &str = "alice@example.com";
    let key = "identity-span-test-key-0123456789";
    let (result, records, spans) =
        conversation(Some(hashing_users(key)), |a| a.with_user(USER)).await;
    result.unwrap();
    let pseudonym = records[0].user_id.clone().expect("a user id");
    assert!(pseudonym.starts_with("hmac:"), "{pseudonym}");
    assert!(
        records
            .iter()
            .all(|r| r.user_id.as_deref() == Some(&*pseudonym))
    );
    assert_every_operation(&spans);
    for s in &spans {
        assert_eq!(
            attr(s, "user.id").cloned(),
            string(&pseudonym),
            "{}",
            s.name
        );
        for kv in &s.attributes {
            let text = kv.value.to_string();
            assert!(
                !text.contains("alice") && !kv.key.as_str().contains("alice"),
                "{}: {} = {text}",
                s.name,
                kv.key
            );
        }
    }
    // The same pseudonym under the same key in another run.
    let (_, again, spans_again) =
        conversation(Some(hashing_users(key)), |a| a.with_user(USER)).await;
    assert_eq!(again[0].user_id.as_deref(), Some(&*pseudonym));
    assert_eq!(
        attr(&spans_again[0], "user.id").cloned(),
        string(&pseudonym)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_user_id_stops_the_conversation_and_reaches_no_span() {
    let huge = "h".repeat(MAX_ID_BYTES + 1);
    let (result, records, spans) = conversation(None, |a| a.with_user(&huge)).await;
    match result {
        Err(AgentError::Audit {
            source: EmitError::IdTooLong { field, len, max },
            ..
        }) => assert_eq!(
            (field, len, max),
            ("user_id", MAX_ID_BYTES + 1, MAX_ID_BYTES)
        ),
        other => panic!("expected an audit error naming user_id, got {other:?}"),
    }
    assert!(records.is_empty(), "{} records written", records.len());
    assert!(!spans.is_empty(), "the run's span was opened and ended");
    for s in &spans {
        assert_eq!(attr(s, "user.id"), None, "{}", s.name);
        assert!(
            s.attributes
                .iter()
                .all(|kv| !kv.value.to_string().contains("hhhh")),
            "{}",
            s.name
        );
    }
}
