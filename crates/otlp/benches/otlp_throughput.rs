//! Records per second to a real collector (rotel) over loopback, with zero
//! loss checked from what the collector received: agent-audit's OTLP sink
//! beside the OpenTelemetry SDK's BatchLogProcessor with the
//! opentelemetry-otlp gRPC exporter, sending the same records to the same
//! collector in the same run: at its default settings (`otel-sdk`), and
//! with a queue as large as the run so it cannot drop (`otel-sdk-bigq`),
//! which shows what the collector itself takes.
//!
//! ```text
//! bash .ci/setup.d/rotel.sh
//! cargo bench -p agent-audit-otlp --bench otlp_throughput
//! # AUDIT_BENCH_N=1000000 AUDIT_BENCH_RUNS=3 AUDIT_BENCH_SEQS=1
//! # AUDIT_BENCH_SENDERS=agent-audit,otel-sdk,otel-sdk-bigq (any of them);
//! # AUDIT_BENCH_PROCESSOR=none runs rotel without its Python processor
//! # (whose per-record conversion is the slowest stage) and counts nothing
//! ```
//!
//! For each run and each sender it prints: records emitted, the rate at
//! which they were emitted and acknowledged (ours: the last record reached
//! `Exported`; the SDK: `shutdown()` returned), how many the collector's
//! logs processor counted for that sender, and how many were lost.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, Overflow, SinkOptions};
use agent_audit_otlp::{OtlpConfig, OtlpSink, Protocol, RetryConfig, ServiceInfo};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use serde_json::{Value, json};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tutorial's kinds of records, in turn.
fn payload(i: u64) -> (EventType, &'static str, Value) {
    match i % 4 {
        0 => (
            EventType::ToolCall,
            "agent_audit.tool_call",
            json!({"tool": "get_account_balance", "call_id": format!("call_{i}"), "arguments": {"account_id": "ACC-1234"}}),
        ),
        1 => (
            EventType::ToolResult,
            "agent_audit.tool_result",
            json!({"tool": "get_account_balance", "call_id": format!("call_{i}"), "result": {"balance": 1532.75, "currency": "EUR"}}),
        ),
        2 => (
            EventType::AssistantOutput,
            "agent_audit.assistant_output",
            json!({"model": "gpt-4o-mini", "content": "Your balance is 1,532.75 EUR.", "usage": {"prompt_tokens": 182, "completion_tokens": 14}}),
        ),
        _ => (
            EventType::UserRequest,
            "agent_audit.user_request",
            json!({"text": "What is the balance of account ACC-1234?"}),
        ),
    }
}

