//! The OTLP sink against small real OTLP receivers on loopback (gRPC via
//! tonic, HTTP/1.1 on a raw socket) for what rotel cannot be made to do:
//! `partial_success`, Retry-After and RetryInfo, refusals, header checks,
//! TLS with a private CA, and a server torn down mid-stream that stores
//! each request before answering it.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_audit_core::{
    AckLevel, Auditor, Dispatcher, EventType, MemorySink, Receipt, SinkOptions,
};
use agent_audit_otlp::{
    Compression, OtlpConfig, OtlpSink, Protocol, RetryConfig, ServiceInfo, TlsConfig,
};
use serde_json::json;
use support::certs::make_ca_and_server_cert;
use support::collector::{Kind, Reply, State, TestCollector};

fn config(endpoint: String, protocol: Protocol) -> OtlpConfig {
    OtlpConfig {
        endpoint: Some(endpoint),
        protocol: Some(protocol),
        retry: Some(RetryConfig {
            initial_backoff_ms: 20,
            max_backoff_ms: 200,
            max_elapsed_ms: 30_000,
        }),
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A dispatcher with a memory sink (which receives the gap records) and a
/// non-required OTLP sink.
async fn dispatcher(config: &OtlpConfig, max_batch: usize) -> (Dispatcher, MemorySink) {
    let memory = MemorySink::new();
    let sink = OtlpSink::from_config(config, ServiceInfo::new("servers-test")).expect("sink");
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .async_sink(
            SinkOptions::new("collector")
                .required(false)
                .max_batch(max_batch),
            sink,
        )
        .start()
        .await
        .expect("start");
    (d, memory)
}

async fn emit_wait(d: &Dispatcher, i: u64) -> Receipt {
    Auditor::new(d.clone())
        .for_request(Some("r"))
        .emit_wait(
            EventType::ToolCall,
            &json!({"tool": "t", "call_id": format!("c{i}"), "i": i}),
            AckLevel::Exported,
        )
        .await
        .expect("emit")
}

fn collector_errors(r: &Receipt) -> Vec<String> {
    r.failed
        .iter()
        .filter(|f| f.sink == "collector")
        .map(|f| f.error.to_string())
        .collect()
}

fn protocol_kind(p: Protocol) -> Kind {
    match p {
        Protocol::Grpc => Kind::Grpc,
        _ => Kind::Http,
    }
}

/// A `partial_success` fails exactly the rejected records: counted,
/// reported on the receipt with the endpoint, and written as an
/// `audit_gap` record to the other sinks.
fn partial_success_is_a_failure(protocol: Protocol) {
    let server = TestCollector::start(protocol_kind(protocol));
    server.state.script([
        Reply::Ok,
        Reply::Ok,
        Reply::Partial(1, "attribute too long"),
    ]);
    let rt = rt();
    let (receipts, report, memory) = rt.block_on(async {
        let (d, memory) = dispatcher(&config(server.endpoint(), protocol), 64).await;
        let mut receipts = Vec::new();
        for i in 0..6 {
            receipts.push(emit_wait(&d, i).await);
        }
        (receipts, d.shutdown(Duration::from_secs(10)).await, memory)
    });
    for (i, r) in receipts.iter().enumerate() {
        let errors = collector_errors(r);
        if i == 2 {
            assert_eq!(errors.len(), 1, "record {i}: {r:?}");
            assert!(
                errors[0].contains("rejected 1 of 1")
                    && errors[0].contains("attribute too long")
                    && errors[0].contains(&server.endpoint()),
                "{}",
                errors[0]
            );
        } else {
            assert!(errors.is_empty(), "record {i}: {errors:?}");
        }
    }
    let h = &report.sinks[1].health;
    assert_eq!((h.delivered, h.failed), (5, 1), "{report}");
    assert!(!report.is_clean());
    let gaps: Vec<_> = memory
        .records()
        .into_iter()
        .filter(|r| r.event_type == EventType::AuditGap)
        .map(|r| r.payload_value())
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["sink"], "collector");
    assert_eq!(gaps[0]["reason"], "sink_failed");
    assert_eq!(gaps[0]["lost"], 1);
    assert_eq!(gaps[0]["from_seq"], receipts[2].seq);

    // Batches: every request rejects two records; the failure count is
    // exactly what the collector rejected, the rest are delivered.
    let server = TestCollector::start(protocol_kind(protocol));
    server.state.set_default(Reply::Partial(2, "quota"));
    let report = rt.block_on(async {
        let (d, _memory) = dispatcher(&config(server.endpoint(), protocol), 50).await;
        let a = Auditor::new(d.clone());
        for i in 0..500u64 {
            a.emit(EventType::ToolResult, &json!({"i": i}))
                .await
                .unwrap();
        }
        d.shutdown(Duration::from_secs(20)).await
    });
    // A request of one record can only have that one rejected.
    let rejected: u64 = server
        .state
        .seen()
        .iter()
        .map(|s| s.seqs.len().min(2) as u64)
        .sum();
    let h = &report.sinks[1].health;
    assert_eq!(h.failed, rejected, "{report}");
    assert_eq!(h.delivered, 500 - rejected, "{report}");
    assert!(
        h.last_error.as_deref().unwrap_or("").contains("quota"),
        "{report}"
    );
}

#[test]
fn grpc_partial_success_counts_rejected_records_as_failed() {
    partial_success_is_a_failure(Protocol::Grpc);
}

#[test]
fn http_protobuf_partial_success_counts_rejected_records_as_failed() {
    partial_success_is_a_failure(Protocol::HttpProtobuf);
}

#[test]
fn http_json_partial_success_counts_rejected_records_as_failed() {
    partial_success_is_a_failure(Protocol::HttpJson);
}

#[test]
fn http_retry_after_is_honoured_and_429_502_are_retried() {
    let server = TestCollector::start(Kind::Http);
    server.state.script([
        Reply::Http(503, Some("1")),
        Reply::Http(429, None),
        Reply::Http(502, None),
        Reply::Ok,
    ]);
    let rt = rt();
    let r = rt.block_on(async {
        let (d, _m) = dispatcher(&config(server.endpoint(), Protocol::HttpProtobuf), 64).await;
        let r = emit_wait(&d, 0).await;
        d.shutdown(Duration::from_secs(5)).await;
        r
    });
    assert!(collector_errors(&r).is_empty(), "{r:?}");
    let seen = server.state.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    // The second attempt waited for the Retry-After the server asked for.
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(990),
        "retried after {gap:?}, asked 1 s"
    );
    assert!(
        seen.iter().all(|s| s.seqs == seen[0].seqs),
        "each retry resends the same records"
    );
}

