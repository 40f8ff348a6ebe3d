//! Records per second to a real collector (rotel) over loopback, with zero
//! loss checked at the far end of the collector's pipeline: agent-audit's
//! OTLP sink beside the OpenTelemetry SDK's BatchLogProcessor with the
//! opentelemetry-otlp gRPC exporter, sending the same records to the same
//! collector in the same run: at its default settings (`otel-sdk`), and
//! with a queue as large as the run so it cannot drop (`otel-sdk-bigq`),
//! which shows what the collector itself takes.
//!
//! ```text
//! bash .ci/setup.d/rotel.sh
//! cargo bench -p agent-audit-otlp --bench otlp_throughput
//! # AUDIT_BENCH_N=1000000 AUDIT_BENCH_RUNS=3
//! # AUDIT_BENCH_SENDERS=agent-audit,otel-sdk,otel-sdk-bigq (any of them)
//! # AUDIT_BENCH_COUNT=forward (default) | python | none
//! # AUDIT_BENCH_ROTEL_ARGS="..." (forward: rotel flags instead of --disable-batching)
//! # AUDIT_BENCH_STALL_S=12 (forward: how long no progress means lost)
//! # AUDIT_BENCH_SEQS=1 (python: also sum audit.seq)
//! # AUDIT_BENCH_PROTOCOL=grpc (default) | http/protobuf | http/json
//! #   (agent-audit's sink only, to rotel's OTLP/HTTP receiver; the SDK
//! #   senders stay on gRPC)
//! ```
//!
//! Counting modes:
//! - `forward` (default): rotel's OTLP exporter forwards every request over
//!   gRPC to a receiver in this process (`counter/`), which counts log
//!   records and distinct `audit.seq` values per `service.name`. A record
//!   counts as delivered when its seq arrived there.
//! - `python`: rotel's Python logs processor (`count_processor.py`) counts;
//!   it costs rotel about 1 s of CPU per 100,000 records, which caps any
//!   sender near 130,000 to 160,000 records/s on 2 cores.
//! - `none` (or `AUDIT_BENCH_PROCESSOR=none`): rotel's blackhole exporter,
//!   nothing counted.
//!
//! For each run and each sender it prints: the rate at which records were
//! emitted and acknowledged (ours: the last record reached `Exported`; the
//! SDK: `shutdown()` returned), the rate until the far end had counted
//! every record, what was lost and duplicated, the load average, and the
//! CPU time per 100,000 records of rotel, of the counter, and of the rest
//! of this process (the sender).

#![allow(missing_docs)]

mod counter;
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
    /// Until the far end had counted every record.
    counted_secs: Option<f64>,
    /// Records counted at the far end (forward mode: distinct `audit.seq`).
    counted: u64,
    detail: String,
    cpu: Cpu,
}

/// Where delivered records are counted.
enum FarEnd {
    /// rotel's OTLP exporter forwards to our counting receiver.
    Forward(counter::Counter),
    /// rotel's Python logs processor appends counts to a file.
    Python,
    /// Nothing counted.
    None,
}

/// CPU seconds so far: rotel's process, the counter's threads, and this
/// whole bench process (which includes the counter).
#[derive(Clone, Copy, Default)]
struct Cpu {
    rotel: f64,
    counter: f64,
    process: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            rotel: self.rotel - o.rotel,
            counter: self.counter - o.counter,
            process: self.process - o.process,
        }
    }
}

/// utime + stime of a /proc/.../stat file, in seconds (USER_HZ = 100).
fn stat_cpu(path: &Path) -> f64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let Some(rest) = text.rsplit_once(')').map(|r| r.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After ')': state is index 0, so utime (field 14) is 11, stime 12.
    (tick(11) + tick(12)) / 100.0
}

