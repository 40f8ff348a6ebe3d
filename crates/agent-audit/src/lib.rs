//! # agent-audit
//!
//! Audit trails for LLM agents that a compliance officer, an incident
//! reviewer and an SRE can all trust. Every user request, model input and
//! output, tool call and result, and final answer becomes a structured,
//! timestamped, sequence-numbered, hash-chained record, delivered to the
//! sinks your configuration names, with an acknowledgement you can wait on
//! before the agent acts.
//!
//! This is the facade crate: it re-exports the core types, the sinks
//! enabled by features, and [`config`], which turns `audit.toml` into a
//! running [`Dispatcher`]. Sink types of your own can be named in
//! `audit.toml` too: register them in a
//! [`SinkRegistry`](config::SinkRegistry) and load with
//! [`Config::load_with`](config::Config::load_with).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit::{AckLevel, Auditor, EventType, config::Config};
//!
//! // audit.toml, or $AGENT_AUDIT_CONFIG, or the default (audit-log.jsonl + stdout).
//! let config = Config::discover(None)?;
//! let dispatcher = config.start().await?;
//! let audit = Auditor::new(dispatcher.clone()).for_request(None).with_agent("assistant");
//! audit.emit(EventType::UserRequest, &serde_json::json!({"text": "What is my balance?"})).await?;
//! // Audit before act: the tool runs only once its call is on disk.
//! audit.emit_wait(EventType::ToolCall, &serde_json::json!({"tool": "get_account_balance"}), AckLevel::Durable).await?;
//! let report = dispatcher.shutdown(Duration::from_secs(10)).await;
//! assert!(report.is_clean(), "{report}");
//! # Ok(()) }
//! ```
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `jsonl` | yes | [`jsonl`]: the JSONL file sink, reader and chain |
//! | `stdout` | yes | [`stdout`]: readable or JSON lines on stdout |
//! | `redact` | yes | [`redact`]: redaction before fan-out |
//! | `otlp` | no | [`otlp`]: OpenTelemetry logs over gRPC and HTTP |
//! | `agents` | no | [`agents`]: model client, tools, assistant and user proxy |
//! | `otel` | no | `telemetry`: `[telemetry]` exports GenAI spans and metrics through the OpenTelemetry SDK (brings `otlp`) |
//! | `sql` | no | [`sql`]: the trail in SQLite or PostgreSQL |
//! | `testing` | no | `conformance`: the suite every sink passes (see [`writing_a_sink`]) |
//!
//! A team that only wants the JSONL file depends on
//! `agent-audit = { version = "0.1", default-features = false, features = ["jsonl"] }`
//! and compiles no network stack.

pub use agent_audit_core::*;

pub mod config;

#[cfg(feature = "agents")]
pub use agent_audit_agents as agents;
#[cfg(feature = "jsonl")]
pub use agent_audit_jsonl as jsonl;
#[cfg(feature = "otlp")]
pub use agent_audit_otlp as otlp;
#[cfg(feature = "redact")]
pub use agent_audit_redact as redact;
#[cfg(feature = "sql")]
pub use agent_audit_sql as sql;
#[cfg(feature = "stdout")]
pub use agent_audit_stdout as stdout;

#[cfg(feature = "jsonl")]
pub mod sources;

/// How to write a sink of your own, register its type and prove it with
/// the conformance suite: `docs/writing-a-sink.md`, whose example is
/// compiled and run as a doctest.
#[doc = include_str!("../../../docs/writing-a-sink.md")]
pub mod writing_a_sink {}
#[cfg(feature = "otel")]
pub mod telemetry;
