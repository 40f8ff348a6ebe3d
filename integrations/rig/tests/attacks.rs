//! The hook under attack: a hostile model server (duplicate call ids, tools
//! the agent does not have, garbage, huge and deeply nested output, a body
//! that never comes), a sink that fails between two calls, a hook reused
//! across runs, a run resumed past its first model call. Each test names
//! the promise it attacks. The model is a real Chat Completions server on
//! loopback; the tools write marker files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{
    Auditor, Dispatcher, EmitError, FailureKind, MemorySink, PayloadFilter, Record, SinkOptions,
};
use agent_audit_rig::{AuditError, AuditHook, RunError};
use common::*;
use rig_agent::prelude::*;
use serde_json::{Value, json};
use tokio::sync::Barrier;

async fn dispatcher(required: &MemorySink) -> Dispatcher {
    Dispatcher::builder()
        .sink(SinkOptions::new("audit"), required.clone())
        .start()
        .await
        .unwrap()
}

fn marker(dir: &tempfile::TempDir, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.path().join(name)).ok()
}

/// Results matched by call id, attacked with a server that gives two
/// concurrent calls the same id: each call still gets its own result, in
/// its own span, carrying its own arguments (rig renames the repeat; the
/// hook matches outcomes by rig's effect id, not by the model's ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_call_ids_from_the_server_keep_one_result_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[
                ("call_same", "mark", r#"{"name": "A"}"#),
                ("call_same", "mark", r#"{"name": "B"}"#),
            ],
        ),
        Reply::completion(Some("Done."), &[]),
    ])
    .await;
    let mut tool = Mark::new(&dir, &required);
    tool.together = Some(Arc::new(Barrier::new(2)));
    let assistant = agent(&server, tool);
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-dup")));
    let result = assistant
        .prompt("Mark A and B")
        .tool_concurrency(2)
        .add_hook(hook.clone())
        .await;
    hook.check(result).unwrap();
    finish(&d).await;

    assert_eq!(marker(&dir, "A").as_deref(), Some("audited=true"));
    assert_eq!(marker(&dir, "B").as_deref(), Some("audited=true"));
    let records = required.records();
    let calls: Vec<&Arc<Record>> = records
        .iter()
        .filter(|r| r.event_type.as_str() == "tool_call")
        .collect();
    let results: Vec<&Arc<Record>> = records
        .iter()
        .filter(|r| r.event_type.as_str() == "tool_result")
        .collect();
    assert_eq!(calls.len(), 2, "{:?}", events(&records));
    assert_eq!(results.len(), 2, "{:?}", events(&records));
    assert_ne!(calls[0].span_id, calls[1].span_id);
    for result in results {
        let call = calls
            .iter()
            .find(|c| c.span_id == result.span_id)
            .expect("a result in the span of a call");
        let (c, r) = (call.payload_value(), result.payload_value());
        assert_eq!(r["call_id"], c["call_id"]);
        assert_eq!(r["result"]["marked"], c["arguments"]["name"], "{r} vs {c}");
    }
    // rig keeps the server's id for the first call and mints one for the
    // repeat; the trail uses the ids rig used, the same in the model's
    // answer as in the tool records.
    let asked: Vec<Value> = payloads(&records, "assistant_output")[0]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    let ids: Vec<Value> = calls
        .iter()
        .map(|c| c.payload_value()["call_id"].clone())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert!(ids.contains(&json!("call_same")), "{ids:?}");
    for id in &ids {
        assert!(asked.contains(id), "{id} not in {asked:?}");
    }
}

/// Missing call ids (empty, as some servers send them): rig mints one per
/// call; each call still has its `tool_call` before it runs and its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_ids_are_each_recorded_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[
                ("", "mark", r#"{"name": "A"}"#),
                ("", "mark", r#"{"name": "B"}"#),
            ],
        ),
        Reply::completion(Some("Done."), &[]),
    ])
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-noid")));
    let result = assistant
        .prompt("Mark A and B")
        .tool_concurrency(2)
        .add_hook(hook.clone())
        .await;
    hook.check(result).unwrap();
    finish(&d).await;
    assert_eq!(marker(&dir, "A").as_deref(), Some("audited=true"));
    assert_eq!(marker(&dir, "B").as_deref(), Some("audited=true"));
    let records = required.records();
    let calls = payloads(&records, "tool_call");
    let results = payloads(&records, "tool_result");
    assert_eq!(
        (calls.len(), results.len()),
        (2, 2),
        "{:?}",
        events(&records)
    );
    for r in &results {
        let call = calls
            .iter()
            .find(|c| c["call_id"] == r["call_id"])
            .unwrap_or_else(|| panic!("no call for {r}"));
        assert_eq!(r["result"]["marked"], call["arguments"]["name"]);
    }
}

