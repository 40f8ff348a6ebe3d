//! Audit before act on a resumed run: rig's `Agent::resume` continues a
//! suspended run past its first model call, and on resume rig does not
//! call `on_run_start` (there is no initial prompt left to steer). A tool
//! pending in that run must still be recorded, durable, before it runs.

mod common;

use std::collections::BTreeSet;

use agent_audit_core::{Auditor, Dispatcher, FailureKind, MemorySink, SinkOptions};
use agent_audit_rig::{AuditError, AuditHook, RunError};
use common::*;
use rig_agent::completion::{AssistantContent, AssistantMessage, Message, ToolDefinition, Usage};
use rig_agent::prelude::*;
use rig_agent::run::{AgentRun, AgentRunStep, ModelTurn};
use serde_json::json;

/// A run suspended with the model's call to `mark` pending, as a durable
/// execution store would hand it back.
fn suspended_run(agent: &Agent) -> AgentRun {
    let mut run = AgentRun::from_spec(&agent.run_spec(), Message::user("Mark A"), None);
    let AgentRunStep::CallModel { turn, .. } = run.next_step().unwrap() else {
        panic!("a new run first calls the model");
    };
    run.advertise_tools(
        turn,
        vec![ToolDefinition {
            name: "mark".try_into().unwrap(),
            description: "Writes a marker.".into(),
            parameters: json!({"type": "object"}),
        }],
    );
    let tools = BTreeSet::from(["mark".to_string()]);
    let call = AssistantContent::tool_call(
        "call_resumed",
        "mark".try_into().unwrap(),
        json!({"name": "A"}),
    );
    run.model_response(ModelTurn::new(
        AssistantMessage::new(Vec::new()),
        vec![call],
        Usage::default(),
        tools.clone(),
        tools,
        json!({}),
    ))
    .unwrap();
    let saved = serde_json::to_string(&run).unwrap();
    serde_json::from_str(&saved).unwrap()
}

fn mark_agent(server: &ChatServer, dir: &tempfile::TempDir, sink: &MemorySink) -> Agent {
    agent(server, Mark::new(dir, sink))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_records_its_pending_tool_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("audit"), required.clone())
        .start()
        .await
        .unwrap();
    let server = ChatServer::scripted(vec![Reply::completion(Some("Marked."), &[])]).await;
    let agent = mark_agent(&server, &dir, &required);
    let run = suspended_run(&agent);
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-resumed")));
    let result = agent.resume(run).add_hook(hook.clone()).await;
    let answer = hook.check(result).unwrap();
    finish(&d).await;
    assert_eq!(answer.output(), "Marked.");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("A")).unwrap(),
        "audited=true"
    );
    let records = required.records();
    let seen = events(&records);
    assert_eq!(
        seen,
        [
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
            .all(|r| r.request_id.as_deref() == Some("r-resumed"))
    );
    let call = records[0].payload_value();
    assert_eq!(call["call_id"], "call_resumed");
    // One run span: the tool and the model call are its children, the
    // answer in it.
    let run_span = records[0].parent_span_id;
    assert!(run_span.is_some());
    assert_eq!(records[2].parent_span_id, run_span);
    assert_eq!(Some(records[4].span_id), run_span);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_with_a_failed_sink_never_runs_its_pending_tool() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("audit"), required.clone())
        .start()
        .await
        .unwrap();
    required.fail_with(FailureKind::Permanent, "audit disk unavailable");
    let server = ChatServer::scripted(vec![Reply::completion(Some("Marked."), &[])]).await;
    let agent = mark_agent(&server, &dir, &required);
    let run = suspended_run(&agent);
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-resumed-fail")));
    let result = agent.resume(run).add_hook(hook.clone()).await;
    let _ = d.shutdown(std::time::Duration::from_secs(10)).await;
    assert!(
        !dir.path().join("A").exists(),
        "the pending tool ran without its tool_call"
    );
    match hook.check(result) {
        Err(RunError::Audit(e)) => {
            assert!(matches!(*e, AuditError::AuditBeforeAct { .. }), "{e:?}")
        }
        other => panic!(
            "expected the audit error, got {:?}",
            other.map(|r| r.output())
        ),
    }
    assert!(server.requests().is_empty());
}
