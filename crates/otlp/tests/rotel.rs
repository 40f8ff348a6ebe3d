//! The OTLP sink against a real collector (rotel) on loopback.

mod support;

use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Dispatcher, EventType, MemorySink, Record, SinkOptions, StoredRecord,
    Timestamp,
};
use agent_audit_otlp::{
    Compression, GENESIS_PREV, OtlpConfig, OtlpSink, Protocol, RetryConfig, ServiceInfo,
};
use serde_json::{Value, json};
use sha2::Digest;
use support::outage::Outage;
use support::{Rotel, by_seq};

fn service() -> ServiceInfo {
    ServiceInfo::new("otlp-test")
        .with_version("9.9.9")
        .with_host_name(Some("test-host".to_string()))
}

fn config(endpoint: String, protocol: Protocol, compression: Compression) -> OtlpConfig {
    OtlpConfig {
        endpoint: Some(endpoint),
        protocol: Some(protocol),
        compression: Some(compression),
        retry: Some(RetryConfig {
            initial_backoff_ms: 20,
            max_backoff_ms: 250,
            max_elapsed_ms: 120_000,
        }),
        ..Default::default()
    }
}

fn endpoint_for(rotel: &Rotel, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => rotel.grpc_endpoint(),
        _ => rotel.http_endpoint(),
    }
}

/// The i-th test event: every built-in kind the mapping treats specially,
/// with the payload keys the agents crate emits.
fn event(i: u64, nulls: bool) -> (EventType, Value) {
    match i % 9 {
        0 => (
            EventType::UserRequest,
            json!({"text": format!("what is my balance? #{i}"), "i": i}),
        ),
        1 => (
            EventType::AssistantInput,
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "i": i}),
        ),
        2 => (
            EventType::AssistantOutput,
            json!({"content": "calling a tool", "model": "gpt-4o-mini-2024-07-18", "provider": "openai", "response_id": format!("chatcmpl-{i}"), "finish_reason": "tool_calls", "usage": {"prompt_tokens": 12, "completion_tokens": 7}, "i": i}),
        ),
        3 => (
            EventType::ToolCall,
            json!({"tool": "get_account_balance", "call_id": format!("call_{i}"), "arguments": {"account_id": "A-1", "verbose": true}, "i": i}),
        ),
        4 => (
            EventType::ToolResult,
            json!({"tool": "get_account_balance", "call_id": format!("call_{}", i - 1), "result": {"balance": 1234.5, "currency": "EUR"}, "i": i}),
        ),
        5 => (
            EventType::ToolError,
            json!({"tool": "transfer", "call_id": format!("call_{i}"), "kind": "failed", "error": "timeout after 30 s", "i": i}),
        ),
        6 => (
            EventType::AssistantOutput,
            json!({"model": "claude-x", "content": "done", "usage": {"input_tokens": 3, "output_tokens": 4}, "i": i}),
        ),
        7 => (
            EventType::FinalResult,
            json!({"text": "Your balance is 1234.50 EUR", "i": i}),
        ),
        // JSON null maps to the empty AnyValue, which rotel 0.0.1a15's
        // OTLP/JSON decoder rejects (`{}`: "no known keys found"), so the
        // HTTP/JSON run leaves nulls out.
        _ if nulls => (
            EventType::from("policy_check"),
            json!({"nested": {"deep": [1, null, true, -7, 2.25], "nothing": null}, "unicode": "é😀\n\"quoted\"", "empty": {}, "i": i}),
        ),
        _ => (
            EventType::from("policy_check"),
            json!({"nested": {"deep": [1, true, -7, 2.25]}, "unicode": "é😀\n\"quoted\"", "empty": {}, "i": i}),
        ),
    }
}

