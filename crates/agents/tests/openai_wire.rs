//! The OpenAI-compatible client against a real HTTP/1.1 server on loopback
//! (written here, in `common`), through the tutorial's agents, reading what
//! was audited from a `MemorySink`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::tutorial::{self, fake_balance};
use agent_audit_agents::{
    AgentError, AssistantAgent, ChatModel, ModelError, ModelErrorKind, UserProxyAgent,
};
use common::*;
use serde_json::{Value, json};

const TUTORIAL: [&str; 8] = [
    "user_request",
    "assistant_input",
    "assistant_output",
    "tool_call",
    "tool_result",
    "assistant_input",
    "assistant_output",
    "final_result",
];

const PROMPT: &str = "What is the balance of account 12345?";

async fn run_tutorial(
    server: &ChatServer,
    key: Option<&str>,
    retries: u32,
    timeout: Duration,
) -> (
    Result<String, AgentError>,
    Vec<Arc<agent_audit_core::Record>>,
) {
    let (dispatcher, sink) = memory_dispatcher().await;
    let model: Arc<dyn ChatModel> = Arc::new(client(&server.base_url(), key, retries, timeout));
    let auditor = request_auditor(&dispatcher, "req-wire");
    let result = tutorial::run(&auditor, model, PROMPT).await;
    finish(&dispatcher).await;
    (result, sink.records())
}

