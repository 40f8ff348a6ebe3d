//! Agents: an assistant that asks a model, and a user proxy that speaks for
//! the user, runs the tools the model asks for and decides when to stop.
//!
//! Every step is audited through the [`Auditor`] given to
//! [`UserProxyAgent::initiate_chat`]: each agent turn gets its own span whose
//! parent is the turn that caused it, every record names its agent, and all
//! share the auditor's request and correlation ids.

use std::sync::Arc;
use std::time::Instant;

use agent_audit_core::{AckLevel, Auditor, EmitError, EventType};
use serde::Serialize;
use serde_json::{Value, json};

use crate::input::{InputError, InputProvider, TerminalInput};
use crate::model::{ChatModel, ChatRequest, ChatResponse, Message, ModelError, ToolCall, ToolSpec};
use crate::payload;
use crate::tool::{Tool, ToolError};

/// Why a conversation stopped with an error. The records written up to that
/// point stay; the error says which agent and step failed.
#[derive(Debug, thiserror::Error)]
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

fn audit_err(turn: &Auditor, event: EventType, source: EmitError) -> AgentError {
    AgentError::Audit {
        agent: agent_of(turn),
        event: event.as_str().to_string(),
        context: String::new(),
        source,
    }
}

fn agent_of(turn: &Auditor) -> String {
    turn.scope().agent.as_deref().unwrap_or("").to_string()
}

async fn emit<P: Serialize>(
    turn: &Auditor,
    event: EventType,
    payload: &P,
) -> Result<(), AgentError> {
    match turn.emit(event.clone(), payload).await {
        Ok(_) => Ok(()),
        Err(e) => Err(audit_err(turn, event, e)),
    }
}

/// A named hand-over target offered to the model as the tool
/// `transfer_to_<agent>`.
#[derive(Debug, Clone)]
struct Handoff {
    agent: String,
    tool_name: String,
    description: String,
}

/// An agent that answers with a model, offering it tools.
///
/// ```
/// use std::sync::Arc;
/// use agent_audit_agents::{AssistantAgent, OfflineModel};
///
/// let assistant = AssistantAgent::new("assistant", Arc::new(OfflineModel))
///     .system_message("You are a helpful bank assistant.");
/// assert_eq!(assistant.name(), "assistant");
/// ```
#[derive(Clone)]
pub struct AssistantAgent {
    name: String,
    system_message: String,
    model: Arc<dyn ChatModel>,
    tools: Vec<Arc<dyn Tool>>,
    handoffs: Vec<Handoff>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

impl std::fmt::Debug for AssistantAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssistantAgent")
            .field("name", &self.name)
            .field("model", &self.model.name())
            .field(
                "tools",
                &self.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AssistantAgent {
    /// An assistant named `name` using `model`.
    pub fn new(name: impl Into<String>, model: Arc<dyn ChatModel>) -> AssistantAgent {
        AssistantAgent {
            name: name.into(),
            system_message: "You are a helpful assistant.".into(),
            model,
            tools: Vec::new(),
            handoffs: Vec::new(),
            temperature: None,
            max_tokens: None,
        }
    }

    /// Its system message.
    pub fn system_message(mut self, message: impl Into<String>) -> Self {
        self.system_message = message.into();
        self
    }

    /// Offers a tool to the model; the user proxy runs it.
    pub fn tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    /// Lets the model hand the conversation to another agent of the chat,
    /// through the tool `transfer_to_<agent>`.
    pub fn handoff(mut self, agent: impl Into<String>, description: impl Into<String>) -> Self {
        let agent = agent.into();
        self.handoffs.push(Handoff {
            tool_name: format!("transfer_to_{agent}"),
            agent,
            description: description.into(),
        });
        self
    }

    /// Sampling temperature sent to the model.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Completion token limit sent to the model.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its model.
    pub fn model(&self) -> &Arc<dyn ChatModel> {
        &self.model
    }

    /// Its tools.
    pub fn tools(&self) -> &[Arc<dyn Tool>] {
        &self.tools
    }

    fn find_tool(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.name() == name)
    }

    fn find_handoff(&self, tool_name: &str) -> Option<&Handoff> {
        self.handoffs.iter().find(|h| h.tool_name == tool_name)
    }

    fn specs(&self) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = self.tools.iter().map(|t| t.spec()).collect();
        specs.extend(self.handoffs.iter().map(|h| ToolSpec {
            name: h.tool_name.clone(),
            description: h.description.clone(),
            parameters: json!({
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why the hand-over"}}
            }),
        }));
        specs
    }

