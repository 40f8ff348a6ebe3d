//! # agent-audit-core
//!
//! The small, stable heart of agent-audit: the schema v2 [`Record`], the
//! sink traits every backend implements ([`Sink`] for a blocking one,
//! [`AsyncSink`] for one written with async clients), the [`Dispatcher`]
//! that numbers records and fans them out with acknowledgements, and the
//! [`Auditor`] handle agents emit through. It does no file or network I/O;
//! sinks live in their own crates (`agent-audit-jsonl`, `-stdout`,
//! `-otlp`).
//!
//! Every sink gets a worker thread of its own. A [`Sink`] is called there
//! directly; an [`AsyncSink`] is run there by a bridge, on a private
//! current-thread tokio runtime or on the application's
//! ([`DispatcherBuilder::async_runtime`]), with up to
//! [`AsyncSink::max_in_flight`] writes under way, answers taken in seq
//! order, the shutdown deadline as a watch a write can `select!` on
//! ([`ShutdownSignal::reached`]) and a write still under way at it
//! cancelled and reported failed ([`WriteCancelled`]).
//!
//! Data flows one way: agent -> [`Auditor`] -> [`Dispatcher`] -> sinks.
//! A [`SeqLease`] (see [`lease`]) keeps the numbering unique across
//! crashes; the JSONL crate stores one beside its log.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, MemorySink, Overflow, SinkOptions};
//!
//! let memory = MemorySink::new();
//! let dispatcher = Dispatcher::builder()
//!     .sink(SinkOptions::new("memory").queue(1024).overflow(Overflow::Block), memory.clone())
//!     .start()
//!     .await?;
//! let auditor = Auditor::new(dispatcher.clone()).for_request(None).with_agent("assistant");
//! // Audit before act: the tool runs only once its call is durable.
//! let receipt = auditor
//!     .emit_wait(EventType::ToolCall, &serde_json::json!({"tool": "get_account_balance"}), AckLevel::Durable)
//!     .await?;
//! assert_eq!(receipt.level, AckLevel::Durable);
//! let report = dispatcher.shutdown(Duration::from_secs(5)).await;
//! assert!(report.is_clean());
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Feature flags
//!
//! - `testing`: the sink conformance suite (the `conformance` module).
//! - `otel`: GenAI spans and metrics through the `opentelemetry` API
//!   (the `otel` module), and requests that join the current
//!   `opentelemetry::Context`'s span.

mod async_sink;
mod attributes;
mod auditor;
mod dispatcher;
mod error;
mod file_kind;
pub mod ids;
pub mod lease;
mod memory;
pub mod normalize;
#[cfg(feature = "otel")]
pub mod otel;
mod record;
mod redact;
pub mod retry;
mod sink;
pub mod text;
mod time;

#[cfg(feature = "testing")]
pub mod conformance;

pub use async_sink::{AsyncSink, WriteCancelled};
pub use attributes::{
    AttrValue, AttributeError, Attributes, MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES, MAX_ID_BYTES, check_id, otel_key,
};
pub use auditor::{Auditor, MAX_PAYLOAD_DEPTH};
pub use dispatcher::{
    DEFAULT_QUEUE, DeliveryError, Dispatcher, DispatcherBuilder, Health, Overflow, Receipt,
    ShutdownReport, SinkFailure, SinkHealth, SinkOptions, SinkReport,
};
pub use error::{EmitError, StartError};
pub use file_kind::file_kind;
pub use ids::{SpanId, TraceContext, TraceFlags, TraceId, TraceParentError};
pub use lease::{LeaseError, MemoryLease, SeqLease};
pub use memory::{MemorySink, MemorySinkError};
pub use record::{
    EventType, MAX_SEQ, MIN_SCHEMA_VERSION, Record, SCHEMA_VERSION, Scope, StoredRecord,
};
pub use redact::{IdRewrite, PayloadFilter};
pub use sink::{
    AckLevel, Batch, FailureKind, Retrying, ShutdownSignal, Sink, SinkError, SinkOpen, StatusSignal,
};
pub use time::Timestamp;
