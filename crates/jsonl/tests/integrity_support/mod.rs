//! Helpers shared by the integrity tests: real logs written by the real
//! `JsonlSink` through a `Dispatcher`, and byte-level tampering.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_jsonl::checkpoint::{CheckpointOptions, CheckpointSummary, Checkpointer};
use agent_audit_jsonl::keys::Signer;
use agent_audit_jsonl::verify::{self, Problem, ProblemKind, VerifyOptions, VerifyReport};
use agent_audit_jsonl::{ChainKey, JsonlOptions, JsonlSink};
use sha2::{Digest, Sha256};

pub const SHUTDOWN: Duration = Duration::from_secs(10);
/// A chain key of the length `openssl rand -hex 32` gives.
pub const KEY: &[u8] = b"7f3a9c1e5b2d8f4a6c0e9b3d7a1f5c2e8b4d0a6f3c9e1b7d5a2f8c4e0b6d3a9f";

pub fn tool_call(i: u64) -> serde_json::Value {
    serde_json::json!({
        "tool": "get_account_balance",
        "call_id": format!("call_{i:08}"),
        "arguments": {"account_id": "12345"},
    })
}

/// Writes `n` records to `path` through a real dispatcher and sink.
pub async fn write_log(opts: JsonlOptions, n: u64) {
    let sink = JsonlSink::new(opts).unwrap();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").max_batch(7), sink)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone())
        .for_request(Some("r1"))
        .with_agent("assistant");
    for i in 0..n {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    let report = d.shutdown(SHUTDOWN).await;
    assert!(report.is_clean(), "{report:?}");
}

/// A log with a checkpointer, and an off-host copy: a second JSONL sink
/// standing for the collector, which receives every record including the
/// checkpoints. Returns what the checkpointer did.
pub struct Signed {
    pub log: PathBuf,
    pub off_host: PathBuf,
    pub signer: Signer,
    pub summary: CheckpointSummary,
}

pub async fn write_signed_log(
    dir: &Path,
    n: u64,
    every: u64,
    key: Option<&[u8]>,
    rotate_bytes: Option<u64>,
) -> Signed {
    let log = dir.join("audit-log.jsonl");
    let off_host = dir.join("collector").join("received.jsonl");
    std::fs::create_dir_all(off_host.parent().unwrap()).unwrap();
    let mut opts = JsonlOptions::new(&log);
    if let Some(k) = key {
        opts = opts.chain_key(k);
    }
    if let Some(r) = rotate_bytes {
        opts = opts.rotate_bytes(r);
    }
    let sink = JsonlSink::new(opts).unwrap();
    let head = sink.head_handle();
    let copy = JsonlSink::new(JsonlOptions::new(&off_host)).unwrap();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").max_batch(5), sink)
        .sink(SinkOptions::new("collector"), copy)
        .start()
        .await
        .unwrap();
    let signer = Signer::generate();
    let cp = Checkpointer::start(
        Auditor::new(d.clone()).with_agent("agent-audit"),
        head,
        signer.clone(),
        CheckpointOptions {
            every,
            interval: Duration::from_secs(3600),
        },
    )
    .unwrap();
    let a = Auditor::new(d.clone())
        .for_request(Some("r1"))
        .with_agent("assistant");
    for i in 0..n {
        // Waiting for each record makes the count trigger see every line,
        // so checkpoints land at predictable places.
        a.emit_wait(EventType::ToolCall, &tool_call(i), AckLevel::Written)
            .await
            .unwrap();
    }
    let summary = cp.finish().await.unwrap();
    let report = d.shutdown(SHUTDOWN).await;
    assert!(report.is_clean(), "{report:?}");
    Signed {
        log,
        off_host,
        signer,
        summary,
    }
}

pub fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut out: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

pub fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut data = Vec::new();
    for l in lines {
        data.extend_from_slice(l);
        data.push(b'\n');
    }
    std::fs::write(path, data).unwrap();
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn set_prev(line: &[u8], prev: &str) -> Vec<u8> {
    let text = std::str::from_utf8(line).unwrap();
    let at = text.rfind(",\"prev\":\"").unwrap();
    format!("{},\"prev\":\"{prev}\"}}", &text[..at]).into_bytes()
}

pub fn set_seq(line: &[u8], seq: u64) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
    let old = v["seq"].as_u64().unwrap();
    let text = std::str::from_utf8(line).unwrap();
    v["seq"] = seq.into();
    text.replacen(&format!("\"seq\":{old},"), &format!("\"seq\":{seq},"), 1)
        .into_bytes()
}

/// What an attacker without a key does after changing lines: recompute the
/// plain SHA-256 chain from line `from` (0-based) on.
pub fn rechain_plain(lines: &mut [Vec<u8>], from: usize) {
    for i in from.max(1)..lines.len() {
        let prev = sha256_hex(&lines[i - 1]);
        lines[i] = set_prev(&lines[i], &prev);
    }
}

pub fn verify_with(paths: &[&Path], options: &VerifyOptions) -> VerifyReport {
    verify::verify(paths, options, &mut |_| {}).unwrap()
}

pub fn plain(paths: &[&Path]) -> VerifyReport {
    verify_with(paths, &VerifyOptions::default())
}

pub fn keyed() -> VerifyOptions {
    VerifyOptions {
        key: Some(ChainKey::new(KEY)),
        ..VerifyOptions::default()
    }
}

/// The problem of a report that must have one, of `kind` at `line`.
#[track_caller]
pub fn expect_problem(report: &VerifyReport, kind: ProblemKind, line: u64) -> Problem {
    let p = report.problem.clone().unwrap_or_else(|| {
        panic!("expected {kind} at line {line}, but the log verified:\n{report}")
    });
    assert_eq!((p.kind, p.line), (kind, line), "{p}");
    assert!(!report.intact);
    p
}

#[track_caller]
pub fn expect_intact(report: &VerifyReport) {
    assert!(report.intact, "{report}");
    assert!(report.problem.is_none());
}