#[test]
fn retry_after_beyond_the_retry_budget_fails_at_once() {
    let server = TestCollector::start(Kind::Http);
    server.state.set_default(Reply::Http(503, Some("3600")));
    let mut c = config(server.endpoint(), Protocol::HttpProtobuf);
    c.retry = Some(RetryConfig {
        max_elapsed_ms: 2_000,
        ..Default::default()
    });
    let rt = rt();
    let r = rt.block_on(async {
        let (d, _m) = dispatcher(&c, 64).await;
        let r = emit_wait(&d, 0).await;
        d.shutdown(Duration::from_secs(5)).await;
        r
    });
    let errors = collector_errors(&r);
    assert_eq!(errors.len(), 1, "{r:?}");
    assert!(
        errors[0].contains("retry after 3600000 ms") && errors[0].contains("503"),
        "{}",
        errors[0]
    );
    assert_eq!(server.state.seen().len(), 1);
}

#[test]
fn grpc_retry_info_is_honoured_and_resource_exhausted_without_it_is_not_retried() {
    let server = TestCollector::start(Kind::Grpc);
    server.state.script([
        Reply::Grpc(
            tonic::Code::ResourceExhausted,
            Some(Duration::from_millis(400)),
        ),
        Reply::Grpc(tonic::Code::Unavailable, None),
        Reply::Ok,
        Reply::Grpc(tonic::Code::ResourceExhausted, None),
    ]);
    let rt = rt();
    let (ok, refused) = rt.block_on(async {
        let (d, _m) = dispatcher(&config(server.endpoint(), Protocol::Grpc), 64).await;
        let ok = emit_wait(&d, 0).await;
        let refused = emit_wait(&d, 1).await;
        d.shutdown(Duration::from_secs(5)).await;
        (ok, refused)
    });
    assert!(collector_errors(&ok).is_empty(), "{ok:?}");
    let seen = server.state.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(390),
        "retried after {gap:?}, RetryInfo asked 400 ms"
    );
    let errors = collector_errors(&refused);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("ResourceExhausted") && errors[0].contains(&server.endpoint()),
        "{}",
        errors[0]
    );
}

