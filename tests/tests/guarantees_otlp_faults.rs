//! Guarantees when the collector fails (docs/guarantees.md, "Faults"): a
//! collector that refuses connections, one that answers 503, one that dies
//! mid-stream (a real rotel, SIGKILLed) and one that accepts and never
//! answers. For each: the failure shows on the next emit's receipt (an
//! error when the sink is required) and in health within a bounded time;
//! the JSONL sink keeps every record, with audit_gap records naming what
//! the collector lost; shutdown's counts are exact; and with a stalled
//! collector, memory stays within the configured queue.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_audit::config::Config;
use agent_audit::{AckLevel, Auditor, Dispatcher, EmitError, EventType, SinkReport};
use agent_audit_tests::chain::{Checked, check_file};
use agent_audit_tests::collector::{Rotel, Silent, free_port};
use agent_audit_tests::http::{HttpServer, Reply};
use agent_audit_tests::procs::{Reported, wait_for_report};
use serde_json::{Value, json};

fn start_config(dir: &Path, otlp: &str, required: bool) -> (Config, std::path::PathBuf) {
    let log = dir.join("audit-log.jsonl");
    let text = format!(
        r#"
[[sinks]]
type = "jsonl"
path = "{}"

[[sinks]]
type = "otlp"
name = "collector"
required = {required}
{otlp}
"#,
        log.display()
    );
    (Config::parse(&text, "otlp-faults.toml").unwrap(), log)
}

fn report<'a>(r: &'a [SinkReport], name: &str) -> &'a SinkReport {
    r.iter().find(|s| s.health.name == name).unwrap()
}

fn records(path: &Path) -> Vec<Checked> {
    let s = check_file(path, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.torn_tail, None);
    s.records
}

fn tool(i: u64) -> Value {
    json!({"tool": "transfer", "i": i})
}

/// Sum of `lost` over the `sink_failed` gap records about the collector.
fn lost(recs: &[Checked]) -> u64 {
    recs.iter()
        .filter(|r| r.event_type() == "audit_gap" && r.payload()["reason"] == "sink_failed")
        .filter(|r| r.payload()["sink"] == "collector")
        .map(|r| r.payload()["lost"].as_u64().unwrap())
        .sum()
}

/// Records the collector sink was given: all but the gap records about its
/// own failures.
fn routed_to_collector(recs: &[Checked]) -> u64 {
    recs.iter()
        .filter(|r| {
            !(r.event_type() == "audit_gap"
                && r.payload()["reason"] == "sink_failed"
                && r.payload()["sink"] == "collector")
        })
        .count() as u64
}

/// Emits one record waiting for Exported and checks the receipt names the
/// collector's failure with `cause`, within `within`.
async fn failure_on_next_emit(a: &Auditor, endpoint: &str, cause: &str, within: Duration) {
    let started = Instant::now();
    let r = tokio::time::timeout(
        within,
        a.emit_wait(EventType::ToolCall, &tool(0), AckLevel::Exported),
    )
    .await
    .unwrap_or_else(|_| panic!("the receipt took longer than {within:?}"))
    .unwrap();
    assert_eq!(r.level, AckLevel::Durable, "the JSONL sink has it: {r:?}");
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert_eq!(r.failed[0].sink, "collector");
    let msg = r.failed[0].error.to_string();
    assert!(
        msg.contains(endpoint) && msg.contains(cause),
        "after {:?}: {msg}",
        started.elapsed()
    );
}

