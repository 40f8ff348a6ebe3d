//! The model abstraction: messages, requests, responses and the [`ChatModel`] trait.
//!
//! The message types serialise to the Chat Completions wire format, so the
//! `assistant_input` record shows exactly what an OpenAI-compatible server
//! would receive, whichever model is behind the trait.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A boxed, sendable future: what object-safe async traits in this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One message of a conversation, in the Chat Completions wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    /// Instructions for the model.
    System {
        /// The instructions.
        content: String,
    },
    /// What the user (or a user proxy) said.
    User {
        /// The text.
        content: String,
    },
    /// What the model answered: text, tool calls, or both.
    Assistant {
        /// The text; `None` when the model only asked for tools.
        content: Option<String>,
        /// Tools the model asked for, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// A tool's result, answering one tool call.
    Tool {
        /// The id of the call this answers.
        tool_call_id: String,
        /// The result as text (JSON for structured results).
        content: String,
    },
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::System {
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::User {
            content: content.into(),
        }
    }

    /// A tool result message.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Message {
        Message::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
        }
    }

    /// The role name on the wire.
    pub fn role(&self) -> &'static str {
        match self {
            Message::System { .. } => "system",
            Message::User { .. } => "user",
            Message::Assistant { .. } => "assistant",
            Message::Tool { .. } => "tool",
        }
    }
}

/// A tool the model asked for.
///
/// `arguments` keeps the JSON text exactly as the model produced it: a model
/// may emit invalid JSON, and that must reach the audit record and the
/// `tool_error` as it was, not be lost in parsing. On the wire it is
/// `{"id", "type": "function", "function": {"name", "arguments"}}`; when
/// reading, `arguments` may also be a JSON object (llama.cpp and some proxies
/// send one) and `type` may be missing.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call id chosen by the model or server (any string).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments parsed as JSON, or the parse error.
    pub fn parsed_arguments(&self) -> Result<Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            // Some servers send "" for a tool without parameters.
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&self.arguments)
    }

    /// The arguments for a record: the parsed object when it is valid JSON,
    /// else the raw text, so nothing the model sent is hidden.
    pub fn arguments_for_record(&self) -> Value {
        self.parsed_arguments()
            .unwrap_or_else(|_| Value::String(self.arguments.clone()))
    }
}

#[derive(Serialize)]
struct WireFunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionOut<'a>,
}

impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireToolCallOut {
            id: &self.id,
            kind: "function",
            function: WireFunctionOut {
                name: &self.name,
                arguments: &self.arguments,
            },
        }
        .serialize(s)
    }
}

#[derive(Deserialize)]
struct WireFunctionIn {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireToolCallIn {
    #[serde(default)]
    id: Option<String>,
    function: WireFunctionIn,
}

impl<'de> Deserialize<'de> for ToolCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = WireToolCallIn::deserialize(d)?;
        let arguments = match wire.function.arguments {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other @ Value::Object(_)) => other.to_string(),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "tool call arguments must be a JSON string or object, got {other}"
                )));
            }
        };
        Ok(ToolCall {
            // A missing id is filled in by the client, which knows the index.
            id: wire.id.unwrap_or_default(),
            name: wire.function.name,
            arguments,
        })
    }
}

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub parameters: Value,
}

impl Serialize for ToolSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct F<'a> {
            name: &'a str,
            description: &'a str,
            parameters: &'a Value,
        }
        #[derive(Serialize)]
        struct T<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            function: F<'a>,
        }
        T {
            kind: "function",
            function: F {
                name: &self.name,
                description: &self.description,
                parameters: &self.parameters,
            },
        }
        .serialize(s)
    }
}

/// Whether and which tool the model should call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (`"auto"`).
    Auto,
    /// No tool (`"none"`).
    None,
    /// Some tool (`"required"`).
    Required,
    /// This tool.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => serde_json::json!({
                "type": "function",
                "function": {"name": name}
            })
            .serialize(s),
        }
    }
}