    /// One turn: sends the system message and `history` to the model, with
    /// `assistant_input` before and `assistant_output` (or `model_error`)
    /// after, under `turn` (named after this agent).
    pub async fn generate_reply(
        &self,
        turn: &Auditor,
        history: &[Message],
    ) -> Result<ChatResponse, AgentError> {
        let turn = turn.with_agent(&self.name);
        let mut messages = Vec::with_capacity(history.len() + 1);
        messages.push(Message::system(self.system_message.clone()));
        messages.extend_from_slice(history);
        let request = ChatRequest {
            messages,
            tools: self.specs(),
            tool_choice: None,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        };
        let tool_names: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
        emit(
            &turn,
            EventType::AssistantInput,
            &payload::AssistantInput {
                model: self.model.name(),
                messages: &request.messages,
                tools: tool_names,
            },
        )
        .await?;
        let started = Instant::now();
        let result = self.model.complete(&request).await;
        let latency_ms = payload::millis(started.elapsed());
        match result {
            Ok(response) => {
                emit(
                    &turn,
                    EventType::AssistantOutput,
                    &payload::AssistantOutput {
                        content: response.content.as_deref(),
                        tool_calls: response.tool_calls.iter().map(Into::into).collect(),
                        model: &response.model,
                        finish_reason: response.finish_reason.as_deref(),
                        usage: response.usage,
                        latency_ms,
                        attempts: response.attempts,
                    },
                )
                .await?;
                Ok(response)
            }
            Err(error) => {
                let record = payload::ModelErrorRecord {
                    kind: error.kind().as_str(),
                    status: error.status(),
                    message: error.to_string(),
                    model: self.model.name(),
                    attempts: error.attempts(),
                    latency_ms,
                };
                if let Err(e) = turn.emit(EventType::ModelError, &record).await {
                    return Err(AgentError::Audit {
                        agent: self.name.clone(),
                        event: "model_error".into(),
                        context: format!(" (recording the model failure: {error})"),
                        source: e,
                    });
                }
                Err(AgentError::Model {
                    agent: self.name.clone(),
                    source: error,
                })
            }
        }
    }
}

/// When the user proxy asks the human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HumanInputMode {
    /// Never: the proxy replies automatically and stops at termination or
    /// after `max_consecutive_auto_reply` automatic replies.
    #[default]
    Never,
    /// At termination (or when the auto-reply limit is reached) the human
    /// may go on with a new message or stop (empty line or `exit`).
    Terminate,
    /// Before every reply: an empty line lets the proxy reply automatically
    /// (run the requested tools), `exit` stops, any other text is sent
    /// instead (requested tools are then not run).
    Always,
}

/// How a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The termination test matched and nobody asked to go on.
    Terminated,
    /// `max_consecutive_auto_reply` automatic replies in a row.
    MaxAutoReplies,
    /// The human said `exit` or input ended.
    HumanExit,
}

/// The outcome of a conversation.
#[derive(Debug, Clone)]
pub struct ChatResult {
    /// The last answer of an assistant (empty if none gave text).
    pub answer: String,
    /// The agent that gave it.
    pub answered_by: String,
    /// Every message exchanged, in order (system messages excluded).
    pub messages: Vec<Message>,
    /// Why it ended.
    pub end: EndReason,
}

type TerminationTest = Arc<dyn Fn(&ChatResponse) -> bool + Send + Sync>;

/// Speaks for the user: starts the conversation, runs the tools the model
/// asks for (audit before act), asks the human when its mode says so, and
/// ends the conversation.
#[derive(Clone)]
pub struct UserProxyAgent {
    name: String,
    mode: HumanInputMode,
    max_consecutive_auto_reply: u32,
    is_termination: TerminationTest,
    input: Arc<dyn InputProvider>,
    default_auto_reply: String,
}

impl std::fmt::Debug for UserProxyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserProxyAgent")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field(
                "max_consecutive_auto_reply",
                &self.max_consecutive_auto_reply,
            )
            .finish()
    }
}

impl UserProxyAgent {
    /// A proxy named `name`: mode `never`, at most 10 automatic replies in a
    /// row, terminating on the first answer without tool calls, reading the
    /// terminal when asked.
    pub fn new(name: impl Into<String>) -> UserProxyAgent {
        UserProxyAgent {
            name: name.into(),
            mode: HumanInputMode::Never,
            max_consecutive_auto_reply: 10,
            is_termination: Arc::new(|r: &ChatResponse| r.tool_calls.is_empty()),
            input: Arc::new(TerminalInput),
            default_auto_reply: "Continue.".into(),
        }
    }

