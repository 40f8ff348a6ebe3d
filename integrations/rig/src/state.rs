//! The hook's shared state: its options, the open spans of each run, the
//! first audit error, and the one way a record is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use agent_audit_core::otel::GenAiStep;
use agent_audit_core::{Auditor, EventType};
use rig_agent::agent::RunId;
use rig_core::effect::EffectId;
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
    /// Keyed by rig's effect id, unique per dispatch: the model's call ids
    /// are not (a server may repeat one, or send none).
    pub(crate) tools: HashMap<EffectId, ToolStep>,
    /// Calls rig refused before the model turn settled (unknown tool,
    /// arguments not an object): recorded after the turn's output.
    pub(crate) refused: Vec<Refused>,
}

/// A tool call rig would not dispatch, and why.
pub(crate) struct Refused {
    pub(crate) tool: String,
    pub(crate) call_id: String,
    pub(crate) arguments: Value,
    pub(crate) kind: &'static str,
    pub(crate) error: String,
    /// The model's answer holding the call (rig hands a hook no
    /// `on_model_turn_finished` when the refusal fails the run).
    pub(crate) answer: Option<Value>,
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
    pub(crate) call_id: String,
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

/// The hooks' guards of one run, kept in rig's per-run scratchpad: rig
/// drops the scratchpad with the run, so a run dropped before it settled
/// (a caller's timeout) does not leave its state in a hook that outlives
/// it (one added with `AgentBuilder::add_hook` serves every run).
#[derive(Clone, Default)]
pub(crate) struct RunGuards(Vec<Arc<RunGuard>>);

pub(crate) struct RunGuard {
    inner: Weak<Inner>,
    run: RunId,
}

impl RunGuards {
    /// Guards `run` for the hook `inner`, once.
    pub(crate) fn add(&mut self, inner: &Arc<Inner>, run: RunId) {
        let weak = Arc::downgrade(inner);
        if !self.0.iter().any(|g| g.inner.ptr_eq(&weak)) {
            self.0.push(Arc::new(RunGuard { inner: weak, run }));
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            // Open tool calls keep their tool_call without a result (the
            // review commands show them unfinished); nothing is written.
            lock(&inner.runs).remove(&self.run);
        }
    }
}
