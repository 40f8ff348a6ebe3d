//! An independent view of the protocol: `@copilotkit/aimock` (installed by
//! `.ci/setup.d/aimock.sh` into `<workspace>/.tools/aimock`) serves Chat
//! Completions from fixtures matched on the user message, the tools and the
//! tool results; its control API injects 429s and 500s. One aimock process
//! per test, on a free port.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_audit_agents::tutorial::{self, fake_balance};
use agent_audit_agents::{AgentError, ChatModel, ModelError};
use common::*;
use serde_json::{Value, json};

struct Aimock {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Aimock {
    async fn start(fixtures: Value, env: &[(&str, &str)]) -> Aimock {
        let bin = workspace_root().join(".tools/aimock/node_modules/.bin/llmock");
        assert!(
            bin.exists(),
            "aimock is not installed ({} is missing): run `bash .ci/setup.d/aimock.sh` (scripts/test.sh runs every setup script)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fixtures.json");
        std::fs::write(&file, fixtures.to_string()).unwrap();
        let log = dir.path().join("aimock.log");
        let err_path = dir.path().join("aimock.err");
        let http = reqwest::Client::new();
        // The port is taken free and handed over; if another process grabs
        // it in between, aimock exits and we try another one.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = tokio::process::Command::new(&bin);
            cmd.args(["-p", &port.to_string(), "-h", "127.0.0.1", "-f"])
                .arg(&file)
                .args(["--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(&err_path).unwrap())
                .kill_on_drop(true);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "could not start aimock ({}): {e}; is Node.js installed? run `bash .ci/setup.d/aimock.sh`",
                    bin.display()
                )
            });
            let started = Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_error = format!(
                        "aimock exited at start-up ({status}): {}",
                        std::fs::read_to_string(&err_path).unwrap_or_default()
                    );
                    break;
                }
                // Any HTTP answer means it is up (with AIMOCK_API_KEYS set,
                // the control API answers 401 to a request without a key).
                let url = format!("http://127.0.0.1:{port}/__aimock/journal");
                if http.get(&url).send().await.is_ok() {
                    return Aimock {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "aimock did not answer on port {port} within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("{last_error}");
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    async fn chaos(&self, config: Value) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/__aimock/chaos", self.port))
            .json(&config)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "chaos control failed: {}",
            r.status()
        );
    }

    /// Chat requests aimock received, as it journaled them.
    async fn journal(&self) -> Vec<Value> {
        let entries: Vec<Value> = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/__aimock/journal?limit=1000",
                self.port
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut chat: Vec<Value> = entries
            .into_iter()
            .filter(|e| e["path"] == "/v1/chat/completions")
            .collect();
        chat.sort_by_key(|e| e["timestamp"].as_u64());
        chat
    }
}

impl Drop for Aimock {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn tutorial_fixtures() -> Value {
    json!({"fixtures": [
        {"match": {"toolCallId": "call_aimock_1"},
         "response": {"content": "Account 12345 holds the balance shown."}},
        {"match": {"toolCallId": "call_b"},
         "response": {"content": "Both balances are in."}},
        {"match": {"userMessage": "balance of account 12345", "hasToolResult": false},
         "response": {"toolCalls": [{"id": "call_aimock_1", "name": "get_account_balance", "arguments": {"account_id": "12345"}}]}},
        {"match": {"userMessage": "accounts 111 and 222", "hasToolResult": false},
         "response": {"toolCalls": [
            {"id": "call_a", "name": "get_account_balance", "arguments": {"account_id": "111"}},
            {"id": "call_b", "name": "get_account_balance", "arguments": {"account_id": "222"}}]}},
        {"match": {"userMessage": "rate me", "sequenceIndex": 0},
         "response": {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}, "status": 429, "retryAfter": 1}},
        {"match": {"userMessage": "rate me", "sequenceIndex": 1},
         "response": {"content": "Served after the wait."}},
        {"match": {"userMessage": "out of credit"},
         "response": {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}, "status": 429}},
        {"match": {"userMessage": "hello"}, "response": {"content": "Hi there."}}
    ]})
}

