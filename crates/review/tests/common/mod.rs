//! Test support: trails written by the real runtime (tutorial and
//! multi-agent flows, the offline model and an OpenAI-compatible model
//! served over real HTTP on loopback) through a real `Dispatcher`, the
//! redactor and the JSONL sink; and an independent reader that parses the
//! files with plain `serde_json`, without this crate.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit::agents::{OfflineModel, OpenAiClient, multi, tutorial};
use agent_audit::jsonl::{FsyncPolicy, JsonlOptions, JsonlSink};
use agent_audit::{Auditor, Dispatcher, SinkOptions};
use agent_audit_redact::{RedactionConfig, Redactor};
use serde_json::{Value, json};

/// Requests the standard trail holds.
pub const TUTORIAL_1: &str = "req-tutorial-1";
pub const TUTORIAL_2: &str = "req-tutorial-2";
pub const MULTI: &str = "req-multi";
pub const HTTP: &str = "req-http";
pub const UNAUTHORIZED: &str = "req-401";
pub const CONVERSATION: &str = "conv-multi";

/// The e-mail address in `TUTORIAL_2`'s prompt, which the redactor masks.
pub const EMAIL: &str = "alice.martin@example.com";

/// A trail in a temporary directory.
pub struct Trail {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// A real HTTP/1.1 server on loopback answering Chat Completions requests
/// from a script, one reply per connection, then exiting.
pub struct ModelServer {
    pub base_url: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelServer {
    pub fn start(replies: Vec<(u16, Value)>) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let thread = std::thread::spawn(move || {
            loop {
                let Some((status, body)) = replies.lock().unwrap().pop_front() else {
                    return;
                };
                let (mut stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body_in = vec![0u8; length];
                let _ = reader.read_exact(&mut body_in);
                let body = body.to_string();
                let reason = if status == 200 { "OK" } else { "Error" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.flush();
            }
        });
        ModelServer {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            thread: Some(thread),
        }
    }

    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn completion(message: Value, finish: &str, usage: (u64, u64)) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "loopback-gpt",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1},
    })
}

fn tool_call(id: &str, account: &str) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [{
        "id": id, "type": "function",
        "function": {"name": "get_account_balance", "arguments": json!({"account_id": account}).to_string()}
    }]})
}

/// Writes the standard trail: two tutorial requests (the second with an
/// e-mail address the redactor masks), a triage -> accounts conversation,
/// a request on a loopback HTTP model (a tool error, a tool result, token
/// usage), and one whose model answers 401 (a `model_error`).
pub async fn standard_trail(rotate_bytes: Option<u64>) -> Trail {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let dispatcher = start(&path, rotate_bytes).await;
    let root = Auditor::new(dispatcher.clone());

    let offline = Arc::new(OfflineModel);
    tutorial::run(
        &root.for_request(Some(TUTORIAL_1)),
        offline.clone(),
        "What is the balance of account 12345?",
    )
    .await
    .unwrap();
    tutorial::run(
        &root.for_request(Some(TUTORIAL_2)),
        offline.clone(),
        &format!("What is the balance of account 67890? Send it to {EMAIL} please."),
    )
    .await
    .unwrap();
    multi::run(
        &root
            .with_correlation_id(CONVERSATION)
            .for_request(Some(MULTI)),
        offline,
        "What is the balance of account 4242?",
    )
    .await
    .unwrap();

    let server = ModelServer::start(vec![
        (
            200,
            completion(tool_call("call_a", ""), "tool_calls", (120, 18)),
        ),
        (
            200,
            completion(tool_call("call_b", "555"), "tool_calls", (160, 21)),
        ),
        (
            200,
            completion(
                json!({"role": "assistant", "content": "Account 555 holds the balance shown above."}),
                "stop",
                (210, 12),
            ),
        ),
        (
            401,
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        ),
    ]);
    let http_model = Arc::new(
        OpenAiClient::builder(&server.base_url, "loopback-gpt")
            .max_retries(0)
            .build()
            .unwrap(),
    );
    tutorial::run(
        &root.for_request(Some(HTTP)),
        http_model.clone(),
        "What is the balance of account 555?",
    )
    .await
    .unwrap();
    let failed = tutorial::run(
        &root.for_request(Some(UNAUTHORIZED)),
        http_model,
        "What is the balance of account 777?",
    )
    .await;
    assert!(failed.is_err(), "the 401 must fail the conversation");
    server.join();

    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    Trail { dir, path }
}

/// A dispatcher with the redactor (e-mail, API keys, bearer tokens) and
/// the JSONL sink at `path`.
pub async fn start(path: &Path, rotate_bytes: Option<u64>) -> Dispatcher {
    let config: RedactionConfig = serde_json::from_value(json!({
        "detectors": ["email", "api_key", "bearer_token"]
    }))
    .unwrap();
    let redactor = Redactor::from_config(&config).unwrap();
    let mut options = JsonlOptions::new(path).fsync(FsyncPolicy::Never);
    if let Some(bytes) = rotate_bytes {
        options = options.rotate_bytes(bytes);
    }
    Dispatcher::builder()
        .sink(SinkOptions::new("jsonl"), JsonlSink::new(options).unwrap())
        .filter(Arc::new(redactor))
        .start()
        .await
        .unwrap()
}

/// One line as read independently of the crate under test.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub file: PathBuf,
    pub line: u64,
    pub text: String,
    pub value: Value,
}

impl RawRecord {
    pub fn seq(&self) -> u64 {
        self.value["seq"].as_u64().unwrap()
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.value[key].as_str()
    }
    pub fn payload(&self) -> &Value {
        &self.value["payload"]
    }
    pub fn event(&self) -> &str {
        self.str("event_type").unwrap()
    }
}

/// Every file of the log in `dir` (rotated ones by name, which their
/// zero-padded seqs make chain order, then the active file), every line
/// parsed with `serde_json`.
pub fn read_independently(dir: &Path) -> Vec<RawRecord> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("audit-log.") && n.ends_with(".jsonl") && n != "audit-log.jsonl"
        })
        .collect();
    names.sort();
    let active = dir.join("audit-log.jsonl");
    if active.exists() {
        names.push(active);
    }
    let mut out = Vec::new();
    for file in names {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            out.push(RawRecord {
                file: file.clone(),
                line: i as u64 + 1,
                text: line.to_string(),
                value: serde_json::from_str(line).unwrap(),
            });
        }
    }
    out
}

/// Nearest-rank percentile, written here again so the test does not trust
/// the crate's.
pub fn nearest_rank(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let mut rank = 1;
    while (rank as f64) < p / 100.0 * n as f64 {
        rank += 1;
    }
    Some(v[rank - 1])
}
