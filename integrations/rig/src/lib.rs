//! agent-audit for agents built with [rig](https://docs.rs/rig-agent): an
//! [`AuditHook`] that writes the trail agent-audit's own runtime writes,
//! with audit before act.
//!
//! ```no_run
//! # use agent_audit_core::{Auditor, Dispatcher};
//! # use agent_audit_rig::AuditHook;
//! # async fn demo(dispatcher: Dispatcher, agent: rig_agent::agent::Agent) -> Result<(), Box<dyn std::error::Error>> {
//! let audit = AuditHook::new(&Auditor::new(dispatcher.clone()).for_request(Some("req-1")));
//! let answer = agent.prompt("What is my balance?").add_hook(audit.clone()).await;
//! let answer = audit.check(answer)?; // the audit failure, typed, when there was one
//! # Ok(()) }
//! ```
//!
//! Per run the hook writes, in this order:
//!
//! | rig event | record | span |
//! |---|---|---|
//! | `on_run_start` | `user_request` (`content`, `recipient`) | `invoke_agent {agent}` |
//! | `on_dispatch` of a completion | `assistant_input` (`model`, `messages`, `tools`) | `chat {model}`, child of the run |
//! | `on_model_turn_finished` | `assistant_output` (`content`, `tool_calls`, `model` as reported, `response_id`, `finish_reason`, `usage`, `latency_ms`) | the same `chat` span |
//! | `on_dispatch` of a tool | `tool_call` (`tool`, `call_id`, `arguments`), **waited on to Durable** | `execute_tool {tool}`, child of the run |
//! | `on_outcome` of a tool | `tool_result` or `tool_error`, matched to its `tool_call` by rig's effect id (the model's call ids may repeat) | the same `execute_tool` span |
//! | `on_invalid_tool_call` (a call rig will not dispatch) | `tool_call` and `tool_error` (`unknown_tool`, `disallowed`, `invalid_arguments`), after the turn's `assistant_output` | `execute_tool {tool}`, child of the run |
//! | `on_run_settled` | `final_result` (`answer`, `end`), or `model_error` when a model call failed | the run's span |
//!
//! The spans are the GenAI step helpers of `agent_audit_core::otel`, the
//! ones agent-audit's runtime opens: with an OpenTelemetry provider
//! installed a rig run exports the same spans; without one the records
//! still carry the span tree, so `timeline` and `report` draw it.
//!
//! **Audit before act**: when the `tool_call` record cannot be made
//! durable on every required sink, the hook cancels the run
//! (`DispatchAction::stop`, never a skip the model could talk around): the
//! tool never runs and the run fails with `PromptError::Cancelled` whose
//! reason names the sink and the cause. [`AuditHook::check`] turns that
//! into the typed [`AuditError`]. Any other record that cannot be written
//! stops the run the same way.
//!
//! A run rig resumes past its first model call (`Agent::resume`) gets no
//! `on_run_start`: the hook opens it on its first dispatch, so its pending
//! tools are audited before they run all the same.
//!
//! One hook is one request: build it from the request's [`Auditor`](agent_audit_core::Auditor)
//! (`for_request`, and `with_user`, `with_session`, `with_attribute`,
//! `with_correlation_id` as you scope your requests) and attach it to the
//! run (`AgentRunner::add_hook`).

mod convert;
mod error;
mod hook;
mod model_error;
mod records;
mod refused;
mod state;

pub use error::{AuditError, RunError};
pub use hook::AuditHook;

/// The agent name on `user_request` records.
pub const USER: &str = "user";
/// The agent name of a rig agent built without `.name(..)`.
pub const DEFAULT_AGENT: &str = "assistant";