fn to_otel(v: &Value) -> AnyValue {
    match v {
        Value::Null => AnyValue::String("".into()),
        Value::Bool(b) => AnyValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AnyValue::String(s.clone().into()),
        Value::Array(a) => AnyValue::ListAny(Box::new(a.iter().map(to_otel).collect())),
        Value::Object(m) => AnyValue::Map(Box::new(
            m.iter()
                .map(|(k, v)| (k.clone().into(), to_otel(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

struct Outcome {
    emitted: u64,
    secs: f64,
    /// Until the collector's processor had counted every record.
    counted_secs: Option<f64>,
    counted: u64,
    detail: String,
}

/// Sums what the processor counted per sender so far.
fn counted(rotel: &support::Rotel) -> HashMap<String, (u64, u64)> {
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    let Ok(text) = std::fs::read_to_string(&rotel.out) else {
        return out;
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            break;
        };
        let e = out
            .entry(v["service"].as_str().unwrap_or("?").to_string())
            .or_default();
        e.0 += v["n"].as_u64().unwrap_or(0);
        e.1 += v["sum"].as_u64().unwrap_or(0);
    }
    out
}

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Waits until the processor's count for `service` reaches `want` or
/// stops growing; also returns when it reached `want` (polled every 50 ms).
fn settle(rotel: &support::Rotel, service: &str, want: u64) -> (u64, u64, Option<Instant>) {
    if !COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
        return (want, 0, None);
    }
    let mut last = (u64::MAX, 0);
    let mut still = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let now = counted(rotel).get(service).copied().unwrap_or((0, 0));
        if now.0 >= want {
            return (now.0, now.1, Some(Instant::now()));
        }
        still = if now == last { still + 1 } else { 0 };
        if still >= 60 || Instant::now() > deadline {
            return (now.0, now.1, None);
        }
        last = now;
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_ours(rotel: &support::Rotel, n: u64, service: &str) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = OtlpConfig {
        endpoint: Some(rotel.grpc_endpoint()),
        protocol: Some(Protocol::Grpc),
        batch_size: std::env::var("AUDIT_BENCH_BATCH")
            .ok()
            .and_then(|v| v.parse().ok()),
        max_in_flight: std::env::var("AUDIT_BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok()),
        retry: Some(RetryConfig::default()),
        ..Default::default()
    };
    let max_batch = env_or("AUDIT_BENCH_MAX_BATCH", config.max_batch());
    let (secs, start, report) = rt.block_on(async {
        let sink = OtlpSink::from_config(&config, ServiceInfo::new(service)).unwrap();
        let d = Dispatcher::builder()
            .sink(
                SinkOptions::new("collector")
                    .queue(65_536)
                    .max_batch(max_batch)
                    .overflow(Overflow::Block),
                sink,
            )
            .start()
            .await
            .unwrap();
        let a = Auditor::new(d.clone())
            .for_request(Some("bench"))
            .with_agent("assistant");
        let payloads: Vec<_> = (0..16).map(payload).collect();
        let start = Instant::now();
        let mut last = 0;
        for i in 0..n {
            let (t, _, p) = &payloads[(i % 16) as usize];
            last = a.emit(t.clone(), p).await.unwrap().seq;
        }
        let r = d.wait(last, AckLevel::Exported).await.unwrap();
        assert_eq!(r.level, AckLevel::Exported);
        let secs = start.elapsed().as_secs_f64();
        (secs, start, d.shutdown(Duration::from_secs(30)).await)
    });
    let (got, sum, at) = settle(rotel, service, n);
    let h = &report.sinks[0].health;
    Outcome {
        emitted: n,
        secs,
        counted_secs: at.map(|t| t.duration_since(start).as_secs_f64()),
        counted: got,
        detail: format!(
            "acked Exported {}, failed {}, dropped {}{}",
            h.delivered,
            h.failed,
            h.dropped,
            if sum > 0 {
                format!(", seq sum {} (expected {})", sum, (1..=n).sum::<u64>())
            } else {
                String::new()
            }
        ),
    }
}

/// The SDK's batch processor at its default settings (queue 2048, batches
/// of 512), or with a queue that holds the whole run so nothing can drop.
fn run_sdk(rotel: &support::Rotel, n: u64, service: &'static str, big_queue: bool) -> Outcome {
    use opentelemetry_otlp::WithExportConfig as _;
    // The tonic exporter needs a tokio runtime; the SDK's batch processor
    // runs on its own thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(rotel.grpc_endpoint())
        .build()
        .unwrap();
    let mut builder = opentelemetry_sdk::logs::SdkLoggerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service)
            .build(),
    );
    builder = if big_queue {
        let config = opentelemetry_sdk::logs::BatchConfigBuilder::default()
            .with_max_queue_size(n as usize + 1)
            .with_max_export_batch_size(4096)
            .build();
        builder.with_log_processor(
            opentelemetry_sdk::logs::BatchLogProcessor::builder(exporter)
                .with_batch_config(config)
                .build(),
        )
    } else {
        builder.with_batch_exporter(exporter)
    };
    let provider = builder.build();
    let logger = provider.logger("agent-audit-bench");
    let payloads: Vec<_> = (0..16).map(payload).collect();
    let trace = opentelemetry::TraceId::from_bytes(agent_audit_core::TraceId::random().to_bytes());
    let span = opentelemetry::SpanId::from_bytes(agent_audit_core::SpanId::random().to_bytes());
    let start = Instant::now();
    for i in 0..n {
        let (_, name, p) = &payloads[(i % 16) as usize];
        // The same content our sink sends: event name, body map, the
        // audit and gen_ai attributes, trace context.
        let mut r = logger.create_log_record();
        r.set_event_name(name);
        r.set_timestamp(SystemTime::now());
        r.set_severity_number(Severity::Info);
        r.set_severity_text("INFO");
        r.set_body(to_otel(p));
        r.add_attribute("audit.seq", (i + 1) as i64);
        r.add_attribute("audit.request_id", "bench");
        r.add_attribute("gen_ai.agent.name", "assistant");
        r.set_trace_context(trace, span, None);
        logger.emit(r);
    }
    let shutdown = provider.shutdown();
    let secs = start.elapsed().as_secs_f64();
    let (got, _, at) = settle(rotel, service, n);
    Outcome {
        emitted: n,
        secs,
        counted_secs: at.map(|t| t.duration_since(start).as_secs_f64()),
        counted: got,
        detail: format!("shutdown: {shutdown:?}"),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs the binary
    // too: then a tiny smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: u64 = env_or("AUDIT_BENCH_N", if smoke { 2_000 } else { 500_000 });
    let runs: u32 = env_or("AUDIT_BENCH_RUNS", if smoke { 1 } else { 3 });
    let seqs = std::env::var("AUDIT_BENCH_SEQS").unwrap_or_default();
    let senders = std::env::var("AUDIT_BENCH_SENDERS")
        .unwrap_or_else(|_| "agent-audit,otel-sdk,otel-sdk-bigq".to_string());
    let processor = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/count_processor.py");
    // AUDIT_BENCH_PROCESSOR=none runs rotel without its Python processor,
    // to see the senders' own speed; nothing is counted then.
    let counting = std::env::var("AUDIT_BENCH_PROCESSOR").map_or(true, |v| v != "none");
    let rotel = support::Rotel::start_with(
        counting.then_some(processor),
        &[],
        &[("AUDIT_BENCH_SEQS", seqs.as_str())],
    );
    COUNTING.store(counting, std::sync::atomic::Ordering::Relaxed);
    println!(
        "otlp_throughput: {n} records per sender per run, {runs} run(s), rotel gRPC on 127.0.0.1:{}, {}, load average {}",
        rotel.grpc_port,
        if counting {
            "delivered records counted by rotel's Python logs processor"
        } else {
            "NO processor: delivery NOT counted (lost shows 0 by assumption)"
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut ours = Vec::new();
    let mut sdk = Vec::new();
    let mut bigq = Vec::new();
    for run in 1..=runs {
        for which in ["agent-audit", "otel-sdk", "otel-sdk-bigq"] {
            if !senders.split(',').any(|s| s == which) {
                continue;
            }
            let service: &'static str = Box::leak(format!("{which}-run{run}").into_boxed_str());
            let o = if which == "agent-audit" {
                run_ours(&rotel, n, service)
            } else {
                run_sdk(&rotel, n, service, which == "otel-sdk-bigq")
            };
            let lost = o.emitted as i64 - o.counted as i64;
            println!(
                "run {run} {which:<11}: {:>9.0} records/s ({} in {:.3} s; all counted by the collector {}), collector counted {} -> lost {} ({:.1}%); {}",
                o.emitted as f64 / o.secs,
                o.emitted,
                o.secs,
                o.counted_secs.map_or("never".to_string(), |c| format!(
                    "after {c:.3} s: {:.0} records/s",
                    o.emitted as f64 / c
                )),
                o.counted,
                lost,
                100.0 * lost as f64 / o.emitted as f64,
                o.detail
            );
            if lost != 0 && which == "agent-audit" {
                let log = rotel.log();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                println!("  collector log (last lines, newest first): {tail:#?}");
            }
            if which == "agent-audit" {
                assert_eq!(
                    o.counted, o.emitted,
                    "agent-audit lost records: {}",
                    o.detail
                );
                ours.push(o.emitted as f64 / o.secs);
            } else if which == "otel-sdk-bigq" {
                bigq.push((o.emitted as f64 / o.secs, lost));
            } else {
                sdk.push((o.emitted as f64 / o.secs, lost));
            }
        }
    }
    ours.sort_by(|a, b| a.total_cmp(b));
    if ours.is_empty() || sdk.is_empty() {
        return;
    }
    if !bigq.is_empty() {
        println!(
            "OpenTelemetry SDK batch processor with a queue as large as the run: {:?} records/s, lost {:?}",
            bigq.iter().map(|b| b.0.round()).collect::<Vec<_>>(),
            bigq.iter().map(|b| b.1).collect::<Vec<_>>()
        );
    }
    println!(
        "agent-audit OTLP sink: median {:.0} records/s, zero loss in every run; OpenTelemetry SDK batch processor: median {:.0} records/s, lost {:?}",
        ours[ours.len() / 2],
        {
            let mut r: Vec<f64> = sdk.iter().map(|s| s.0).collect();
            r.sort_by(|a, b| a.total_cmp(b));
            r[r.len() / 2]
        },
        sdk.iter().map(|s| s.1).collect::<Vec<_>>()
    );
}
