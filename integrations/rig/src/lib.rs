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
//! | `on_outcome` of a tool | `tool_result` or `tool_error`, matched by call id | the same `execute_tool` span |
//! | `on_run_settled` | `final_result` (`answer`), or `model_error` when a model call failed | the run's span |
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
//! One hook is one request: build it from the request's [`Auditor`]
//! (`for_request`, and `with_user`, `with_session`, `with_attribute`,
//! `with_correlation_id` as you scope your requests) and attach it to the
//! run (`AgentRunner::add_hook`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use agent_audit_core::otel::{ChatOutcome, GenAiStep};
use agent_audit_core::{AckLevel, Auditor, EmitError, EventType};
use rig_agent::agent::{
    AgentHook, DispatchAction, DispatchEvent, HookContext, ModelTurnAction, ModelTurnFinished,
    OutcomeAction, OutcomeEvent, RunId, RunSettled, RunStart, RunStartAction, SettledOutcome,
};
use rig_core::effect::{EffectKind, Outcome};
use rig_core::message::{AssistantContent, Message, ToolResultContent, UserContent};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The agent name on `user_request` records.
pub const USER: &str = "user";
/// The agent name of a rig agent built without `.name(..)`.
pub const DEFAULT_AGENT: &str = "assistant";

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

/// What [`AuditHook::check`] returns when a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    /// The hook stopped the run because a record could not be written.
    #[error(transparent)]
    Audit(Box<AuditError>),
    /// rig's own error (the model failed, the turn budget ran out, ...).
    #[error(transparent)]
    Rig(E),
}

/// Options of the hook.
#[derive(Debug, Clone, Default)]
struct Names {
    /// The provider name recorded (`gen_ai.provider.name`).
    provider: Option<String>,
    /// The model recorded as requested when the request names none.
    model: Option<String>,
}

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

struct Inner {
    auditor: Auditor,
    names: Names,
    runs: Mutex<HashMap<RunId, RunState>>,
    error: Mutex<Option<AuditError>>,
}

/// The open spans of one run.
struct RunState {
    run: GenAiStep,
    agent: String,
    chat: Option<Chat>,
    tools: HashMap<String, ToolStep>,
}

struct Chat {
    step: GenAiStep,
    model: String,
    started: Instant,
}

struct ToolStep {
    step: GenAiStep,
    tool: String,
    arguments: Value,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds with microsecond precision, as agent-audit's runtime writes them.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
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

impl Inner {
    fn fail(&self, error: AuditError) -> String {
        let text = error.to_string();
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(error);
        }
        text
    }

    fn run_auditor(&self, run: RunId) -> Option<(Auditor, String)> {
        lock(&self.runs)
            .get(&run)
            .map(|s| (s.run.auditor().clone(), s.agent.clone()))
    }

