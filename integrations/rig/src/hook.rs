//! The [`AuditHook`]: built from a request's auditor, attached to a rig
//! run, it hands each rig event to the record it makes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agent_audit_core::Auditor;
use rig_agent::agent::{
    AgentHook, DispatchAction, DispatchEvent, HookContext, InvalidToolCallAction,
    InvalidToolCallContext, ModelTurnAction, ModelTurnFinished, OutcomeAction, OutcomeEvent,
    RunSettled, RunStart, RunStartAction, SettledOutcome,
};
use rig_core::effect::{EffectId, EffectKind};
use serde_json::Value;

use crate::DEFAULT_AGENT;
use crate::convert::{
    arguments_value, assistant_text, call_records, tool_outcome, user_text, wire_messages,
};
use crate::error::{AuditError, RunError};
use crate::records::{Settled, TurnData};
use crate::refused::refused;
use crate::state::{Inner, Names, RunGuards, lock};

/// A rig [`AgentHook`] that audits every step of a run. Cheap to clone:
/// clones share the run state and the first audit error.
#[derive(Clone)]
pub struct AuditHook {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHook")
            .field("scope", self.inner.auditor.scope())
            .finish_non_exhaustive()
    }
}

impl AuditHook {
    /// A hook writing through `auditor`, the request's handle: its request
    /// id, correlation id, user, session and attributes are on every
    /// record.
    pub fn new(auditor: &Auditor) -> AuditHook {
        AuditHook {
            inner: Arc::new(Inner {
                auditor: auditor.clone(),
                names: Names::default(),
                runs: Mutex::new(HashMap::new()),
                error: Mutex::new(None),
            }),
        }
    }

    /// Names the provider (`openai`, ...) on records and spans.
    pub fn provider(self, provider: impl Into<String>) -> AuditHook {
        self.with_names(|n| n.provider = Some(provider.into()))
    }

    /// The model recorded as requested when rig's request names none (an
    /// agent's default model): rig does not tell a hook its name.
    pub fn model(self, model: impl Into<String>) -> AuditHook {
        self.with_names(|n| n.model = Some(model.into()))
    }

    fn with_names(self, f: impl FnOnce(&mut Names)) -> AuditHook {
        let mut names = self.inner.names.clone();
        f(&mut names);
        AuditHook {
            inner: Arc::new(Inner {
                auditor: self.inner.auditor.clone(),
                names,
                runs: Mutex::new(HashMap::new()),
                error: Mutex::new(None),
            }),
        }
    }

    /// The first record the hook could not write, taken out of the hook.
    pub fn take_error(&self) -> Option<AuditError> {
        lock(&self.inner.error).take()
    }

    /// A run's result with the audit failure typed: when the hook stopped
    /// the run (or could not record its end), [`RunError::Audit`] naming
    /// the sink and the cause, whatever rig made of it.
    pub fn check<T, E: std::error::Error + 'static>(
        &self,
        result: Result<T, E>,
    ) -> Result<T, RunError<E>> {
        if let Some(e) = self.take_error() {
            return Err(RunError::Audit(Box::new(e)));
        }
        result.map_err(RunError::Rig)
    }
}

impl AgentHook for AuditHook {
    fn name(&self) -> Option<String> {
        Some("agent-audit".into())
    }

    fn on_run_start(
        &self,
        ctx: &HookContext,
        event: RunStart<'_>,
    ) -> impl Future<Output = RunStartAction> + Send {
        let inner = self.inner.clone();
        let run = ctx.run_id();
        guard(ctx, &inner);
        let agent = ctx.agent_name().unwrap_or(DEFAULT_AGENT).to_string();
        let content = user_text(event.prompt);
        async move { inner.run_start(run, agent, content).await }
    }

