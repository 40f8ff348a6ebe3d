//! Who asked, on the GenAI spans (issue 14 item 5): every span the
//! auditor opens carries the scope's `user.id`, `session.id` and each
//! attribute under the name the OTLP log records give it, the values the
//! records carry, escaped and bounded; none of it goes on the metrics; an
//! attribute cannot pose as `user.id`; an over-long id reaches no span.

use std::time::Duration;

use agent_audit_core::otel::{ChatOutcome, MAX_SUPPLIED_LEN, Telemetry, TelemetryOptions};
use agent_audit_core::{
    AttrValue, Attributes, Auditor, Dispatcher, EmitError, EventType, MAX_ID_BYTES, MemorySink,
    SinkOptions,
};
use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;

struct Otel {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

impl Otel {
    fn new() -> Otel {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporter::default();
        Otel {
            tracer_provider: SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .build(),
            meter_provider: SdkMeterProvider::builder()
                .with_periodic_exporter(metrics.clone())
                .build(),
            spans,
            metrics,
        }
    }

    fn telemetry(&self) -> Telemetry {
        Telemetry::new(
            &self.tracer_provider,
            &self.meter_provider,
            TelemetryOptions::default(),
        )
    }

    fn spans(&self) -> Vec<SpanData> {
        let mut spans = self.spans.get_finished_spans().unwrap();
        spans.sort_by_key(|s| s.start_time);
        spans
    }

    /// Every attribute key of every metric data point.
    fn metric_keys(&self) -> Vec<String> {
        self.meter_provider.force_flush().unwrap();
        let mut keys = Vec::new();
        for rm in self.metrics.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for m in sm.metrics() {
                    if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                        for p in h.data_points() {
                            keys.extend(p.attributes().map(|kv| kv.key.to_string()));
                        }
                    }
                    if let AggregatedMetrics::U64(MetricData::Histogram(h)) = m.data() {
                        for p in h.data_points() {
                            keys.extend(p.attributes().map(|kv| kv.key.to_string()));
                        }
                    }
                }
            }
        }
        keys
    }
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

async fn memory(attributes: Attributes) -> (Dispatcher, MemorySink) {
    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .attributes(attributes)
        .start()
        .await
        .unwrap();
    (dispatcher, sink)
}

