//! The record each rig event makes, and the spans it opens and ends.

use std::collections::HashMap;
use std::time::Instant;

use agent_audit_core::otel::{ChatOutcome, GenAiStep};
use agent_audit_core::{AckLevel, Auditor, EventType};
use rig_agent::agent::{DispatchAction, ModelTurnAction, OutcomeAction, RunId, RunStartAction};
use rig_core::effect::EffectId;
use serde_json::{Map, Value, json};

use crate::USER;
use crate::error::AuditError;
use crate::model_error::{bounded, kind_of, status_in};
use crate::state::{Chat, Inner, RunState, ToolStep, lock, millis};

impl Inner {
    pub(crate) async fn run_start(
        &self,
        run: RunId,
        agent: String,
        content: String,
    ) -> RunStartAction {
        let parent = self.open_run(run, &agent);
        let user = parent.with_agent(USER);
        let payload = json!({"content": content, "recipient": agent});
        match self
            .emit(&user, EventType::UserRequest, "user_request", &payload)
            .await
        {
            Ok(()) => RunStartAction::Continue,
            Err(reason) => RunStartAction::Stop(reason),
        }
    }

    /// Opens the run's span and state. A run's first event is normally
    /// `on_run_start`, but rig does not call it for a run resumed past its
    /// first model call: that run opens on its first dispatch, so its
    /// tools are audited like any other's.
    fn open_run(&self, run: RunId, agent: &str) -> Auditor {
        let step = self.auditor.invoke_agent(
            agent,
            self.names.provider.as_deref(),
            self.names.model.as_deref(),
        );
        let parent = step.auditor().clone();
        let mut runs = lock(&self.runs);
        if runs.is_empty() {
            // A hook reused for a new run: an audit failure of an earlier
            // run (already in that run's result) is not this run's.
            lock(&self.error).take();
        }
        runs.insert(
            run,
            RunState {
                run: step,
                agent: agent.to_string(),
                chat: None,
                tools: HashMap::new(),
                refused: Vec::new(),
            },
        );
        parent
    }

    /// The run's auditor and agent, opening the run when rig never
    /// started it for this hook.
    pub(crate) fn run_auditor(&self, run: RunId, agent: &str) -> (Auditor, String) {
        if let Some(found) = lock(&self.runs)
            .get(&run)
            .map(|s| (s.run.auditor().clone(), s.agent.clone()))
        {
            return found;
        }
        (self.open_run(run, agent), agent.to_string())
    }

    pub(crate) async fn model_call(
        &self,
        run: RunId,
        agent: &str,
        model: Option<String>,
        messages: Vec<Value>,
        tools: Vec<String>,
    ) -> DispatchAction {
        let (parent, agent) = self.run_auditor(run, agent);
        // A turn rig refused and asked the model again: its answer and
        // refusals go in before the new call.
        if let Err(reason) = self.refused_turn(run).await {
            return DispatchAction::stop(reason);
        }
        let model = model
            .or_else(|| self.names.model.clone())
            .unwrap_or_else(|| "unknown".into());
        let provider = self.names.provider.as_deref();
        let step = parent.with_agent(&agent).chat(provider, &model);
        let auditor = step.auditor().clone();
        let mut payload = Map::new();
        payload.insert("model".into(), json!(model));
        if let Some(p) = provider {
            payload.insert("provider".into(), json!(p));
        }
        payload.insert("messages".into(), Value::Array(messages));
        payload.insert("tools".into(), json!(tools));
        if let Some(state) = lock(&self.runs).get_mut(&run) {
            state.chat = Some(Chat {
                step,
                model,
                started: Instant::now(),
            });
        }
        let emitted = self
            .emit(
                &auditor,
                EventType::AssistantInput,
                "assistant_input",
                &payload,
            )
            .await;
        if let Some(Some(chat)) = lock(&self.runs).get_mut(&run).map(|s| s.chat.as_mut()) {
            // The model's latency starts once its input is recorded.
            chat.started = Instant::now();
        }
        match emitted {
            Ok(()) => DispatchAction::Proceed,
            Err(reason) => DispatchAction::stop(reason),
        }
    }