/// Emits `n` more records, shuts down, and checks the counts.
async fn finish_and_count(d: &Dispatcher, a: &Auditor, log: &Path, n: u64, exported: u64) {
    for i in 1..=n {
        a.emit(EventType::ToolCall, &tool(i)).await.unwrap();
    }
    let h = d.health();
    let c = h.sinks.iter().find(|s| s.name == "collector").unwrap();
    assert!(c.last_error.is_some() && c.failed >= 1, "{c:?}");
    let rep = d.shutdown(Duration::from_secs(20)).await;
    let recs = records(log);
    assert_eq!(
        recs.iter()
            .filter(|r| r.event_type() == "tool_call")
            .count() as u64,
        exported + n + 1,
        "the JSONL sink kept every record"
    );
    let c = report(&rep.sinks, "collector");
    let j = report(&rep.sinks, "jsonl");
    assert_eq!(j.health.delivered, recs.len() as u64, "{rep}");
    assert_eq!((j.health.failed, j.undelivered), (0, 0), "{rep}");
    assert_eq!(c.health.delivered, exported, "{rep}");
    assert_eq!(
        c.health.delivered + c.health.failed + c.health.dropped + c.undelivered,
        routed_to_collector(&recs),
        "{rep}"
    );
    assert_eq!(
        lost(&recs),
        c.health.failed,
        "gap records name every lost record: {rep}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_refusing_connections_fails_visibly_and_jsonl_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let (cfg, log) = start_config(
        dir.path(),
        &format!(
            "endpoint = \"{endpoint}\"\nprotocol = \"grpc\"\nretry = {{ max_elapsed_ms = 0 }}"
        ),
        false,
    );
    let d = cfg.start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    failure_on_next_emit(&a, &endpoint, "Connection refused", Duration::from_secs(10)).await;
    finish_and_count(&d, &a, &log, 50, 0).await;
}

/// A collector behind `server` that answers 503: the next emit's receipt
/// names the 503 once the retry budget in `settings` is spent, and the
/// counts stay exact. Returns how many requests the collector saw.
async fn answering_503(server: HttpServer, settings: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("{}/v1/logs", server.base_url());
    let (cfg, log) = start_config(
        dir.path(),
        &format!("endpoint = \"{endpoint}\"\nprotocol = \"http/json\"\n{settings}"),
        false,
    );
    let d = cfg.start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    failure_on_next_emit(&a, &endpoint, "503", Duration::from_secs(10)).await;
    let seen = server.requests().len();
    finish_and_count(&d, &a, &log, 20, 0).await;
    seen
}

const OVERLOADED: &str = r#"{"message":"overloaded"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_answering_503_fails_after_its_retry_budget() {
    let server = HttpServer::start(|_| Reply::json(503, OVERLOADED)).unwrap();
    let seen = answering_503(
        server,
        "retry = { initial_backoff_ms = 10, max_backoff_ms = 50, max_elapsed_ms = 200 }",
    )
    .await;
    assert!(seen >= 2, "a 503 is retried");
}