/// One request to a chat model.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Tool choice; omitted when `None`.
    pub tool_choice: Option<ToolChoice>,
    /// Sampling temperature; omitted when `None`.
    pub temperature: Option<f32>,
    /// Completion token limit; omitted when `None`.
    pub max_tokens: Option<u32>,
}

/// Token counts reported by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens in the completion.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default)]
    pub total_tokens: u64,
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// Text of the answer; may be present beside tool calls.
    pub content: Option<String>,
    /// Tools the model asked for, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped (`stop`, `tool_calls`, `length`, ...).
    pub finish_reason: Option<String>,
    /// Token counts, when reported.
    pub usage: Option<Usage>,
    /// The model that answered, as reported (else as configured).
    pub model: String,
    /// The server's response id, when given.
    pub id: Option<String>,
    /// Attempts it took, retries included.
    pub attempts: u32,
}

impl ChatResponse {
    /// The assistant message to append to the conversation.
    pub fn to_message(&self) -> Message {
        Message::Assistant {
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
        }
    }
}

/// What kind of model failure happened; written as `kind` in `model_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// 401/403: the key is missing, wrong or not allowed.
    Auth,
    /// 429: too many requests (retried).
    RateLimit,
    /// 429 `insufficient_quota`: the account is out of credit (not retried).
    Quota,
    /// 5xx.
    Server,
    /// No answer within the timeout.
    Timeout,
    /// The connection failed.
    Connect,
    /// The answer was not a Chat Completions response.
    Malformed,
    /// Any other HTTP error status (400, 404, 408, 409, 422, ...).
    Http,
    /// The response body was larger than the client reads (not retried).
    TooLarge,
}

impl ModelErrorKind {
    /// The name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelErrorKind::Auth => "auth",
            ModelErrorKind::RateLimit => "rate_limit",
            ModelErrorKind::Quota => "quota",
            ModelErrorKind::Server => "server",
            ModelErrorKind::Timeout => "timeout",
            ModelErrorKind::Connect => "connect",
            ModelErrorKind::Malformed => "malformed",
            ModelErrorKind::Http => "http",
            ModelErrorKind::TooLarge => "too_large",
        }
    }
}

