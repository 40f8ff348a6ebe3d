//! The tutorial's app, end to end: a user proxy and an assistant with the
//! tool `get_account_balance`, audited to `audit-log.jsonl` and stdout (or
//! whatever `AGENT_AUDIT_CONFIG` names).
//!
//! ```sh
//! cargo run -p agent-audit-examples --example account_balance -- "What is the balance of account 12345?"
//! ```

use std::time::Duration;

use agent_audit::Auditor;
use agent_audit::agents::tutorial;
use agent_audit::config::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the balance of account 12345?".to_string());
    let config = Config::discover(None)?;
    let model = config.model()?;
    let dispatcher = config.start().await?;
    let auditor = Auditor::new(dispatcher.clone()).for_request(None);
    let answer = tutorial::run(&auditor, model, &prompt).await;
    // Drain before reporting, so the trail is complete even when the agent failed.
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    println!("{}", answer?);
    if !report.is_clean() {
        eprint!("{report}");
    }
    Ok(())
}
