//! Test support: a real HTTP/1.1 server on loopback speaking the Chat
//! Completions wire format (scripted replies), the same as agent-audit's
//! runtime tests use (crates/agents/tests/common), record helpers, an
//! agent builder and the marker-writing tool the attack tests share.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{FailureKind, MemorySink, Record};
use rig_agent::prelude::*;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::PortableTool;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Barrier;

#[path = "../../../../crates/agents/tests/common/server.rs"]
mod server;
#[allow(unused_imports)] // not every test binary uses the server
pub use server::*;

pub fn events(records: &[Arc<Record>]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.event_type.as_str().to_string())
        .collect()
}

pub async fn finish(dispatcher: &agent_audit_core::Dispatcher) {
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "dispatcher shutdown not clean: {report}");
}

/// The payloads of the records of type `event`, in seq order.
pub fn payloads(records: &[Arc<Record>], event: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r.event_type.as_str() == event)
        .map(|r| r.payload_value())
        .collect()
}

/// An agent named `assistant` on `test-model` at `server`, with `tool`.
pub fn agent<T: PortableTool + 'static>(server: &ChatServer, tool: T) -> Agent {
    let model = OpenAIConfig::new("sk-test")
        .with_base_url(server.base_url())
        .with_route(Route::Chat)
        .client()
        .completion("test-model");
    AgentBuilder::new(model)
        .name("assistant")
        .default_max_turns(5)
        .tool(tool)
        .build()
}

#[derive(Deserialize)]
pub struct MarkArgs {
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolFailed(pub String);

/// A tool with a side effect: it writes `<dir>/<name>` holding whether the
/// required sink already held a `tool_call` for `name`. Optionally it
/// breaks the required sink once it has acted (a disk that fails between
/// two calls), or waits until `together` calls run at once.
pub struct Mark {
    pub dir: PathBuf,
    pub audited: MemorySink,
    pub break_after: Option<String>,
    pub together: Option<Arc<Barrier>>,
}

impl Mark {
    pub fn new(dir: &tempfile::TempDir, audited: &MemorySink) -> Mark {
        Mark {
            dir: dir.path().to_path_buf(),
            audited: audited.clone(),
            break_after: None,
            together: None,
        }
    }
}

impl PortableTool for Mark {
    const NAME: &'static str = "mark";
    type Args = MarkArgs;
    type Output = Value;
    type Error = ToolFailed;

    fn description(&self) -> String {
        "Writes a marker.".into()
    }

    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    }

    async fn call(&self, args: MarkArgs) -> Result<Value, ToolFailed> {
        let seen = self.audited.records().iter().any(|r| {
            r.event_type.as_str() == "tool_call"
                && r.payload_value()["arguments"]["name"] == args.name.as_str()
        });
        if let Some(barrier) = &self.together {
            tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                .await
                .map_err(|_| ToolFailed("the other call never started".into()))?;
        }
        std::fs::write(self.dir.join(&args.name), format!("audited={seen}"))
            .map_err(|e| ToolFailed(e.to_string()))?;
        if self.break_after.as_deref() == Some(args.name.as_str()) {
            self.audited
                .fail_with(FailureKind::Permanent, "audit disk gone");
        }
        Ok(json!({"marked": args.name}))
    }
}
