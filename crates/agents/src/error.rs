//! Why a conversation stops, and the audit helpers every agent step goes
//! through: a record that cannot be delivered stops the conversation with
//! [`AgentError::Audit`] rather than letting it act unaudited.

use agent_audit_core::{Auditor, EmitError, EventType};
use serde::Serialize;

use crate::input::InputError;
use crate::model::ModelError;

/// Why a conversation stopped with an error. The records written up to that
/// point stay; the error says which agent and step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The model call failed (after retries); a `model_error` record was written.
    #[error("agent `{agent}`: the model call failed: {source}")]
    Model {
        /// The agent whose model failed.
        agent: String,
        /// The cause.
        #[source]
        source: ModelError,
    },
    /// A record could not be delivered to a required sink; the runtime stops
    /// rather than act unaudited.
    #[error("agent `{agent}`: could not audit `{event}`{context}; stopping: {source}")]
    Audit {
        /// The emitting agent.
        agent: String,
        /// The record's event type.
        event: String,
        /// What else was going on (for example the model error being recorded).
        context: String,
        /// The cause.
        #[source]
        source: EmitError,
    },
    /// Audit before act: the `tool_call` record did not become durable on
    /// every required sink, so the tool was not run.
    #[error(
        "agent `{agent}`: tool `{tool}` (call {call_id}) was not run because its tool_call record did not become durable: {source}"
    )]
    AuditBeforeAct {
        /// The agent that would have run it.
        agent: String,
        /// The tool.
        tool: String,
        /// The model's call id.
        call_id: String,
        /// The cause.
        #[source]
        source: EmitError,
    },
    /// Reading human input failed.
    #[error("agent `{agent}`: {source}")]
    Input {
        /// The user proxy.
        agent: String,
        /// The cause.
        #[source]
        source: InputError,
    },
}

impl AgentError {
    /// A low-cardinality name of the failure, as spans carry it in
    /// `error.type`: the model error's kind (`timeout`, `rate_limited`,
    /// ...), `audit`, `audit_before_act` or `input`.
    pub fn error_type(&self) -> &'static str {
        match self {
            AgentError::Model { source, .. } => source.kind().as_str(),
            AgentError::Audit { .. } => "audit",
            AgentError::AuditBeforeAct { .. } => "audit_before_act",
            AgentError::Input { .. } => "input",
        }
    }
}

pub(crate) fn audit_err(turn: &Auditor, event: EventType, source: EmitError) -> AgentError {
    AgentError::Audit {
        agent: agent_of(turn),
        event: event.as_str().to_string(),
        context: String::new(),
        source,
    }
}

pub(crate) fn agent_of(turn: &Auditor) -> String {
    turn.scope().agent.as_deref().unwrap_or("").to_string()
}

pub(crate) async fn emit<P: Serialize>(
    turn: &Auditor,
    event: EventType,
    payload: &P,
) -> Result<(), AgentError> {
    match turn.emit(event.clone(), payload).await {
        Ok(_) => Ok(()),
        Err(e) => Err(audit_err(turn, event, e)),
    }
}
