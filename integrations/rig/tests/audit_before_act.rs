//! Audit before act with a rig agent: a tool runs only once its
//! `tool_call` is durable on every required sink; concurrent tools are each
//! recorded before they run and their results matched by call id; a model
//! that fails leaves a `model_error`. The model is a real Chat Completions
//! server on loopback; the tools write marker files.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent_audit_core::{Auditor, Dispatcher, EmitError, FailureKind, MemorySink, SinkOptions};
use agent_audit_rig::{AuditError, AuditHook, RunError};
use common::*;
use rig_agent::prelude::*;
use rig_core::tool::PortableTool;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Barrier;

#[derive(Deserialize)]
struct TransferArgs {
    to: String,
    cents: u64,
}

/// A tool with a side effect: it writes `<dir>/<to>`, noting whether the
/// required sink already held the `tool_call` of a call to `to`. With a
/// barrier, every call waits until all have started (they run at once).
struct TransferFunds {
    dir: PathBuf,
    audited: MemorySink,
    together: Option<Arc<Barrier>>,
}

impl PortableTool for TransferFunds {
    const NAME: &'static str = "transfer_funds";
    type Args = TransferArgs;
    type Output = Value;
    type Error = ToolFailed;

    fn description(&self) -> String {
        "Moves money to another account.".into()
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"to": {"type": "string"}, "cents": {"type": "integer"}},
            "required": ["to", "cents"]
        })
    }

    async fn call(&self, args: TransferArgs) -> Result<Value, ToolFailed> {
        let seen = self.audited.records().iter().any(|r| {
            let p = r.payload_value();
            r.event_type.as_str() == "tool_call" && p["arguments"]["to"] == args.to.as_str()
        });
        if let Some(barrier) = &self.together {
            tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                .await
                .map_err(|_| ToolFailed("the other call never started".into()))?;
        }
        std::fs::write(
            self.dir.join(&args.to),
            format!("{} audited={seen}", args.cents),
        )
        .map_err(|e| ToolFailed(e.to_string()))?;
        Ok(json!({"status": "sent", "to": args.to}))
    }
}

