//! `agent-audit run`: the tutorial's audited agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent_audit::Auditor;
use agent_audit::agents;
use agent_audit::config::Config;

use crate::error::CliError;

/// Arguments of `run`.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (else $AGENT_AUDIT_CONFIG, else the default:
    /// audit-log.jsonl plus stdout).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Request id to record (default: a new random one).
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// How long shutdown may take to drain the sinks, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    drain_secs: u64,
    /// What the user asks.
    prompt: String,
}

/// Runs the agent, prints its answer, and drains the sinks.
pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    let config = Config::discover(args.config.as_deref())?;
    let model = config.model()?;
    if model.is_offline() {
        eprintln!(
            "agent-audit: no [model] configured; using the deterministic offline model (answers are canned, records say model = \"offline\")"
        );
    }
    let dispatcher = config.start().await?;
    let auditor = Auditor::new(dispatcher.clone()).for_request(args.request_id.as_deref());
    let outcome = agents::tutorial::run(&auditor, model, &args.prompt).await;
    let report = dispatcher
        .shutdown(Duration::from_secs(args.drain_secs))
        .await;
    if !report.is_clean() {
        eprint!("agent-audit: delivery report:\n{report}");
    }
    let answer = outcome.map_err(|e| CliError::Runtime(format!("the agent stopped: {e}")))?;
    outln!("{answer}");
    let failed_required: Vec<_> = report
        .sinks
        .iter()
        .filter(|s| {
            s.health.required && (s.health.failed > 0 || s.undelivered > 0 || s.health.dropped > 0)
        })
        .map(|s| s.health.name.clone())
        .collect();
    if !failed_required.is_empty() {
        return Err(CliError::Runtime(format!(
            "required sink(s) {} did not deliver every record",
            failed_required.join(", ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}
