//! The runtime's GenAI spans and metrics, through the OpenTelemetry SDK with
//! its in-memory exporters: one tree per conversation whose spans every
//! record points at, the application's span as the parent, one trace per
//! request, the conventions' histograms, content only on request and only
//! redacted.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::{OfflineModel, tutorial};
use agent_audit_core::otel::{Telemetry, TelemetryOptions, names};
use agent_audit_core::{Auditor, Dispatcher, MemorySink, Record, SinkOptions};
use agent_audit_redact::{RedactionConfig, Redactor};
use common::*;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Array, Context, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, HistogramDataPoint, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const PROMPT: &str = "What is the balance of account 12345?";

/// A histogram point: count, sum, attributes as text.
type Point = (u64, f64, Vec<(String, String)>);

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

    fn telemetry(&self, capture_content: bool) -> Telemetry {
        Telemetry::new(
            &self.tracer_provider,
            &self.meter_provider,
            TelemetryOptions::default().capture_content(capture_content),
        )
    }

    /// The finished spans, by start time.
    fn spans(&self) -> Vec<SpanData> {
        let mut spans = self.spans.get_finished_spans().unwrap();
        spans.sort_by_key(|s| s.start_time);
        spans
    }

    /// The histogram data points of `name` (u64 or f64 as `f64` sums).
    fn histogram(&self, name: &str) -> Vec<Point> {
        // Cumulative: one fresh export holds the totals.
        self.metrics.reset();
        self.meter_provider.force_flush().unwrap();
        let mut out = Vec::new();
        for rm in self.metrics.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for m in sm.metrics().filter(|m| m.name() == name) {
                    match m.data() {
                        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                            out.extend(h.data_points().map(|p| point(p, p.sum())))
                        }
                        AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                            out.extend(h.data_points().map(|p| point(p, p.sum() as f64)))
                        }
                        other => panic!("{name} is not a histogram: {other:?}"),
                    }
                }
            }
        }
        out
    }

    /// The last value of the u64 sum `name` for each sink.
    fn sums(&self, name: &str) -> Vec<(String, u64)> {
        // Cumulative: one fresh export holds the totals.
        self.metrics.reset();
        self.meter_provider.force_flush().unwrap();
        let mut out = Vec::new();
        for rm in self.metrics.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for m in sm.metrics().filter(|m| m.name() == name) {
                    if let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() {
                        out.extend(s.data_points().map(|p| {
                            let sink = p
                                .attributes()
                                .find(|kv| kv.key.as_str() == names::SINK)
                                .map(|kv| kv.value.to_string())
                                .unwrap_or_default();
                            (sink, p.value())
                        }));
                    }
                }
            }
        }
        out
    }
}

fn point<T>(p: &HistogramDataPoint<T>, sum: f64) -> Point {
    let attrs = p
        .attributes()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    (p.count(), sum, attrs)
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    attr(span, key)
        .map(|v| v.to_string())
        .unwrap_or_else(|| panic!("span `{}` has no {key}", span.name))
}

fn has(attrs: &[(String, String)], key: &str, value: &str) -> bool {
    attrs.iter().any(|(k, v)| k == key && v == value)
}