async fn dispatcher(required: &MemorySink, mirror: &MemorySink) -> Dispatcher {
    Dispatcher::builder()
        .sink(SinkOptions::new("audit"), required.clone())
        .sink(SinkOptions::new("mirror").required(false), mirror.clone())
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_required_sink_stops_the_run_before_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let (required, mirror) = (MemorySink::new(), MemorySink::new());
    let d = dispatcher(&required, &mirror).await;
    let breaks = required.clone();
    let served = AtomicUsize::new(0);
    let server = ChatServer::with_handler(move |_| {
        if served.fetch_add(1, Ordering::SeqCst) == 0 {
            // user_request and assistant_input are in before the failure,
            // so it hits the tool_call.
            let start = Instant::now();
            while breaks.len() < 2 && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            breaks.fail_with(FailureKind::Permanent, "audit disk unavailable");
            Reply::completion(
                None,
                &[(
                    "call_transfer",
                    "transfer_funds",
                    r#"{"to": "DE001234", "cents": 50000}"#,
                )],
            )
        } else {
            Reply::completion(Some("Transfer sent."), &[])
        }
    })
    .await;
    let assistant = agent(
        &server,
        TransferFunds {
            dir: dir.path().to_path_buf(),
            audited: required.clone(),
            together: None,
        },
    );
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-fail")));
    let result = assistant
        .prompt("Send 500 to DE001234")
        .add_hook(hook.clone())
        .await;
    let report = d.shutdown(Duration::from_secs(10)).await;

    assert!(
        !dir.path().join("DE001234").exists(),
        "the tool ran although its tool_call was not durable"
    );
    // rig's own error names the sink and the cause...
    let error = result.as_ref().unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, PromptError::Cancelled { .. }),
        "expected a cancel, got {error:?}"
    );
    for needle in [
        "transfer_funds",
        "call_transfer",
        "`audit`",
        "audit disk unavailable",
    ] {
        assert!(text.contains(needle), "{needle} not in: {text}");
    }
    // ...and the hook hands the audit error over typed.
    let Err(RunError::Audit(audit)) = hook.check(result) else {
        panic!("the hook kept no audit error");
    };
    match *audit {
        AuditError::AuditBeforeAct {
            tool,
            call_id,
            source: EmitError::SinkFailed { sink, .. },
        } => {
            assert_eq!(
                (tool.as_str(), call_id.as_str(), sink.as_str()),
                ("transfer_funds", "call_transfer", "audit")
            );
        }
        other => panic!("expected AuditBeforeAct naming the sink, got {other:?}"),
    }
    // The run stopped there: no result, no second model call, no answer.
    let seen = events(&mirror.records());
    assert_eq!(
        seen[..3],
        ["user_request", "assistant_input", "assistant_output"]
    );
    for never in ["tool_result", "final_result"] {
        assert!(!seen.iter().any(|e| e == never), "{seen:?}");
    }
    assert_eq!(seen.iter().filter(|e| *e == "assistant_input").count(), 1);
    assert_eq!(server.requests().len(), 1);
    assert!(!report.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_tools_are_each_durable_before_they_run_and_matched_by_call_id() {
    let dir = tempfile::tempdir().unwrap();
    let (required, mirror) = (MemorySink::new(), MemorySink::new());
    let d = dispatcher(&required, &mirror).await;
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[
                ("call_a", "transfer_funds", r#"{"to": "A", "cents": 100}"#),
                ("call_b", "transfer_funds", r#"{"to": "B", "cents": 200}"#),
            ],
        ),
        Reply::completion(Some("Both sent."), &[]),
    ])
    .await;
    let assistant = agent(
        &server,
        TransferFunds {
            dir: dir.path().to_path_buf(),
            audited: required.clone(),
            // Both calls must be running at the same time to get past it.
            together: Some(Arc::new(Barrier::new(2))),
        },
    );
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-two")));
    let result = assistant
        .prompt("Send 1 to A and 2 to B")
        .tool_concurrency(2)
        .add_hook(hook.clone())
        .await;
    let answer = hook.check(result).unwrap();
    finish(&d).await;
    assert_eq!(answer.output(), "Both sent.");

    // Each tool saw its own tool_call on the required sink before acting.
    for (to, cents) in [("A", 100), ("B", 200)] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(to)).unwrap(),
            format!("{cents} audited=true")
        );
    }
    let records = required.records();
    let seen = events(&records);
    assert_eq!(
        seen[..3],
        ["user_request", "assistant_input", "assistant_output"]
    );
    assert_eq!(
        seen[seen.len() - 3..],
        ["assistant_input", "assistant_output", "final_result"]
    );
    let middle: Vec<&str> = seen[3..seen.len() - 3].iter().map(String::as_str).collect();
    assert_eq!(middle.len(), 4, "{seen:?}");
    // Both calls are recorded before either result (they ran together).
    assert_eq!(middle[..2], ["tool_call", "tool_call"], "{seen:?}");
    assert_eq!(middle[2..], ["tool_result", "tool_result"], "{seen:?}");
    // Results matched to calls by call id, each in its call's span.
    let calls: Vec<&Arc<agent_audit_core::Record>> = records
        .iter()
        .filter(|r| r.event_type.as_str() == "tool_call")
        .collect();
    for result in records
        .iter()
        .filter(|r| r.event_type.as_str() == "tool_result")
    {
        let p = result.payload_value();
        let call = calls
            .iter()
            .find(|c| c.payload_value()["call_id"] == p["call_id"])
            .unwrap();
        assert_eq!(call.span_id, result.span_id);
        let to = call.payload_value()["arguments"]["to"].clone();
        assert_eq!(p["result"]["to"], to, "{p}");
    }
    let ids: Vec<Value> = payloads(&records, "tool_result")
        .iter()
        .map(|p| p["call_id"].clone())
        .collect();
    assert!(ids.contains(&json!("call_a")) && ids.contains(&json!("call_b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_answers_500_leaves_a_model_error() {
    let dir = tempfile::tempdir().unwrap();
    let (required, mirror) = (MemorySink::new(), MemorySink::new());
    let d = dispatcher(&required, &mirror).await;
    // Every request, retries included, gets a 500.
    let server = ChatServer::with_handler(|_| {
        Reply::error(500, "the model is down", "server_error", Value::Null)
    })
    .await;
    let assistant = agent(
        &server,
        TransferFunds {
            dir: dir.path().to_path_buf(),
            audited: required.clone(),
            together: None,
        },
    );
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-500")))
        .provider("openai")
        .model("test-model");
    let result = assistant.prompt("Hello").add_hook(hook.clone()).await;
    assert!(matches!(hook.check(result), Err(RunError::Rig(_))));
    finish(&d).await;

    let records = required.records();
    assert_eq!(
        events(&records),
        ["user_request", "assistant_input", "model_error"]
    );
    let e = records[2].payload_value();
    assert_eq!(e["kind"], "server", "{e}");
    assert_eq!(e["status"], 500, "{e}");
    assert_eq!(e["model"], "test-model");
    assert!(
        e["message"].as_str().unwrap().contains("the model is down"),
        "{e}"
    );
    assert!(!server.requests().is_empty());
    // In the model call's span, beside its input.
    assert_eq!(records[1].span_id, records[2].span_id);
}