fn model_error_of(result: Result<String, AgentError>) -> ModelError {
    match result {
        Err(AgentError::Model { source, agent }) => {
            assert_eq!(agent, "assistant");
            source
        }
        other => panic!("expected a model error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_call_then_answer_gives_the_tutorial_sequence_and_wire_format() {
    let key = secret_key();
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[(
                "call_abc123",
                "get_account_balance",
                r#"{"account_id":"12345"}"#,
            )],
        ),
        Reply::completion(Some("Account 12345 holds 1.00 EUR."), &[]),
    ])
    .await;
    let (result, records) = run_tutorial(&server, Some(&key), 2, Duration::from_secs(10)).await;
    assert_eq!(result.unwrap(), "Account 12345 holds 1.00 EUR.");
    assert_eq!(events(&records), TUTORIAL);

    // One request id and correlation id; contiguous seq; agent names.
    for r in &records {
        assert_eq!(r.request_id.as_deref(), Some("req-wire"));
        assert_eq!(r.correlation_id.as_deref(), Some("req-wire"));
        assert_eq!(r.trace_id, records[0].trace_id);
    }
    for w in records.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    let agents: Vec<&str> = records
        .iter()
        .map(|r| r.agent.as_deref().unwrap())
        .collect();
    assert_eq!(
        agents,
        [
            "user_proxy",
            "assistant",
            "assistant",
            "user_proxy",
            "user_proxy",
            "assistant",
            "assistant",
            "user_proxy"
        ]
    );

    // Tool records carry what the server sent.
    let call = &of_type(&records, "tool_call")[0];
    assert_eq!(
        call,
        &json!({"tool": "get_account_balance", "call_id": "call_abc123", "arguments": {"account_id": "12345"}})
    );
    let result = &of_type(&records, "tool_result")[0];
    assert_eq!(result["tool"], "get_account_balance");
    assert_eq!(result["call_id"], "call_abc123");
    assert_eq!(
        result["result"],
        serde_json::to_value(fake_balance("12345")).unwrap()
    );
    assert!(result["duration_ms"].as_f64().unwrap() >= 0.0);

    let outputs = of_type(&records, "assistant_output");
    assert_eq!(
        outputs[0]["tool_calls"],
        json!([{"id": "call_abc123", "name": "get_account_balance", "arguments": {"account_id": "12345"}}])
    );
    assert_eq!(outputs[0]["content"], Value::Null);
    assert_eq!(outputs[0]["model"], "test-model-2024");
    assert_eq!(outputs[0]["finish_reason"], "tool_calls");
    // What `gen_ai.provider.name` and `gen_ai.response.id` are made of.
    assert_eq!(outputs[0]["provider"], "openai");
    assert_eq!(outputs[0]["response_id"], "chatcmpl-test");
    for r in of_type(&records, "assistant_input") {
        assert_eq!(r["provider"], "openai");
    }
    assert_eq!(
        outputs[0]["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18})
    );
    assert!(outputs[0]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(outputs[1]["content"], "Account 12345 holds 1.00 EUR.");
    assert_eq!(
        of_type(&records, "final_result")[0]["answer"],
        "Account 12345 holds 1.00 EUR."
    );

    // What went over the wire.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/chat/completions")
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {key}").as_str())
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let first = reqs[0].json();
    assert_eq!(first["model"], "test-model");
    assert_eq!(first["stream"], false);
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(
        first["messages"][1],
        json!({"role": "user", "content": PROMPT})
    );
    let tool = &first["tools"][0];
    assert_eq!(tool["type"], "function");
    assert_eq!(tool["function"]["name"], "get_account_balance");
    assert_eq!(tool["function"]["parameters"]["type"], "object");
    assert_eq!(
        tool["function"]["parameters"]["required"],
        json!(["account_id"])
    );
    assert_eq!(
        tool["function"]["parameters"]["properties"]["account_id"]["type"],
        "string"
    );
    let second = reqs[1].json();
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    assert_eq!(
        msgs[2],
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_abc123", "type": "function",
            "function": {"name": "get_account_balance", "arguments": "{\"account_id\":\"12345\"}"}
        }]})
    );
    assert_eq!(msgs[3]["role"], "tool");
    assert_eq!(msgs[3]["tool_call_id"], "call_abc123");
    let sent: Value = serde_json::from_str(msgs[3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(sent, serde_json::to_value(fake_balance("12345")).unwrap());

    // assistant_input records hold exactly the messages that were sent.
    let inputs = of_type(&records, "assistant_input");
    assert_eq!(inputs[0]["messages"], first["messages"]);
    assert_eq!(inputs[1]["messages"], second["messages"]);
    assert_eq!(inputs[0]["model"], "test-model");
    assert_eq!(inputs[0]["tools"], json!(["get_account_balance"]));

    // The key was sent, and is in no record byte.
    assert!(!contains(&all_bytes(&records), &key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tool_calls_in_one_turn_are_run_audited_and_answered_in_order() {
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[
                ("call_1", "get_account_balance", r#"{"account_id":"111"}"#),
                ("call_2", "get_account_balance", r#"{"account_id":"222"}"#),
            ],
        ),
        Reply::completion(Some("Both looked up."), &[]),
    ])
    .await;
    let (result, records) = run_tutorial(&server, None, 0, Duration::from_secs(10)).await;
    assert_eq!(result.unwrap(), "Both looked up.");
    assert_eq!(
        events(&records),
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "tool_call",
            "tool_result",
            "tool_call",
            "tool_result",
            "assistant_input",
            "assistant_output",
            "final_result"
        ]
    );
    let calls = of_type(&records, "tool_call");
    assert_eq!(calls[0]["call_id"], "call_1");
    assert_eq!(calls[0]["arguments"], json!({"account_id": "111"}));
    assert_eq!(calls[1]["call_id"], "call_2");
    assert_eq!(calls[1]["arguments"], json!({"account_id": "222"}));
    let results = of_type(&records, "tool_result");
    assert_eq!(results[0]["result"]["account_id"], "111");
    assert_eq!(results[1]["result"]["account_id"], "222");

    let second = server.requests()[1].json();
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(msgs[3]["tool_call_id"], "call_1");
    assert_eq!(msgs[4]["tool_call_id"], "call_2");
    let r1: Value = serde_json::from_str(msgs[3]["content"].as_str().unwrap()).unwrap();
    let r2: Value = serde_json::from_str(msgs[4]["content"].as_str().unwrap()).unwrap();
    assert_eq!(r1, serde_json::to_value(fake_balance("111")).unwrap());
    assert_eq!(r2, serde_json::to_value(fake_balance("222")).unwrap());
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_is_a_typed_auth_error_not_retried_and_the_key_is_never_written() {
    let key = secret_key();
    // Servers echo the key they were given (OpenAI echoes part of it).
    let server = ChatServer::scripted(vec![Reply::error(
        401,
        &format!("Incorrect API key provided: {key}. You can find your API key at the dashboard."),
        "invalid_request_error",
        json!("invalid_api_key"),
    )])
    .await;
    let (result, records) = run_tutorial(&server, Some(&key), 3, Duration::from_secs(10)).await;
    let error = match &result {
        Err(AgentError::Model {
            source: e @ ModelError::Auth { status: 401, .. },
            ..
        }) => e.clone(),
        other => panic!("expected an auth error, got {other:?}"),
    };
    assert_eq!(error.kind(), ModelErrorKind::Auth);
    assert_eq!(server.requests().len(), 1, "401 must not be retried");
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert_eq!(
        events(&records),
        ["user_request", "assistant_input", "model_error"]
    );
    let me = &of_type(&records, "model_error")[0];
    assert_eq!(me["kind"], "auth");
    assert_eq!(me["status"], 401);
    assert_eq!(me["attempts"], 1);
    assert!(me["message"].as_str().unwrap().contains("[REDACTED]"));
    assert_eq!(records[2].agent.as_deref(), Some("assistant"));

    let err = result.unwrap_err();
    let texts = [
        err.to_string(),
        format!("{err:?}"),
        error.to_string(),
        format!("{error:?}"),
    ];
    for t in &texts {
        assert!(!t.contains(&key), "key leaked into an error: {t}");
    }
    assert!(!contains(&all_bytes(&records), &key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_with_retry_after_seconds_is_retried_once_after_waiting() {
    let server = ChatServer::scripted(vec![
        Reply::error(
            429,
            "Rate limit reached for requests",
            "requests",
            json!("rate_limit_exceeded"),
        )
        .header("Retry-After", "1"),
        Reply::completion(Some("Fine."), &[]),
    ])
    .await;
    let (dispatcher, sink) = memory_dispatcher().await;
    let model = Arc::new(client(&server.base_url(), None, 3, Duration::from_secs(10)));
    let assistant = AssistantAgent::new("assistant", model);
    let result = UserProxyAgent::new("user_proxy")
        .initiate_chat(&request_auditor(&dispatcher, "r"), &assistant, "hi")
        .await
        .unwrap();
    finish(&dispatcher).await;
    assert_eq!(result.answer, "Fine.");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "exactly one retry");
    let waited = reqs[1].at - reqs[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After: 1"
    );
    let records = sink.records();
    assert_eq!(
        events(&records),
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "final_result"
        ]
    );
    assert_eq!(of_type(&records, "assistant_output")[0]["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_with_retry_after_http_date_is_honoured() {
    let at = std::time::SystemTime::now() + Duration::from_secs(2);
    let server = ChatServer::scripted(vec![
        Reply::error(429, "slow down", "requests", json!("rate_limit_exceeded"))
            .header("Retry-After", &httpdate::fmt_http_date(at)),
        Reply::completion(Some("Fine."), &[]),
    ])
    .await;
    let (result, _) = run_tutorial(&server, None, 1, Duration::from_secs(10)).await;
    assert_eq!(result.unwrap(), "Fine.");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    // An HTTP date has whole seconds, so now + 2 s is at least 1 s away.
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_beyond_the_cap_or_the_retries_is_a_typed_error() {
    let server = ChatServer::scripted(vec![
        Reply::error(
            429,
            "wait an hour",
            "requests",
            json!("rate_limit_exceeded"),
        )
        .header("Retry-After", "3600"),
    ])
    .await;
    let (result, records) = run_tutorial(&server, None, 3, Duration::from_secs(10)).await;
    match model_error_of(result) {
        ModelError::RateLimited {
            retry_after,
            attempts,
            ..
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)));
            assert_eq!(attempts, 1);
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(
        server.requests().len(),
        1,
        "a Retry-After over the cap is not waited for"
    );
    assert_eq!(of_type(&records, "model_error")[0]["kind"], "rate_limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_quota_is_not_retried() {
    let server = ChatServer::scripted(vec![
        Reply::error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            json!("insufficient_quota"),
        )
        .header("Retry-After", "1"),
    ])
    .await;
    let (result, records) = run_tutorial(&server, None, 3, Duration::from_secs(10)).await;
    let e = model_error_of(result);
    assert!(matches!(e, ModelError::Quota { .. }), "{e:?}");
    assert_eq!(server.requests().len(), 1);
    let me = &of_type(&records, "model_error")[0];
    assert_eq!(
        (me["kind"].as_str(), me["status"].as_u64()),
        (Some("quota"), Some(429))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_then_success_is_retried() {
    let server = ChatServer::scripted(vec![
        Reply::error(500, "The server had an error", "server_error", Value::Null),
        Reply::completion(
            None,
            &[("call_9", "get_account_balance", r#"{"account_id":"12345"}"#)],
        ),
        Reply::completion(Some("Done."), &[]),
    ])
    .await;
    let (result, records) = run_tutorial(&server, None, 2, Duration::from_secs(10)).await;
    assert_eq!(result.unwrap(), "Done.");
    assert_eq!(server.requests().len(), 3);
    assert_eq!(events(&records), TUTORIAL);
    assert_eq!(of_type(&records, "assistant_output")[0]["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_exhaust_the_retries_and_are_audited() {
    let server = ChatServer::scripted(vec![
        Reply::error(503, "overloaded", "server_error", Value::Null),
        Reply::error(502, "bad gateway", "server_error", Value::Null),
        Reply::raw(500, "<html>oops</html>"),
    ])
    .await;
    let (result, records) = run_tutorial(&server, None, 2, Duration::from_secs(10)).await;
    match model_error_of(result) {
        ModelError::Server {
            status,
            attempts,
            message,
            ..
        } => {
            assert_eq!((status, attempts), (500, 3));
            assert!(message.contains("oops"), "{message}");
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3);
    let me = &of_type(&records, "model_error")[0];
    assert_eq!(me["kind"], "server");
    assert_eq!(me["status"], 500);
    assert_eq!(me["attempts"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_typed_errors_and_not_retried() {
    for body in [
        "this is not json",
        r#"{"id": "x", "choices": []}"#,
        r#"{"choices": [{"message": {"content": 42}}]}"#,
        r#"{"object": "chat.completion"}"#,
    ] {
        let server = ChatServer::scripted(vec![Reply::raw(200, body)]).await;
        let (result, records) = run_tutorial(&server, None, 3, Duration::from_secs(10)).await;
        let e = model_error_of(result);
        assert!(
            matches!(e, ModelError::Malformed { status: 200, .. }),
            "{body}: {e:?}"
        );
        assert_eq!(server.requests().len(), 1, "{body}");
        assert_eq!(of_type(&records, "model_error")[0]["kind"], "malformed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_retried_then_a_typed_error() {
    let server = ChatServer::scripted(vec![Reply::hang(), Reply::hang()]).await;
    let (result, records) = run_tutorial(&server, None, 1, Duration::from_millis(300)).await;
    match model_error_of(result) {
        ModelError::Timeout {
            attempts, timeout, ..
        } => {
            assert_eq!(attempts, 2);
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 2);
    let me = &of_type(&records, "model_error")[0];
    assert_eq!(me["kind"], "timeout");
    assert_eq!(me["status"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_typed_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (dispatcher, sink) = memory_dispatcher().await;
    let model = Arc::new(client(
        &format!("http://127.0.0.1:{port}/v1"),
        None,
        1,
        Duration::from_secs(5),
    ));
    let result = tutorial::run(&request_auditor(&dispatcher, "r"), model, PROMPT).await;
    finish(&dispatcher).await;
    match result {
        Err(AgentError::Model {
            source: ModelError::Connect {
                attempts, endpoint, ..
            },
            ..
        }) => {
            assert_eq!(attempts, 2);
            assert_eq!(
                endpoint,
                format!("http://127.0.0.1:{port}/v1/chat/completions")
            );
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert_eq!(
        of_type(&sink.records(), "model_error")[0]["kind"],
        "connect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_server_quirks_are_tolerated() {
    // Integer error code, as llama-server sends.
    let server = ChatServer::scripted(vec![Reply::json(
        500,
        json!({"error": {"code": 500, "message": "llama: slot unavailable", "type": "server_error"}}),
    )])
    .await;
    let (result, _) = run_tutorial(&server, None, 0, Duration::from_secs(10)).await;
    match model_error_of(result) {
        ModelError::Server { message, .. } => assert_eq!(message, "llama: slot unavailable"),
        other => panic!("{other:?}"),
    }

    // Extra fields, a non-`call_` id, content beside tool_calls, arguments
    // as an object, no `type` on the call, no usage.
    let first = json!({
        "id": "chatcmpl-llama", "object": "chat.completion", "created": 1, "model": "qwen2.5-7b-instruct-q4_k_m.gguf",
        "system_fingerprint": "b4567-abc", "timings": {"prompt_n": 12, "predicted_ms": 30.5},
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
            "message": {"role": "assistant", "content": "Let me check that account.", "reasoning_content": "",
                "tool_calls": [{"id": "Xk3pQ9aZ", "function": {"name": "get_account_balance", "arguments": {"account_id": "12345"}}}]}}]
    });
    let server = ChatServer::scripted(vec![
        Reply::json(200, first),
        Reply::completion(Some("It holds 1.00 EUR."), &[]),
    ])
    .await;
    let (result, records) = run_tutorial(&server, None, 0, Duration::from_secs(10)).await;
    assert_eq!(result.unwrap(), "It holds 1.00 EUR.");
    assert_eq!(events(&records), TUTORIAL);
    let call = &of_type(&records, "tool_call")[0];
    assert_eq!(call["call_id"], "Xk3pQ9aZ");
    assert_eq!(call["arguments"], json!({"account_id": "12345"}));
    let out = &of_type(&records, "assistant_output")[0];
    assert_eq!(out["content"], "Let me check that account.");
    assert_eq!(out["model"], "qwen2.5-7b-instruct-q4_k_m.gguf");
    assert_eq!(out["usage"], Value::Null);
    let second = server.requests()[1].json();
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["content"], "Let me check that account.");
    assert_eq!(msgs[2]["tool_calls"][0]["id"], "Xk3pQ9aZ");
    assert_eq!(msgs[2]["tool_calls"][0]["type"], "function");
    // Sent back as the JSON string the wire format requires.
    assert_eq!(
        msgs[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"account_id":"12345"}"#
    );
    assert_eq!(msgs[3]["tool_call_id"], "Xk3pQ9aZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_unknown_tools_and_failures_become_tool_errors() {
    let server = ChatServer::scripted(vec![
        Reply::completion(
            Some("Checking."),
            &[
                ("c1", "get_account_balance", r#"{"account_id": 12345}"#),
                ("c2", "get_account_balance", r#"{"account_id": "1"#),
                ("c3", "wire_money", r#"{"to": "x"}"#),
                ("c4", "get_account_balance", r#"{"account_id": ""}"#),
                ("c5", "get_account_balance", r#"{}"#),
            ],
        ),
        Reply::completion(Some("Sorry, I could not look that up."), &[]),
    ])
    .await;
    let (result, records) = run_tutorial(&server, None, 0, Duration::from_secs(10)).await;
    assert_eq!(result.unwrap(), "Sorry, I could not look that up.");
    let errors = of_type(&records, "tool_error");
    let kinds: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e["call_id"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("c1", "invalid_arguments"),
            ("c2", "invalid_arguments"),
            ("c3", "unknown_tool"),
            ("c4", "failed"),
            ("c5", "invalid_arguments"),
        ]
    );
    assert!(errors[0]["error"].as_str().unwrap().contains("/account_id"));
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("expected string")
    );
    assert_eq!(
        errors[1]["arguments"], r#"{"account_id": "1"#,
        "invalid JSON kept as sent"
    );
    assert!(
        errors[4]["error"]
            .as_str()
            .unwrap()
            .contains("missing required property `account_id`")
    );
    assert_eq!(
        of_type(&records, "tool_call").len(),
        5,
        "every requested call is audited"
    );
    assert!(of_type(&records, "tool_result").is_empty());
    // Each error went back to the model as its tool message.
    let second = server.requests()[1].json();
    let msgs = second["messages"].as_array().unwrap();
    let tool_msgs: Vec<&Value> = msgs.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 5);
    for (m, e) in tool_msgs.iter().zip(&errors) {
        assert_eq!(m["tool_call_id"], e["call_id"]);
        let content: Value = serde_json::from_str(m["content"].as_str().unwrap()).unwrap();
        assert_eq!(content["error"], e["error"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_options_are_sent() {
    let server = ChatServer::scripted(vec![Reply::completion(Some("ok"), &[])]).await;
    let (dispatcher, _sink) = memory_dispatcher().await;
    let model = Arc::new(client(&server.base_url(), None, 0, Duration::from_secs(10)));
    let assistant = AssistantAgent::new("assistant", model)
        .temperature(0.0)
        .max_tokens(64);
    UserProxyAgent::new("user_proxy")
        .initiate_chat(&request_auditor(&dispatcher, "r"), &assistant, "hi")
        .await
        .unwrap();
    finish(&dispatcher).await;
    let body = server.requests()[0].json();
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["max_tokens"], 64);
    assert!(body.get("tools").is_none(), "no tools, no `tools` key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_and_conflict_are_retried_other_client_errors_are_not() {
    let server = ChatServer::scripted(vec![
        Reply::error(408, "request timeout", "timeout", Value::Null),
        Reply::error(409, "conflict", "conflict", Value::Null),
        Reply::completion(Some("Third time lucky."), &[]),
    ])
    .await;
    let (result, _) = run_tutorial(&server, None, 2, Duration::from_secs(10)).await;
    assert_eq!(result.unwrap(), "Third time lucky.");
    assert_eq!(server.requests().len(), 3);

    let server = ChatServer::scripted(vec![Reply::error(
        400,
        "Invalid schema for function 'get_account_balance'",
        "invalid_request_error",
        json!("invalid_function_parameters"),
    )])
    .await;
    let (result, records) = run_tutorial(&server, None, 3, Duration::from_secs(10)).await;
    match model_error_of(result) {
        ModelError::Http {
            status: 400,
            message,
            ..
        } => assert!(message.contains("Invalid schema"), "{message}"),
        other => panic!("expected Http 400, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
    assert_eq!(of_type(&records, "model_error")[0]["kind"], "http");
}
