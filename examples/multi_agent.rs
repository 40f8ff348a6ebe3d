//! A triage agent hands the customer over to a specialist. Every agent's
//! records share one correlation id; each turn is its own span whose parent
//! is the turn that caused it, so the conversation tree can be rebuilt.
//!
//! ```sh
//! cargo run -p agent-audit-examples --example multi_agent
//! ```

use std::time::Duration;

use agent_audit::Auditor;
use agent_audit::agents::multi;
use agent_audit::config::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::discover(None)?;
    let model = config.model()?;
    let dispatcher = config.start().await?;
    let auditor = Auditor::new(dispatcher.clone())
        .with_correlation_id("conversation-7")
        .for_request(None);
    let result = multi::run(&auditor, model, "What is the balance of account 12345?").await;
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    println!("{}", result?.answer);
    if !report.is_clean() {
        eprint!("{report}");
    }
    Ok(())
}
