//! # agent-audit-agents
//!
//! A small agent runtime that audits every step by construction: an
//! OpenAI-compatible model client ([`OpenAiClient`]), a deterministic
//! [`OfflineModel`] used when no model is configured, typed [`Tool`]s whose
//! JSON Schema is derived from their argument type, an [`AssistantAgent`]
//! and a [`UserProxyAgent`] that converse through an
//! [`agent_audit_core::Auditor`].
//!
//! What the records guarantee:
//!
//! - the tutorial's sequence `user_request`, `assistant_input`,
//!   `assistant_output`, `tool_call`, `tool_result`, ..., `final_result`,
//!   plus `tool_error`, `model_error` and `agent_message` when they happen;
//! - audit before act: a tool runs only after its `tool_call` record is
//!   Durable on every required sink; otherwise the conversation stops with
//!   [`AgentError::AuditBeforeAct`] and the tool never runs;
//! - every record names its agent and carries its step's span: the
//!   conversation is an `invoke_agent {agent}` span, each model call a
//!   `chat {model}` span and each tool call an `execute_tool {tool}` span
//!   under it (GenAI semantic conventions 1.41.0, exported through the
//!   `opentelemetry` API to the application's providers: see
//!   [`agent_audit_core::otel`]), and all agents of a conversation share
//!   the auditor's correlation id;
//! - the API key never appears in a record, a log line or an error.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit_agents::{ModelConfig, build_model, tutorial};
//! use agent_audit_core::{Auditor, Dispatcher, MemorySink, SinkOptions};
//!
//! let sink = MemorySink::new();
//! let dispatcher = Dispatcher::builder()
//!     .sink(SinkOptions::new("memory"), sink.clone())
//!     .start()
//!     .await?;
//! let model = build_model(&ModelConfig::default())?; // the offline model
//! let auditor = Auditor::new(dispatcher.clone()).for_request(Some("req-1"));
//! let answer = tutorial::run(&auditor, model, "What is the balance of account 12345?").await?;
//! assert!(answer.contains("12345"));
//! dispatcher.shutdown(Duration::from_secs(5)).await;
//! let events: Vec<String> = sink.records().iter().map(|r| r.event_type.to_string()).collect();
//! assert_eq!(events, [
//!     "user_request", "assistant_input", "assistant_output", "tool_call",
//!     "tool_result", "assistant_input", "assistant_output", "final_result",
//! ]);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Layout
//!
//! One job per module, every item at the crate root (the modules are
//! private, except the scenario modules [`tutorial`] and [`multi`] and the
//! argument checker [`schema`], whose items live only there):
//!
//! - `model`: the [`ChatModel`] trait and what goes through it (messages,
//!   requests, responses, [`ModelError`]);
//! - `openai`: the [`OpenAiClient`]; inside, `wire` (the Chat Completions
//!   format), `attempt` (one call, the body limit, the retry loop) and
//!   `scrub` (the API key taken out of everything a server returns, through
//!   [`agent_audit_core::normalize`]);
//! - `offline`: the [`OfflineModel`]; `config`: the `[model]` section and
//!   [`build_model`];
//! - `assistant`: the [`AssistantAgent`] (one audited model turn);
//!   `user_proxy`: the [`UserProxyAgent`] (the conversation, the human,
//!   the end); `turn`: the tool runner (audit before act, hand-overs);
//!   `error`: [`AgentError`] and the audit helpers;
//! - `tool`: the [`Tool`] trait and [`FnTool`]; `input`: where human input
//!   comes from; `payload`: the shapes of the records written.
//!
//! ## Feature flags
//!
//! None. The HTTP client (reqwest with rustls) is always built: a runtime
//! without a model client would not be one a team ships.

mod assistant;
mod config;
mod error;
mod input;
mod model;
pub mod multi;
mod offline;
mod openai;
mod payload;
pub mod schema;
mod tool;
mod turn;
pub mod tutorial;
mod user_proxy;

pub use assistant::AssistantAgent;
pub use config::{
    DEFAULT_API_KEY_ENV, DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, MAX_RETRIES,
    MAX_TIMEOUT_MS, ModelConfig, ModelConfigError, Provider, build_model, build_model_with_env,
};
pub use error::AgentError;
pub use input::{InputError, InputProvider, ScriptedInput, TerminalInput};
pub use model::{
    BoxFuture, ChatModel, ChatRequest, ChatResponse, Message, ModelError, ModelErrorKind, ToolCall,
    ToolChoice, ToolSpec, Usage,
};
pub use offline::OfflineModel;
pub use openai::{
    ApiKey, ClientBuildError, DEFAULT_MAX_RESPONSE_BYTES, MAX_RESPONSE_BYTES, MIN_RESPONSE_BYTES,
    OpenAiClient, OpenAiClientBuilder, RetryPolicy,
};
pub use tool::{FnTool, Tool, ToolError, schema_for};
pub use user_proxy::{ChatResult, EndReason, HumanInputMode, UserProxyAgent};
