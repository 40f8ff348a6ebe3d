//! `[telemetry]` for `run`: the SDK started before the agent's first span,
//! and at the end what it could not export said on stderr. Telemetry is
//! not the trail: it never fails the run.

use std::time::Duration;

use agent_audit::config::Config;
use agent_audit::telemetry::{TelemetryHandle, sdk_disabled};
use agent_audit::text::sanitize_text;
use agent_audit::{Auditor, Dispatcher};

use crate::error::CliError;

/// Starts telemetry when configured (saying so when `OTEL_SDK_DISABLED`
/// turns it off).
pub async fn start(config: &Config) -> Result<Option<TelemetryHandle>, CliError> {
    if config.telemetry.is_some() && sdk_disabled() {
        errln!(
            "agent-audit: OTEL_SDK_DISABLED=true: [telemetry] is off, no traces or metrics are exported (the audit sinks are not affected)"
        );
    }
    Ok(config.start_telemetry().await?)
}

/// The auditor whose steps report to `telemetry`, which also reports the
/// dispatcher's health.
pub fn attach(
    telemetry: &mut Option<TelemetryHandle>,
    dispatcher: &Dispatcher,
    auditor: Auditor,
) -> Auditor {
    match telemetry {
        Some(t) => {
            t.observe_health(dispatcher);
            auditor.with_telemetry(t.telemetry())
        }
        None => auditor,
    }
}

/// Flushes within `deadline` and says on stderr what could not be
/// exported.
pub async fn finish(telemetry: Option<TelemetryHandle>, deadline: Duration) {
    let Some(t) = telemetry else {
        return;
    };
    let report = t.shutdown(deadline).await;
    if !report.is_clean() {
        errln!(
            "agent-audit: telemetry could not export everything (the audit records are not affected):\n{}",
            sanitize_text(&report.to_string())
        );
    }
}
