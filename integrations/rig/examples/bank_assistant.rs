//! The tutorial's bank assistant as a rig agent, audited by agent-audit.
//!
//! ```sh
//! # Any OpenAI-compatible Chat Completions server (a local one over http;
//! # for an https provider add `--features tls`):
//! OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=sk-... MODEL=gpt-4o-mini \
//!   cargo run --manifest-path integrations/rig/Cargo.toml --example bank_assistant \
//!   -- "What is the balance of account 12345?"
//! agent-audit timeline audit-log.jsonl
//! ```
//!
//! It writes `audit-log.jsonl` (or `$AUDIT_LOG`) with fsync batch: the
//! same eight records `agent-audit run` writes for the tutorial.

use std::time::Duration;

use agent_audit_core::{Auditor, Dispatcher, Overflow, SinkOptions};
use agent_audit_jsonl::{FsyncPolicy, JsonlOptions, JsonlSink};
use agent_audit_rig::AuditHook;
use rig_agent::prelude::*;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::PortableTool;
use serde::Deserialize;
use serde_json::{Value, json};

const SYSTEM_MESSAGE: &str = "You are a helpful bank assistant. Use get_account_balance to look up an account's balance; never guess a balance.";

#[derive(Deserialize)]
struct BalanceArgs {
    account_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BalanceError(String);

/// `get_account_balance(account_id)`, the tutorial's tool: a fake but
/// deterministic balance (FNV-1a of the id, as cents below 100,000.00).
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
            "properties": {"account_id": {"type": "string", "description": "The account's id, for example \"12345\"."}},
            "required": ["account_id"]
        })
    }

    async fn call(&self, args: BalanceArgs) -> Result<Value, BalanceError> {
        if args.account_id.trim().is_empty() {
            return Err(BalanceError("account_id is empty".into()));
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in args.account_id.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let cents = hash % 10_000_000;
        Ok(
            json!({"account_id": args.account_id, "balance": cents as f64 / 100.0, "currency": "EUR"}),
        )
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the balance of account 12345?".into());
    let base_url =
        std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
    let api_key = std::env::var("OPENAI_API_KEY").unwrap_or_default();
    let model_name = std::env::var("MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
    let log = std::env::var("AUDIT_LOG").unwrap_or_else(|_| "audit-log.jsonl".into());

    // The audit trail: one required JSONL sink, blocking when full.
    let dispatcher = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl")
                .required(true)
                .overflow(Overflow::Block),
            JsonlSink::new(JsonlOptions::new(&log).fsync(FsyncPolicy::Batch))?,
        )
        .start()
        .await?;

    // A plain rig agent on any OpenAI-compatible Chat Completions server.
    let model = OpenAIConfig::new(api_key)
        .with_base_url(base_url)
        .with_route(Route::Chat)
        .client()
        .completion(model_name.clone());
    let agent = AgentBuilder::new(model)
        .name("assistant")
        .preamble(SYSTEM_MESSAGE)
        .default_max_turns(5)
        .tool(GetAccountBalance)
        .build();

    // The lines agent-audit adds: a hook per request, attached to the run.
    let audit = Auditor::new(dispatcher.clone()).for_request(None);
    let hook = AuditHook::new(&audit).provider("openai").model(model_name);
    let result = agent.prompt(prompt.as_str()).add_hook(hook.clone()).await;
    let outcome = hook.check(result);

    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    if !report.is_clean() {
        eprintln!("{report}");
    }
    let answer = outcome?;
    println!("{}", answer.output());
    eprintln!(
        "audit trail: {log} (request {})",
        audit.scope().request_id.as_deref().unwrap_or("?")
    );
    Ok(())
}
