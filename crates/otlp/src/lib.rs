//! # agent-audit-otlp
//!
//! An agent-audit [`AsyncSink`](agent_audit_core::AsyncSink) that exports every audit
//! record to an OpenTelemetry Collector as one OTLP LogRecord, over gRPC,
//! HTTP/protobuf or HTTP/JSON, and acknowledges
//! [`AckLevel::Exported`](agent_audit_core::AckLevel::Exported) only after
//! the collector answered success with nothing rejected.
//!
//! Unlike the OpenTelemetry SDK's batch processor, nothing stands between
//! the record and the wire that could drop it silently: the dispatcher's
//! bounded queue (with its `block | drop_newest | fail_closed` policy) holds
//! records while a request is retried, a `partial_success` rejection fails
//! exactly the records the collector refused
//! ([`SinkError::rejected`](agent_audit_core::SinkError::rejected)), and a
//! collector that stays down past the retry budget fails the batch with an
//! error naming the endpoint.
//!
//! ## Mapping
//!
//! | LogRecord field | from the record |
//! |---|---|
//! | `event_name` | `agent_audit.<event_type>` |
//! | `body` | the payload as an AnyValue map (key order kept) |
//! | `time_unix_nano` / `observed_time_unix_nano` | `ts` / the export time |
//! | `severity_number` | INFO, or ERROR for `*_error` and `audit_gap` |
//! | `trace_id`, `span_id` | the record's W3C ids |
//! | `flags` | the trace's W3C flags ([`Scope::trace_flags`](agent_audit_core::Scope::trace_flags)) |
//! | attributes | `audit.seq`, `audit.request_id`, `audit.prev` (this sink's SHA-256 chain over the records' JSON lines, starting from 64 zeros), `audit.parent_span_id`, `gen_ai.conversation.id` (correlation id), `gen_ai.agent.name`, `gen_ai.operation.name` (`invoke_agent`, `chat`, `execute_tool`), and from the payload where present: `gen_ai.provider.name` (`provider`), `gen_ai.tool.name` (`tool`), `gen_ai.tool.call.id` (`call_id`), `gen_ai.request.model` (`model`; `gen_ai.response.model` for `assistant_output`, the model the server reported), `gen_ai.response.id` (`response_id`), `gen_ai.response.finish_reasons` (`finish_reason`, as a one-string array), `gen_ai.usage.input_tokens` (`usage.input_tokens` or `usage.prompt_tokens`), `gen_ai.usage.output_tokens` (`usage.output_tokens` or `usage.completion_tokens`), `error.type` (`kind`, on error records); names per the GenAI semantic conventions v1.41.0 |
//! | resource | `service.name`, `service.version`, `host.name` and `OTEL_RESOURCE_ATTRIBUTES` ([`ServiceInfo`]); `schema_url` [`SCHEMA_URL`] on the resource and the scope |
//!
//! ## Usage
//!
//! The sink runs through core's async bridge
//! ([`DispatcherBuilder::async_sink`](agent_audit_core::DispatcherBuilder::async_sink)):
//! on its own worker thread and a private current-thread runtime, or on
//! the application's runtime, with one request of `batch_size` records
//! per write and up to `max_in_flight` writes under way.
//!
//! The facade deserialises the `[[sinks]] type = "otlp"` table (without the
//! dispatcher's keys `type`, `name`, `required`, `overflow`, `queue`) into
//! an [`OtlpConfig`] and builds the sink with [`OtlpSink::from_config`]:
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
//! use agent_audit_otlp::{OtlpConfig, OtlpSink, ServiceInfo};
//!
//! // Port 9 on loopback has no collector: the record cannot be exported,
//! // and the receipt says so instead of claiming success.
//! let config: OtlpConfig = toml::from_str(r#"
//!     endpoint = "http://127.0.0.1:9"
//!     protocol = "grpc"
//!     compression = "gzip"
//!     retry = { max_elapsed_ms = 0 }
//! "#)?;
//! let sink = OtlpSink::from_config(&config, ServiceInfo::new("billing-agent").with_version("1.4.0"))?;
//! let dispatcher = Dispatcher::builder()
//!     .async_sink(SinkOptions::new("collector").required(false), sink)
//!     .start()
//!     .await?;
//! let auditor = Auditor::new(dispatcher.clone()).for_request(None);
//! let receipt = auditor
//!     .emit_wait(EventType::ToolCall, &serde_json::json!({"tool": "refund", "call_id": "c1"}), AckLevel::Exported)
//!     .await?;
//! assert_eq!(receipt.failed.len(), 1);
//! assert!(receipt.failed[0].error.to_string().contains("http://127.0.0.1:9"));
//! dispatcher.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Configuration keys (all optional): `endpoint`, `protocol` (`grpc`,
//! `http/protobuf`, `http/json`), `headers`, `compression` (`gzip`, `none`),
//! `timeout_ms`, `tls = { ca_file, client_cert_file, client_key_file }`,
//! `batch_size`, `max_in_flight`, `linger_ms`, `max_request_bytes`,
//! `retry = { initial_backoff_ms, max_backoff_ms, max_elapsed_ms }`. With no
//! `endpoint`, the standard `OTEL_EXPORTER_OTLP_LOGS_*` and
//! `OTEL_EXPORTER_OTLP_*` variables apply (see [`OtlpConfig`]). An
//! endpoint with a user or password (`http://user:pw@host`), in the table
//! or a variable, is refused with [`OtlpConfigError::Credentials`]:
//! credentials go in `headers`. An endpoint is only ever shown with its
//! query and fragment as `***`.
//!
//! While a batch is retried the sink publishes
//! [`Retrying`](agent_audit_core::Retrying) (since when, until when, the
//! last error) through [`AsyncSink::watch_status`](agent_audit_core::AsyncSink::watch_status),
//! which the dispatcher's health snapshot shows.
//!
//! Delivery is at least once: a request whose answer was lost is sent
//! again, so a consumer that must count records exactly deduplicates on
//! `audit.seq`.
//!
//! ## Feature flags
//!
//! None: the crate always speaks all three protocols. Depend on the facade
//! `agent-audit` without its `otlp` feature to compile no gRPC stack.

mod config;
mod mapping;
mod quickack;
mod sink;
mod transport;
mod wire;

pub use config::{
    BOUNDS, ClientIdentity, Compression, DEFAULT_BATCH_SIZE, DEFAULT_LINGER, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_TIMEOUT, MAX_CLIENT_FILE_BYTES, OtlpConfig, OtlpConfigError,
    OtlpSettings, Protocol, RESOURCE_ATTRIBUTES_ENV, RetryConfig, SCHEMA_URL, SERVICE_NAME_ENV,
    ServiceInfo, Signal, TlsConfig, read_client_identity,
};
pub use mapping::{EVENT_NAME_PREFIX, GENESIS_PREV, json_to_any_value, map_record, operation_name};
pub use sink::{ExportError, OtlpSink};

/// The OTLP message types this crate sends, re-exported for consumers
/// and tests.
pub use opentelemetry_proto::tonic as proto;