/// One run with one model call and one tool call, every step emitting.
async fn run(request: &Auditor) -> Result<(), EmitError> {
    let run = request.invoke_agent("bank", Some("openai"), Some("gpt-4o-mini"));
    let run_result = run
        .auditor()
        .emit(EventType::UserRequest, &json!({"content": "balance?"}))
        .await;
    let mut chat = run.auditor().chat(Some("openai"), "gpt-4o-mini");
    chat.set_response(&ChatOutcome {
        model: Some("gpt-4o-mini"),
        input_tokens: Some(10),
        output_tokens: Some(2),
        ..Default::default()
    });
    let chat_result = chat
        .auditor()
        .emit(EventType::AssistantOutput, &json!({}))
        .await;
    chat.end();
    let tool = run.auditor().execute_tool("get_account_balance", "call_1");
    let tool_result = tool.auditor().emit(EventType::ToolCall, &json!({})).await;
    tool.end();
    run.end();
    run_result.and(chat_result).and(tool_result).map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_of_a_request_carries_its_user_session_and_attributes() {
    let otel = Otel::new();
    let service = Attributes::new()
        .with("tenant.id", "emea-retail")
        .unwrap()
        .with("region", "eu")
        .unwrap();
    let (dispatcher, sink) = memory(service).await;
    let request = Auditor::new(dispatcher.clone())
        .with_telemetry(otel.telemetry())
        .with_user("u-42")
        .with_session("s-7")
        .with_attribute("purpose", "support")
        .unwrap()
        .with_attribute("tier", 3)
        .unwrap()
        .with_attribute("ratio", AttrValue::float(0.5).unwrap())
        .unwrap()
        .with_attribute("big", u64::MAX)
        .unwrap()
        .with_attribute("vip", true)
        .unwrap()
        // Attributes posing as ours.
        .with_attribute("user.id", "mallory")
        .unwrap()
        .with_attribute("error.type", "spoof")
        .unwrap()
        .with_attribute("enduser.id", "mallory")
        .unwrap()
        .with_attribute("gen_ai.operation.name", "spoof")
        .unwrap()
        .for_request(Some("req-1"));
    run(&request).await.unwrap();
    dispatcher.shutdown(Duration::from_secs(5)).await;

    let spans = otel.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "invoke_agent bank",
            "chat gpt-4o-mini",
            "execute_tool get_account_balance"
        ]
    );
    for s in &spans {
        let name = &s.name;
        assert_eq!(attr(s, "user.id").cloned(), string("u-42"), "{name}");
        assert_eq!(attr(s, "session.id").cloned(), string("s-7"), "{name}");
        assert_eq!(
            attr(s, "audit.attribute.purpose").cloned(),
            string("support"),
            "{name}"
        );
        assert_eq!(attr(s, "audit.attribute.tier"), Some(&Value::I64(3)));
        assert_eq!(attr(s, "audit.attribute.ratio"), Some(&Value::F64(0.5)));
        assert_eq!(
            attr(s, "audit.attribute.big").cloned(),
            string(&u64::MAX.to_string()),
            "beyond i64: the decimal text, not a rounded float"
        );
        assert_eq!(attr(s, "audit.attribute.vip"), Some(&Value::Bool(true)));
        // The dispatcher's attributes ([attributes] in audit.toml) too; a
        // dotted name is kept as the convention it names.
        assert_eq!(attr(s, "tenant.id").cloned(), string("emea-retail"));
        assert_eq!(attr(s, "audit.attribute.region").cloned(), string("eu"));
        // The posers are fenced off under audit.attribute.; ours stand.
        assert_eq!(
            attr(s, "audit.attribute.user.id").cloned(),
            string("mallory")
        );
        assert_eq!(
            attr(s, "audit.attribute.error.type").cloned(),
            string("spoof")
        );
        assert_eq!(attr(s, "error.type"), None, "{name} failed nothing");
        assert_eq!(attr(s, "enduser.id"), None, "{name}: the older user key");
        assert_eq!(
            attr(s, "audit.attribute.enduser.id").cloned(),
            string("mallory")
        );
        assert!(
            s.attributes
                .iter()
                .filter(
                    |kv| kv.key.as_str() == "user.id" || kv.key.as_str() == "gen_ai.operation.name"
                )
                .count()
                == 2,
            "{name}: one user.id, one gen_ai.operation.name"
        );
        assert_ne!(
            attr(s, "gen_ai.operation.name").cloned(),
            string("spoof"),
            "{name}"
        );
    }
    // The records carry the same.
    for r in sink.records().iter() {
        assert_eq!(r.user_id.as_deref(), Some("u-42"));
        assert_eq!(r.session_id.as_deref(), Some("s-7"));
    }
    // Metrics: no series per user, session or attribute.
    let keys = otel.metric_keys();
    assert!(
        keys.iter().any(|k| k == "gen_ai.operation.name"),
        "the chat's metrics were exported: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("user.")
            || k.starts_with("session.")
            || k.contains("attribute")
            || k == "tenant.id"),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_reach_spans_escaped_and_bounded_and_an_over_long_one_not_at_all() {
    let otel = Otel::new();
    let (dispatcher, sink) = memory(Attributes::new()).await;
    let base = Auditor::new(dispatcher.clone()).with_telemetry(otel.telemetry());

    // Control and bidi characters: escaped on the span (a trace viewer
    // would run them), as records are by the review tools.
    let sneaky = "u-1\u{1b}[2J\r\n\u{202e}gpj.exe";
    let hostile_key = "x\u{1b}]0;pwned\u{7}";
    let a = base
        .with_user(sneaky)
        .with_session("s\u{9b}1")
        .with_attribute(hostile_key, "v\u{1b}[31m")
        .unwrap()
        .for_request(Some("req-a"));
    run(&a).await.unwrap();
    // Within MAX_ID_BYTES but over a span's MAX_SUPPLIED_LEN: whole in the
    // records, cut on the span.
    let long = "L".repeat(MAX_ID_BYTES);
    let b = base.with_user(&long).for_request(Some("req-b"));
    run(&b).await.unwrap();
    // Over MAX_ID_BYTES through the infallible setter: no record, and no
    // span carries it.
    let huge = "H".repeat(10 * 1024 * 1024);
    let c = base
        // The correlation id is a caller's id too: within MAX_ID_BYTES on
        // records (an over-long one is refused like a user id), escaped
        // and bounded on the span.
        .with_correlation_id(&format!("conv\u{1b}[2J{}", "C".repeat(MAX_ID_BYTES - 8)))
        .with_user(&huge)
        .with_session("s-9")
        .for_request(Some("req-c"));
    match run(&c).await {
        Err(EmitError::IdTooLong { field, .. }) => assert_eq!(field, "user_id"),
        other => panic!("{other:?}"),
    }
    dispatcher.shutdown(Duration::from_secs(5)).await;

    let spans = otel.spans();
    assert_eq!(spans.len(), 9);
    let (of_a, rest) = spans.split_at(3);
    let (of_b, of_c) = rest.split_at(3);
    for s in of_a {
        assert_eq!(
            attr(s, "user.id").cloned(),
            string("u-1\\u{1b}[2J\\u{d}\\u{a}\\u{202e}gpj.exe")
        );
        assert_eq!(attr(s, "session.id").cloned(), string("s\\u{9b}1"));
        assert_eq!(
            attr(s, "audit.attribute.x\\u{1b}]0;pwned\\u{7}").cloned(),
            string("v\\u{1b}[31m")
        );
    }
    for s in of_b {
        let Some(Value::String(user)) = attr(s, "user.id") else {
            panic!("{}: no user.id", s.name)
        };
        assert!(
            user.as_str().len() <= MAX_SUPPLIED_LEN,
            "{}",
            user.as_str().len()
        );
        assert!(user.as_str().starts_with("LLLL") && user.as_str().ends_with('…'));
    }
    for s in of_c {
        assert_eq!(attr(s, "user.id"), None, "{}", s.name);
        let Some(Value::String(conversation)) = attr(s, "gen_ai.conversation.id") else {
            panic!("{}: no gen_ai.conversation.id", s.name)
        };
        assert!(
            conversation.as_str().starts_with("conv\\u{1b}[2JCCC"),
            "{}",
            s.name
        );
        assert_eq!(attr(s, "session.id").cloned(), string("s-9"));
    }
    for s in &spans {
        for kv in &s.attributes {
            let text = kv.value.to_string();
            assert!(
                text.len() <= MAX_SUPPLIED_LEN && !text.chars().any(char::is_control),
                "{}: {} is {} bytes or unescaped",
                s.name,
                kv.key,
                text.len()
            );
            assert!(!kv.key.as_str().chars().any(char::is_control), "{}", kv.key);
        }
    }
    let records = sink.records();
    assert!(
        records
            .iter()
            .all(|r| r.request_id.as_deref() != Some("req-c"))
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.user_id.as_deref() == Some(long.as_str()))
            .count(),
        3,
        "the records carry the long id whole"
    );
    assert_eq!(
        records[0].user_id.as_deref(),
        Some(sneaky),
        "records keep it as given (JSON-escaped in the line)"
    );
}