/// Every record's (trace id, span id) is an exported span's, or one of
/// `also` (the application's own).
fn assert_records_point_at_spans(records: &[Arc<Record>], spans: &[SpanData], also: &[[u8; 8]]) {
    let known: HashSet<([u8; 16], [u8; 8])> = spans
        .iter()
        .map(|s| {
            (
                s.span_context.trace_id().to_bytes(),
                s.span_context.span_id().to_bytes(),
            )
        })
        .collect();
    for r in records {
        let span = r.span_id.to_bytes();
        assert!(
            known.contains(&(r.trace_id.to_bytes(), span)) || also.contains(&span),
            "{} (seq {}) points at {}/{}, not an exported span",
            r.event_type,
            r.seq,
            r.trace_id,
            r.span_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tutorial_turn_is_one_genai_tree_whose_spans_every_record_points_at() {
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[("call_1", tutorial::TOOL_NAME, r#"{"account_id":"12345"}"#)],
        ),
        Reply::completion(Some("The balance of account 12345 is 42.00 EUR."), &[]),
    ])
    .await;
    let otel = Otel::new();
    let telemetry = otel.telemetry(false);
    let (dispatcher, sink) = memory_dispatcher().await;
    let _health = telemetry.observe_health(&dispatcher);
    let auditor = Auditor::new(dispatcher.clone())
        .with_telemetry(telemetry)
        .with_correlation_id("conv-9")
        .for_request(Some("req-1"));
    let model = Arc::new(client(
        &server.base_url(),
        Some("sk-test"),
        0,
        Duration::from_secs(5),
    ));
    tutorial::run(&auditor, model, PROMPT).await.unwrap();
    finish(&dispatcher).await;
    let records = sink.records();
    let spans = otel.spans();

    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "invoke_agent assistant",
            "chat test-model",
            "execute_tool get_account_balance",
            "chat test-model"
        ]
    );
    let (run, chat, tool) = (&spans[0], &spans[1], &spans[2]);
    let trace = run.span_context.trace_id();
    assert!(
        spans.iter().all(|s| s.span_context.trace_id() == trace),
        "one trace"
    );
    assert_eq!(
        run.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "the root"
    );
    for s in &spans[1..] {
        assert_eq!(
            s.parent_span_id,
            run.span_context.span_id(),
            "{} under the run",
            s.name
        );
    }
    assert_eq!(run.span_kind, SpanKind::Internal);
    assert_eq!(text(run, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(text(run, "gen_ai.agent.name"), "assistant");
    assert_eq!(text(run, "gen_ai.conversation.id"), "conv-9");

    assert_eq!(chat.span_kind, SpanKind::Client);
    assert_eq!(text(chat, "gen_ai.operation.name"), "chat");
    assert_eq!(text(chat, "gen_ai.provider.name"), "openai");
    assert_eq!(text(chat, "gen_ai.request.model"), "test-model");
    assert_eq!(text(chat, "gen_ai.response.model"), "test-model-2024");
    assert_eq!(text(chat, "gen_ai.response.id"), "chatcmpl-test");
    assert_eq!(text(chat, "gen_ai.conversation.id"), "conv-9");
    assert_eq!(
        attr(chat, "gen_ai.response.finish_reasons"),
        Some(&Value::Array(Array::String(vec!["tool_calls".into()])))
    );
    assert_eq!(
        attr(chat, "gen_ai.usage.input_tokens"),
        Some(&Value::I64(11))
    );
    assert_eq!(
        attr(chat, "gen_ai.usage.output_tokens"),
        Some(&Value::I64(7))
    );
    assert_eq!(
        attr(&spans[3], "gen_ai.response.finish_reasons"),
        Some(&Value::Array(Array::String(vec!["stop".into()])))
    );

    assert_eq!(text(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(text(tool, "gen_ai.tool.name"), tutorial::TOOL_NAME);
    assert_eq!(text(tool, "gen_ai.tool.call.id"), "call_1");
    assert!(spans.iter().all(|s| s.status == Status::Unset));

    // Every record points at an exported span, of its step.
    assert_records_point_at_spans(&records, &spans, &[]);
    let span_of = |event: &str| {
        let r = records
            .iter()
            .find(|r| r.event_type.as_str() == event)
            .unwrap();
        r.span_id.to_bytes()
    };
    assert_eq!(
        span_of("user_request"),
        run.span_context.span_id().to_bytes()
    );
    assert_eq!(
        span_of("assistant_input"),
        chat.span_context.span_id().to_bytes()
    );
    assert_eq!(span_of("tool_call"), tool.span_context.span_id().to_bytes());
    assert_eq!(
        span_of("tool_result"),
        tool.span_context.span_id().to_bytes()
    );
    assert_eq!(
        span_of("final_result"),
        run.span_context.span_id().to_bytes()
    );

    // Content stays off spans by default.
    for s in &spans {
        for key in [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
        ] {
            assert!(attr(s, key).is_none(), "{} carries {key}", s.name);
        }
    }

    // One duration point per model call, with requested and reported model.
    let durations = otel.histogram(names::OPERATION_DURATION);
    assert_eq!(
        durations.iter().map(|d| d.0).sum::<u64>(),
        2,
        "{durations:?}"
    );
    assert!(
        durations
            .iter()
            .all(|d| has(&d.2, "gen_ai.operation.name", "chat")
                && has(&d.2, "gen_ai.provider.name", "openai")
                && has(&d.2, "gen_ai.request.model", "test-model")
                && has(&d.2, "gen_ai.response.model", "test-model-2024"))
    );
    // The token histogram carries the server's usage: 11 in, 7 out, twice.
    let tokens = otel.histogram(names::TOKEN_USAGE);
    let of = |kind: &str| -> (u64, f64) {
        tokens
            .iter()
            .filter(|t| has(&t.2, "gen_ai.token.type", kind))
            .fold((0, 0.0), |a, t| (a.0 + t.0, a.1 + t.1))
    };
    assert_eq!(of("input"), (2, 22.0), "{tokens:?}");
    assert_eq!(of("output"), (2, 14.0), "{tokens:?}");
    // The pipeline's health: every record delivered to the sink.
    assert_eq!(
        otel.sums(names::RECORDS_DELIVERED).last(),
        Some(&("memory".to_string(), records.len() as u64))
    );
    assert_eq!(
        otel.histogram(names::ACK_DURATION)
            .iter()
            .map(|d| d.0)
            .sum::<u64>(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_span_is_the_parent_and_its_trace_is_the_records() {
    let otel = Otel::new();
    let tracer = otel.tracer_provider.tracer("bank-app");
    let app_span = tracer.start("POST /chat");
    let app = app_span.span_context().clone();
    let cx = Context::current_with_span(app_span);
    let (dispatcher, sink) = memory_dispatcher().await;
    // The request picks the application's current span up by itself.
    let auditor = {
        let _attached = cx.clone().attach();
        Auditor::new(dispatcher.clone())
            .with_telemetry(otel.telemetry(false))
            .for_request(None)
    };
    tutorial::run(&auditor, Arc::new(OfflineModel), PROMPT)
        .await
        .unwrap();
    cx.span().end();
    finish(&dispatcher).await;
    let records = sink.records();
    let spans = otel.spans();

    let run = spans
        .iter()
        .find(|s| s.name == "invoke_agent assistant")
        .unwrap();
    assert_eq!(
        run.parent_span_id,
        app.span_id(),
        "ours hang under the application's"
    );
    assert!(
        spans
            .iter()
            .all(|s| s.span_context.trace_id() == app.trace_id())
    );
    assert_eq!(spans.len(), 5, "the application's span and our four");
    for r in &records {
        assert_eq!(r.trace_id.to_bytes(), app.trace_id().to_bytes());
    }
    assert_records_point_at_spans(&records, &spans, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_through_one_root_auditor_are_two_traces() {
    let otel = Otel::new();
    let (dispatcher, sink) = memory_dispatcher().await;
    let root = Auditor::new(dispatcher.clone()).with_telemetry(otel.telemetry(false));
    for id in ["r1", "r2"] {
        tutorial::run(&root.for_request(Some(id)), Arc::new(OfflineModel), PROMPT)
            .await
            .unwrap();
    }
    finish(&dispatcher).await;
    let records = sink.records();
    let spans = otel.spans();
    let runs: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("invoke_agent"))
        .collect();
    assert_eq!(runs.len(), 2);
    let (t1, t2) = (
        runs[0].span_context.trace_id(),
        runs[1].span_context.trace_id(),
    );
    assert_ne!(t1, t2, "each request a trace of its own");
    for r in &records {
        let trace = if r.request_id.as_deref() == Some("r1") {
            t1
        } else {
            t2
        };
        assert_eq!(r.trace_id.to_bytes(), trace.to_bytes(), "{}", r.event_type);
    }
    assert_records_point_at_spans(&records, &spans, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_content_passes_the_redaction_rules_first() {
    const SECRET: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
    let redactor = Redactor::from_config(&RedactionConfig::default()).unwrap();
    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .filter(Arc::new(redactor))
        .start()
        .await
        .unwrap();
    let otel = Otel::new();
    let auditor = Auditor::new(dispatcher.clone())
        .with_telemetry(otel.telemetry(true))
        .for_request(None);
    let prompt = format!("My key is {SECRET}. What is the balance of account 12345?");
    tutorial::run(&auditor, Arc::new(OfflineModel), &prompt)
        .await
        .unwrap();
    finish(&dispatcher).await;
    let spans = otel.spans();
    let everything: String = spans
        .iter()
        .flat_map(|s| s.attributes.iter().map(|kv| kv.value.to_string()))
        .collect::<Vec<_>>()
        .join("\n");
    // Content is there, as asked for ...
    for key in [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    ] {
        assert!(
            spans.iter().any(|s| attr(s, key).is_some()),
            "no span has {key}"
        );
    }
    assert!(
        everything.contains("12345"),
        "the prompt's account is on the spans"
    );
    // In the conventions' shape: roles with parts; the system message apart.
    let chat = spans.iter().find(|s| s.name == "chat offline").unwrap();
    let input: serde_json::Value =
        serde_json::from_str(&text(chat, "gen_ai.input.messages")).unwrap();
    assert_eq!(input[0]["role"], "user", "{input}");
    assert_eq!(input[0]["parts"][0]["type"], "text", "{input}");
    let instructions: serde_json::Value =
        serde_json::from_str(&text(chat, "gen_ai.system_instructions")).unwrap();
    assert_eq!(instructions[0]["content"], tutorial::SYSTEM_MESSAGE);
    let output: serde_json::Value =
        serde_json::from_str(&text(chat, "gen_ai.output.messages")).unwrap();
    assert_eq!(output[0]["role"], "assistant", "{output}");
    assert_eq!(output[0]["parts"][0]["type"], "tool_call", "{output}");
    assert_eq!(
        output[0]["parts"][0]["name"],
        tutorial::TOOL_NAME,
        "{output}"
    );
    // ... but not the secret, anywhere.
    assert!(
        !everything.contains(SECRET),
        "a secret reached a span:\n{everything}"
    );
    assert!(!everything.contains("Ab3dEf6hIj9kLm2nOp5q"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_model_call_is_an_error_span_with_its_type() {
    let server = ChatServer::scripted(vec![Reply::error(
        401,
        "Incorrect API key provided",
        "invalid_request_error",
        serde_json::json!("invalid_api_key"),
    )])
    .await;
    let otel = Otel::new();
    let (dispatcher, sink) = memory_dispatcher().await;
    let auditor = Auditor::new(dispatcher.clone())
        .with_telemetry(otel.telemetry(false))
        .for_request(None);
    let model = Arc::new(client(
        &server.base_url(),
        Some("sk-test"),
        0,
        Duration::from_secs(5),
    ));
    let error = tutorial::run(&auditor, model, PROMPT).await.unwrap_err();
    finish(&dispatcher).await;
    let spans = otel.spans();
    let kind = error.error_type();
    let chat = spans.iter().find(|s| s.name == "chat test-model").unwrap();
    assert_eq!(text(chat, "error.type"), kind);
    assert!(
        matches!(chat.status, Status::Error { .. }),
        "{:?}",
        chat.status
    );
    let run = &spans
        .iter()
        .find(|s| s.name.starts_with("invoke_agent"))
        .unwrap();
    assert_eq!(text(run, "error.type"), kind);
    assert!(matches!(run.status, Status::Error { .. }));
    let durations = otel.histogram(names::OPERATION_DURATION);
    assert_eq!(durations.len(), 1);
    assert!(has(&durations[0].2, "error.type", kind));
    assert_records_point_at_spans(&sink.records(), &spans, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_with_its_spans_can_be_spawned() {
    let otel = Otel::new();
    let (dispatcher, sink) = memory_dispatcher().await;
    let auditor = Auditor::new(dispatcher.clone())
        .with_telemetry(otel.telemetry(true))
        .for_request(None);
    // Spans live across awaits: the conversation must stay Send.
    let answer =
        tokio::spawn(async move { tutorial::run(&auditor, Arc::new(OfflineModel), PROMPT).await })
            .await
            .unwrap()
            .unwrap();
    assert!(answer.contains("12345"));
    finish(&dispatcher).await;
    assert_records_point_at_spans(&sink.records(), &otel.spans(), &[]);
}

/// A hostile server's strings (response model, id, finish reasons, tool
/// name and call id) carry an API key, terminal escapes and megabytes:
/// with content capture off, no exported span or metric attribute holds
/// the key or a control character, each is bounded, and a tool the
/// assistant did not declare does not name the span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_chosen_strings_reach_spans_and_metrics_redacted_escaped_and_bounded() {
    const SECRET: &str = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEF";
    let big = "X".repeat(1 << 20);
    // The second answer's strings are a megabyte each: its record is
    // refused, its span must stay bounded all the same.
    let reply = |message: serde_json::Value, reason: String, big: &str| {
        let model = format!("gpt-\x1b[2J\x1b]0;pwned\x07-{SECRET}{big}");
        let id = format!("chatcmpl-{SECRET} alice@example.com{big}");
        Reply::json(
            200,
            serde_json::json!({
                "id": id, "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": reason}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            }),
        )
    };
    let server = ChatServer::scripted(vec![
        reply(
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{SECRET}"), "type": "function",
                "function": {"name": format!("tool\x1b[31m-{SECRET}"), "arguments": "{}"}}]}),
            format!("tool_calls-{SECRET}\x1b[0m"),
            "",
        ),
        reply(
            serde_json::json!({"role": "assistant", "content": "fine"}),
            format!("stop-{SECRET}"),
            &big,
        ),
    ])
    .await;
    let redactor = Redactor::from_config(&RedactionConfig::default()).unwrap();
    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .filter(Arc::new(redactor))
        .start()
        .await
        .unwrap();
    let otel = Otel::new();
    let auditor = Auditor::new(dispatcher.clone())
        .with_telemetry(otel.telemetry(false))
        .for_request(None);
    let client = Arc::new(client(
        &server.base_url(),
        Some("sk-test"),
        0,
        Duration::from_secs(5),
    ));
    let _ = tutorial::run(&auditor, client, PROMPT).await;
    finish(&dispatcher).await;
    let spans = otel.spans();
    let bad = |what: &str, s: &str| {
        assert!(!s.contains("sk-proj-"), "{what} holds the key: {s:.300}");
        assert!(
            !s.chars().any(char::is_control),
            "{what} holds a control character: {s:?}"
        );
    };
    let mut chats = 0;
    for span in &spans {
        bad("a span name", &span.name);
        assert!(
            span.name.len() <= 300,
            "span name of {} bytes",
            span.name.len()
        );
        for kv in &span.attributes {
            let values: Vec<String> = match &kv.value {
                Value::Array(Array::String(a)) => a.iter().map(|v| v.to_string()).collect(),
                v => vec![v.to_string()],
            };
            for v in values {
                bad(kv.key.as_str(), &v);
                assert!(
                    v.len() <= agent_audit_core::otel::MAX_SUPPLIED_LEN,
                    "{} of {} bytes",
                    kv.key,
                    v.len()
                );
            }
        }
        chats += usize::from(span.name.starts_with("chat"));
    }
    assert_eq!(
        chats,
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let tool = spans
        .iter()
        .find(|s| text(s, "gen_ai.operation.name") == "execute_tool")
        .expect("a tool span");
    assert_eq!(
        tool.name, "execute_tool",
        "an undeclared tool names no span"
    );
    assert!(text(tool, "gen_ai.tool.call.id").starts_with("call"));
    let chat = spans.iter().find(|s| s.name.starts_with("chat")).unwrap();
    assert!(text(chat, "gen_ai.response.model").starts_with("gpt-\\u{1b}[2J"));
    for name in [names::OPERATION_DURATION, names::TOKEN_USAGE] {
        let points = otel.histogram(name);
        assert!(!points.is_empty(), "{name}");
        for (_, _, attrs) in points {
            for (k, v) in attrs {
                bad(&k, &v);
                assert!(v.len() <= 64, "{name} {k} of {} bytes", v.len());
                assert_ne!(
                    k, "gen_ai.response.model",
                    "not a model name: off the metrics"
                );
            }
        }
    }
}

/// A chat whose `assistant_input` record is refused (too large for the
/// dispatcher) fails the turn, and its span ends with status Error, not
/// Unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_whose_input_record_is_refused_ends_with_status_error() {
    let sink = MemorySink::new();
    // The first turn's records fit; the second assistant_input (the
    // history with the tool's answer) does not.
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .max_record_bytes(900)
        .start()
        .await
        .unwrap();
    let otel = Otel::new();
    let auditor = Auditor::new(dispatcher.clone())
        .with_telemetry(otel.telemetry(false))
        .for_request(None);
    let result = tutorial::run(&auditor, Arc::new(OfflineModel), PROMPT).await;
    finish(&dispatcher).await;
    assert!(result.is_err(), "the turn fails");
    let events = events(&sink.records());
    // The second chat's input (with the tool's answer) is too large.
    assert_eq!(
        events.iter().filter(|e| *e == "assistant_input").count(),
        1,
        "{events:?}"
    );
    let spans = otel.spans();
    let chats: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("chat"))
        .collect();
    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0].status, Status::Unset);
    let chat = chats[1];
    assert!(
        matches!(chat.status, Status::Error { .. }),
        "{:?}",
        chat.status
    );
    assert!(attr(chat, "error.type").is_some());
}