/// Audit before act, attacked with a sink that fails between two calls of
/// one turn: the first tool ran audited, the second never runs, and the
/// run ends with the audit error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_failing_between_two_calls_stops_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[
                ("call_1", "mark", r#"{"name": "first"}"#),
                ("call_2", "mark", r#"{"name": "second"}"#),
            ],
        ),
        Reply::completion(Some("Done."), &[]),
    ])
    .await;
    let mut tool = Mark::new(&dir, &required);
    tool.break_after = Some("first".into());
    let assistant = agent(&server, tool);
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-between")));
    let result = assistant
        .prompt("Mark first and second")
        .add_hook(hook.clone())
        .await;
    let _ = d.shutdown(Duration::from_secs(10)).await;

    assert_eq!(marker(&dir, "first").as_deref(), Some("audited=true"));
    assert_eq!(marker(&dir, "second"), None, "ran without its tool_call");
    assert!(matches!(result, Err(PromptError::Cancelled { .. })));
    match hook.check(result) {
        Err(RunError::Audit(e)) => {
            let text = e.to_string();
            assert!(text.contains("audit disk gone"), "{text}");
        }
        other => panic!(
            "expected the audit error, got {:?}",
            other.map(|r| r.output())
        ),
    }
    assert_eq!(server.requests().len(), 1, "no model call after the stop");
}

/// A tool name the agent does not have: rig refuses the call (its default
/// policy fails the run). The trail must say what the model answered, and
/// must not blame the model's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_the_agent_does_not_have_is_not_recorded_as_a_server_failure() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let server = ChatServer::scripted(vec![
        Reply::completion(
            None,
            &[("call_x", "delete_everything", r#"{"really": true}"#)],
        ),
        Reply::completion(Some("Done."), &[]),
    ])
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-unknown")));
    let result = assistant
        .prompt("Delete everything")
        .add_hook(hook.clone())
        .await;
    let outcome = hook.check(result).map(|r| r.output());
    finish(&d).await;
    let records = required.records();
    let seen = events(&records);
    // Whatever rig decides, the model's answer is in the trail and an
    // error record (if any) does not claim an HTTP failure.
    assert!(
        seen.iter().any(|e| e == "assistant_output"),
        "the model's answer is missing: {seen:?} ({outcome:?})"
    );
    for e in payloads(&records, "model_error") {
        assert_ne!(e["kind"], "http", "{e}");
        assert_ne!(e["kind"], "server", "{e}");
    }
    // As agent-audit's runtime writes an unknown tool: its tool_call and a
    // tool_error of kind unknown_tool, after the answer that asked for it;
    // rig's default policy then fails the run (no final_result).
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(
        seen,
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "tool_call",
            "tool_error"
        ]
    );
    let answer = records[2].payload_value();
    assert_eq!(
        answer["tool_calls"][0]["name"], "delete_everything",
        "{answer}"
    );
    let call = records[3].payload_value();
    assert_eq!(call["tool"], "delete_everything");
    assert_eq!(call["call_id"], "call_x");
    assert_eq!(call["arguments"], json!({"really": true}));
    let error = records[4].payload_value();
    assert_eq!(error["kind"], "unknown_tool", "{error}");
    assert_eq!(error["call_id"], "call_x");
    assert_eq!(records[3].span_id, records[4].span_id);
    assert_eq!(records[3].parent_span_id, Some(records[0].span_id));
}