/// Headers (auth tokens) reach the collector and never appear in errors;
/// a permanent refusal is not retried.
fn headers_sent_and_never_reported(protocol: Protocol) {
    let server = TestCollector::start(protocol_kind(protocol));
    let refusal = match protocol {
        Protocol::Grpc => Reply::Grpc(tonic::Code::Unauthenticated, None),
        _ => Reply::Http(401, None),
    };
    server.state.script([Reply::Ok, refusal]);
    let mut c = config(server.endpoint(), protocol);
    let mut headers = BTreeMap::new();
    headers.insert(
        "Authorization".to_string(),
        "Bearer s3cr3t-t0ken".to_string(),
    );
    headers.insert("x-tenant".to_string(), "acme".to_string());
    c.headers = Some(headers);
    c.compression = Some(Compression::Gzip);
    assert!(!format!("{c:?}").contains("s3cr3t"));
    let rt = rt();
    let (ok, refused, report) = rt.block_on(async {
        let (d, _m) = dispatcher(&c, 64).await;
        let ok = emit_wait(&d, 0).await;
        let refused = emit_wait(&d, 1).await;
        (ok, refused, d.shutdown(Duration::from_secs(5)).await)
    });
    assert!(collector_errors(&ok).is_empty(), "{ok:?}");
    let seen = server.state.seen();
    assert_eq!(
        seen.len(),
        2,
        "a permanent refusal is not retried: {seen:?}"
    );
    for s in &seen {
        assert_eq!(
            s.headers.get("authorization").map(String::as_str),
            Some("Bearer s3cr3t-t0ken")
        );
        assert_eq!(s.headers.get("x-tenant").map(String::as_str), Some("acme"));
        assert!(s.gzip, "gzip was configured: {s:?}");
        let want = match protocol {
            Protocol::Grpc => "application/grpc",
            Protocol::HttpProtobuf => "application/x-protobuf",
            Protocol::HttpJson => "application/json",
        };
        assert_eq!(s.content_type, want);
    }
    let errors = collector_errors(&refused);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains(&server.endpoint()), "{}", errors[0]);
    let everything = format!("{refused:?} {report} {report:?}");
    assert!(
        !everything.contains("s3cr3t"),
        "a header value leaked: {everything}"
    );
}

#[test]
fn grpc_headers_reach_the_collector_and_never_appear_in_errors() {
    headers_sent_and_never_reported(Protocol::Grpc);
}

#[test]
fn http_protobuf_headers_reach_the_collector_and_never_appear_in_errors() {
    headers_sent_and_never_reported(Protocol::HttpProtobuf);
}

#[test]
fn http_json_headers_reach_the_collector_and_never_appear_in_errors() {
    headers_sent_and_never_reported(Protocol::HttpJson);
}

#[test]
fn standard_environment_variables_point_the_sink_at_the_collector() {
    let server = TestCollector::start(Kind::Http);
    let port = server.addr.port();
    let env: BTreeMap<&str, String> = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_string()),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "x-api-key=k%3D1".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let settings = OtlpConfig::default()
        .resolve_with_env(ServiceInfo::new("env-test"), |k| env.get(k).cloned())
        .unwrap();
    assert_eq!(settings.endpoint, server.endpoint());
    let rt = rt();
    let r = rt.block_on(async {
        let d = Dispatcher::builder()
            .async_sink(
                SinkOptions::new("collector").required(false),
                OtlpSink::new(settings).unwrap(),
            )
            .start()
            .await
            .unwrap();
        let r = emit_wait(&d, 0).await;
        d.shutdown(Duration::from_secs(5)).await;
        r
    });
    assert_eq!(r.level, AckLevel::Exported, "{r:?}");
    let seen = server.state.seen();
    assert_eq!(seen[0].content_type, "application/json");
    assert_eq!(
        seen[0].headers.get("x-api-key").map(String::as_str),
        Some("k=1")
    );
}

