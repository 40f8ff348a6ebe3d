//! The hook's cost per agent run: the tutorial's run (two model calls, one
//! tool) against the loopback Chat Completions test server, with and
//! without `AuditHook`, alternating in one process, into a JSONL file with
//! `fsync = "batch"` in a temporary directory (on the disk of `$TMPDIR`).
//!
//! ```sh
//! cargo run --release --manifest-path integrations/rig/Cargo.toml --example overhead -- 300
//! # the hook alone, no disk: a MemorySink
//! cargo run --release --manifest-path integrations/rig/Cargo.toml --example overhead -- 300 memory
//! # each model call answered after 50 ms, as a fast hosted model would
//! cargo run --release --manifest-path integrations/rig/Cargo.toml --example overhead -- 100 file 50
//! ```
//!
//! Fairness: the two runs of a pair go in alternating order, and each pair
//! starts with the log's writer idle (a pause outside the timings), so no
//! run is billed for the previous audited run's write-behind (its last
//! records are fsynced after it returned). Medians of the per-run times are
//! printed beside the means: the machine is shared and a mean follows its
//! outliers.

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
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    // `memory`: a MemorySink instead of the file, to tell the hook's own
    // cost from the disk's.
    let memory = args.next().as_deref() == Some("memory");
    // Milliseconds the server takes per model call (0: answers at once).
    let latency = Duration::from_millis(args.next().and_then(|n| n.parse().ok()).unwrap_or(0));
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
    let server = ChatServer::with_handler(move |req| {
        if !latency.is_zero() {
            // The test server's handler is synchronous: this blocks one
            // runtime worker, which only serves this connection meanwhile.
            std::thread::sleep(latency);
        }
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

    let mut plain = Vec::with_capacity(runs);
    let mut audited = Vec::with_capacity(runs);
    for i in 0..runs + 20 {
        // The log's writer finishes the previous pair's records first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
        for audit in [i % 2 == 0, i % 2 != 0] {
            let t = Instant::now();
            if audit {
                let hook = AuditHook::new(&root.for_request(None));
                let r = agent
                    .prompt("What is the balance of account 12345?")
                    .add_hook(hook.clone())
                    .await;
                hook.check(r)?;
                b = t.elapsed();
            } else {
                agent
                    .prompt("What is the balance of account 12345?")
                    .await?;
                a = t.elapsed();
            }
        }
        // The first 20 pairs warm up connections and caches.
        if i >= 20 {
            plain.push(a);
            audited.push(b);
        }
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = |v: &[Duration]| v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        ms(v[v.len() / 2])
    };
    let (mean_a, mean_b) = (mean(&plain), mean(&audited));
    let (med_a, med_b) = (median(&mut plain), median(&mut audited));
    println!(
        "{runs} runs each ({}, model latency {} ms): without the hook {med_a:.3} ms/run median ({mean_a:.3} mean), with it {med_b:.3} ms/run median ({mean_b:.3} mean): +{:.3} ms ({:+.1} %) by medians, +{:.3} ms ({:+.1} %) by means; sink clean: {}",
        if memory {
            "memory sink"
        } else {
            "jsonl, fsync batch"
        },
        latency.as_millis(),
        med_b - med_a,
        (med_b / med_a - 1.0) * 100.0,
        mean_b - mean_a,
        (mean_b / mean_a - 1.0) * 100.0,
        report.is_clean()
    );
    Ok(())
}