/// Arguments that are not a JSON object: rig answers the model itself and
/// never dispatches the call. The trail holds the call and its
/// `tool_error` (kind `invalid_arguments`), as agent-audit's runtime writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_that_are_not_an_object_leave_an_invalid_arguments_error() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let server = ChatServer::scripted(vec![
        Reply::completion(None, &[("call_bad", "mark", "name=A; rm -rf /")]),
        Reply::completion(Some("Sorry."), &[]),
    ])
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-badargs")));
    let result = assistant.prompt("Mark A").add_hook(hook.clone()).await;
    let answer = hook.check(result).unwrap();
    finish(&d).await;
    assert_eq!(answer.output(), "Sorry.");
    assert_eq!(marker(&dir, "A"), None);
    let records = required.records();
    assert_eq!(
        events(&records),
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "tool_call",
            "tool_error",
            "assistant_input",
            "assistant_output",
            "final_result"
        ]
    );
    let call = records[3].payload_value();
    assert_eq!(call["call_id"], "call_bad");
    assert_eq!(call["arguments"], "name=A; rm -rf /");
    let error = records[4].payload_value();
    assert_eq!(error["kind"], "invalid_arguments", "{error}");
    assert_eq!(records[7].payload_value()["end"], "terminated");
}

/// A model server answering 200 with a body that is not JSON: a
/// `model_error` of kind `malformed`, as agent-audit's runtime writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_model_server_is_a_malformed_model_error() {
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let server = ChatServer::with_handler(|_| Reply::raw(200, "<html>not json</html>")).await;
    let dir = tempfile::tempdir().unwrap();
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-garbage")));
    let result = assistant.prompt("Hello").add_hook(hook.clone()).await;
    assert!(matches!(hook.check(result), Err(RunError::Rig(_))));
    finish(&d).await;
    let records = required.records();
    assert_eq!(
        events(&records),
        ["user_request", "assistant_input", "model_error"]
    );
    let e = records[2].payload_value();
    assert_eq!(e["kind"], "malformed", "{e}");
    assert_eq!(e["status"], Value::Null, "{e}");
}

/// Nothing unbounded: a server whose error body is larger than a record
/// may be still leaves its `model_error` (the message cut), and the caller
/// gets the model's failure, not an audit failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_body_still_leaves_a_bounded_model_error() {
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let huge = "x".repeat(2 << 20);
    let server = ChatServer::with_handler(move |_| {
        Reply::error(400, &huge, "invalid_request_error", Value::Null)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-huge-error")));
    let result = assistant.prompt("Hello").add_hook(hook.clone()).await;
    let checked = hook.check(result);
    assert!(
        matches!(checked, Err(RunError::Rig(_))),
        "{:?}",
        checked.map(|r| r.output())
    );
    finish(&d).await;
    let records = required.records();
    assert_eq!(
        events(&records),
        ["user_request", "assistant_input", "model_error"]
    );
    let e = records[2].payload_value();
    assert_eq!(e["status"], 400, "{}", &e.to_string()[..200]);
    assert!(e["message"].as_str().unwrap().len() < 64 * 1024);
}

/// Hostile content: a model answer larger than `max_record_bytes` cannot
/// be recorded, so the run stops there (fail closed) with the audit error;
/// the tool the same answer asked for never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_to_record_stops_the_run_before_its_tool() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let huge = "y".repeat(2 << 20);
    let server = ChatServer::scripted(vec![Reply::completion(
        Some(&huge),
        &[("call_1", "mark", r#"{"name": "A"}"#)],
    )])
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-huge")));
    let result = assistant.prompt("Mark A").add_hook(hook.clone()).await;
    finish(&d).await;
    assert_eq!(
        marker(&dir, "A"),
        None,
        "the tool ran after an unrecorded answer"
    );
    match hook.check(result) {
        Err(RunError::Audit(e)) => match *e {
            AuditError::Record {
                event: "assistant_output",
                source: EmitError::TooLarge { .. },
            } => {}
            other => panic!("expected TooLarge on assistant_output, got {other:?}"),
        },
        other => panic!(
            "expected the audit error, got {:?}",
            other.map(|r| r.output())
        ),
    }
}

/// Hostile arguments: nested deeper than a record may be. The call cannot
/// be recorded, so it never runs, and nothing panics or overflows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_arguments_never_run_unrecorded() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    // Depth 120: under serde_json's parse limit (128), over the record's
    // (MAX_PAYLOAD_DEPTH = 100).
    let args = format!(
        r#"{{"name": "A", "deep": {}1{}}}"#,
        "[".repeat(120),
        "]".repeat(120)
    );
    let server = ChatServer::scripted(vec![
        Reply::completion(None, &[("call_1", "mark", &args)]),
        Reply::completion(Some("Done."), &[]),
    ])
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-deep")));
    let result = assistant.prompt("Mark A").add_hook(hook.clone()).await;
    let _ = d.shutdown(Duration::from_secs(10)).await;
    assert_eq!(marker(&dir, "A"), None, "the tool ran without its record");
    assert!(
        matches!(hook.check(result), Err(RunError::Audit(_))),
        "the run went on past a record it could not write"
    );
}

/// Control characters and a line separator in the model's text: the
/// record keeps them escaped, on one line, and the text comes back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_stay_inside_one_escaped_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            agent_audit_jsonl::JsonlSink::new(agent_audit_jsonl::JsonlOptions::new(&path)).unwrap(),
        )
        .start()
        .await
        .unwrap();
    let nasty = "line1\nline2\r\u{0}\u{1b}[31mred\u{2028}\u{7f}\"}";
    let server = ChatServer::scripted(vec![Reply::completion(Some(nasty), &[])]).await;
    let required = MemorySink::new();
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-ctl")));
    let result = assistant.prompt(nasty).add_hook(hook.clone()).await;
    let answer = hook.check(result).unwrap();
    assert_eq!(answer.output(), nasty);
    finish(&d).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    let lines: Vec<_> = agent_audit_jsonl::Reader::open(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lines[0].record.payload["content"], nasty);
    assert_eq!(lines[3].record.payload["answer"], nasty);
    let verified = agent_audit_jsonl::verify::verify(
        &[&path],
        &agent_audit_jsonl::verify::VerifyOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(verified.intact, "{verified}");
}

