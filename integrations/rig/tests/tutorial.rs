//! The tutorial's flow as a rig agent against a real Chat Completions
//! server on loopback: the records agent-audit's runtime writes, in its
//! order, and the review commands' verify, timeline and report on the file.

mod common;

use std::time::Duration;

use agent_audit_core::{Auditor, Dispatcher, SinkOptions, StoredRecord};
use agent_audit_jsonl::verify::{VerifyOptions, verify};
use agent_audit_jsonl::{FsyncPolicy, JsonlOptions, JsonlSink, Reader};
use agent_audit_review::{SourceOptions, Timeline, html, load};
use agent_audit_rig::AuditHook;
use common::*;
use rig_agent::prelude::*;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::PortableTool;
use serde::Deserialize;
use serde_json::{Value, json};

const SYSTEM_MESSAGE: &str = "You are a helpful bank assistant. Use get_account_balance to look up an account's balance; never guess a balance.";
const PROMPT: &str = "What is the balance of account 12345?";

#[derive(Deserialize)]
struct BalanceArgs {
    account_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BalanceError(String);

/// The tutorial's tool.
struct GetAccountBalance;

impl PortableTool for GetAccountBalance {
    const NAME: &'static str = "get_account_balance";
    type Args = BalanceArgs;
    type Output = Value;
    type Error = BalanceError;

    fn description(&self) -> String {
        "Returns the current balance of a bank account.".into()
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"account_id": {"type": "string", "description": "The account's id"}},
            "required": ["account_id"]
        })
    }

    async fn call(&self, args: BalanceArgs) -> Result<Value, BalanceError> {
        if args.account_id.trim().is_empty() {
            return Err(BalanceError("account_id is empty".into()));
        }
        Ok(json!({"account_id": args.account_id, "balance": 1024.5, "currency": "EUR"}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_as_a_rig_agent_writes_our_runtime_s_eight_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let dispatcher = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl").required(true),
            JsonlSink::new(JsonlOptions::new(&path).fsync(FsyncPolicy::Batch)).unwrap(),
        )
        .start()
        .await
        .unwrap();
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[(
                "call_1",
                "get_account_balance",
                r#"{"account_id": "12345"}"#,
            )],
        ),
        Reply::completion(Some("The balance of account 12345 is 1024.50 EUR."), &[]),
    ])
    .await;

    let model = OpenAIConfig::new("sk-test")
        .with_base_url(server.base_url())
        .with_route(Route::Chat)
        .client()
        .completion("test-model");
    let agent = AgentBuilder::new(model)
        .name("assistant")
        .default_max_turns(5)
        .preamble(SYSTEM_MESSAGE)
        .tool(GetAccountBalance)
        .build();

    let audit = Auditor::new(dispatcher.clone())
        .for_request(Some("req-rig-1"))
        .with_user("alice");
    let hook = AuditHook::new(&audit)
        .provider("openai")
        .model("test-model");
    let answer = agent.prompt(PROMPT).add_hook(hook.clone()).await;
    let answer = hook.check(answer).unwrap();
    assert_eq!(
        answer.output(),
        "The balance of account 12345 is 1024.50 EUR."
    );
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");

    let lines: Vec<_> = Reader::open(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let records: Vec<&StoredRecord> = lines.iter().map(|l| &l.record).collect();
    let seen: Vec<&str> = records.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        seen,
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
            .all(|r| r.request_id.as_deref() == Some("req-rig-1"))
    );
    assert!(
        records
            .iter()
            .all(|r| r.user_id.as_deref() == Some("alice"))
    );
    let p: Vec<Value> = records.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(p[0]["content"], PROMPT);
    assert_eq!(p[1]["model"], "test-model");
    assert_eq!(p[1]["tools"], json!(["get_account_balance"]));
    let messages = p[1]["messages"].as_array().unwrap();
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": SYSTEM_MESSAGE})
    );
    assert_eq!(
        messages.last().unwrap(),
        &json!({"role": "user", "content": PROMPT})
    );
    // The model as the server reports it, the server's response id and usage.
    assert_eq!(p[2]["model"], "test-model-2024");
    assert_eq!(p[2]["response_id"], "chatcmpl-test");
    assert_eq!(p[2]["finish_reason"], "tool_calls");
    assert_eq!(
        p[2]["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18})
    );
    assert!(p[2]["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        p[2]["tool_calls"],
        json!([{"id": "call_1", "name": "get_account_balance", "arguments": {"account_id": "12345"}}])
    );
    // The server's call id through tool_call and tool_result.
    assert_eq!(
        p[3],
        json!({"tool": "get_account_balance", "call_id": "call_1", "arguments": {"account_id": "12345"}})
    );
    assert_eq!(p[4]["call_id"], "call_1");
    assert_eq!(
        p[4]["result"],
        json!({"account_id": "12345", "balance": 1024.5, "currency": "EUR"})
    );
    // The second model call got the tool's answer under the call id.
    let second = p[5]["messages"].as_array().unwrap();
    assert!(
        second
            .iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"] == "call_1"),
        "{second:?}"
    );
    assert_eq!(
        p[7]["answer"],
        "The balance of account 12345 is 1024.50 EUR."
    );
    // What went over the wire: the server saw the call id coming back.
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].json().to_string().contains("call_1"));

    // The span tree, as our runtime draws it: the run's span holds the
    // request and the answer; each model call and each tool call is a
    // span of its own, child of the run's.
    let run_span = records[0].span_id.clone();
    assert!(run_span.is_some());
    assert_eq!(records[7].span_id, run_span);
    for i in [1, 3, 5] {
        assert_ne!(records[i].span_id, run_span);
        assert_eq!(records[i].parent_span_id, run_span, "record {i}");
        assert_eq!(records[i].span_id, records[i + 1].span_id, "record {i}");
    }
    assert_eq!(records[0].agent.as_deref(), Some("user"));
    assert_eq!(records[1].agent.as_deref(), Some("assistant"));
    assert_eq!(records[3].agent.as_deref(), Some("assistant"));

    // agent-audit verify, timeline and report on the file.
    let verified = verify(&[&path], &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(verified.intact, "{verified}");
    assert_eq!(verified.records, 8);
    let loaded = load(&[&path], SourceOptions::default(), |_| true).unwrap();
    let timeline = Timeline::build("req-rig-1", &loaded.entries).unwrap();
    assert_eq!(timeline.records, 8);
    let text = timeline.render_text();
    for needle in ["get_account_balance", "test-model-2024", "1024.5"] {
        assert!(text.contains(needle), "timeline lacks {needle}:\n{text}");
    }
    let page = dir.path().join("req-rig-1.html");
    html::write_report(&page, &html::render(&timeline, &loaded.entries)).unwrap();
    let html_text = std::fs::read_to_string(&page).unwrap();
    assert!(html_text.contains("get_account_balance"));
    assert!(html_text.contains("req-rig-1"));
}
