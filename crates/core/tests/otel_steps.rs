//! The `otel` step helpers for a loop that does not use the agents
//! runtime: the same GenAI tree as the runtime's, records in their step's
//! span, the application's current span picked up by a request, and ids of
//! our own (still one closed tree) when no provider is installed.

use std::collections::HashSet;
use std::time::Duration;

use agent_audit_core::otel::{ChatOutcome, Telemetry, TelemetryOptions};
use agent_audit_core::{Auditor, Dispatcher, EventType, MemorySink, SinkOptions, SpanId};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;

async fn memory() -> (Dispatcher, MemorySink) {
    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .start()
        .await
        .unwrap();
    (dispatcher, sink)
}

/// A hand-written agent loop: one run, a model call asking for a tool, the
/// tool, a model call answering.
async fn my_loop(request: &Auditor) {
    let run = request.invoke_agent("bank", Some("openai"), Some("gpt-4o-mini"));
    run.auditor()
        .emit(
            EventType::UserRequest,
            &json!({"content": "balance of 12345?"}),
        )
        .await
        .unwrap();
    for (i, reason) in ["tool_calls", "stop"].iter().enumerate() {
        let mut chat = run.auditor().chat(Some("openai"), "gpt-4o-mini");
        chat.auditor()
            .emit(EventType::AssistantInput, &json!({"messages": []}))
            .await
            .unwrap();
        chat.set_response(&ChatOutcome {
            model: Some("gpt-4o-mini-2024-07-18"),
            id: Some("chatcmpl-1"),
            finish_reasons: &[reason],
            input_tokens: Some(100),
            output_tokens: Some(10),
        });
        chat.auditor()
            .emit(
                EventType::AssistantOutput,
                &json!({"finish_reason": reason}),
            )
            .await
            .unwrap();
        chat.end();
        if i == 0 {
            let tool = run.auditor().execute_tool("get_account_balance", "call_1");
            tool.auditor()
                .emit(EventType::ToolCall, &json!({"tool": "get_account_balance"}))
                .await
                .unwrap();
            tool.auditor()
                .emit(EventType::ToolResult, &json!({"balance": 1}))
                .await
                .unwrap();
            tool.end();
        }
    }
    run.auditor()
        .emit(EventType::FinalResult, &json!({"answer": "1 EUR"}))
        .await
        .unwrap();
    run.end();
}

#[tokio::test]
async fn a_loop_of_its_own_gets_the_runtime_s_tree_and_its_records_point_at_it() {
    let exporter = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let meter_provider = SdkMeterProvider::builder().build();
    let telemetry = Telemetry::new(
        &tracer_provider,
        &meter_provider,
        TelemetryOptions::default(),
    );
    // The application's span, current when the request starts.
    let app_span = tracer_provider.tracer("app").start("POST /chat");
    let app = app_span.span_context().clone();
    let cx = Context::current_with_span(app_span);
    let (dispatcher, sink) = memory().await;
    let request = {
        let _attached = cx.clone().attach();
        Auditor::new(dispatcher.clone())
            .with_telemetry(telemetry)
            .for_request(Some("r1"))
    };
    assert_eq!(
        request.scope().trace_id.to_bytes(),
        app.trace_id().to_bytes()
    );
    assert_eq!(
        request.scope().parent_span_id.map(SpanId::to_bytes),
        Some(app.span_id().to_bytes()),
        "the request joined the application's current span"
    );
    my_loop(&request).await;
    cx.span().end();
    dispatcher.shutdown(Duration::from_secs(5)).await;

    let mut spans: Vec<SpanData> = exporter.get_finished_spans().unwrap();
    spans.sort_by_key(|s| s.start_time);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "POST /chat",
            "invoke_agent bank",
            "chat gpt-4o-mini",
            "execute_tool get_account_balance",
            "chat gpt-4o-mini"
        ]
    );
    let run = &spans[1];
    assert_eq!(run.parent_span_id, app.span_id());
    for s in &spans[2..] {
        assert_eq!(s.parent_span_id, run.span_context.span_id());
    }
    assert!(
        spans
            .iter()
            .all(|s| s.span_context.trace_id() == app.trace_id())
    );
    assert_eq!(spans[2].span_kind, SpanKind::Client);
    let usage = spans[2]
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "gen_ai.usage.input_tokens")
        .map(|kv| kv.value.clone());
    assert_eq!(usage, Some(Value::I64(100)));

    let known: HashSet<([u8; 16], [u8; 8])> = spans
        .iter()
        .map(|s| {
            (
                s.span_context.trace_id().to_bytes(),
                s.span_context.span_id().to_bytes(),
            )
        })
        .collect();
    let records = sink.records();
    assert_eq!(records.len(), 8);
    for r in &records {
        assert!(
            known.contains(&(r.trace_id.to_bytes(), r.span_id.to_bytes())),
            "{} points at no exported span",
            r.event_type
        );
    }
}

#[tokio::test]
async fn without_a_provider_the_steps_have_ids_of_their_own_in_one_closed_tree() {
    let (dispatcher, sink) = memory().await;
    let request = Auditor::new(dispatcher.clone()).for_request(Some("r1"));
    my_loop(&request).await;
    dispatcher.shutdown(Duration::from_secs(5)).await;
    let records = sink.records();
    let run = records[0].span_id;
    assert_eq!(
        records[0].parent_span_id, None,
        "the run takes the request's place"
    );
    assert_ne!(run, request.scope().span_id);
    let mut spans = HashSet::new();
    for r in &records {
        assert_eq!(r.trace_id, request.scope().trace_id, "the request's trace");
        spans.insert(r.span_id);
        if r.span_id != run {
            assert_eq!(
                r.parent_span_id,
                Some(run),
                "{} under the run",
                r.event_type
            );
        }
    }
    assert_eq!(spans.len(), 4, "run, two chats, one tool");
}