#[test]
fn grpc_over_tls_trusts_the_configured_ca_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = make_ca_and_server_cert(dir.path());
    let server = TestCollector::start_on(Kind::Grpc, 0, Arc::new(State::default()), Some(tls));
    let endpoint = format!("https://127.0.0.1:{}", server.addr.port());
    let rt = rt();

    let mut c = config(endpoint.clone(), Protocol::Grpc);
    c.tls = Some(TlsConfig {
        ca_file: Some(ca),
        ..Default::default()
    });
    let r = rt.block_on(async {
        let (d, _m) = dispatcher(&c, 64).await;
        let r = emit_wait(&d, 0).await;
        d.shutdown(Duration::from_secs(5)).await;
        r
    });
    assert!(collector_errors(&r).is_empty(), "{r:?}");
    assert_eq!(server.state.seen().len(), 1);

    // Without the CA the server's certificate is not trusted.
    let mut c = config(endpoint.clone(), Protocol::Grpc);
    c.retry = Some(RetryConfig {
        max_elapsed_ms: 300,
        ..Default::default()
    });
    let r = rt.block_on(async {
        let (d, _m) = dispatcher(&c, 64).await;
        let r = emit_wait(&d, 1).await;
        d.shutdown(Duration::from_secs(5)).await;
        r
    });
    let errors = collector_errors(&r);
    assert_eq!(errors.len(), 1, "{r:?}");
    assert!(errors[0].contains(&endpoint), "{}", errors[0]);
    assert_eq!(
        server.state.seen().len(),
        1,
        "no request got through without trust"
    );
}