/// Emits `n` records through several requests and agents.
async fn emit_n(d: &Dispatcher, n: u64, nulls: bool) -> Vec<u64> {
    let root = Auditor::new(d.clone()).with_correlation_id("conv-1");
    let mut seqs = Vec::with_capacity(n as usize);
    let mut a = root.for_request(Some("req-0")).with_agent("assistant");
    for i in 0..n {
        if i % 100 == 0 {
            let parent = if i % 300 == 0 {
                root.with_trace_context(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
                        .parse::<agent_audit_core::TraceContext>()
                        .expect("traceparent"),
                )
            } else {
                root.clone()
            };
            a = parent
                .for_request(Some(&format!("req-{}", i / 100)))
                .with_agent(if i % 200 == 0 {
                    "assistant"
                } else {
                    "user_proxy"
                });
        }
        if i % 10 == 0 {
            a = a.child_span();
        }
        let (t, p) = event(i, nulls);
        seqs.push(a.emit(t, &p).await.expect("emit").seq);
    }
    seqs
}

fn line_hash(r: &Record, prev: &str) -> String {
    let mut line = Vec::new();
    r.encode_line(prev, &mut line);
    hex::encode(sha2::Sha256::digest(&line))
}

fn expected_operation(t: &EventType) -> Option<&'static str> {
    match t.as_str() {
        "user_request" | "final_result" => Some("invoke_agent"),
        "assistant_input" | "assistant_output" | "model_error" => Some("chat"),
        "tool_call" | "tool_result" | "tool_error" => Some("execute_tool"),
        _ => None,
    }
}

/// Checks one collected log record against the record the dispatcher made.
fn check_mapped(r: &Record, c: &Value) {
    let ctx = format!("seq {}: {c}", r.seq);
    assert_eq!(
        c["event_name"],
        format!("agent_audit.{}", r.event_type.as_str()),
        "{ctx}"
    );
    assert_eq!(
        c["time_unix_nano"].as_u64().map(i128::from),
        Some(r.ts.unix_nanos()),
        "{ctx}"
    );
    assert!(
        c["observed_time_unix_nano"].as_u64().unwrap() as i128 >= r.ts.unix_nanos(),
        "{ctx}"
    );
    let (sev, text) = if r.event_type.is_error() {
        (17, "ERROR")
    } else {
        (9, "INFO")
    };
    assert_eq!(c["severity_number"], sev, "{ctx}");
    assert_eq!(c["severity_text"], text, "{ctx}");
    assert_eq!(c["trace_id"], r.trace_id.to_string(), "{ctx}");
    assert_eq!(c["flags"], r.trace_flags.bits(), "{ctx}");
    assert_eq!(c["span_id"], r.span_id.to_string(), "{ctx}");
    assert_eq!(c["body"], r.payload_value(), "{ctx}");
    assert_eq!(c["scope"], "agent-audit", "{ctx}");
    assert_eq!(
        c["resource"],
        json!({"service.name": "otlp-test", "service.version": "9.9.9", "host.name": "test-host"}),
        "{ctx}"
    );
    let a = &c["attributes"];
    let payload = r.payload_value();
    assert_eq!(a["audit.seq"], r.seq, "{ctx}");
    assert_eq!(
        a["audit.request_id"].as_str(),
        r.request_id.as_deref(),
        "{ctx}"
    );
    assert_eq!(
        a["gen_ai.conversation.id"].as_str(),
        r.correlation_id.as_deref(),
        "{ctx}"
    );
    assert_eq!(a["gen_ai.agent.name"].as_str(), r.agent.as_deref(), "{ctx}");
    assert_eq!(
        a["audit.parent_span_id"].as_str(),
        r.parent_span_id.map(|p| p.to_string()).as_deref(),
        "{ctx}"
    );
    assert_eq!(
        a["gen_ai.operation.name"].as_str(),
        expected_operation(&r.event_type),
        "{ctx}"
    );
    assert_eq!(
        a["gen_ai.tool.name"].as_str(),
        payload["tool"].as_str(),
        "{ctx}"
    );
    assert_eq!(
        a["gen_ai.tool.call.id"].as_str(),
        payload["call_id"].as_str(),
        "{ctx}"
    );
    // The model the server reported is the response model; any other
    // record's model is the one asked for.
    let (model, other) = if matches!(r.event_type, EventType::AssistantOutput) {
        ("gen_ai.response.model", "gen_ai.request.model")
    } else {
        ("gen_ai.request.model", "gen_ai.response.model")
    };
    assert_eq!(a[model].as_str(), payload["model"].as_str(), "{ctx}");
    assert_eq!(a[other], Value::Null, "{ctx}");
    assert_eq!(
        a["gen_ai.provider.name"].as_str(),
        payload["provider"].as_str(),
        "{ctx}"
    );
    assert_eq!(
        a["gen_ai.response.id"].as_str(),
        payload["response_id"].as_str(),
        "{ctx}"
    );
    let reasons = payload["finish_reason"].as_str().map(|f| json!([f]));
    assert_eq!(
        a.get("gen_ai.response.finish_reasons"),
        reasons.as_ref(),
        "{ctx}"
    );
    let error_type = payload["kind"].as_str().filter(|_| r.event_type.is_error());
    assert_eq!(a["error.type"].as_str(), error_type, "{ctx}");
    let usage = &payload["usage"];
    let input = usage
        .get("input_tokens")
        .or(usage.get("prompt_tokens"))
        .and_then(Value::as_i64);
    let output = usage
        .get("output_tokens")
        .or(usage.get("completion_tokens"))
        .and_then(Value::as_i64);
    assert_eq!(a["gen_ai.usage.input_tokens"].as_i64(), input, "{ctx}");
    assert_eq!(a["gen_ai.usage.output_tokens"].as_i64(), output, "{ctx}");
    if matches!(r.event_type, EventType::AssistantOutput) {
        assert!(input.is_some() && output.is_some(), "{ctx}");
    }
}