    /// When to ask the human.
    pub fn human_input_mode(mut self, mode: HumanInputMode) -> Self {
        self.mode = mode;
        self
    }

    /// Automatic replies in a row before the proxy stops (or asks, in mode
    /// `terminate`). Running requested tools counts as one reply.
    pub fn max_consecutive_auto_reply(mut self, n: u32) -> Self {
        self.max_consecutive_auto_reply = n;
        self
    }

    /// The termination test, applied to every assistant answer without tool
    /// calls; for example `|r| r.content.as_deref().is_some_and(|c| c.contains("TERMINATE"))`.
    pub fn is_termination_msg(
        mut self,
        test: impl Fn(&ChatResponse) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.is_termination = Arc::new(test);
        self
    }

    /// Where human input comes from.
    pub fn input(mut self, input: Arc<dyn InputProvider>) -> Self {
        self.input = input;
        self
    }

    /// What the proxy says when it replies automatically to an answer that
    /// did not end the conversation.
    pub fn default_auto_reply(mut self, reply: impl Into<String>) -> Self {
        self.default_auto_reply = reply.into();
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a conversation with `assistant`: `message` is the user's
    /// request. Returns the final answer, or the error that stopped it.
    pub async fn initiate_chat(
        &self,
        auditor: &Auditor,
        assistant: &AssistantAgent,
        message: &str,
    ) -> Result<ChatResult, AgentError> {
        self.initiate_chat_with(auditor, assistant, &[], message)
            .await
    }

    /// Like [`UserProxyAgent::initiate_chat`], with further agents the
    /// assistants may hand the conversation to (see
    /// [`AssistantAgent::handoff`]). The agent taking over sees the user's
    /// messages, not the previous agent's tool traffic.
    pub async fn initiate_chat_with(
        &self,
        auditor: &Auditor,
        entry: &AssistantAgent,
        others: &[&AssistantAgent],
        message: &str,
    ) -> Result<ChatResult, AgentError> {
        let first = auditor.child_span().with_agent(&self.name);
        emit(
            &first,
            EventType::UserRequest,
            &payload::UserRequest {
                content: message,
                recipient: entry.name(),
                source: None,
            },
        )
        .await?;
        let mut transcript = vec![Message::user(message)];
        let mut context = transcript.clone();
        let mut active = entry;
        let mut cause = first;
        let mut auto_replies: u32 = 0;
        loop {
            let turn = cause.child_span().with_agent(active.name());
            let response = active.generate_reply(&turn, &context).await?;
            let reply_message = response.to_message();
            transcript.push(reply_message.clone());
            context.push(reply_message);

            if let Some(next) = self
                .hand_over(&turn, active, entry, others, &response, &mut transcript)
                .await?
            {
                active = next;
                context = transcript
                    .iter()
                    .filter(|m| matches!(m, Message::User { .. }))
                    .cloned()
                    .collect();
                cause = turn;
                continue;
            }

            let proxy_turn = turn.child_span().with_agent(&self.name);
            if !response.tool_calls.is_empty() {
                if self.mode == HumanInputMode::Always {
                    let names: Vec<&str> = response
                        .tool_calls
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    let prompt = format!(
                        "{} asks to run {}. Press enter to run, type a reply to send instead, or `exit`:",
                        active.name(),
                        names.join(", ")
                    );
                    match self.ask(&prompt).await? {
                        Human::Exit => {
                            return self
                                .finish(
                                    &proxy_turn,
                                    &transcript,
                                    EndReason::HumanExit,
                                    active.name(),
                                )
                                .await;
                        }
                        Human::Text(text) => {
                            for call in &response.tool_calls {
                                let m = Message::tool(
                                    call.id.clone(),
                                    json!({"error": "not run: the user replied instead"})
                                        .to_string(),
                                );
                                transcript.push(m.clone());
                                context.push(m);
                            }
                            self.human_message(
                                &proxy_turn,
                                active,
                                &text,
                                &mut transcript,
                                &mut context,
                            )
                            .await?;
                            auto_replies = 0;
                            cause = proxy_turn;
                            continue;
                        }
                        Human::Empty => {}
                    }
                } else if auto_replies >= self.max_consecutive_auto_reply {
                    return self
                        .finish(
                            &proxy_turn,
                            &transcript,
                            EndReason::MaxAutoReplies,
                            active.name(),
                        )
                        .await;
                }
                for call in &response.tool_calls {
                    let content = self.run_tool(&proxy_turn, active, call).await?;
                    let m = Message::tool(call.id.clone(), content);
                    transcript.push(m.clone());
                    context.push(m);
                }
                auto_replies += 1;
                cause = proxy_turn;
                continue;
            }

            // Terminated wins over the reply limit when both hold.
            let end = if (self.is_termination)(&response) {
                Some(EndReason::Terminated)
            } else if auto_replies >= self.max_consecutive_auto_reply {
                Some(EndReason::MaxAutoReplies)
            } else {
                None
            };
            let ask_human = match self.mode {
                HumanInputMode::Never => false,
                HumanInputMode::Terminate => end.is_some(),
                HumanInputMode::Always => true,
            };
            if ask_human {
                let prompt = format!(
                    "Reply to {} (empty line to {}, `exit` to stop):",
                    active.name(),
                    if end.is_some() { "stop" } else { "auto-reply" }
                );
                match self.ask(&prompt).await? {
                    Human::Exit => {
                        return self
                            .finish(
                                &proxy_turn,
                                &transcript,
                                EndReason::HumanExit,
                                active.name(),
                            )
                            .await;
                    }
                    Human::Text(text) => {
                        self.human_message(
                            &proxy_turn,
                            active,
                            &text,
                            &mut transcript,
                            &mut context,
                        )
                        .await?;
                        auto_replies = 0;
                        cause = proxy_turn;
                        continue;
                    }
                    Human::Empty => {}
                }
            }
            if let Some(end) = end {
                return self
                    .finish(&proxy_turn, &transcript, end, active.name())
                    .await;
            }
            // Automatic reply to an answer that did not end the conversation.
            emit(
                &proxy_turn,
                EventType::AgentMessage,
                &payload::AgentMessage {
                    from: &self.name,
                    to: active.name(),
                    kind: "auto_reply",
                    content: Some(&self.default_auto_reply),
                    reason: None,
                },
            )
            .await?;
            let m = Message::user(self.default_auto_reply.clone());
            transcript.push(m.clone());
            context.push(m);
            auto_replies += 1;
            cause = proxy_turn;
        }
    }

    async fn ask(&self, prompt: &str) -> Result<Human, AgentError> {
        let line = self
            .input
            .read_line(prompt)
            .await
            .map_err(|source| AgentError::Input {
                agent: self.name.clone(),
                source,
            })?;
        Ok(match line {
            None => Human::Exit,
            Some(l) if l.trim().eq_ignore_ascii_case("exit") => Human::Exit,
            Some(l) if l.trim().is_empty() => Human::Empty,
            Some(l) => Human::Text(l),
        })
    }

    async fn human_message(
        &self,
        turn: &Auditor,
        to: &AssistantAgent,
        text: &str,
        transcript: &mut Vec<Message>,
        context: &mut Vec<Message>,
    ) -> Result<(), AgentError> {
        emit(
            turn,
            EventType::UserRequest,
            &payload::UserRequest {
                content: text,
                recipient: to.name(),
                source: Some("human_input"),
            },
        )
        .await?;
        transcript.push(Message::user(text));
        context.push(Message::user(text));
        Ok(())
    }

    async fn finish(
        &self,
        turn: &Auditor,
        transcript: &[Message],
        end: EndReason,
        answered_by: &str,
    ) -> Result<ChatResult, AgentError> {
        let answer = transcript
            .iter()
            .rev()
            .find_map(|m| match m {
                Message::Assistant {
                    content: Some(c), ..
                } => Some(c.clone()),
                _ => None,
            })
            .unwrap_or_default();
        emit(
            turn,
            EventType::FinalResult,
            &payload::FinalResult {
                answer: &answer,
                answered_by,
                end,
            },
        )
        .await?;
        Ok(ChatResult {
            answer,
            answered_by: answered_by.to_string(),
            messages: transcript.to_vec(),
            end,
        })
    }

    /// Runs one requested tool under audit before act and returns the tool
    /// message content for the model. Tool failures and invalid arguments
    /// become `tool_error` records and an error message to the model; only
    /// an audit failure stops the conversation.
    async fn run_tool(
        &self,
        turn: &Auditor,
        assistant: &AssistantAgent,
        call: &ToolCall,
    ) -> Result<String, AgentError> {
        let arguments = call.arguments_for_record();
        turn.emit_wait(
            EventType::ToolCall,
            &payload::ToolCallRecord {
                tool: &call.name,
                call_id: &call.id,
                arguments: &arguments,
            },
            AckLevel::Durable,
        )
        .await
        .map_err(|source| AgentError::AuditBeforeAct {
            agent: self.name.clone(),
            tool: call.name.clone(),
            call_id: call.id.clone(),
            source,
        })?;
        let started = Instant::now();
        let outcome = match assistant.find_tool(&call.name) {
            None => Err(ToolError::UnknownTool {
                tool: call.name.clone(),
            }),
            Some(tool) => match call.parsed_arguments() {
                Err(e) => Err(ToolError::InvalidArguments {
                    tool: call.name.clone(),
                    message: format!("arguments are not valid JSON: {e}"),
                }),
                Ok(args) => match tool.validate(&args) {
                    Err(violations) => Err(ToolError::InvalidArguments {
                        tool: call.name.clone(),
                        message: violations
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    }),
                    Ok(()) => tool.call(args).await,
                },
            },
        };
        let duration_ms = payload::millis(started.elapsed());
        match outcome {
            Ok(result) => {
                emit(
                    turn,
                    EventType::ToolResult,
                    &payload::ToolResultRecord {
                        tool: &call.name,
                        call_id: &call.id,
                        result: &result,
                        duration_ms,
                    },
                )
                .await?;
                Ok(match result {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            Err(error) => {
                emit(
                    turn,
                    EventType::ToolError,
                    &payload::ToolErrorRecord {
                        tool: &call.name,
                        call_id: &call.id,
                        arguments: &arguments,
                        kind: error.kind(),
                        error: error.to_string(),
                        duration_ms,
                    },
                )
                .await?;
                Ok(json!({"error": error.to_string()}).to_string())
            }
        }
    }

    /// Handles a `transfer_to_<agent>` call of the active assistant, inside
    /// that assistant's turn: the hand-over is the assistant's act, so its
    /// records carry its name and span, and the next agent's turn is its
    /// child. Returns the agent taking over.
    async fn hand_over<'a>(
        &self,
        turn: &Auditor,
        active: &AssistantAgent,
        entry: &'a AssistantAgent,
        others: &[&'a AssistantAgent],
        response: &ChatResponse,
        transcript: &mut Vec<Message>,
    ) -> Result<Option<&'a AssistantAgent>, AgentError> {
        let Some((call, handoff)) = response
            .tool_calls
            .iter()
            .find_map(|c| active.find_handoff(&c.name).map(|h| (c, h)))
        else {
            return Ok(None);
        };
        let Some(target) = std::iter::once(entry)
            .chain(others.iter().copied())
            .find(|a| a.name() == handoff.agent)
        else {
            // Not a participant: the proxy treats the call as an unknown
            // tool, which the model hears about in a tool message.
            return Ok(None);
        };
        let turn = turn.with_agent(active.name());
        let arguments = call.arguments_for_record();
        turn.emit_wait(
            EventType::ToolCall,
            &payload::ToolCallRecord {
                tool: &call.name,
                call_id: &call.id,
                arguments: &arguments,
            },
            AckLevel::Durable,
        )
        .await
        .map_err(|source| AgentError::AuditBeforeAct {
            agent: active.name().to_string(),
            tool: call.name.clone(),
            call_id: call.id.clone(),
            source,
        })?;
        let reason = call
            .parsed_arguments()
            .ok()
            .and_then(|a| a.get("reason").and_then(Value::as_str).map(str::to_string));
        emit(
            &turn,
            EventType::AgentMessage,
            &payload::AgentMessage {
                from: active.name(),
                to: target.name(),
                kind: "handoff",
                content: None,
                reason: reason.as_deref(),
            },
        )
        .await?;
        let result = json!({"handed_over_to": target.name()});
        emit(
            &turn,
            EventType::ToolResult,
            &payload::ToolResultRecord {
                tool: &call.name,
                call_id: &call.id,
                result: &result,
                duration_ms: 0.0,
            },
        )
        .await?;
        transcript.push(Message::tool(call.id.clone(), result.to_string()));
        for other in response.tool_calls.iter().filter(|c| c.id != call.id) {
            transcript.push(Message::tool(
                other.id.clone(),
                json!({"error": "not run: the conversation was handed over"}).to_string(),
            ));
        }
        Ok(Some(target))
    }
}

enum Human {
    Exit,
    Empty,
    Text(String),
}