async fn run(
    mock: &Aimock,
    key: Option<&str>,
    retries: u32,
    prompt: &str,
) -> (
    Result<String, AgentError>,
    Vec<Arc<agent_audit_core::Record>>,
) {
    let (dispatcher, sink) = memory_dispatcher().await;
    let model: Arc<dyn ChatModel> = Arc::new(client(
        &mock.base_url(),
        key,
        retries,
        Duration::from_secs(10),
    ));
    let result = tutorial::run(&request_auditor(&dispatcher, "req-aimock"), model, prompt).await;
    finish(&dispatcher).await;
    (result, sink.records())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_flow_against_aimock() {
    let mock = Aimock::start(tutorial_fixtures(), &[]).await;
    let (result, records) = run(&mock, None, 0, "What is the balance of account 12345?").await;
    assert_eq!(result.unwrap(), "Account 12345 holds the balance shown.");
    assert_eq!(
        events(&records),
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "tool_call",
            "tool_result",
            "assistant_input",
            "assistant_output",
            "final_result"
        ]
    );
    assert!(
        records
            .iter()
            .all(|r| r.request_id.as_deref() == Some("req-aimock"))
    );
    let call = &of_type(&records, "tool_call")[0];
    assert_eq!(call["tool"], "get_account_balance");
    assert_eq!(call["call_id"], "call_aimock_1");
    assert_eq!(call["arguments"], json!({"account_id": "12345"}));
    assert_eq!(
        of_type(&records, "tool_result")[0]["result"],
        serde_json::to_value(fake_balance("12345")).unwrap()
    );
    // aimock saw our tool result under the call id it chose.
    let journal = mock.journal().await;
    assert_eq!(journal.len(), 2);
    let msgs = journal[1]["body"]["messages"].as_array().unwrap();
    let tool_msg = msgs.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool_msg["tool_call_id"], "call_aimock_1");
    assert_eq!(
        journal[0]["body"]["tools"][0]["function"]["name"],
        "get_account_balance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tool_calls_against_aimock() {
    let mock = Aimock::start(tutorial_fixtures(), &[]).await;
    let (result, records) = run(&mock, None, 0, "Compare accounts 111 and 222").await;
    // The final fixture matches on the LAST tool message being call_b, so
    // this answer also proves the results went back in order.
    assert_eq!(result.unwrap(), "Both balances are in.");
    let calls = of_type(&records, "tool_call");
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["call_a", "call_b"]);
    assert_eq!(of_type(&records, "tool_result").len(), 2);
    let journal = mock.journal().await;
    let msgs = journal[1]["body"]["messages"].as_array().unwrap();
    let order: Vec<&str> = msgs
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["call_a", "call_b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_then_success_against_aimock() {
    let mock = Aimock::start(tutorial_fixtures(), &[]).await;
    let started = Instant::now();
    let (result, records) = run(&mock, None, 2, "rate me").await;
    assert_eq!(result.unwrap(), "Served after the wait.");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 not honoured"
    );
    assert_eq!(mock.journal().await.len(), 2, "exactly one retry");
    assert_eq!(of_type(&records, "assistant_output")[0]["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_quota_against_aimock_is_not_retried() {
    let mock = Aimock::start(tutorial_fixtures(), &[]).await;
    let (result, records) = run(&mock, None, 3, "I am out of credit").await;
    assert!(
        matches!(
            result,
            Err(AgentError::Model {
                source: ModelError::Quota { .. },
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(mock.journal().await.len(), 1);
    assert_eq!(of_type(&records, "model_error")[0]["kind"], "quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_rate_limit_is_retried_with_retry_after_then_typed() {
    let mock = Aimock::start(tutorial_fixtures(), &[]).await;
    mock.chaos(json!({"rateLimitRate": 1})).await;
    let started = Instant::now();
    let (result, records) = run(&mock, None, 1, "hello").await;
    match result {
        Err(AgentError::Model {
            source:
                ModelError::RateLimited {
                    attempts,
                    retry_after,
                    ..
                },
            ..
        }) => {
            assert_eq!(attempts, 2);
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(mock.journal().await.len(), 2);
    let me = &of_type(&records, "model_error")[0];
    assert_eq!(
        (me["kind"].as_str(), me["status"].as_u64()),
        (Some("rate_limit"), Some(429))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_server_errors_and_malformed_bodies_are_typed() {
    let mock = Aimock::start(tutorial_fixtures(), &[]).await;
    mock.chaos(json!({"dropRate": 1})).await;
    let (result, records) = run(&mock, None, 2, "hello").await;
    assert!(
        matches!(
            result,
            Err(AgentError::Model {
                source: ModelError::Server {
                    status: 500,
                    attempts: 3,
                    ..
                },
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(mock.journal().await.len(), 3);
    assert_eq!(of_type(&records, "model_error")[0]["kind"], "server");

    mock.chaos(json!({"malformedRate": 1})).await;
    let (result, records) = run(&mock, None, 2, "hello").await;
    assert!(
        matches!(
            result,
            Err(AgentError::Model {
                source: ModelError::Malformed { .. },
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(mock.journal().await.len(), 4, "malformed is not retried");
    assert_eq!(of_type(&records, "model_error")[0]["kind"], "malformed");

    mock.chaos(json!({})).await;
    let (result, _) = run(&mock, None, 0, "hello").await;
    assert_eq!(result.unwrap(), "Hi there.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_an_auth_error_and_never_written() {
    let good = secret_key();
    let bad = format!("{good}-wrong");
    let mock = Aimock::start(tutorial_fixtures(), &[("AIMOCK_API_KEYS", &good)]).await;
    let (result, records) = run(&mock, Some(&bad), 3, "hello").await;
    assert!(
        matches!(
            result,
            Err(AgentError::Model {
                source: ModelError::Auth { status: 401, .. },
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(of_type(&records, "model_error")[0]["kind"], "auth");
    assert!(!contains(&all_bytes(&records), &bad));
    assert!(!contains(&all_bytes(&records), &good));
    // The right key, sent the same way, is accepted.
    let (result, records) = run(&mock, Some(&good), 0, "hello").await;
    assert_eq!(result.unwrap(), "Hi there.");
    assert!(!contains(&all_bytes(&records), &good));
}