/// When the retry budget runs out during an attempt, the error names the
/// collector's last answer (the 503), not the cut-short attempt's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_ends_mid_attempt_still_reports_the_collectors_answer() {
    let first = std::sync::atomic::AtomicBool::new(true);
    let server = HttpServer::start(move |_| {
        if !first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            // Later attempts hang past the budget.
            std::thread::sleep(Duration::from_secs(3));
        }
        Reply::json(503, OVERLOADED)
    })
    .unwrap();
    answering_503(
        server,
        "timeout_ms = 10000\nretry = { initial_backoff_ms = 10, max_backoff_ms = 50, max_elapsed_ms = 400 }",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_collector_down_fails_the_emit() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let (cfg, _log) = start_config(
        dir.path(),
        &format!(
            "endpoint = \"{endpoint}\"\nprotocol = \"grpc\"\nretry = {{ max_elapsed_ms = 0 }}"
        ),
        true,
    );
    let d = cfg.start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    let err = a
        .emit_wait(EventType::ToolCall, &tool(0), AckLevel::Exported)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EmitError::SinkFailed { sink, .. } if sink == "collector")
            && err.to_string().contains(&endpoint),
        "{err}"
    );
    // Audit before act: nothing more is accepted.
    assert!(matches!(
        a.emit(EventType::ToolCall, &tool(1)).await,
        Err(EmitError::SinkFailed { .. })
    ));
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_dying_mid_stream_fails_the_rest_and_keeps_what_it_acknowledged() {
    const BEFORE: u64 = 20;
    let mut rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = rotel.grpc_endpoint();
    let (cfg, log) = start_config(
        dir.path(),
        &format!(
            "endpoint = \"{endpoint}\"\nprotocol = \"grpc\"\ntimeout_ms = 2000\nretry = {{ initial_backoff_ms = 10, max_backoff_ms = 50, max_elapsed_ms = 300 }}"
        ),
        false,
    );
    let d = cfg.start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    for i in 0..BEFORE {
        let r = a
            .emit_wait(EventType::ToolCall, &tool(100 + i), AckLevel::Exported)
            .await
            .unwrap();
        assert_eq!(r.level, AckLevel::Durable, "{r:?}");
        assert!(r.failed.is_empty(), "{r:?}");
    }
    let got = rotel.wait_for(BEFORE as usize, Duration::from_secs(20));
    let mut seqs: Vec<u64> = got
        .iter()
        .map(|r| r["attributes"]["audit.seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=BEFORE).collect::<Vec<_>>(), "{}", rotel.log());

    rotel.kill();
    failure_on_next_emit(&a, &endpoint, "failed after", Duration::from_secs(15)).await;
    finish_and_count(&d, &a, &log, 30, BEFORE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_that_never_answers_times_out_on_the_next_emit() {
    let silent = Silent::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("{}/v1/logs", silent.endpoint());
    let (cfg, log) = start_config(
        dir.path(),
        &format!(
            "endpoint = \"{endpoint}\"\nprotocol = \"http/protobuf\"\ntimeout_ms = 300\nretry = {{ max_elapsed_ms = 0 }}"
        ),
        false,
    );
    let d = cfg.start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    failure_on_next_emit(&a, &endpoint, "timed out", Duration::from_secs(10)).await;
    assert!(
        silent.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the request reached the silent server"
    );
    finish_and_count(&d, &a, &log, 10, 0).await;
}

/// The collector never answers and its sink's timeout is long (60 s): the
/// sink is stalled. A child emitting 96 MiB with `queue = 64` and
/// `drop_newest` must stay far below that in memory, and its shutdown at a
/// 500 ms deadline must account for every record.
#[test]
fn stalled_collector_memory_stays_within_the_queue_and_counts_are_exact() {
    const N: u64 = 1536;
    const PAYLOAD: u64 = 64 * 1024;
    const LIMIT_KIB: u64 = 64 * 1024;
    let silent = Silent::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let cfg = dir.path().join("audit.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[sinks]]
type = "jsonl"
path = "{}"
fsync = "never"
queue = 64

[[sinks]]
type = "otlp"
name = "collector"
endpoint = "{}"
protocol = "grpc"
timeout_ms = 60000
required = false
overflow = "drop_newest"
queue = 64
"#,
            log.display(),
            silent.endpoint()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fault-writer"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--records",
            &N.to_string(),
            "--payload-bytes",
            &PAYLOAD.to_string(),
            "--shutdown-ms",
            "500",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Reported {
        report,
        peak_sampled_kib: peak,
    } = wait_for_report(&mut child);
    let hwm = report["vm_hwm_kib"].as_u64().unwrap();
    assert!(
        hwm < LIMIT_KIB && peak < LIMIT_KIB,
        "peak RSS {hwm} KiB (sampled {peak} KiB), limit {LIMIT_KIB} KiB, {} KiB emitted",
        N * PAYLOAD / 1024
    );
    assert!(silent.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let recs = records(&log);
    assert_eq!(
        recs.iter()
            .filter(|r| r.event_type() == "tool_call")
            .count() as u64,
        N
    );
    let s = report["shutdown"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "collector")
        .unwrap();
    let n = |k: &str| s[k].as_u64().unwrap();
    assert!(n("dropped") > 0, "{s}");
    assert_eq!(
        n("delivered") + n("failed") + n("dropped") + n("undelivered"),
        routed_to_collector(&recs),
        "{s}"
    );
    // What the collector could not take by the end of the drain is named
    // in the file too; only the last few records, sent after the final
    // gap records were written, fail unnamed (the report counts them).
    let named = lost(&recs);
    assert!(named > 0 && named <= n("failed"), "{named} named: {s}");
    let dropped_in_gaps: u64 = recs
        .iter()
        .filter(|r| r.event_type() == "audit_gap" && r.payload()["reason"] == "queue_full")
        .map(|r| r.payload()["lost"].as_u64().unwrap())
        .sum();
    assert_eq!(dropped_in_gaps, n("dropped"));
}
