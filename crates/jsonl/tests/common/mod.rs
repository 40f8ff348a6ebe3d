//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use agent_audit_core::{Dispatcher, SinkOptions, StoredRecord};
use agent_audit_jsonl::{JsonlOptions, JsonlSink, Line, ReadError, Reader, chain::GENESIS, files};
use sha2::{Digest, Sha256};

/// Plain SHA-256 hex of a line, computed independently of the crate's chain module.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tool_call payload like the tutorial's.
pub fn tool_call(i: u64) -> serde_json::Value {
    serde_json::json!({
        "tool": "get_account_balance",
        "call_id": format!("call_{i:08}"),
        "arguments": {"account_id": "12345"},
        "note": "line\nbreak \"quoted\" \u{1F600}",
    })
}

pub async fn start(opts: JsonlOptions) -> Dispatcher {
    let sink = JsonlSink::new(opts).unwrap();
    Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(256).max_batch(64), sink)
        .start()
        .await
        .unwrap()
}

/// Every line of one file, as the reader yields it.
pub fn read(path: &Path) -> Vec<Result<Line, ReadError>> {
    Reader::open(path).unwrap().collect()
}

/// Every line of one file, all of which must be records.
pub fn records(path: &Path) -> Vec<Line> {
    read(path)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Every record line of a log (rotated files in order, then the active file).
pub fn log_records(path: &Path) -> Vec<Line> {
    files::list(path)
        .unwrap()
        .iter()
        .flat_map(|f| records(&f.path))
        .collect()
}

/// Asserts the lines form one plain chain from the genesis value and their seqs are 1..=n.
pub fn assert_chain(lines: &[Line]) {
    let mut head = GENESIS.to_string();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l.record.prev, head,
            "prev of record seq {} (index {i})",
            l.record.seq
        );
        assert_eq!(l.record.seq, i as u64 + 1, "seq at index {i}");
        head = sha256_hex(&l.bytes);
    }
}

pub fn stored(lines: &[Line]) -> Vec<StoredRecord> {
    lines.iter().map(|l| l.record.clone()).collect()
}

pub const SHUTDOWN: Duration = Duration::from_secs(10);

/// A JSONL sink on `opts` behind a dispatcher, with a checkpointer that
/// signs only at rotation and shutdown (count and interval out of reach).
pub struct Signed {
    pub dispatcher: Dispatcher,
    pub head: agent_audit_jsonl::HeadHandle,
    pub signer: agent_audit_jsonl::keys::Signer,
    pub checkpointer: agent_audit_jsonl::checkpoint::Checkpointer,
}

pub async fn start_signed(opts: JsonlOptions) -> Signed {
    use agent_audit_jsonl::checkpoint::{CheckpointOptions, Checkpointer};
    let sink = JsonlSink::new(opts).unwrap();
    let head = sink.head_handle();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl"), sink)
        .start()
        .await
        .unwrap();
    let signer = agent_audit_jsonl::keys::Signer::generate();
    let checkpointer = Checkpointer::start(
        agent_audit_core::Auditor::new(dispatcher.clone()).with_agent("agent-audit"),
        head.clone(),
        signer.clone(),
        CheckpointOptions {
            every: 1_000_000,
            interval: Duration::from_secs(3600),
        },
    )
    .unwrap();
    Signed {
        dispatcher,
        head,
        signer,
        checkpointer,
    }
}
