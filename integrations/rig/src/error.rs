//! The audit failures the hook reports: a record it could not write, and
//! a run's result with that failure typed.

use agent_audit_core::EmitError;

/// A record the hook could not write, and what it was about.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The `tool_call` record did not become durable: the tool did not run.
    #[error("audit before act: tool `{tool}` (call {call_id}) not run: {source}")]
    AuditBeforeAct {
        /// The tool.
        tool: String,
        /// The model's call id.
        call_id: String,
        /// Which sink failed and why.
        #[source]
        source: EmitError,
    },
    /// Another record could not be written; the run was stopped there.
    #[error("audit: could not record {event}: {source}")]
    Record {
        /// The record's event type.
        event: &'static str,
        /// Which sink failed and why.
        #[source]
        source: EmitError,
    },
}

/// What [`AuditHook::check`](crate::AuditHook::check) returns when a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    /// The hook stopped the run because a record could not be written.
    #[error(transparent)]
    Audit(Box<AuditError>),
    /// rig's own error (the model failed, the turn budget ran out, ...).
    #[error(transparent)]
    Rig(E),
}