/// A redaction rule of the dispatcher covers what the hook writes: a
/// secret the model echoes in its text and in a tool's arguments is in no
/// record.
struct DropSecret;

impl PayloadFilter for DropSecret {
    fn apply(&self, payload: &mut Value) -> Vec<String> {
        fn walk(v: &mut Value, hit: &mut bool) {
            match v {
                Value::String(s) if s.contains("sk-live-") => {
                    *s = "[redacted]".into();
                    *hit = true;
                }
                Value::Array(a) => a.iter_mut().for_each(|v| walk(v, hit)),
                Value::Object(o) => o.values_mut().for_each(|v| walk(v, hit)),
                _ => {}
            }
        }
        let mut hit = false;
        walk(payload, &mut hit);
        if hit {
            vec!["secret".into()]
        } else {
            Vec::new()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_model_echoes_is_redacted_in_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("audit"), required.clone())
        .filter(Arc::new(DropSecret))
        .start()
        .await
        .unwrap();
    let secret = "sk-live-0123456789";
    let server = ChatServer::scripted(vec![
        Reply::completion(
            Some(&format!("Using {secret}")),
            &[("call_1", "mark", &format!(r#"{{"name": "{secret}"}}"#))],
        ),
        Reply::completion(Some(&format!("Marked {secret}")), &[]),
    ])
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-secret")));
    let result = assistant.prompt("Mark it").add_hook(hook.clone()).await;
    hook.check(result).unwrap();
    finish(&d).await;
    let records = required.records();
    assert_eq!(records.len(), 8, "{:?}", events(&records));
    for r in &records {
        let text = r.payload_value().to_string();
        assert!(!text.contains(secret), "{}: {text}", r.event_type.as_str());
    }
}

/// One hook reused for a second run after the first stopped on an audit
/// failure the caller did not `check`: the second run's result is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_hook_does_not_hand_a_past_run_s_failure_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let huge = "z".repeat(2 << 20);
    let server = ChatServer::scripted(vec![
        Reply::completion(Some(&huge), &[]),
        Reply::completion(Some("Fine."), &[]),
    ])
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-reuse")));
    let first = assistant.prompt("One").add_hook(hook.clone()).await;
    assert!(
        first.is_err(),
        "the unrecordable answer did not stop the run"
    );
    let second = assistant.prompt("Two").add_hook(hook.clone()).await;
    let second = hook.check(second).map(|r| r.output());
    finish(&d).await;
    assert_eq!(second.unwrap(), "Fine.");
}

/// A model server that never answers: rig has no timeout of its own, so
/// the caller's timeout drops the run. The trail holds the request and the
/// model call, and the review commands show the call unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_model_server_leaves_an_unanswered_model_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            agent_audit_jsonl::JsonlSink::new(agent_audit_jsonl::JsonlOptions::new(&path)).unwrap(),
        )
        .start()
        .await
        .unwrap();
    let server = ChatServer::with_handler(|_| Reply::hang()).await;
    let required = MemorySink::new();
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-hang")));
    let run = assistant.prompt("Hello").add_hook(hook.clone());
    let timed = tokio::time::timeout(Duration::from_millis(500), run).await;
    assert!(
        timed.is_err(),
        "the run ended although the server never answered"
    );
    finish(&d).await;
    let loaded = agent_audit_review::load(
        &[&path],
        agent_audit_review::SourceOptions::default(),
        |_| true,
    )
    .unwrap();
    let seen: Vec<&str> = loaded
        .entries
        .iter()
        .map(|e| e.record.event_type.as_str())
        .collect();
    assert_eq!(seen, ["user_request", "assistant_input"]);
    let timeline = agent_audit_review::Timeline::build("r-hang", &loaded.entries).unwrap();
    let text = timeline.render_text();
    assert!(text.contains("[no answer in the trail]"), "{text}");
}

/// A hook serving several runs (as `AgentBuilder::add_hook` does) after
/// one of them was dropped mid-call: the dropped run's state goes with it,
/// so a later run still starts clean and its result is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_run_leaves_nothing_behind_in_a_reused_hook() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let served = std::sync::atomic::AtomicUsize::new(0);
    let huge = "z".repeat(2 << 20);
    let server = ChatServer::with_handler(move |_| {
        match served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Reply::hang(),
            1 => Reply::completion(Some(&huge), &[]),
            _ => Reply::completion(Some("Fine."), &[]),
        }
    })
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-dropped-reuse")));
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        assistant.prompt("One").add_hook(hook.clone()),
    )
    .await;
    assert!(dropped.is_err(), "the hanging call returned");
    // An audit failure the caller does not check...
    let second = assistant.prompt("Two").add_hook(hook.clone()).await;
    assert!(
        second.is_err(),
        "the unrecordable answer did not stop the run"
    );
    // ...is not the next run's.
    let third = assistant.prompt("Three").add_hook(hook.clone()).await;
    let third = hook.check(third).map(|r| r.output());
    finish(&d).await;
    assert_eq!(third.unwrap(), "Fine.");
}

