//! Audit before act: a tool runs only after its `tool_call` record is
//! durable on every required sink. The tool here writes a marker file; the
//! model is a real HTTP server on loopback that asks for the tool.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_audit_agents::{AgentError, AssistantAgent, FnTool, Tool, UserProxyAgent};
use agent_audit_core::{Dispatcher, EmitError, FailureKind, MemorySink, SinkOptions};
use common::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct TransferArgs {
    /// Destination account.
    to: String,
    /// Amount in cents.
    cents: u64,
}

/// A tool with a side effect: it writes `marker`, noting whether the
/// required sink already held its `tool_call` record when it ran.
fn transfer_tool(marker: PathBuf, audited: MemorySink) -> Arc<dyn Tool> {
    FnTool::new(
        "transfer_funds",
        "Moves money to another account.",
        move |args: TransferArgs| {
            let marker = marker.clone();
            let audited = audited.clone();
            async move {
                let seen = audited.records().iter().any(|r| {
                    r.event_type.as_str() == "tool_call"
                        && r.payload_value()["call_id"] == "call_transfer"
                });
                std::fs::write(
                    &marker,
                    format!("{} {} audited={seen}", args.to, args.cents),
                )
                .map_err(|e| e.to_string())?;
                Ok::<_, String>(json!({"status": "sent"}))
            }
        },
    )
    .into_arc()
}

/// The model asks for the transfer, then (if asked again) answers. When
/// `break_sink` is given, the first request makes it fail, once the records
/// before the request have reached it.
async fn model_server(break_sink: Option<MemorySink>) -> ChatServer {
    let served = std::sync::atomic::AtomicUsize::new(0);
    ChatServer::with_handler(move |_| {
        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == 0 {
            if let Some(sink) = &break_sink {
                // user_request and assistant_input must be written before the
                // failure, so the failure hits the tool_call path.
                let start = Instant::now();
                while sink.len() < 2 && start.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                sink.fail_with(FailureKind::Permanent, "audit disk unavailable");
            }
            Reply::completion(
                None,
                &[(
                    "call_transfer",
                    "transfer_funds",
                    r#"{"to": "DE00 1234", "cents": 50000}"#,
                )],
            )
        } else {
            Reply::completion(Some("Transfer sent."), &[])
        }
    })
    .await
}

async fn dispatcher(required: &MemorySink, mirror: &MemorySink) -> Dispatcher {
    Dispatcher::builder()
        .sink(SinkOptions::new("audit"), required.clone())
        .sink(SinkOptions::new("mirror").required(false), mirror.clone())
        .start()
        .await
        .unwrap()
}

fn agents(server: &ChatServer, marker: &Path, audited: &MemorySink) -> AssistantAgent {
    let model = Arc::new(client(&server.base_url(), None, 0, Duration::from_secs(10)));
    AssistantAgent::new("assistant", model)
        .tool(transfer_tool(marker.to_path_buf(), audited.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_runs_only_after_its_call_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("transfer-done");
    let (required, mirror) = (MemorySink::new(), MemorySink::new());
    let d = dispatcher(&required, &mirror).await;
    let server = model_server(None).await;
    let assistant = agents(&server, &marker, &required);
    let result = UserProxyAgent::new("user_proxy")
        .initiate_chat(
            &request_auditor(&d, "r-ok"),
            &assistant,
            "Send 500 to DE00 1234",
        )
        .await
        .unwrap();
    finish(&d).await;
    assert_eq!(result.answer, "Transfer sent.");
    // The control: the tool does run, and saw its own tool_call record.
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "DE00 1234 50000 audited=true"
    );
    assert_eq!(
        events(&required.records()),
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_required_sink_stops_the_tool_and_the_caller_sees_why() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("transfer-done");
    let (required, mirror) = (MemorySink::new(), MemorySink::new());
    let d = dispatcher(&required, &mirror).await;
    let server = model_server(Some(required.clone())).await;
    let assistant = agents(&server, &marker, &required);
    let result = UserProxyAgent::new("user_proxy")
        .initiate_chat(
            &request_auditor(&d, "r-fail"),
            &assistant,
            "Send 500 to DE00 1234",
        )
        .await;
    let report = d.shutdown(Duration::from_secs(10)).await;

    assert!(
        !marker.exists(),
        "the tool ran although its tool_call was not durable"
    );
    let error = result.unwrap_err();
    match &error {
        AgentError::AuditBeforeAct {
            agent,
            tool,
            call_id,
            source: EmitError::SinkFailed { sink, .. },
        } => {
            assert_eq!(
                (
                    agent.as_str(),
                    tool.as_str(),
                    call_id.as_str(),
                    sink.as_str()
                ),
                ("user_proxy", "transfer_funds", "call_transfer", "audit")
            );
        }
        other => panic!("expected AuditBeforeAct naming the sink, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("transfer_funds") && text.contains("audit disk unavailable"),
        "{text}"
    );

    // The surviving sink shows the conversation stopped there: no result,
    // no second model call, no final answer.
    let seen = events(&mirror.records());
    assert!(!seen.contains(&"tool_result".to_string()), "{seen:?}");
    assert!(!seen.contains(&"final_result".to_string()), "{seen:?}");
    assert_eq!(server.requests().len(), 1);
    // And the failure is reported, not swallowed.
    assert!(!report.is_clean());
    let audit = report
        .sinks
        .iter()
        .find(|s| s.health.name == "audit")
        .unwrap();
    assert!(audit.health.failed > 0);
    assert!(
        audit
            .health
            .last_error
            .as_deref()
            .unwrap()
            .contains("audit disk unavailable")
    );
}