    pub(crate) async fn model_turn(&self, run: RunId, turn: TurnData) -> ModelTurnAction {
        let Some(chat) = lock(&self.runs).get_mut(&run).and_then(|s| s.chat.take()) else {
            return ModelTurnAction::Continue;
        };
        let Chat {
            mut step, started, ..
        } = chat;
        let latency_ms = millis(started.elapsed());
        let reasons: Vec<&str> = turn.finish_reason.as_deref().into_iter().collect();
        step.set_response(&ChatOutcome {
            model: turn.model.as_deref(),
            id: turn.response_id.as_deref(),
            finish_reasons: &reasons,
            input_tokens: turn.usage.map(|u| u.0),
            output_tokens: turn.usage.map(|u| u.1),
        });
        let usage = match turn.usage {
            Some((p, c, t)) => {
                json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": t})
            }
            None => Value::Null,
        };
        let output = ChatOutput {
            content: json!(turn.content),
            tool_calls: Value::Array(turn.tool_calls),
            model: json!(turn.model),
            response_id: json!(turn.response_id),
            finish_reason: json!(turn.finish_reason),
            usage,
            latency_ms,
        };
        if let Err(reason) = self.chat_output(step, output).await {
            return ModelTurnAction::Stop(reason);
        }
        let refused = lock(&self.runs)
            .get_mut(&run)
            .map(|s| std::mem::take(&mut s.refused))
            .unwrap_or_default();
        match self.record_refused(run, refused).await {
            Ok(()) => ModelTurnAction::Continue,
            Err(reason) => ModelTurnAction::Stop(reason),
        }
    }

    pub(crate) async fn tool_call(
        &self,
        run: RunId,
        agent: &str,
        effect: EffectId,
        tool: String,
        call_id: String,
        arguments: Value,
    ) -> DispatchAction {
        let (parent, agent) = self.run_auditor(run, agent);
        let mut step = parent.with_agent(&agent).execute_tool(&tool, &call_id);
        let auditor = step.auditor().clone();
        let payload = json!({"tool": tool, "call_id": call_id, "arguments": arguments});
        let waited = Instant::now();
        let receipt = auditor
            .emit_wait(EventType::ToolCall, &payload, AckLevel::Durable)
            .await;
        auditor
            .telemetry()
            .record_ack_wait(waited.elapsed().as_secs_f64(), AckLevel::Durable);
        match receipt {
            Ok(_) => {
                step.capture_content("gen_ai.tool.call.arguments", &arguments);
                if let Some(state) = lock(&self.runs).get_mut(&run) {
                    state.tools.insert(
                        effect,
                        ToolStep {
                            step,
                            tool,
                            call_id,
                            arguments,
                            started: Instant::now(),
                        },
                    );
                }
                DispatchAction::Proceed
            }
            Err(source) => {
                step.fail("audit_failed");
                step.end();
                // A cancel, not a skip: the run stops, the tool never runs.
                DispatchAction::stop(self.fail(AuditError::AuditBeforeAct {
                    tool,
                    call_id,
                    source,
                }))
            }
        }
    }

    pub(crate) async fn tool_outcome(
        &self,
        run: RunId,
        effect: EffectId,
        outcome: ToolOutcome,
    ) -> OutcomeAction {
        let Some(ToolStep {
            mut step,
            tool,
            call_id,
            arguments,
            started,
        }) = lock(&self.runs)
            .get_mut(&run)
            .and_then(|s| s.tools.remove(&effect))
        else {
            // No tool_call of ours (another hook denied it first).
            return OutcomeAction::Proceed;
        };
        let duration_ms = millis(started.elapsed());
        let auditor = step.auditor().clone();
        let emitted = match outcome {
            ToolOutcome::Result(result) => {
                step.capture_content("gen_ai.tool.call.result", &result);
                let payload = json!({"tool": tool, "call_id": call_id, "result": result, "duration_ms": duration_ms});
                self.emit(&auditor, EventType::ToolResult, "tool_result", &payload)
                    .await
            }
            ToolOutcome::Error { kind, error } => {
                step.fail(kind);
                let payload = json!({
                    "tool": tool, "call_id": call_id, "arguments": arguments,
                    "kind": kind, "error": error, "duration_ms": duration_ms,
                });
                self.emit(&auditor, EventType::ToolError, "tool_error", &payload)
                    .await
            }
        };
        step.end();
        match emitted {
            Ok(()) => OutcomeAction::Proceed,
            Err(reason) => OutcomeAction::stop(reason),
        }
    }