/// The collector process dies mid-stream (its runtime and every connection
/// torn down at once) and comes back on the same port. This server stores
/// each request before answering, so every record acknowledged Exported
/// must be stored; the rest are resent after the restart.
fn torn_down_mid_stream(kind: Kind) {
    const N: u64 = 20_000;
    let state = Arc::new(State::default());
    let mut server = TestCollector::start_on(kind, 0, state.clone(), None);
    let port = server.addr.port();
    let protocol = if kind == Kind::Grpc {
        Protocol::Grpc
    } else {
        Protocol::HttpProtobuf
    };
    let endpoint = server.endpoint();
    let rt = rt();
    let outcomes: Vec<(u64, bool)> = rt.block_on(async {
        let (d, _m) = dispatcher(&config(endpoint, protocol), 500).await;
        let emitter = {
            let d = d.clone();
            tokio::spawn(async move {
                let a = Auditor::new(d);
                let mut seqs = Vec::new();
                for i in 0..N {
                    seqs.push(
                        a.emit(EventType::ToolCall, &json!({"i": i}))
                            .await
                            .unwrap()
                            .seq,
                    );
                }
                seqs
            })
        };
        let give_up = Instant::now() + Duration::from_secs(60);
        while d.health().sinks[1].delivered < N / 4 {
            assert!(
                Instant::now() < give_up,
                "the server took no {} records",
                N / 4
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server = TestCollector::start_on(kind, port, state.clone(), None);
        let seqs = emitter.await.unwrap();
        let mut outcomes = Vec::new();
        for s in seqs {
            let r = d.wait(s, AckLevel::Exported).await.unwrap();
            let failed = r.failed.iter().any(|f| f.sink == "collector");
            outcomes.push((s, !failed));
        }
        let report = d.shutdown(Duration::from_secs(30)).await;
        eprintln!("{report}");
        outcomes
    });
    let stored: std::collections::BTreeSet<u64> = state.stored_seqs().into_iter().collect();
    let acked: Vec<u64> = outcomes
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(s, _)| *s)
        .collect();
    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|s| !stored.contains(s))
        .collect();
    eprintln!(
        "{N} records: {} acked Exported, {} reported failed, {} stored, {} requests",
        acked.len(),
        outcomes.len() - acked.len(),
        stored.len(),
        state.seen().len()
    );
    assert!(
        missing.is_empty(),
        "{} acked records not stored, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // With a 30 s retry budget nothing fails: every record is stored.
    assert_eq!(acked.len(), N as usize);
}

#[test]
fn grpc_server_torn_down_mid_stream_loses_nothing_acked() {
    torn_down_mid_stream(Kind::Grpc);
}

#[test]
fn http_server_torn_down_mid_stream_loses_nothing_acked() {
    torn_down_mid_stream(Kind::Http);
}

/// Forty records go out as four writes of ten (`batch_size`), all in the
/// server at once (`max_in_flight`); one refused, one rejecting three
/// records by `partial_success`, one more refused: the sink fails exactly
/// those records, and each record's receipt names its own request's
/// failure.
#[test]
fn grpc_requests_in_flight_together_fail_exactly_the_records_of_each_failed_request() {
    let server = TestCollector::start(Kind::Grpc);
    server.state.hold_replies(Duration::from_millis(300));
    server.state.script([
        Reply::Ok,
        Reply::Grpc(tonic::Code::PermissionDenied, None),
        Reply::Partial(3, "quota"),
        Reply::Grpc(tonic::Code::InvalidArgument, None),
    ]);
    let mut c = config(server.endpoint(), Protocol::Grpc);
    c.batch_size = Some(10);
    c.max_in_flight = Some(4);
    // Long enough that the worker waits for the whole batch of 40.
    c.linger_ms = Some(60_000);
    let rt = rt();
    let report = rt.block_on(async {
        let (d, _memory) = dispatcher(&c, c.batch_size()).await;
        let a = Auditor::new(d.clone());
        let mut seqs = Vec::new();
        for i in 0..40u64 {
            seqs.push(
                a.emit(EventType::ToolResult, &json!({"i": i}))
                    .await
                    .unwrap()
                    .seq,
            );
        }
        let mut receipts = Vec::new();
        for seq in seqs {
            receipts.push(d.wait(seq, AckLevel::Exported).await.unwrap());
        }
        (receipts, d.shutdown(Duration::from_secs(10)).await)
    });
    let (receipts, report) = report;
    let seen = server.state.seen();
    assert_eq!(seen.len(), 4, "one request per ten records: {seen:?}");
    let mut all: Vec<u64> = seen.iter().flat_map(|s| s.seqs.clone()).collect();
    all.sort_unstable();
    let first = all[0];
    assert_eq!(all, (first..first + 40).collect::<Vec<_>>(), "each once");
    assert!(seen.iter().all(|s| s.seqs.len() == 10), "{seen:?}");
    assert_eq!(
        server.state.max_concurrent(),
        4,
        "the four requests were not in flight together"
    );
    let h = &report.sinks[1].health;
    // Two refused requests of ten, three records rejected in another.
    assert_eq!((h.failed, h.delivered), (23, 17), "{report}");
    // Each request is a write of its own: a record's receipt names the
    // failure of its own request.
    for s in &seen {
        let failed = &receipts[(s.seqs[0] - first) as usize].failed;
        if s.reply.starts_with("grpc") {
            let code = s.reply.trim_start_matches("grpc ");
            let err = failed[0].error.to_string();
            assert!(
                err.contains(&format!("gRPC status {code}")) && err.contains(&server.endpoint()),
                "expected the failure of this request ({code}): {err}"
            );
        } else if s.reply.starts_with("partial") {
            assert!(
                failed[0].error.to_string().contains("rejected 3"),
                "{failed:?}"
            );
        } else {
            assert!(failed.is_empty(), "{s:?}: {failed:?}");
        }
    }
}

/// A batch the sink is already retrying (the collector answers 503) when
/// shutdown begins stops at the shutdown deadline instead of running out
/// its own one-minute budget, and its records are reported failed.
#[test]
fn a_batch_retrying_when_shutdown_begins_stops_at_the_deadline_and_is_reported_failed() {
    let server = TestCollector::start(Kind::Http);
    server.state.set_default(Reply::Http(503, None));
    let mut c = config(server.endpoint(), Protocol::HttpProtobuf);
    c.retry = Some(RetryConfig {
        initial_backoff_ms: 20,
        max_backoff_ms: 100,
        max_elapsed_ms: 60_000,
    });
    let rt = rt();
    let report = rt.block_on(async {
        let (d, memory) = dispatcher(&c, c.batch_size()).await;
        let a = Auditor::new(d.clone());
        for i in 0..5u64 {
            a.emit(EventType::ToolCall, &json!({"i": i})).await.unwrap();
        }
        // Shutdown begins while the batch is being retried.
        let waited = Instant::now();
        while server.state.seen().len() < 2 {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the sink never retried"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = d.shutdown(Duration::from_secs(2)).await;
        (report, memory.records())
    });
    let (report, kept) = report;
    // The loss is named where the records are: an audit_gap in the
    // surviving sink, written in the part of the shutdown kept for it.
    let gaps: Vec<serde_json::Value> = kept
        .iter()
        .filter(|r| r.event_type.as_str() == "audit_gap")
        .map(|r| r.payload_value())
        .collect();
    assert!(
        gaps.iter()
            .any(|g| g["reason"] == "sink_failed" && g["lost"] == 5),
        "{gaps:?}"
    );
    let s = &report.sinks[1];
    assert!(
        s.finished,
        "the sink was still retrying after the shutdown deadline: {report}"
    );
    let h = &s.health;
    assert_eq!(h.delivered, 0, "{report}");
    assert_eq!(h.failed + s.undelivered, 5, "{report}");
    assert_eq!(h.failed, 5, "the batch is reported failed: {report}");
    let err = h.last_error.as_deref().unwrap_or("");
    assert!(
        err.contains("503") && err.contains(&server.endpoint()),
        "{err}"
    );
}

/// Records emitted one at a time within `linger_ms` go out as one request;
/// records still lingering when shutdown begins are sent at once, not
/// after the linger.
#[test]
fn linger_groups_a_trickle_into_one_request_and_never_delays_shutdown() {
    let server = TestCollector::start(Kind::Grpc);
    let mut c = config(server.endpoint(), Protocol::Grpc);
    c.batch_size = Some(5);
    c.max_in_flight = Some(1);
    c.linger_ms = Some(60_000);
    let rt = rt();
    let report = rt.block_on(async {
        let (d, _memory) = dispatcher(&c, c.batch_size()).await;
        let a = Auditor::new(d.clone());
        let mut last = 0;
        for i in 0..5u64 {
            last = a
                .emit(EventType::ToolCall, &json!({"i": i}))
                .await
                .unwrap()
                .seq;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = d.wait(last, AckLevel::Exported).await.unwrap();
        assert!(r.failed.is_empty(), "{r:?}");
        // Two more, fewer than a batch: shutdown sends them without
        // waiting out the minute of linger.
        for i in 5..7u64 {
            a.emit(EventType::ToolCall, &json!({"i": i})).await.unwrap();
        }
        let began = Instant::now();
        (d.shutdown(Duration::from_secs(30)).await, began)
    });
    let (report, began) = report;
    let seen = server.state.seen();
    // Not a speed check: a worker that kept lingering would have sent
    // them only when the drain phase ended, 27 s in.
    assert!(
        seen.len() == 2 && seen[1].at.duration_since(began) < Duration::from_secs(10),
        "shutdown waited for the linger: {seen:?}"
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0].seqs.len(),
        5,
        "the trickle is one request: {seen:?}"
    );
    assert_eq!(seen[1].seqs.len(), 2, "{seen:?}");
    let s = &report.sinks[1];
    assert!(s.finished, "{report}");
    assert_eq!((s.health.delivered, s.undelivered), (7, 0), "{report}");
}

/// With `retry = { max_elapsed_ms = 0 }` ("try once"), a batch sent while
/// shutdown drains still gets the full attempt timeout: the retry budget
/// bounds retrying, not the one try (it had been cut to 1 ms, and a
/// collector answering in 50 ms lost the batch).
#[test]
fn a_try_once_sink_sends_what_is_left_at_shutdown_with_the_full_timeout() {
    let server = TestCollector::start(Kind::Grpc);
    server.state.hold_replies(Duration::from_millis(50));
    let mut c = config(server.endpoint(), Protocol::Grpc);
    c.linger_ms = Some(60_000);
    c.retry = Some(RetryConfig {
        initial_backoff_ms: 10,
        max_backoff_ms: 10,
        max_elapsed_ms: 0,
    });
    let rt = rt();
    let report = rt.block_on(async {
        let (d, _memory) = dispatcher(&c, c.batch_size()).await;
        let a = Auditor::new(d.clone());
        for i in 0..3u64 {
            a.emit(EventType::ToolCall, &json!({"i": i})).await.unwrap();
        }
        // Still lingering: they go out once shutdown begins.
        d.shutdown(Duration::from_secs(10)).await
    });
    let s = &report.sinks[1];
    assert_eq!(
        (s.health.delivered, s.health.failed, s.undelivered),
        (3, 0, 0),
        "{report}"
    );
}
