//! The hook's shared state: its options, the open spans of each run, the
//! first audit error, and the one way a record is written.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use agent_audit_core::otel::GenAiStep;
use agent_audit_core::{Auditor, EventType};
use rig_agent::agent::RunId;
use serde::Serialize;
use serde_json::Value;

use crate::error::AuditError;

/// Options of the hook.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    /// The provider name recorded (`gen_ai.provider.name`).
    pub(crate) provider: Option<String>,
    /// The model recorded as requested when the request names none.
    pub(crate) model: Option<String>,
}

/// What every clone of a hook shares.
pub(crate) struct Inner {
    pub(crate) auditor: Auditor,
    pub(crate) names: Names,
    pub(crate) runs: Mutex<HashMap<RunId, RunState>>,
    pub(crate) error: Mutex<Option<AuditError>>,
}

/// The open spans of one run.
pub(crate) struct RunState {
    pub(crate) run: GenAiStep,
    pub(crate) agent: String,
    pub(crate) chat: Option<Chat>,
    pub(crate) tools: HashMap<String, ToolStep>,
}

/// The `chat` span of the model call in flight.
pub(crate) struct Chat {
    pub(crate) step: GenAiStep,
    pub(crate) model: String,
    pub(crate) started: Instant,
}

/// The `execute_tool` span of a tool call waiting for its outcome.
pub(crate) struct ToolStep {
    pub(crate) step: GenAiStep,
    pub(crate) tool: String,
    pub(crate) arguments: Value,
    pub(crate) started: Instant,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds with microsecond precision, as agent-audit's runtime writes them.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

impl Inner {
    pub(crate) fn fail(&self, error: AuditError) -> String {
        let text = error.to_string();
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(error);
        }
        text
    }

    pub(crate) fn run_auditor(&self, run: RunId) -> Option<(Auditor, String)> {
        lock(&self.runs)
            .get(&run)
            .map(|s| (s.run.auditor().clone(), s.agent.clone()))
    }

    pub(crate) async fn emit<P: Serialize + ?Sized>(
        &self,
        auditor: &Auditor,
        event: EventType,
        name: &'static str,
        payload: &P,
    ) -> Result<(), String> {
        match auditor.emit(event, payload).await {
            Ok(_) => Ok(()),
            Err(source) => Err(self.fail(AuditError::Record {
                event: name,
                source,
            })),
        }
    }
}
