//! Conversations of several agents: one correlation id, each step its own
//! span in one tree (the agents' runs, their model and tool calls).

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use agent_audit_agents::{OfflineModel, multi};
use agent_audit_core::{Auditor, SpanId};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_hands_over_to_a_specialist_under_one_correlation_id() {
    let (dispatcher, sink) = memory_dispatcher().await;
    let auditor = Auditor::new(dispatcher.clone())
        .with_correlation_id("conv-42")
        .for_request(Some("req-7"));
    let root = auditor.scope().span_id;
    let result = multi::run(
        &auditor,
        Arc::new(OfflineModel),
        "What is the balance of account 12345?",
    )
    .await
    .unwrap();
    finish(&dispatcher).await;
    assert_eq!(result.answered_by, "accounts");
    assert!(result.answer.contains("12345"), "{}", result.answer);

    let records = sink.records();
    let rows: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r.agent.as_deref().unwrap().to_string(),
                r.event_type.to_string(),
            )
        })
        .collect();
    let expected = [
        ("user_proxy", "user_request"),
        ("triage", "assistant_input"),
        ("triage", "assistant_output"),
        ("triage", "tool_call"),
        ("triage", "agent_message"),
        ("triage", "tool_result"),
        ("accounts", "assistant_input"),
        ("accounts", "assistant_output"),
        ("user_proxy", "tool_call"),
        ("user_proxy", "tool_result"),
        ("accounts", "assistant_input"),
        ("accounts", "assistant_output"),
        ("user_proxy", "final_result"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, e)| (a.to_string(), e.to_string()))
        .collect();
    assert_eq!(rows, expected);
    for r in &records {
        assert_eq!(r.correlation_id.as_deref(), Some("conv-42"));
        assert_eq!(r.request_id.as_deref(), Some("req-7"));
        assert_eq!(r.trace_id, auditor.scope().trace_id);
    }
    let handoff = &of_type(&records, "agent_message")[0];
    assert_eq!(handoff["from"], "triage");
    assert_eq!(handoff["to"], "accounts");
    assert_eq!(handoff["kind"], "handoff");
    assert_eq!(
        of_type(&records, "tool_call")[0]["tool"],
        "transfer_to_accounts"
    );

    // Rebuild the tree of steps: the conversation is `invoke_agent triage`
    // (the user's request), each model call a `chat` and each tool call an
    // `execute_tool` under its agent's run, and the accounts specialist's
    // run a child of the triage's, which handed over.
    let mut steps: Vec<(SpanId, Option<SpanId>, String)> = Vec::new();
    for r in &records {
        match steps.iter().find(|t| t.0 == r.span_id) {
            Some(t) => {
                assert_eq!(t.1, r.parent_span_id, "one span, one parent");
                assert_eq!(&t.2, r.agent.as_deref().unwrap(), "one span, one agent");
            }
            None => steps.push((
                r.span_id,
                r.parent_span_id,
                r.agent.as_deref().unwrap().into(),
            )),
        }
    }
    let agents: Vec<&str> = steps.iter().map(|t| t.2.as_str()).collect();
    // triage run (user_request), triage chat, transfer tool, accounts
    // chat, balance tool, accounts chat, accounts run (final_result).
    assert_eq!(
        agents,
        [
            "user_proxy",
            "triage",
            "triage",
            "accounts",
            "user_proxy",
            "accounts",
            "user_proxy"
        ]
    );
    let (triage_run, accounts_run) = (steps[0].0, steps[6].0);
    assert_eq!(
        steps[0].1,
        auditor.scope().parent_span_id,
        "the conversation takes the request's place"
    );
    assert_eq!(
        steps[6].1,
        Some(triage_run),
        "the hand-over's run hangs under the triage's"
    );
    for s in &steps[1..3] {
        assert_eq!(s.1, Some(triage_run), "{} steps under the triage run", s.2);
    }
    for s in &steps[3..6] {
        assert_eq!(
            s.1,
            Some(accounts_run),
            "{} steps under the accounts run",
            s.2
        );
    }
    // Every span is distinct from the request's own, which no tracer knows.
    assert!(steps.iter().all(|s| s.0 != root));
    let known: HashMap<SpanId, &str> = steps.iter().map(|t| (t.0, t.2.as_str())).collect();
    for t in &steps[1..] {
        assert!(known.contains_key(&t.1.unwrap()), "the tree is closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_triage_cannot_route_is_answered_without_hand_over() {
    let (dispatcher, sink) = memory_dispatcher().await;
    let auditor = Auditor::new(dispatcher.clone()).for_request(Some("req-8"));
    let result = multi::run(&auditor, Arc::new(OfflineModel), "Good morning")
        .await
        .unwrap();
    finish(&dispatcher).await;
    assert_eq!(result.answered_by, "triage");
    assert_eq!(
        events(&sink.records()),
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "final_result"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_of_one_conversation_share_the_correlation_id() {
    let (dispatcher, sink) = memory_dispatcher().await;
    let conversation = Auditor::new(dispatcher.clone()).with_correlation_id("conv-1");
    for (id, prompt) in [
        ("r1", "balance of account 1"),
        ("r2", "balance of account 2"),
    ] {
        agent_audit_agents::tutorial::run(
            &conversation.for_request(Some(id)),
            Arc::new(OfflineModel),
            prompt,
        )
        .await
        .unwrap();
    }
    finish(&dispatcher).await;
    let records = sink.records();
    assert_eq!(records.len(), 16);
    assert!(
        records
            .iter()
            .all(|r| r.correlation_id.as_deref() == Some("conv-1"))
    );
    assert!(
        records[..8]
            .iter()
            .all(|r| r.request_id.as_deref() == Some("r1"))
    );
    assert!(
        records[8..]
            .iter()
            .all(|r| r.request_id.as_deref() == Some("r2"))
    );
}