/// 10,000 records over one protocol: each arrives exactly once with the
/// mapped fields, and `audit.prev` chains every record to the one before.
fn ten_thousand_exactly_once(protocol: Protocol, compression: Compression) {
    let rotel = Rotel::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let (seqs, report) = rt.block_on(async {
        let sink = OtlpSink::from_config(
            &config(endpoint_for(&rotel, protocol), protocol, compression),
            service(),
        )
        .expect("sink");
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("memory"), memory.clone())
            .async_sink(
                SinkOptions::new("collector").queue(16_384).max_batch(2048),
                sink,
            )
            .start()
            .await
            .expect("start");
        let seqs = emit_n(&d, 10_000, protocol != Protocol::HttpJson).await;
        let last = *seqs.last().unwrap();
        d.wait(last, AckLevel::Exported).await.expect("wait");
        (seqs, d.shutdown(Duration::from_secs(60)).await)
    });
    assert!(report.is_clean(), "{report}");
    let otlp = &report.sinks[1].health;
    assert_eq!(otlp.delivered, 10_000, "{report}");
    assert_eq!(otlp.max_level, AckLevel::Exported);

    let received = rotel.wait_for(10_000, Duration::from_secs(120));
    let got = by_seq(&received);
    let dupes: Vec<u64> = got
        .iter()
        .filter(|(_, (n, _))| *n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert!(
        dupes.is_empty(),
        "{} seqs arrived more than once, e.g. {:?}",
        dupes.len(),
        &dupes[..dupes.len().min(5)]
    );
    let want: Vec<u64> = seqs.clone();
    let have: Vec<u64> = got.keys().copied().collect();
    assert_eq!(
        have.len(),
        10_000,
        "collector got {} distinct records; log:\n{}",
        have.len(),
        rotel.log()
    );
    assert_eq!(have, want);

    let records = memory.records();
    assert_eq!(records.len(), 10_000);
    let mut prev = GENESIS_PREV.to_string();
    for r in &records {
        let c = &got[&r.seq].1;
        check_mapped(r, c);
        assert_eq!(
            c["attributes"]["audit.prev"], prev,
            "chain broken at seq {}",
            r.seq
        );
        prev = line_hash(r, &prev);
    }
}