    async fn emit<P: Serialize + ?Sized>(
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

    async fn run_start(&self, run: RunId, agent: String, content: String) -> RunStartAction {
        let step = self.auditor.invoke_agent(
            &agent,
            self.names.provider.as_deref(),
            self.names.model.as_deref(),
        );
        let user = step.auditor().with_agent(USER);
        lock(&self.runs).insert(
            run,
            RunState {
                run: step,
                agent: agent.clone(),
                chat: None,
                tools: HashMap::new(),
            },
        );
        let payload = json!({"content": content, "recipient": agent});
        match self
            .emit(&user, EventType::UserRequest, "user_request", &payload)
            .await
        {
            Ok(()) => RunStartAction::Continue,
            Err(reason) => RunStartAction::Stop(reason),
        }
    }

    async fn model_call(
        &self,
        run: RunId,
        model: Option<String>,
        messages: Vec<Value>,
        tools: Vec<String>,
    ) -> DispatchAction {
        let Some((parent, agent)) = self.run_auditor(run) else {
            return DispatchAction::Proceed;
        };
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

    async fn model_turn(&self, run: RunId, turn: TurnData) -> ModelTurnAction {
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
        let mut payload = Map::new();
        payload.insert("content".into(), json!(turn.content));
        payload.insert("tool_calls".into(), Value::Array(turn.tool_calls));
        payload.insert("model".into(), json!(turn.model));
        if let Some(p) = &self.names.provider {
            payload.insert("provider".into(), json!(p));
        }
        payload.insert("response_id".into(), json!(turn.response_id));
        payload.insert("finish_reason".into(), json!(turn.finish_reason));
        payload.insert(
            "usage".into(),
            match turn.usage {
                Some((p, c, t)) => {
                    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": t})
                }
                None => Value::Null,
            },
        );
        payload.insert("latency_ms".into(), json!(latency_ms));
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
        match emitted {
            Ok(()) => ModelTurnAction::Continue,
            Err(reason) => ModelTurnAction::Stop(reason),
        }
    }

    async fn tool_call(
        &self,
        run: RunId,
        tool: String,
        call_id: String,
        arguments: Value,
    ) -> DispatchAction {
        let Some((parent, agent)) = self.run_auditor(run) else {
            return DispatchAction::Proceed;
        };
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
                        call_id,
                        ToolStep {
                            step,
                            tool,
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

    async fn tool_outcome(
        &self,
        run: RunId,
        call_id: String,
        outcome: ToolOutcome,
    ) -> OutcomeAction {
        let Some(ToolStep {
            mut step,
            tool,
            arguments,
            started,
        }) = lock(&self.runs)
            .get_mut(&run)
            .and_then(|s| s.tools.remove(&call_id))
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

    async fn settled(&self, run: RunId, outcome: Settled) {
        let Some(mut state) = lock(&self.runs).remove(&run) else {
            return;
        };
        let already_failed = lock(&self.error).is_some();
        match outcome {
            Settled::Answer(answer) => {
                let auditor = state.run.auditor().with_agent(&state.agent);
                let payload = json!({"answer": answer, "answered_by": state.agent});
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
                    let kind = kind_of(status);
                    chat.step.fail(kind);
                    let mut payload = Map::new();
                    payload.insert("kind".into(), json!(kind));
                    payload.insert("status".into(), json!(status));
                    payload.insert("message".into(), json!(message));
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
struct TurnData {
    content: Option<String>,
    tool_calls: Vec<Value>,
    model: Option<String>,
    response_id: Option<String>,
    finish_reason: Option<String>,
    /// (prompt, completion, total) tokens.
    usage: Option<(u64, u64, u64)>,
}

enum ToolOutcome {
    Result(Value),
    Error { kind: &'static str, error: String },
}

enum Settled {
    Answer(String),
    Error(String),
}

/// The first HTTP error status (400..=599) named in `text`, if any.
fn status_in(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(2)).find_map(|i| {
        let window = bytes.get(i..i + 3)?;
        let before = i.checked_sub(1).and_then(|j| bytes.get(j));
        let after = bytes.get(i + 3);
        let digit = |b: Option<&u8>| b.is_some_and(u8::is_ascii_digit);
        if window.iter().all(u8::is_ascii_digit) && !digit(before) && !digit(after) {
            let n: u16 = std::str::from_utf8(window).ok()?.parse().ok()?;
            (400..=599).contains(&n).then_some(n)
        } else {
            None
        }
    })
}

/// agent-audit's model error kinds, from the status.
fn kind_of(status: Option<u16>) -> &'static str {
    match status {
        Some(401 | 403) => "auth",
        Some(408 | 504) => "timeout",
        Some(413) => "too_large",
        Some(429) => "rate_limit",
        Some(500..=599) => "server",
        _ => "http",
    }
}

/// A user message's text (its text blocks joined by newlines).
fn user_text(message: &Message) -> String {
    match message {
        Message::System { content } => content.clone(),
        Message::User { content } => content
            .iter()
            .filter_map(|c| match c {
                UserContent::Text(t) => Some(t.text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Message::Assistant(a) => assistant_text(&a.content).unwrap_or_default(),
    }
}

fn assistant_text(content: &[AssistantContent]) -> Option<String> {
    let texts: Vec<&str> = content
        .iter()
        .filter_map(|c| match c {
            AssistantContent::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join(""))
}

/// Tool calls as agent-audit's `assistant_output` records them.
fn call_records(content: &[AssistantContent]) -> Vec<Value> {
    content
        .iter()
        .filter_map(|c| match c {
            AssistantContent::ToolCall(call) => Some(json!({
                "id": call.id.to_string(),
                "name": call.function.name.as_str(),
                "arguments": Value::Object(call.function.arguments.clone()),
            })),
            _ => None,
        })
        .collect()
}

fn tool_result_text(content: &[ToolResultContent]) -> String {
    content
        .iter()
        .map(|c| match c {
            ToolResultContent::Text(t) => t.text.clone(),
            ToolResultContent::Json { value } => value.to_string(),
            ToolResultContent::Image(_) => "[image]".to_string(),
        })
        .collect::<Vec<_>>()
        .join("")
}

/// rig's messages in the Chat Completions wire format agent-audit's
/// runtime records (`system`, `user`, `assistant` with `tool_calls`,
/// `tool`).
fn wire_messages(history: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(history.len());
    for message in history {
        match message {
            Message::System { content } => out.push(json!({"role": "system", "content": content})),
            Message::User { content } => {
                let mut texts = Vec::new();
                for c in content {
                    match c {
                        UserContent::Text(t) => texts.push(t.text.as_str()),
                        UserContent::ToolResult(r) => out.push(json!({
                            "role": "tool",
                            "tool_call_id": r.call.to_string(),
                            "content": tool_result_text(&r.content),
                        })),
                        _ => texts.push("[media]"),
                    }
                }
                if !texts.is_empty() {
                    out.push(json!({"role": "user", "content": texts.join("\n")}));
                }
            }
            Message::Assistant(a) => {
                let calls: Vec<Value> = a
                    .content
                    .iter()
                    .filter_map(|c| match c {
                        AssistantContent::ToolCall(call) => Some(json!({
                            "id": call.id.to_string(),
                            "type": "function",
                            "function": {
                                "name": call.function.name.as_str(),
                                "arguments": Value::Object(call.function.arguments.clone()).to_string(),
                            },
                        })),
                        _ => None,
                    })
                    .collect();
                let mut m = json!({"role": "assistant", "content": assistant_text(&a.content)});
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                out.push(m);
            }
        }
    }
    out
}

/// Tool arguments for a record: parsed when JSON, else the text as sent.
fn arguments_value(args: &str) -> Value {
    if args.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
}

fn tool_outcome(outcome: &Result<Outcome, rig_core::error::ErrorReport>) -> ToolOutcome {
    match outcome {
        Ok(Outcome::ToolResult { result }) => {
            if let Some(error) = result.error().or_else(|| result.refusal()) {
                let kind = if result.is_refused() {
                    "refused"
                } else {
                    match error.kind() {
                        rig_core::tool::ToolErrorKind::NotFound => "unknown_tool",
                        rig_core::tool::ToolErrorKind::InvalidArgs => "invalid_arguments",
                        _ => "failed",
                    }
                };
                ToolOutcome::Error {
                    kind,
                    error: error.message().to_string(),
                }
            } else if result.is_skipped() {
                ToolOutcome::Error {
                    kind: "skipped",
                    error: result
                        .output()
                        .as_text()
                        .unwrap_or("skipped by a hook")
                        .to_string(),
                }
            } else {
                let output = result.output();
                let value = match (output.as_json(), output.as_text()) {
                    (Some(v), _) => v.clone(),
                    (None, Some(t)) => {
                        serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string()))
                    }
                    _ => serde_json::to_value(output).unwrap_or(Value::Null),
                };
                ToolOutcome::Result(value)
            }
        }
        Ok(other) => ToolOutcome::Error {
            kind: "failed",
            error: format!("the tool answered with a {} outcome", other.family()),
        },
        Err(report) => ToolOutcome::Error {
            kind: "failed",
            error: report.message.clone(),
        },
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
            Tool(String, String, Value),
            Other,
        }
        let step = match event.kind {
            EffectKind::Completion { request, .. } => Step::Model(
                request.model.clone(),
                wire_messages(&request.chat_history),
                request.tools.iter().map(|t| t.name.to_string()).collect(),
            ),
            EffectKind::ToolCall { name, args } => Step::Tool(
                name.clone(),
                event.call_id.map(ToString::to_string).unwrap_or_default(),
                arguments_value(args),
            ),
            _ => Step::Other,
        };
        let inner = self.inner.clone();
        let run = ctx.run_id();
        async move {
            match step {
                Step::Model(model, messages, tools) => {
                    inner.model_call(run, model, messages, tools).await
                }
                Step::Tool(tool, call_id, args) => inner.tool_call(run, tool, call_id, args).await,
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
        let tool = match (event.kind, event.call_id) {
            (EffectKind::ToolCall { .. }, Some(call_id)) => {
                Some((call_id.to_string(), tool_outcome(event.outcome)))
            }
            _ => None,
        };
        let inner = self.inner.clone();
        let run = ctx.run_id();
        async move {
            match tool {
                Some((call_id, outcome)) => inner.tool_outcome(run, call_id, outcome).await,
                None => OutcomeAction::Proceed,
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_found_only_as_a_three_digit_error_code() {
        assert_eq!(status_in("HTTP status 500 Internal"), Some(500));
        assert_eq!(status_in("code 1500 and 200"), None);
        assert_eq!(status_in("429"), Some(429));
        assert_eq!(kind_of(Some(503)), "server");
        assert_eq!(kind_of(None), "http");
    }
}
