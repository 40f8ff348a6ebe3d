//! The hook's cost per agent run: the tutorial's run (two model calls, one
//! tool) against the loopback Chat Completions test server, with and
//! without `AuditHook`, alternating in one process, into a JSONL file with
//! `fsync = "batch"` in a temporary directory (on the disk of `$TMPDIR`).
//!
//! ```sh
//! cargo run --release --manifest-path integrations/rig/Cargo.toml --example overhead -- 300
//! ```

#[allow(unused_imports)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use agent_audit_core::{Auditor, Dispatcher, MemorySink, SinkOptions};
use agent_audit_jsonl::{FsyncPolicy, JsonlOptions, JsonlSink};
use agent_audit_rig::AuditHook;
use common::{ChatServer, Reply};
use rig_agent::prelude::*;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::PortableTool;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct BalanceArgs {
    account_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BalanceError(String);

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
        json!({"type": "object", "properties": {"account_id": {"type": "string"}}, "required": ["account_id"]})
    }

    async fn call(&self, args: BalanceArgs) -> Result<Value, BalanceError> {
        Ok(json!({"account_id": args.account_id, "balance": 1024.5, "currency": "EUR"}))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    // `memory`: a MemorySink instead of the file, to tell the hook's own
    // cost from the disk's.
    let memory = std::env::args().nth(2).as_deref() == Some("memory");
    let dir = tempfile::tempdir()?;
    let builder = Dispatcher::builder();
    let builder = if memory {
        builder.sink(SinkOptions::new("memory"), MemorySink::new())
    } else {
        builder.sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(
                JsonlOptions::new(dir.path().join("audit-log.jsonl")).fsync(FsyncPolicy::Batch),
            )?,
        )
    };
    let dispatcher = builder.start().await?;
    // Stateless: a conversation holding a tool result gets the answer.
    let server = ChatServer::with_handler(|req| {
        if String::from_utf8_lossy(&req.body).contains("\"role\":\"tool\"") {
            Reply::completion(Some("The balance is 1024.50 EUR."), &[])
        } else {
            Reply::completion(
                None,
                &[(
                    "call_1",
                    "get_account_balance",
                    r#"{"account_id": "12345"}"#,
                )],
            )
        }
    })
    .await;
    let model = OpenAIConfig::new("sk-test")
        .with_base_url(server.base_url())
        .with_route(Route::Chat)
        .client()
        .completion("test-model");
    let agent = AgentBuilder::new(model)
        .name("assistant")
        .default_max_turns(5)
        .tool(GetAccountBalance)
        .build();
    let root = Auditor::new(dispatcher.clone());

    let mut plain = Duration::ZERO;
    let mut audited = Duration::ZERO;
    for i in 0..runs + 20 {
        let t = Instant::now();
        agent
            .prompt("What is the balance of account 12345?")
            .await?;
        let a = t.elapsed();
        let hook = AuditHook::new(&root.for_request(None));
        let t = Instant::now();
        let r = agent
            .prompt("What is the balance of account 12345?")
            .add_hook(hook.clone())
            .await;
        hook.check(r)?;
        let b = t.elapsed();
        // The first 20 pairs warm up connections and caches.
        if i >= 20 {
            plain += a;
            audited += b;
        }
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / runs as f64;
    println!(
        "{runs} runs each: without the hook {:.3} ms/run, with it {:.3} ms/run: +{:.3} ms ({:+.1} %); sink clean: {}",
        per(plain),
        per(audited),
        per(audited) - per(plain),
        (audited.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0,
        report.is_clean()
    );
    Ok(())
}
