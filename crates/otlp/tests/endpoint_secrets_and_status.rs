//! What the sink shows of its endpoint (never a user, password or query)
//! and how a dead collector shows while the sink retries
//! (`SinkHealth::retrying`), against a real loopback port nobody listens
//! on.

use std::time::{Duration, Instant};

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, MemorySink, SinkOptions};
use agent_audit_otlp::{OtlpConfig, OtlpConfigError, OtlpSink, Protocol, RetryConfig, ServiceInfo};
use serde_json::json;

/// A loopback port that refuses connections: bound, then closed.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn config(endpoint: String, protocol: Protocol, budget_ms: u64) -> OtlpConfig {
    OtlpConfig {
        endpoint: Some(endpoint),
        protocol: Some(protocol),
        retry: Some(RetryConfig {
            initial_backoff_ms: 50,
            max_backoff_ms: 200,
            max_elapsed_ms: budget_ms,
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

async fn start(config: &OtlpConfig) -> (Dispatcher, MemorySink, OtlpSinkDebug) {
    let memory = MemorySink::new();
    let sink = OtlpSink::from_config(config, ServiceInfo::new("t")).expect("sink");
    let debug = OtlpSinkDebug(format!("{sink:?} {:?}", sink.settings()));
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .async_sink(SinkOptions::new("collector").required(false), sink)
        .start()
        .await
        .expect("start");
    (d, memory, debug)
}

struct OtlpSinkDebug(String);

fn retrying_shows_then_clears(protocol: Protocol) {
    let endpoint = format!("http://127.0.0.1:{}", dead_port());
    let c = config(endpoint, protocol, 3_000);
    rt().block_on(async {
        let (d, _memory, _) = start(&c).await;
        let a = Auditor::new(d.clone());
        let emitted = Instant::now();
        let seq = a.emit(EventType::ToolCall, &json!({})).await.unwrap().seq;
        let r = loop {
            if let Some(r) = d.health().sinks[1].retrying.clone() {
                break r;
            }
            assert!(
                emitted.elapsed() < Duration::from_secs(2),
                "not shown as retrying within 2 s: {:?}",
                d.health()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(r.budget_ms, 3_000);
        assert!(r.attempts >= 1);
        assert!(!r.last_error.is_empty());
        let span = r.until.unix_nanos() - r.since.unix_nanos();
        assert!(
            span > 0 && span <= 3_100_000_000,
            "until {} is not within the budget from since {}",
            r.until,
            r.since
        );
        // The budget runs out, the record fails, and the sink no longer
        // says it is retrying.
        let receipt = a
            .emit_wait(EventType::ToolCall, &json!({}), AckLevel::Exported)
            .await
            .unwrap();
        assert!(!receipt.failed.is_empty());
        d.wait(seq, AckLevel::Accepted).await.ok();
        let h = &d.health().sinks[1];
        assert!(h.retrying.is_none(), "{h:?}");
        assert!(h.failed >= 1, "{h:?}");
        d.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn grpc_dead_collector_shows_as_retrying_until_the_budget_ends() {
    retrying_shows_then_clears(Protocol::Grpc);
}

#[test]
fn http_dead_collector_shows_as_retrying_until_the_budget_ends() {
    retrying_shows_then_clears(Protocol::HttpProtobuf);
}

const QUERY_SECRET: &str = "qs3cret-api-key";

/// A secret in the endpoint's query is sent, but nothing the sink says
/// (errors on the receipt, health, the retrying status, `audit_gap`
/// records, Debug, the shutdown report) shows it; reqwest's errors quote
/// the whole URL, so this fails unless the sink strips it.
fn query_secret_never_shown(protocol: Protocol) {
    let endpoint = format!(
        "http://127.0.0.1:{}/v1/logs?api_key={QUERY_SECRET}",
        dead_port()
    );
    let c = config(endpoint, protocol, 400);
    assert!(!format!("{c:?}").contains(QUERY_SECRET));
    rt().block_on(async {
        let (d, memory, debug) = start(&c).await;
        let a = Auditor::new(d.clone());
        let mut shown = vec![debug.0];
        let payload = json!({});
        let emit = a.emit_wait(EventType::ToolCall, &payload, AckLevel::Exported);
        tokio::pin!(emit);
        let receipt = loop {
            tokio::select! {
                r = &mut emit => break r.unwrap(),
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    shown.push(format!("{:?}", d.health()));
                }
            }
        };
        assert!(!receipt.failed.is_empty(), "the dead port took the record");
        shown.extend(receipt.failed.iter().map(|f| f.error.to_string()));
        shown.push(format!("{:?}", d.health()));
        let report = d.shutdown(Duration::from_secs(5)).await;
        shown.push(report.to_string());
        shown.push(format!("{report:?}"));
        let gaps: Vec<String> = memory
            .records()
            .iter()
            .filter(|r| r.event_type.as_str() == "audit_gap")
            .map(|r| r.payload_value().to_string())
            .collect();
        assert!(!gaps.is_empty(), "the failure was not recorded");
        shown.extend(gaps);
        for text in &shown {
            assert!(!text.contains(QUERY_SECRET), "the query leaked: {text}");
        }
        // The endpoint is still named, so the operator knows which one.
        assert!(
            shown
                .iter()
                .any(|t| t.contains("api_key=***") || t.contains("?***")),
            "{shown:?}"
        );
    });
}

#[test]
fn http_protobuf_query_secret_never_shown() {
    query_secret_never_shown(Protocol::HttpProtobuf);
}

#[test]
fn http_json_query_secret_never_shown() {
    query_secret_never_shown(Protocol::HttpJson);
}

/// Settings built by hand (not through `OtlpConfig::resolve`) with a user
/// and password in the endpoint are refused by `OtlpSink::new` too,
/// without quoting either.
#[test]
fn hand_built_settings_with_userinfo_are_refused() {
    let c = config("http://127.0.0.1:4318".into(), Protocol::HttpProtobuf, 0);
    let mut s = c.resolve(ServiceInfo::new("t")).unwrap();
    s.endpoint = "http://bob-user:pa55word-x@127.0.0.1:4318/v1/logs".into();
    assert!(!format!("{s:?}").contains("pa55word-x"));
    let e = OtlpSink::new(s).unwrap_err();
    assert!(matches!(e, OtlpConfigError::Credentials { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("bob-user") && !text.contains("pa55word-x"),
        "{text}"
    );
    assert!(text.contains("headers"), "{text}");
}