/// Why a model call failed. Messages never contain the API key: the client
/// scrubs it from the body before parsing and from every message after
/// decoding (see [`crate::OpenAiClient`] for the forms it recognises).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// 401/403.
    #[error(
        "authentication failed at {endpoint} (HTTP {status}): {message}; check the API key variable"
    )]
    Auth {
        /// The URL called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// 429 after every allowed retry.
    #[error("rate limited by {endpoint} after {attempts} attempt(s): {message}")]
    RateLimited {
        /// The URL called.
        endpoint: String,
        /// The server's message.
        message: String,
        /// The last `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// Attempts made.
        attempts: u32,
    },
    /// 429 `insufficient_quota`: retrying does not help.
    #[error("quota exhausted at {endpoint} (HTTP 429 insufficient_quota): {message}")]
    Quota {
        /// The URL called.
        endpoint: String,
        /// The server's message.
        message: String,
    },
    /// 5xx after every allowed retry.
    #[error("server error from {endpoint} (HTTP {status}) after {attempts} attempt(s): {message}")]
    Server {
        /// The URL called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer within the timeout, on every attempt.
    #[error("no answer from {endpoint} within {timeout:?} after {attempts} attempt(s)")]
    Timeout {
        /// The URL called.
        endpoint: String,
        /// The per-attempt timeout.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The connection failed on every attempt.
    #[error("could not connect to {endpoint} after {attempts} attempt(s): {message}")]
    Connect {
        /// The URL called.
        endpoint: String,
        /// The cause.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The answer was not a valid Chat Completions response.
    #[error("malformed response from {endpoint} (HTTP {status}): {detail}")]
    Malformed {
        /// The URL called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// Another HTTP error status.
    #[error("HTTP {status} from {endpoint} after {attempts} attempt(s): {message}")]
    Http {
        /// The URL called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The response body went past the client's limit; reading stopped
    /// there, so a server sending without end cannot exhaust memory.
    #[error(
        "response from {endpoint} (HTTP {status}) is larger than the {limit}-byte limit (max_response_bytes); reading stopped there"
    )]
    TooLarge {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The limit in bytes.
        limit: u64,
        /// Attempts made.
        attempts: u32,
    },
}

impl ModelError {
    /// Calls `f` on every text that came from the server or the transport
    /// (messages, details), so the client can scrub them in one place. The
    /// endpoint comes from the configuration and is left alone.
    pub(crate) fn for_each_server_text(&mut self, mut f: impl FnMut(&mut String)) {
        match self {
            ModelError::Auth { message, .. }
            | ModelError::RateLimited { message, .. }
            | ModelError::Quota { message, .. }
            | ModelError::Server { message, .. }
            | ModelError::Connect { message, .. }
            | ModelError::Http { message, .. } => f(message),
            ModelError::Malformed { detail, .. } => f(detail),
            ModelError::Timeout { .. } | ModelError::TooLarge { .. } => {}
        }
    }

    /// The kind, for records and for callers that branch on it.
    pub fn kind(&self) -> ModelErrorKind {
        match self {
            ModelError::Auth { .. } => ModelErrorKind::Auth,
            ModelError::RateLimited { .. } => ModelErrorKind::RateLimit,
            ModelError::Quota { .. } => ModelErrorKind::Quota,
            ModelError::Server { .. } => ModelErrorKind::Server,
            ModelError::Timeout { .. } => ModelErrorKind::Timeout,
            ModelError::Connect { .. } => ModelErrorKind::Connect,
            ModelError::Malformed { .. } => ModelErrorKind::Malformed,
            ModelError::Http { .. } => ModelErrorKind::Http,
            ModelError::TooLarge { .. } => ModelErrorKind::TooLarge,
        }
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ModelError::Auth { status, .. }
            | ModelError::Server { status, .. }
            | ModelError::Malformed { status, .. }
            | ModelError::Http { status, .. }
            | ModelError::TooLarge { status, .. } => Some(*status),
            ModelError::RateLimited { .. } | ModelError::Quota { .. } => Some(429),
            ModelError::Timeout { .. } | ModelError::Connect { .. } => None,
        }
    }

    /// Attempts made before giving up.
    pub fn attempts(&self) -> u32 {
        match self {
            ModelError::RateLimited { attempts, .. }
            | ModelError::Server { attempts, .. }
            | ModelError::Timeout { attempts, .. }
            | ModelError::Connect { attempts, .. }
            | ModelError::Http { attempts, .. }
            | ModelError::TooLarge { attempts, .. } => *attempts,
            ModelError::Auth { .. } | ModelError::Quota { .. } | ModelError::Malformed { .. } => 1,
        }
    }
}

/// A chat model: the OpenAI-compatible client, the offline model, or yours.
///
/// Object-safe (the future is boxed) so agents hold an `Arc<dyn ChatModel>`.
pub trait ChatModel: Send + Sync {
    /// The model's name as written in records (`offline` for the offline model).
    fn name(&self) -> &str;

    /// The provider as the GenAI semantic conventions name it
    /// (`gen_ai.provider.name`: `openai`, `anthropic`, ...), written as
    /// `provider` in the model's records; none when unknown.
    fn provider(&self) -> Option<&str> {
        None
    }

    /// A one-line description for people (provider, endpoint, model).
    fn describe(&self) -> String {
        self.name().to_string()
    }

    /// Whether this is the deterministic offline model (no network).
    fn is_offline(&self) -> bool {
        false
    }

    /// Sends the conversation and returns the model's answer.
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>>;
}
