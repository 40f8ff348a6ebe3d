//! The payloads of the records this crate writes, as typed structs: the
//! field order here is the key order in the record, and these definitions
//! are the reference for readers of `payload`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Message, ToolCall, Usage};
use crate::user_proxy::EndReason;

/// Milliseconds with microsecond precision (no float noise in records).
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// `user_request`: the user's message (or a human's reply during the chat).
#[derive(Debug, Serialize)]
pub struct UserRequest<'a> {
    /// The text.
    pub content: &'a str,
    /// The agent it is addressed to.
    pub recipient: &'a str,
    /// `human_input` when typed during the conversation; absent for the
    /// request that started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
}

/// `assistant_input`: what is sent to the model.
#[derive(Debug, Serialize)]
pub struct AssistantInput<'a> {
    /// The model's name (`offline` for the offline model).
    pub model: &'a str,
    /// The provider ([`ChatModel::provider`](crate::ChatModel::provider)), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    /// The messages, in the Chat Completions wire format.
    pub messages: &'a [Message],
    /// Names of the tools offered.
    pub tools: Vec<&'a str>,
}

/// One tool call as recorded: arguments parsed when they are JSON, else the
/// text as the model sent it.
#[derive(Debug, Serialize)]
pub struct CallRecord<'a> {
    /// Call id.
    pub id: &'a str,
    /// Tool name.
    pub name: &'a str,
    /// Arguments.
    pub arguments: Value,
}

impl<'a> From<&'a ToolCall> for CallRecord<'a> {
    fn from(call: &'a ToolCall) -> Self {
        CallRecord {
            id: &call.id,
            name: &call.name,
            arguments: call.arguments_for_record(),
        }
    }
}

/// `assistant_output`: what the model answered.
#[derive(Debug, Serialize)]
pub struct AssistantOutput<'a> {
    /// Text (may be null, or present beside tool calls).
    pub content: Option<&'a str>,
    /// Tools asked for.
    pub tool_calls: Vec<CallRecord<'a>>,
    /// The model that answered, as reported.
    pub model: &'a str,
    /// The provider ([`ChatModel::provider`](crate::ChatModel::provider)), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    /// The server's id for this response, when it gave one.
    pub response_id: Option<&'a str>,
    /// Why it stopped.
    pub finish_reason: Option<&'a str>,
    /// Token counts, when reported.
    pub usage: Option<Usage>,
    /// Time for the call, retries included.
    pub latency_ms: f64,
    /// Attempts made.
    pub attempts: u32,
}

/// `model_error`: the model call failed.
#[derive(Debug, Serialize)]
pub struct ModelErrorRecord<'a> {
    /// `auth`, `rate_limit`, `quota`, `server`, `timeout`, `connect`, `malformed`, `http`
    /// or `too_large`.
    pub kind: &'a str,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// The error message (the API key is never in it).
    pub message: String,
    /// The model's name.
    pub model: &'a str,
    /// The provider ([`ChatModel::provider`](crate::ChatModel::provider)), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent, retries included.
    pub latency_ms: f64,
}

/// `tool_call`: a tool is about to run (durable before it does).
#[derive(Debug, Serialize)]
pub struct ToolCallRecord<'a> {
    /// Tool name.
    pub tool: &'a str,
    /// The model's call id.
    pub call_id: &'a str,
    /// Arguments as the model sent them (parsed when JSON).
    pub arguments: &'a Value,
}

/// `tool_result`: the tool returned.
#[derive(Debug, Serialize)]
pub struct ToolResultRecord<'a> {
    /// Tool name.
    pub tool: &'a str,
    /// The model's call id.
    pub call_id: &'a str,
    /// What it returned.
    pub result: &'a Value,
    /// How long it ran.
    pub duration_ms: f64,
}

/// `tool_error`: invalid arguments, unknown tool, or the tool failed.
#[derive(Debug, Serialize)]
pub struct ToolErrorRecord<'a> {
    /// Tool name.
    pub tool: &'a str,
    /// The model's call id.
    pub call_id: &'a str,
    /// Arguments as the model sent them.
    pub arguments: &'a Value,
    /// `invalid_arguments`, `unknown_tool` or `failed`.
    pub kind: &'a str,
    /// What went wrong (also sent to the model).
    pub error: String,
    /// Time from the durable `tool_call` to the error.
    pub duration_ms: f64,
}

/// `agent_message`: one agent addressed another (hand-over, auto reply).
#[derive(Debug, Serialize)]
pub struct AgentMessage<'a> {
    /// Sender.
    pub from: &'a str,
    /// Recipient.
    pub to: &'a str,
    /// `handoff` or `auto_reply`.
    pub kind: &'a str,
    /// Message text, for an auto reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// The model's stated reason, for a hand-over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// `final_result`: the answer returned to the user.
#[derive(Debug, Serialize)]
pub struct FinalResult<'a> {
    /// The answer.
    pub answer: &'a str,
    /// The agent that gave it.
    pub answered_by: &'a str,
    /// Why the conversation ended.
    pub end: EndReason,
}

/// Messages in the GenAI conventions' shape (1.41.0,
/// `gen_ai.input.messages` / `gen_ai.output.messages`): a role and parts
/// (`text`, `tool_call`, `tool_call_response`); system messages go to
/// `gen_ai.system_instructions` instead (see [`semconv_instructions`]).
pub(crate) fn semconv_messages(messages: &[Message]) -> Value {
    let text = |content: &str| json!({"type": "text", "content": content});
    Value::Array(
        messages
            .iter()
            .filter_map(|m| match m {
                Message::System { .. } => None,
                Message::User { content } => {
                    Some(json!({"role": "user", "parts": [text(content)]}))
                }
                Message::Assistant {
                    content,
                    tool_calls,
                } => {
                    let mut parts: Vec<Value> = content.iter().map(|c| text(c)).collect();
                    parts.extend(tool_calls.iter().map(|c| {
                        json!({
                            "type": "tool_call",
                            "id": c.id,
                            "name": c.name,
                            "arguments": c.parsed_arguments().unwrap_or_else(|_| Value::String(c.arguments.clone())),
                        })
                    }));
                    Some(json!({"role": "assistant", "parts": parts}))
                }
                Message::Tool {
                    tool_call_id,
                    content,
                } => Some(json!({
                    "role": "tool",
                    "parts": [{"type": "tool_call_response", "id": tool_call_id, "response": content}],
                })),
            })
            .collect(),
    )
}

/// The system messages as `gen_ai.system_instructions` parts.
pub(crate) fn semconv_instructions(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .filter_map(|m| match m {
                Message::System { content } => Some(json!({"type": "text", "content": content})),
                _ => None,
            })
            .collect(),
    )
}
