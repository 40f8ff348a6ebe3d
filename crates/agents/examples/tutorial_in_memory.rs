//! The tutorial's app end to end: a user proxy and a bank assistant with
//! `get_account_balance`, every step audited; the records are printed as
//! the JSON lines a JSONL sink would write.
//!
//! ```text
//! cargo run -p agent-audit-agents --example tutorial_in_memory -- "What is the balance of account 12345?"
//! ```
//!
//! The offline model is used unless `MODEL_BASE_URL` and `MODEL_NAME` are
//! set (the key, if any, is read from `OPENAI_API_KEY`).

use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::{ModelConfig, Provider, build_model, tutorial};
use agent_audit_core::{Auditor, Dispatcher, MemorySink, SinkOptions};

fn model_config() -> ModelConfig {
    match (std::env::var("MODEL_BASE_URL"), std::env::var("MODEL_NAME")) {
        (Ok(base_url), Ok(model)) => ModelConfig {
            provider: Provider::Openai,
            base_url: Some(base_url),
            model: Some(model),
            ..Default::default()
        },
        _ => ModelConfig::default(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the balance of account 12345?".into());
    let model = build_model(&model_config())?;
    eprintln!("model: {}", model.describe());

    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .start()
        .await?;
    let auditor = Auditor::new(dispatcher.clone()).for_request(None);
    let outcome = tutorial::run(&auditor, Arc::clone(&model), &prompt).await;
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;

    let mut line = Vec::new();
    for record in sink.records() {
        line.clear();
        record.encode_line("-", &mut line);
        println!("{}", String::from_utf8_lossy(&line));
    }
    if !report.is_clean() {
        eprint!("audit delivery problems:\n{report}");
    }
    println!("answer: {}", outcome?);
    Ok(())
}