    pub(crate) async fn settled(&self, run: RunId, outcome: Settled) {
        if matches!(outcome, Settled::Error(_)) {
            // rig refused a call of the model's answer and failed the run
            // on it: the model did answer, so no model_error.
            let _ = self.refused_turn(run).await;
        }
        let Some(mut state) = lock(&self.runs).remove(&run) else {
            return;
        };
        let already_failed = lock(&self.error).is_some();
        match outcome {
            Settled::Answer(answer) => {
                let auditor = state.run.auditor().with_agent(&state.agent);
                // rig's run ends when the model answers without tool
                // calls: agent-audit's runtime calls that `terminated`.
                let payload =
                    json!({"answer": answer, "answered_by": state.agent, "end": "terminated"});
                let _ = self
                    .emit(&auditor, EventType::FinalResult, "final_result", &payload)
                    .await;
            }
            Settled::Error(message) => {
                state.run.fail("error");
                // A model call dispatched and never answered: the model
                // failed (rig tells a hook only through this text).
                if let (Some(mut chat), false) = (state.chat.take(), already_failed) {
                    let status = status_in(&message);
                    let kind = kind_of(status, &message);
                    chat.step.fail(kind);
                    let mut payload = Map::new();
                    payload.insert("kind".into(), json!(kind));
                    payload.insert("status".into(), json!(status));
                    payload.insert("message".into(), json!(bounded(&message)));
                    payload.insert("model".into(), json!(chat.model));
                    if let Some(p) = &self.names.provider {
                        payload.insert("provider".into(), json!(p));
                    }
                    payload.insert("latency_ms".into(), json!(millis(chat.started.elapsed())));
                    let auditor = chat.step.auditor().clone();
                    let _ = self
                        .emit(&auditor, EventType::ModelError, "model_error", &payload)
                        .await;
                    chat.step.end();
                }
            }
        }
        // Tools still open (the run was dropped or cancelled mid-tool)
        // keep their tool_call without a result: the review commands show
        // them unfinished.
        state.run.end();
    }
}

/// What one model turn answered, taken out of rig's event.
pub(crate) struct TurnData {
    pub(crate) content: Option<String>,
    pub(crate) tool_calls: Vec<Value>,
    pub(crate) model: Option<String>,
    pub(crate) response_id: Option<String>,
    pub(crate) finish_reason: Option<String>,
    /// (prompt, completion, total) tokens.
    pub(crate) usage: Option<(u64, u64, u64)>,
}

pub(crate) enum ToolOutcome {
    Result(Value),
    Error { kind: &'static str, error: String },
}

pub(crate) enum Settled {
    Answer(String),
    Error(String),
}

/// What a model turn's `assistant_output` says, however the turn ended.
pub(crate) struct ChatOutput {
    pub(crate) content: Value,
    pub(crate) tool_calls: Value,
    pub(crate) model: Value,
    pub(crate) response_id: Value,
    pub(crate) finish_reason: Value,
    pub(crate) usage: Value,
    pub(crate) latency_ms: f64,
}

impl Inner {
    /// Writes a chat step's `assistant_output` (keys in the order our
    /// runtime writes them) and ends the step, whether or not the record
    /// could be written.
    pub(crate) async fn chat_output(&self, step: GenAiStep, out: ChatOutput) -> Result<(), String> {
        let mut payload = Map::new();
        payload.insert("content".into(), out.content);
        payload.insert("tool_calls".into(), out.tool_calls);
        payload.insert("model".into(), out.model);
        if let Some(p) = &self.names.provider {
            payload.insert("provider".into(), json!(p));
        }
        payload.insert("response_id".into(), out.response_id);
        payload.insert("finish_reason".into(), out.finish_reason);
        payload.insert("usage".into(), out.usage);
        payload.insert("latency_ms".into(), json!(out.latency_ms));
        let auditor = step.auditor().clone();
        let emitted = self
            .emit(
                &auditor,
                EventType::AssistantOutput,
                "assistant_output",
                &payload,
            )
            .await;
        step.end();
        emitted
    }
}