#[test]
fn ten_thousand_records_over_grpc_gzip_arrive_exactly_once_with_mapped_fields() {
    ten_thousand_exactly_once(Protocol::Grpc, Compression::Gzip);
}

#[test]
fn ten_thousand_records_over_http_protobuf_arrive_exactly_once_with_mapped_fields() {
    ten_thousand_exactly_once(Protocol::HttpProtobuf, Compression::None);
}

#[test]
fn ten_thousand_records_over_http_json_gzip_arrive_exactly_once_with_mapped_fields() {
    ten_thousand_exactly_once(Protocol::HttpJson, Compression::Gzip);
}

/// Records emitted while no collector listens are held and retried, then
/// all arrive once it starts, none twice.
fn collector_started_late(protocol: Protocol) {
    let mut rotel = Rotel::unstarted();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (seqs, report) = rt.block_on(async {
        let sink = OtlpSink::from_config(
            &config(endpoint_for(&rotel, protocol), protocol, Compression::None),
            service(),
        )
        .expect("sink");
        let d = Dispatcher::builder()
            .async_sink(
                SinkOptions::new("collector").queue(4096).max_batch(500),
                sink,
            )
            .start()
            .await
            .expect("start");
        let seqs = emit_n(&d, 2_000, true).await;
        // Nothing can have been exported: no collector listens yet.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let h = &d.health().sinks[0];
        assert_eq!((h.delivered, h.failed), (0, 0), "{h:?}");
        rotel.launch();
        let last = *seqs.last().unwrap();
        let r = d.wait(last, AckLevel::Exported).await.expect("wait");
        assert_eq!(r.level, AckLevel::Exported);
        (seqs, d.shutdown(Duration::from_secs(60)).await)
    });
    assert!(report.is_clean(), "{report}");
    let received = rotel.wait_for(seqs.len(), Duration::from_secs(60));
    let got = by_seq(&received);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        seqs,
        "log:\n{}",
        rotel.log()
    );
    assert!(got.values().all(|(n, _)| *n == 1), "a record arrived twice");
}

#[test]
fn grpc_records_emitted_before_the_collector_starts_all_arrive_once() {
    collector_started_late(Protocol::Grpc);
}

#[test]
fn http_records_emitted_before_the_collector_starts_all_arrive_once() {
    collector_started_late(Protocol::HttpProtobuf);
}