    fn on_dispatch(
        &self,
        ctx: &HookContext,
        event: DispatchEvent<'_>,
    ) -> impl Future<Output = DispatchAction> + Send {
        enum Step {
            Model(Option<String>, Vec<Value>, Vec<String>),
            Tool(EffectId, String, String, Value),
            Other,
        }
        let step = match event.kind {
            EffectKind::Completion { request, .. } => Step::Model(
                request.model.clone(),
                wire_messages(&request.chat_history),
                request.tools.iter().map(|t| t.name.to_string()).collect(),
            ),
            EffectKind::ToolCall { name, args } => Step::Tool(
                event.id,
                name.clone(),
                event.call_id.map(ToString::to_string).unwrap_or_default(),
                arguments_value(args),
            ),
            _ => Step::Other,
        };
        let inner = self.inner.clone();
        let run = ctx.run_id();
        // A resumed run opens here (rig skips its on_run_start).
        guard(ctx, &inner);
        let agent = ctx.agent_name().unwrap_or(DEFAULT_AGENT).to_string();
        async move {
            match step {
                Step::Model(model, messages, tools) => {
                    inner.model_call(run, &agent, model, messages, tools).await
                }
                Step::Tool(effect, tool, call_id, args) => {
                    inner
                        .tool_call(run, &agent, effect, tool, call_id, args)
                        .await
                }
                Step::Other => DispatchAction::Proceed,
            }
        }
    }

    fn on_model_turn_finished(
        &self,
        ctx: &HookContext,
        event: ModelTurnFinished<'_>,
    ) -> impl Future<Output = ModelTurnAction> + Send {
        let raw = event.raw;
        let usage = event.usage;
        let turn = TurnData {
            content: assistant_text(event.content),
            tool_calls: call_records(event.content),
            model: raw.get("model").and_then(Value::as_str).map(str::to_string),
            response_id: event
                .identity
                .response_id
                .clone()
                .or_else(|| raw.get("id").and_then(Value::as_str).map(str::to_string)),
            finish_reason: raw
                .pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| event.finish_reason.map(|r| format!("{r:?}").to_lowercase())),
            usage: (usage.input_tokens.is_some() || usage.output_tokens.is_some()).then(|| {
                let p = usage.input_tokens.unwrap_or(0);
                let c = usage.output_tokens.unwrap_or(0);
                (p, c, usage.total_tokens.unwrap_or(p + c))
            }),
        };
        let inner = self.inner.clone();
        let run = ctx.run_id();
        async move { inner.model_turn(run, turn).await }
    }

    fn on_outcome(
        &self,
        ctx: &HookContext,
        event: OutcomeEvent<'_>,
    ) -> impl Future<Output = OutcomeAction> + Send {
        // Matched by rig's effect id, the same in `on_dispatch`: the
        // model's call ids may repeat or be missing.
        let tool = match event.kind {
            EffectKind::ToolCall { .. } => Some((event.id, tool_outcome(event.outcome))),
            _ => None,
        };
        let inner = self.inner.clone();
        let run = ctx.run_id();
        async move {
            match tool {
                Some((effect, outcome)) => inner.tool_outcome(run, effect, outcome).await,
                None => OutcomeAction::Proceed,
            }
        }
    }

    fn on_invalid_tool_call(
        &self,
        ctx: &HookContext,
        event: &InvalidToolCallContext,
    ) -> impl Future<Output = Option<InvalidToolCallAction>> + Send {
        let refusal = refused(event);
        let inner = self.inner.clone();
        let run = ctx.run_id();
        let agent = ctx.agent_name().unwrap_or(DEFAULT_AGENT).to_string();
        async move {
            inner.refusal(run, &agent, refusal).await;
            // No opinion: rig's own policy (or another hook) decides.
            None
        }
    }

    fn on_run_settled(
        &self,
        ctx: &HookContext,
        event: RunSettled<'_>,
    ) -> impl Future<Output = ()> + Send {
        let outcome = match event.outcome {
            SettledOutcome::Response(r) => Settled::Answer(r.output()),
            SettledOutcome::Error(e) => Settled::Error(e.to_string()),
        };
        let inner = self.inner.clone();
        let run = ctx.run_id();
        async move { inner.settled(run, outcome).await }
    }
}

/// Ties the hook's state of the run to rig's context of the run.
fn guard(ctx: &HookContext, inner: &Arc<Inner>) {
    let run = ctx.run_id();
    ctx.scratchpad()
        .update::<RunGuards, _>(|guards| guards.add(inner, run));
}
