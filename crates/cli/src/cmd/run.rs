//! `agent-audit run`: the tutorial's audited agent.
//!
//! What the model says is untrusted text. On a terminal the answer goes
//! through the review commands' rule (`agent_audit::text::sanitize_text`:
//! control characters and bidi formatting escaped as `\u{..}`, newlines and
//! tabs kept), so an answer cannot clear the screen, set the window title
//! or write the clipboard. When stdout is not a terminal the answer is
//! data and is written exactly as the model gave it (the trail holds the
//! same text); whoever prints it to a terminal later must escape it, as
//! `agent-audit show` does. Errors and the delivery report on stderr are
//! for people, so they are always escaped.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent_audit::Auditor;
use agent_audit::agents;
use agent_audit::config::Config;
use agent_audit::text::sanitize_text;

use crate::error::CliError;

mod notice;
mod telemetry;

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
    #[command(flatten)]
    who: WhoArgs,
    /// How long shutdown may take to drain the sinks, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    drain_secs: u64,
    /// What the user asks.
    prompt: String,
}

/// `--user-id`, `--session-id` and `--attr`, of `run` and `bench`.
#[derive(clap::Args)]
pub(super) struct WhoArgs {
    /// The end user the request is for, recorded as `user_id` on every
    /// record (after redaction: a `hash` rule makes it a pseudonym); up to
    /// 1024 bytes.
    #[arg(long, value_name = "ID")]
    pub(super) user_id: Option<String>,
    /// The user's session, recorded as `session_id` on every record; up to
    /// 1024 bytes.
    #[arg(long, value_name = "ID")]
    pub(super) session_id: Option<String>,
    /// An attribute recorded on every record (`--attr purpose=support`),
    /// beside the configuration's `[attributes]`; repeatable. Values are
    /// strings; at most 32 attributes, keys up to 128 bytes, values up to
    /// 1024 bytes.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub(super) attr: Vec<String>,
}

/// Runs the agent, prints its answer, and drains the sinks.
pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    // Bad flags are refused before anything starts or is written.
    let who = Who::parse(&args.who)?;
    let config = Config::discover(args.config.as_deref())?;
    // With the configuration's own, so that the count is checked too.
    let mut all = config.attributes.clone();
    for (k, v) in &who.attrs {
        all = all
            .with(k, *v)
            .map_err(|e| CliError::Usage(format!("--attr: {e}")))?;
    }
    let model = config.model()?;
    if model.is_offline() {
        errln!(
            "agent-audit: no [model] configured; using the deterministic offline model (answers are canned, records say model = \"offline\")"
        );
    }
    if !config.sinks.iter().any(|s| s.required) {
        errln!(
            "agent-audit: no sink is required: a sink that fails will not stop the agent (the run still fails, and withholds the answer, if no sink holds every record)"
        );
    }
    // Before the first span, so the agent's spans reach its providers.
    let mut otel = telemetry::start(&config).await?;
    let dispatcher = config.start().await?;
    // A sink stuck retrying says so on stderr while it happens.
    let watcher = notice::Watcher::start(dispatcher.clone());
    // The attributes were checked with the configuration's above, so this
    // does not fail; an error would still stop the run before the agent acts.
    let auditor = match who.scope(Auditor::new(dispatcher.clone())) {
        Ok(a) => a,
        Err(e) => {
            dispatcher
                .shutdown(Duration::from_secs(args.drain_secs))
                .await;
            watcher.stop().await;
            return Err(e);
        }
    };
    let auditor = auditor.for_request(args.request_id.as_deref());
    let auditor = telemetry::attach(&mut otel, &dispatcher, auditor);
    let outcome = agents::tutorial::run(&auditor, model, &args.prompt).await;
    let report = dispatcher
        .shutdown(Duration::from_secs(args.drain_secs))
        .await;
    watcher.stop().await;
    telemetry::finish(otel, Duration::from_secs(args.drain_secs)).await;
    if !report.is_clean() {
        // Sink errors quote what collectors and file systems said.
        err!(
            "agent-audit: delivery report:\n{}",
            sanitize_text(&report.to_string())
        );
    }
    // The answer is shown only once the trail holds it: a required sink
    // that lost a record, or no sink holding every record, fails the run
    // before the user sees an answer whose record may not exist.
    let lost = |s: &&agent_audit::SinkReport| {
        s.health.failed > 0 || s.undelivered > 0 || s.health.dropped > 0
    };
    let failed_required: Vec<_> = report
        .sinks
        .iter()
        .filter(|s| s.health.required && lost(s))
        .map(|s| s.health.name.clone())
        .collect();
    if !failed_required.is_empty() {
        return Err(CliError::Runtime(format!(
            "required sink(s) {} did not deliver every record; the answer is withheld",
            failed_required.join(", ")
        )));
    }
    if report.sinks.iter().all(|s| lost(&s)) {
        return Err(CliError::Runtime(
            "no sink holds every record of this run (see the delivery report); the answer is withheld"
                .into(),
        ));
    }
    // The error quotes the model server's message.
    let answer = outcome
        .map_err(|e| CliError::Runtime(sanitize_text(&format!("the agent stopped: {e}"))))?;
    if std::io::stdout().is_terminal() {
        outln!("{}", sanitize_text(&answer));
    } else {
        outln!("{answer}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Who the records are for, from the `--user-id`, `--session-id` and
/// `--attr` flags of `run` and `bench`.
pub(super) struct Who<'a> {
    user_id: Option<&'a str>,
    session_id: Option<&'a str>,
    /// The `--attr` pairs, in order.
    pub(super) attrs: Vec<(&'a str, &'a str)>,
}

impl<'a> Who<'a> {
    /// The flags, the attributes parsed and the ids checked; a usage error
    /// naming the flag.
    pub(super) fn parse(flags: &'a WhoArgs) -> Result<Who<'a>, CliError> {
        let WhoArgs {
            user_id,
            session_id,
            attr,
        } = flags;
        let mut attrs = Vec::with_capacity(attr.len());
        for a in attr {
            attrs.push(super::show::parse_attr(a)?);
        }
        for (flag, field, id) in [
            ("--user-id", "user_id", user_id),
            ("--session-id", "session_id", session_id),
        ] {
            if let Some(id) = id {
                agent_audit::check_id(field, id)
                    .map_err(|e| CliError::Usage(format!("{flag}: {e}")))?;
            }
        }
        Ok(Who {
            user_id: user_id.as_deref(),
            session_id: session_id.as_deref(),
            attrs,
        })
    }

    /// `auditor` for this user and session, with these attributes; an
    /// attribute refused is a usage error of `--attr`.
    pub(super) fn scope(&self, mut auditor: Auditor) -> Result<Auditor, CliError> {
        if let Some(user) = self.user_id {
            auditor = auditor.with_user(user);
        }
        if let Some(session) = self.session_id {
            auditor = auditor.with_session(session);
        }
        for (k, v) in &self.attrs {
            auditor = auditor
                .with_attribute(k, *v)
                .map_err(|e| CliError::Usage(format!("--attr: {e}")))?;
        }
        Ok(auditor)
    }
}