/// Audit before act under `tool_concurrency(2)`: the sink fails as the
/// model answers with two calls; neither tool runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sink_under_concurrent_tools_runs_neither() {
    let dir = tempfile::tempdir().unwrap();
    let required = MemorySink::new();
    let d = dispatcher(&required).await;
    let breaks = required.clone();
    let server = ChatServer::with_handler(move |_| {
        // user_request and assistant_input are in before the failure.
        let start = std::time::Instant::now();
        while breaks.len() < 2 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        breaks.fail_with(FailureKind::Permanent, "audit disk unavailable");
        Reply::completion(
            None,
            &[
                ("call_a", "mark", r#"{"name": "A"}"#),
                ("call_b", "mark", r#"{"name": "B"}"#),
            ],
        )
    })
    .await;
    let assistant = agent(&server, Mark::new(&dir, &required));
    let hook = AuditHook::new(&Auditor::new(d.clone()).for_request(Some("r-conc-fail")));
    let result = assistant
        .prompt("Mark A and B")
        .tool_concurrency(2)
        .add_hook(hook.clone())
        .await;
    let _ = d.shutdown(Duration::from_secs(10)).await;
    assert_eq!(marker(&dir, "A"), None, "A ran without a durable tool_call");
    assert_eq!(marker(&dir, "B"), None, "B ran without a durable tool_call");
    assert!(matches!(result, Err(PromptError::Cancelled { .. })));
    assert!(matches!(hook.check(result), Err(RunError::Audit(_))));
    assert_eq!(server.requests().len(), 1);
}