fn cpu_now(rotel: &support::Rotel) -> Cpu {
    let mut counter_cpu = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == counter::THREAD_NAME {
                counter_cpu += stat_cpu(&t.path().join("stat"));
            }
        }
    }
    Cpu {
        rotel: rotel
            .pid()
            .map_or(0.0, |p| stat_cpu(Path::new(&format!("/proc/{p}/stat")))),
        counter: counter_cpu,
        process: stat_cpu(Path::new("/proc/self/stat")),
    }
}

/// Sums what the Python processor counted per sender so far.
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

/// Waits until the far end counted `want` records of `service` or its
/// count stopped growing; returns the count, a note on what arrived, and
/// when the count was complete.
fn settle(
    rotel: &support::Rotel,
    far: &FarEnd,
    service: &str,
    want: u64,
) -> (u64, String, Option<Instant>) {
    match far {
        FarEnd::None => (want, String::new(), None),
        FarEnd::Forward(c) => {
            // rotel's exporter retries a failed request after 5 s.
            let stall = env_or("AUDIT_BENCH_STALL_S", 12);
            let (t, at) = c.wait_for(service, want, Duration::from_secs(stall));
            let mut note = format!(
                "far end: {} records in {} requests ({} bytes per record), {} distinct seqs {}..={}, {} duplicates",
                t.records,
                t.requests,
                t.bytes / t.records.max(1),
                t.distinct,
                t.min_seq.unwrap_or(0),
                t.max_seq.unwrap_or(0),
                t.duplicates
            );
            if t.no_seq > 0 {
                note.push_str(&format!(", {} without audit.seq", t.no_seq));
            }
            if t.distinct < want {
                note.push_str(&format!(", first missing {:?}", t.missing(want, 5)));
            }
            let unnamed = c.tally("?").records;
            if unnamed > 0 {
                note.push_str(&format!(
                    ", {unnamed} records (all senders so far) arrived without a resource service.name"
                ));
            }
            if c.undecodable() > 0 {
                note.push_str(&format!(", {} undecodable requests", c.undecodable()));
            }
            (t.distinct, note, at)
        }
        FarEnd::Python => {
            let mut last = (u64::MAX, 0);
            let mut still = 0;
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let now = counted(rotel).get(service).copied().unwrap_or((0, 0));
                if now.0 >= want {
                    return (now.0, seq_note(now.1, want), Some(Instant::now()));
                }
                still = if now == last { still + 1 } else { 0 };
                if still >= 60 || Instant::now() > deadline {
                    return (now.0, seq_note(now.1, want), None);
                }
                last = now;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn seq_note(sum: u64, n: u64) -> String {
    if sum > 0 {
        format!("seq sum {} (expected {})", sum, (1..=n).sum::<u64>())
    } else {
        String::new()
    }
}

/// The protocol agent-audit's sink sends with (`AUDIT_BENCH_PROTOCOL`).
fn our_protocol() -> Protocol {
    match std::env::var("AUDIT_BENCH_PROTOCOL").as_deref() {
        Err(_) | Ok("grpc") => Protocol::Grpc,
        Ok("http/protobuf") => Protocol::HttpProtobuf,
        Ok("http/json") => Protocol::HttpJson,
        Ok(other) => {
            panic!("AUDIT_BENCH_PROTOCOL={other}: expected grpc, http/protobuf or http/json")
        }
    }
}

fn run_ours(rotel: &support::Rotel, far: &FarEnd, n: u64, service: &str) -> Outcome {
    let cpu0 = cpu_now(rotel);
    let protocol = our_protocol();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = OtlpConfig {
        endpoint: Some(if protocol == Protocol::Grpc {
            rotel.grpc_endpoint()
        } else {
            rotel.http_endpoint()
        }),
        protocol: Some(protocol),
        batch_size: std::env::var("AUDIT_BENCH_BATCH")
            .ok()
            .and_then(|v| v.parse().ok()),
        max_in_flight: std::env::var("AUDIT_BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok()),
        retry: Some(RetryConfig::default()),
        ..Default::default()
    };
    // Unset, the sink's own preference (one request of `batch_size` per write).
    let max_batch = std::env::var("AUDIT_BENCH_MAX_BATCH")
        .ok()
        .and_then(|v| v.parse().ok());
    let (secs, start, report) = rt.block_on(async {
        let sink = OtlpSink::from_config(&config, ServiceInfo::new(service)).unwrap();
        let mut options = SinkOptions::new("collector")
            .queue(65_536)
            .overflow(Overflow::Block);
        if let Some(n) = max_batch {
            options = options.max_batch(n);
        }
        let d = Dispatcher::builder()
            .async_sink(options, sink)
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
    let (got, note, at) = settle(rotel, far, service, n);
    let h = &report.sinks[0].health;
    Outcome {
        emitted: n,
        secs,
        counted_secs: at.map(|t| t.duration_since(start).as_secs_f64()),
        counted: got,
        detail: format!(
            "acked Exported {}, failed {}, dropped {}; {note}",
            h.delivered, h.failed, h.dropped,
        ),
        cpu: cpu_now(rotel) - cpu0,
    }
}

/// The SDK's batch processor at its default settings (queue 2048, batches
/// of 512), or with a queue that holds the whole run so nothing can drop.
fn run_sdk(
    rotel: &support::Rotel,
    far: &FarEnd,
    n: u64,
    service: &'static str,
    big_queue: bool,
) -> Outcome {
    let cpu0 = cpu_now(rotel);
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
    let (got, note, at) = settle(rotel, far, service, n);
    Outcome {
        emitted: n,
        secs,
        counted_secs: at.map(|t| t.duration_since(start).as_secs_f64()),
        counted: got,
        detail: format!("shutdown: {shutdown:?}; {note}"),
        cpu: cpu_now(rotel) - cpu0,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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
    // AUDIT_BENCH_COUNT=forward (default): rotel forwards over OTLP/gRPC to
    // our counter; =python: rotel's Python logs processor counts;
    // =none: nothing counted. AUDIT_BENCH_PROCESSOR=none is the old
    // spelling of =none.
    let mode = match std::env::var("AUDIT_BENCH_PROCESSOR").as_deref() {
        Ok("none") => "none".to_string(),
        _ => std::env::var("AUDIT_BENCH_COUNT").unwrap_or_else(|_| "forward".to_string()),
    };
    let (far, processor, args) = match mode.as_str() {
        "forward" => {
            let c = counter::Counter::start();
            let mut args: Vec<String> = [
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                &c.endpoint(),
                "--otlp-exporter-protocol",
                "grpc",
                // Loopback: compressing costs rotel CPU for nothing.
                "--otlp-exporter-compression",
                "none",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            // rotel 0.0.1a15 (binary 0.0.1-alpha10) batches by default, and
            // when it splits an incoming request across two batches the
            // part split off is sent without its resource: the records
            // arrive, but without service.name (AUDIT_BENCH_ROTEL_ARGS=
            // "--batch-max-size 1024" shows it). Without batching each
            // request is forwarded as it came. AUDIT_BENCH_ROTEL_ARGS
            // replaces this default.
            args.extend(
                std::env::var("AUDIT_BENCH_ROTEL_ARGS")
                    .unwrap_or_else(|_| "--disable-batching".to_string())
                    .split_whitespace()
                    .map(str::to_string),
            );
            (FarEnd::Forward(c), None, args)
        }
        "python" => (
            FarEnd::Python,
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/count_processor.py")),
            Vec::new(),
        ),
        "none" => (FarEnd::None, None, Vec::new()),
        other => panic!("AUDIT_BENCH_COUNT={other}: expected forward, python or none"),
    };
    let rotel =
        support::Rotel::start_with(processor, &args, &[("AUDIT_BENCH_SEQS", seqs.as_str())]);
    println!(
        "otlp_throughput: {n} records per sender per run, {runs} run(s), rotel gRPC on 127.0.0.1:{} and HTTP on 127.0.0.1:{}, agent-audit sends over {} (the SDK senders over gRPC), {}, load average {}",
        rotel.grpc_port,
        rotel.http_port,
        our_protocol(),
        match &far {
            FarEnd::Forward(c) =>
                format!("delivered records counted (distinct audit.seq) where rotel's OTLP exporter forwards them, {}", c.endpoint()),
            FarEnd::Python => "delivered records counted by rotel's Python logs processor".to_string(),
            FarEnd::None =>
                "NO counting: rotel exports to blackhole, delivery NOT counted (lost shows 0 by assumption)".to_string(),
        },
        loadavg()
    );
    let mut rates: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut counted_rates: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut losses: HashMap<&str, Vec<i64>> = HashMap::new();
    let order = ["agent-audit", "otel-sdk", "otel-sdk-bigq"];
    for run in 1..=runs {
        for which in order {
            if !senders.split(',').any(|s| s == which) {
                continue;
            }
            let service: &'static str = Box::leak(format!("{which}-run{run}").into_boxed_str());
            let load = loadavg();
            let o = if which == "agent-audit" {
                run_ours(&rotel, &far, n, service)
            } else {
                run_sdk(&rotel, &far, n, service, which == "otel-sdk-bigq")
            };
            let lost = o.emitted as i64 - o.counted as i64;
            let per = 100_000.0 / o.emitted as f64;
            let counted_note = if matches!(far, FarEnd::None) {
                "nothing counted (no far end)".to_string()
            } else {
                format!(
                    "counted at the far end {}; counted {} -> lost {} ({:.1}%)",
                    o.counted_secs.map_or("never".to_string(), |c| format!(
                        "after {c:.3} s: {:.0} records/s",
                        o.emitted as f64 / c
                    )),
                    o.counted,
                    lost,
                    100.0 * lost as f64 / o.emitted as f64,
                )
            };
            println!(
                "run {run} {which:<13}: {:>9.0} records/s acked ({} in {:.3} s); {counted_note}; load {load}",
                o.emitted as f64 / o.secs,
                o.emitted,
                o.secs,
            );
            println!(
                "    {}\n    CPU per 100k records: rotel {:.2} s, counter {:.2} s, bench process without the counter {:.2} s",
                o.detail,
                o.cpu.rotel * per,
                o.cpu.counter * per,
                (o.cpu.process - o.cpu.counter) * per,
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
            }
            rates
                .entry(which)
                .or_default()
                .push(o.emitted as f64 / o.secs);
            if let Some(c) = o.counted_secs {
                counted_rates
                    .entry(which)
                    .or_default()
                    .push(o.emitted as f64 / c);
            }
            losses.entry(which).or_default().push(lost);
        }
    }
    println!(
        "summary ({mode} counting, agent-audit over {}, load average now {}):",
        our_protocol(),
        loadavg()
    );
    let ours_counted = counted_rates.get("agent-audit").map(|v| median(v.clone()));
    for which in order {
        let Some(r) = rates.get(which) else { continue };
        let c = counted_rates.get(which).cloned().unwrap_or_default();
        let ratio = match (ours_counted, c.is_empty()) {
            (Some(o), false) if which != "agent-audit" => {
                format!("; agent-audit / this = {:.2}x", o / median(c.clone()))
            }
            _ => String::new(),
        };
        println!(
            "  {which:<13}: acked median {:.0} records/s {:?}; all counted at the far end: median {} {:?}; lost {:?}{ratio}",
            median(r.clone()),
            r.iter().map(|x| x.round()).collect::<Vec<_>>(),
            if c.is_empty() {
                "never".to_string()
            } else {
                format!("{:.0} records/s", median(c.clone()))
            },
            c.iter().map(|x| x.round()).collect::<Vec<_>>(),
            losses.get(which).cloned().unwrap_or_default()
        );
    }
}
