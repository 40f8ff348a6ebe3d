//! The assistant: one model turn, audited (`assistant_input` before,
//! `assistant_output` or `model_error` after), offering the model its tools
//! and its hand-over targets.

use std::sync::Arc;
use std::time::Instant;

use agent_audit_core::otel::ChatOutcome;
use agent_audit_core::{Auditor, EventType};
use serde_json::json;

use crate::error::{AgentError, emit};
use crate::model::{ChatModel, ChatRequest, ChatResponse, Message, ToolSpec};
use crate::payload;
use crate::tool::Tool;

/// A named hand-over target offered to the model as the tool
/// `transfer_to_<agent>`.
#[derive(Debug, Clone)]
pub(crate) struct Handoff {
    pub(crate) agent: String,
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

    pub(crate) fn find_tool(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.name() == name)
    }

    pub(crate) fn find_handoff(&self, tool_name: &str) -> Option<&Handoff> {
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
    /// after, in a `chat {model}` span opened under `turn` (its records
    /// named after this agent).
    pub async fn generate_reply(
        &self,
        turn: &Auditor,
        history: &[Message],
    ) -> Result<ChatResponse, AgentError> {
        let mut chat = turn
            .with_agent(&self.name)
            .chat(self.model.provider(), self.model.name());
        let turn = chat.auditor().clone();
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
        if let Err(e) = emit(
            &turn,
            EventType::AssistantInput,
            &payload::AssistantInput {
                model: self.model.name(),
                provider: self.model.provider(),
                messages: &request.messages,
                tools: tool_names,
            },
        )
        .await
        {
            chat.fail(e.error_type());
            return Err(e);
        }
        if chat.captures_content() {
            chat.capture_content(
                "gen_ai.system_instructions",
                &payload::semconv_instructions(&request.messages),
            );
            chat.capture_content(
                "gen_ai.input.messages",
                &payload::semconv_messages(&request.messages),
            );
        }
        let started = Instant::now();
        let result = self.model.complete(&request).await;
        let latency_ms = payload::millis(started.elapsed());
        match result {
            Ok(response) => {
                let reasons: Vec<&str> = response.finish_reason.as_deref().into_iter().collect();
                chat.set_response(&ChatOutcome {
                    model: Some(&response.model),
                    id: response.id.as_deref(),
                    finish_reasons: &reasons,
                    input_tokens: response.usage.map(|u| u.prompt_tokens),
                    output_tokens: response.usage.map(|u| u.completion_tokens),
                });
                if chat.captures_content() {
                    chat.capture_content(
                        "gen_ai.output.messages",
                        &payload::semconv_messages(&[response.to_message()]),
                    );
                }
                if let Err(e) = emit(
                    &turn,
                    EventType::AssistantOutput,
                    &payload::AssistantOutput {
                        content: response.content.as_deref(),
                        tool_calls: response.tool_calls.iter().map(Into::into).collect(),
                        model: &response.model,
                        provider: self.model.provider(),
                        response_id: response.id.as_deref(),
                        finish_reason: response.finish_reason.as_deref(),
                        usage: response.usage,
                        latency_ms,
                        attempts: response.attempts,
                    },
                )
                .await
                {
                    chat.fail(e.error_type());
                    return Err(e);
                }
                chat.end();
                Ok(response)
            }
            Err(error) => {
                chat.fail(error.kind().as_str());
                let record = payload::ModelErrorRecord {
                    kind: error.kind().as_str(),
                    status: error.status(),
                    message: error.to_string(),
                    model: self.model.name(),
                    provider: self.model.provider(),
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