/// The collector's port goes away mid-stream (connections reset, then
/// refused) and comes back on the same port. Every record acknowledged
/// Exported is in the collector's file; every other one was delivered
/// after the return or reported failed. The outage is made on the path,
/// not by stopping rotel: see `support::outage` for why.
fn collector_cut_off_mid_stream(protocol: Protocol) {
    const N: u64 = 30_000;
    let rotel = Rotel::start();
    let mut path = Outage::start(match protocol {
        Protocol::Grpc => rotel.grpc_port,
        _ => rotel.http_port,
    });
    let endpoint = match protocol {
        Protocol::Grpc => format!("http://127.0.0.1:{}", path.port),
        _ => format!("http://127.0.0.1:{}/v1/logs", path.port),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcomes: Vec<(u64, bool)> = rt.block_on(async {
        let sink = OtlpSink::from_config(&config(endpoint, protocol, Compression::None), service())
            .expect("sink");
        let d = Dispatcher::builder()
            .async_sink(
                SinkOptions::new("collector")
                    .required(false)
                    .queue(8192)
                    .max_batch(1000),
                sink,
            )
            .start()
            .await
            .expect("start");
        let emitter = {
            let d = d.clone();
            tokio::spawn(async move { emit_n(&d, N, true).await })
        };
        // Cut the path once a fair share was exported.
        let give_up = std::time::Instant::now() + Duration::from_secs(120);
        while d.health().sinks[0].delivered < N / 5 {
            assert!(
                std::time::Instant::now() < give_up,
                "the collector took no {} records; health {:?}; log:\n{}",
                N / 5,
                d.health(),
                rotel.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        path.cut();
        let at_stop = d.health().sinks[0].delivered;
        tokio::time::sleep(Duration::from_millis(700)).await;
        path.resume();
        let seqs = emitter.await.unwrap();
        assert!(at_stop < N, "the stream ended before the collector stopped");
        let mut outcomes = Vec::with_capacity(seqs.len());
        for s in &seqs {
            let r = d
                .wait(*s, AckLevel::Exported)
                .await
                .expect("non-required sink");
            let exported = r.failed.is_empty() && r.level == AckLevel::Exported;
            assert!(
                exported || !r.failed.is_empty(),
                "seq {s} neither exported nor reported failed: {r:?}"
            );
            outcomes.push((*s, exported));
        }
        let report = d.shutdown(Duration::from_secs(60)).await;
        eprintln!("{report}");
        outcomes
    });
    let received = rotel.wait_quiet(Duration::from_secs(60));
    let got = by_seq(&received);
    let exported: Vec<u64> = outcomes
        .iter()
        .filter(|(_, e)| *e)
        .map(|(s, _)| *s)
        .collect();
    let missing: Vec<u64> = exported
        .iter()
        .copied()
        .filter(|s| !got.contains_key(s))
        .collect();
    let failed = outcomes.len() - exported.len();
    let dupes = got.values().filter(|(n, _)| *n > 1).count();
    eprintln!(
        "{} records: {} acked Exported, {} reported failed, {} distinct in the collector, {} arrived more than once, {} acked but missing",
        outcomes.len(),
        exported.len(),
        failed,
        got.len(),
        dupes,
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} records acked Exported are not in the collector's file, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn grpc_collector_cut_off_mid_stream_and_back_loses_nothing_acked() {
    collector_cut_off_mid_stream(Protocol::Grpc);
}

#[test]
fn http_collector_cut_off_mid_stream_and_back_loses_nothing_acked() {
    collector_cut_off_mid_stream(Protocol::HttpProtobuf);
}

/// The conformance suite every sink runs, read back from the collector.
struct RotelTarget {
    rotel: Rotel,
}

impl agent_audit_core::conformance::AsyncTarget for RotelTarget {
    fn make(&self) -> Box<dyn agent_audit_core::AsyncSink> {
        Box::new(
            OtlpSink::from_config(
                &config(
                    self.rotel.grpc_endpoint(),
                    Protocol::Grpc,
                    Compression::Gzip,
                ),
                service(),
            )
            .expect("sink"),
        )
    }

    fn read_back(&self) -> Option<Vec<StoredRecord>> {
        let received = self.rotel.wait_quiet(Duration::from_secs(30));
        let mut stored: Vec<StoredRecord> = received.iter().map(stored_from_collected).collect();
        // Up to `max_in_flight` requests are on the wire at once, so the
        // collector may take them in any order; `audit.seq` orders them.
        stored.sort_by_key(|r| r.seq);
        Some(stored)
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// Rebuilds the record from what the collector received: the mapping
/// loses nothing a reader needs.
fn stored_from_collected(c: &Value) -> StoredRecord {
    let a = &c["attributes"];
    let s = |v: &Value| v.as_str().map(str::to_string);
    let attributes = a
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix("audit.attribute.")?.to_string(), v.clone())))
        .collect();
    StoredRecord {
        v: agent_audit_core::SCHEMA_VERSION,
        seq: a["audit.seq"].as_u64().unwrap(),
        ts: Timestamp::from_unix_nanos(c["time_unix_nano"].as_u64().unwrap() as i128)
            .as_str()
            .to_string(),
        event_type: EventType::from(
            c["event_name"]
                .as_str()
                .unwrap()
                .strip_prefix("agent_audit.")
                .unwrap(),
        ),
        request_id: s(&a["audit.request_id"]),
        correlation_id: s(&a["gen_ai.conversation.id"]),
        trace_id: s(&c["trace_id"]),
        span_id: s(&c["span_id"]),
        parent_span_id: s(&a["audit.parent_span_id"]),
        agent: s(&a["gen_ai.agent.name"]),
        user_id: s(&a["user.id"]),
        session_id: s(&a["session.id"]),
        attributes,
        payload: c["body"].clone(),
        prev: s(&a["audit.prev"]).unwrap(),
    }
}

#[test]
fn conformance_suite_passes_against_rotel() {
    let target = RotelTarget {
        rotel: Rotel::start(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(agent_audit_core::conformance::run_all_async(&target))
        .unwrap_or_else(|e| panic!("{e}; rotel log:\n{}", target.rotel.log()));
}

/// A required OTLP sink whose collector stays down past the retry budget
/// fails `emit`, and the error names the endpoint; later emits fail too.
#[test]
fn required_sink_with_collector_down_past_its_retry_budget_fails_emit_naming_the_endpoint() {
    // Ports reserved for a collector that never starts.
    let rotel = Rotel::unstarted();
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let endpoint = endpoint_for(&rotel, protocol);
        let mut c = config(endpoint.clone(), protocol, Compression::None);
        c.retry = Some(RetryConfig {
            initial_backoff_ms: 20,
            max_backoff_ms: 100,
            max_elapsed_ms: 500,
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let d = Dispatcher::builder()
                .async_sink(
                    SinkOptions::new("collector").required(true),
                    OtlpSink::from_config(&c, service()).unwrap(),
                )
                .start()
                .await
                .unwrap();
            let a = Auditor::new(d.clone()).for_request(None);
            let started = std::time::Instant::now();
            let e = a
                .emit_wait(
                    EventType::ToolCall,
                    &json!({"tool": "wire_transfer", "call_id": "c1"}),
                    AckLevel::Exported,
                )
                .await
                .expect_err("a required sink that cannot export must fail emit");
            let msg = e.to_string();
            assert!(
                msg.contains("collector") && msg.contains(&endpoint),
                "{msg}"
            );
            assert!(msg.contains("attempt"), "says it retried: {msg}");
            assert!(
                started.elapsed() >= Duration::from_millis(400),
                "gave up before the retry budget: {msg}"
            );
            // The agent must not act: the next emit is refused at once.
            let e = a
                .emit(EventType::ToolCall, &json!({"tool": "again"}))
                .await
                .expect_err("sink is broken");
            assert!(e.to_string().contains(&endpoint), "{e}");
            let report = d.shutdown(Duration::from_secs(5)).await;
            assert_eq!(report.sinks[0].health.failed, 1, "{report}");
        });
    }
}

/// `shutdown(deadline)` with the collector down: returns by its deadline
/// (plus one attempt), and reports every record it could not export.
#[test]
fn shutdown_with_the_collector_down_reports_what_was_not_exported() {
    let rotel = Rotel::unstarted();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        let c = config(rotel.grpc_endpoint(), Protocol::Grpc, Compression::None);
        let d = Dispatcher::builder()
            .async_sink(
                SinkOptions::new("collector").required(false).max_batch(50),
                OtlpSink::from_config(&c, service()).unwrap(),
            )
            .start()
            .await
            .unwrap();
        emit_n(&d, 200, true).await;
        let started = std::time::Instant::now();
        let report = d.shutdown(Duration::from_secs(1)).await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "shutdown(1 s) took {:?}",
            started.elapsed()
        );
        report
    });
    assert!(!report.is_clean(), "{report}");
    let s = &report.sinks[0];
    assert_eq!(s.health.delivered, 0, "{report}");
    assert_eq!(
        s.health.failed + s.undelivered,
        200,
        "every record is either failed or undelivered: {report}"
    );
}
