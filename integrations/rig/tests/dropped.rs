//! A rig run dropped while a tool runs leaves its `tool_call` without a
//! result; `timeline` and `stats` show the call unfinished.

mod common;

use std::time::Duration;

use agent_audit_core::{Auditor, Dispatcher, SinkOptions};
use agent_audit_jsonl::{FsyncPolicy, JsonlOptions, JsonlSink};
use agent_audit_review::stats::StatsBuilder;
use agent_audit_review::{SourceOptions, Timeline, load};
use agent_audit_rig::AuditHook;
use common::*;
use rig_agent::prelude::*;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::PortableTool;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

#[derive(Deserialize)]
struct Args {}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Never(String);

/// A tool that says it started, then never returns.
struct Hangs(std::sync::Mutex<Option<oneshot::Sender<()>>>);

impl PortableTool for Hangs {
    const NAME: &'static str = "slow_report";
    type Args = Args;
    type Output = Value;
    type Error = Never;

    fn description(&self) -> String {
        "Builds a report (slowly).".into()
    }

    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}})
    }

    async fn call(&self, _args: Args) -> Result<Value, Never> {
        let started = self.0.lock().map_err(|e| Never(e.to_string()))?.take();
        if let Some(started) = started {
            let _ = started.send(());
        }
        std::future::pending::<()>().await;
        Ok(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_mid_tool_leaves_the_call_unfinished_in_timeline_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let dispatcher = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(JsonlOptions::new(&path).fsync(FsyncPolicy::Batch)).unwrap(),
        )
        .start()
        .await
        .unwrap();
    let server = ChatServer::scripted(vec![Reply::completion(
        None,
        &[("call_slow", "slow_report", "{}")],
    )])
    .await;
    let (started_tx, started_rx) = oneshot::channel();
    let model = OpenAIConfig::new("sk-test")
        .with_base_url(server.base_url())
        .with_route(Route::Chat)
        .client()
        .completion("test-model");
    let agent = AgentBuilder::new(model)
        .name("assistant")
        .default_max_turns(5)
        .tool(Hangs(std::sync::Mutex::new(Some(started_tx))))
        .build();
    let hook = AuditHook::new(&Auditor::new(dispatcher.clone()).for_request(Some("r-drop")));
    let run = agent.prompt("Build the report").add_hook(hook.clone());
    // The run is dropped once the tool has started (a caller's timeout).
    tokio::select! {
        result = run => panic!("the run ended although its tool never returns: {:?}", result.map(|r| r.output())),
        started = started_rx => started.unwrap(),
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");

    let loaded = load(&[&path], SourceOptions::default(), |_| true).unwrap();
    let seen: Vec<&str> = loaded
        .entries
        .iter()
        .map(|e| e.record.event_type.as_str())
        .collect();
    assert_eq!(
        seen,
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "tool_call"
        ]
    );
    let timeline = Timeline::build("r-drop", &loaded.entries).unwrap();
    let text = timeline.render_text();
    assert!(text.contains("[no answer in the trail]"), "{text}");
    let mut stats = StatsBuilder::new();
    for e in &loaded.entries {
        stats.add(e);
    }
    let stats = stats.finish();
    assert_eq!(stats.tools["slow_report"].unfinished, 1);
    assert_eq!(stats.tools["slow_report"].calls, 1);
}
