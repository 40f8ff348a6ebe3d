//! Test support: a real HTTP/1.1 server on loopback speaking the Chat
//! Completions wire format (scripted replies, in `server.rs`), an audited
//! dispatcher over a `MemorySink`, and record helpers.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::{ApiKey, OpenAiClient, RetryPolicy};
use agent_audit_core::{Auditor, Dispatcher, MemorySink, Record, SinkOptions};
use serde_json::Value;

mod server;
#[allow(unused_imports)] // not every test binary uses the server
pub use server::*;

/// A dispatcher with one required `MemorySink`.
pub async fn memory_dispatcher() -> (Dispatcher, MemorySink) {
    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .start()
        .await
        .unwrap();
    (dispatcher, sink)
}

pub fn request_auditor(dispatcher: &Dispatcher, request_id: &str) -> Auditor {
    Auditor::new(dispatcher.clone()).for_request(Some(request_id))
}

pub async fn finish(dispatcher: &Dispatcher) {
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "dispatcher shutdown not clean: {report}");
}

pub fn events(records: &[Arc<Record>]) -> Vec<String> {
    records.iter().map(|r| r.event_type.to_string()).collect()
}

pub fn of_type(records: &[Arc<Record>], event: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r.event_type.as_str() == event)
        .map(|r| r.payload_value())
        .collect()
}

/// Every byte a JSONL sink would write for these records.
pub fn all_bytes(records: &[Arc<Record>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        r.encode_line("0", &mut out);
        out.push(b'\n');
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A key nobody else would produce, so finding it anywhere is a leak.
pub fn secret_key() -> String {
    format!("sk-test-{:016x}{:016x}", rand_u64(), rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

/// A client for `server` with fast backoff (Retry-After is still honoured
/// in full).
pub fn client(
    base_url: &str,
    key: Option<&str>,
    max_retries: u32,
    timeout: Duration,
) -> OpenAiClient {
    let mut b = OpenAiClient::builder(base_url, "test-model")
        .timeout(timeout)
        .retry_policy(RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(5),
        });
    if let Some(k) = key {
        b = b.api_key(ApiKey::new(k));
    }
    b.build().unwrap()
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}
