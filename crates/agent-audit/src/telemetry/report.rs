//! What telemetry could not export, said at shutdown.

use std::fmt;
use std::time::Duration;

/// What the exports of one signal did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SignalReport {
    /// `traces` or `metrics`.
    pub signal: &'static str,
    /// Where it was sent (secrets hidden) and the protocol.
    pub endpoint: String,
    /// Spans (or metric exports) the collector took.
    pub exported: u64,
    /// Spans (or metric exports) that could not be exported.
    pub failed: u64,
    /// Spans that ended but were neither exported nor reported failed:
    /// queued or in flight at the deadline (or dropped by the batch
    /// processor when its queue was full). Always 0 for metrics.
    pub not_exported: u64,
    /// The last export error.
    pub last_error: Option<String>,
    /// The final flush's error, when it failed.
    pub flush_error: Option<String>,
    /// The final flush did not finish within the deadline.
    pub timed_out: bool,
}

impl SignalReport {
    /// Nothing was lost.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.not_exported == 0 && self.flush_error.is_none() && !self.timed_out
    }

    fn unit(&self) -> &'static str {
        if self.signal == "traces" {
            "span(s)"
        } else {
            "metric export(s)"
        }
    }
}

/// What [`TelemetryHandle::shutdown`](super::TelemetryHandle::shutdown)
/// found: per signal, what was exported and what could not be.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TelemetryReport {
    /// The deadline the flush had.
    pub deadline: Duration,
    /// Spans, when exported.
    pub traces: Option<SignalReport>,
    /// Metrics, when exported.
    pub metrics: Option<SignalReport>,
}

impl TelemetryReport {
    /// Every span and metric export went through.
    pub fn is_clean(&self) -> bool {
        self.signals().all(SignalReport::is_clean)
    }

    /// The signals exported.
    pub fn signals(&self) -> impl Iterator<Item = &SignalReport> {
        self.traces.iter().chain(self.metrics.iter())
    }
}

impl fmt::Display for TelemetryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.signals() {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "telemetry {} to {}: ", s.signal, s.endpoint)?;
            if s.is_clean() {
                write!(f, "{} {} exported", s.exported, s.unit())?;
                continue;
            }
            write!(
                f,
                "{} {} could not be exported ({} exported)",
                s.failed,
                s.unit(),
                s.exported
            )?;
            if s.not_exported > 0 {
                write!(
                    f,
                    "; {} span(s) not exported (queued or in flight at the deadline)",
                    s.not_exported
                )?;
            }
            if let Some(e) = &s.last_error {
                write!(f, "; last error: {e}")?;
            }
            if let Some(e) = &s.flush_error {
                write!(f, "; final flush: {e}")?;
            }
            if s.timed_out {
                write!(
                    f,
                    "; the final flush did not finish within {} ms, what it still held was not exported",
                    self.deadline.as_millis()
                )?;
            }
        }
        Ok(())
    }
}
