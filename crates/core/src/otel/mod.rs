//! GenAI spans and metrics through the `opentelemetry` API (feature
//! `otel`), following the OpenTelemetry semantic conventions for
//! generative AI, version 1.41.0 (<https://github.com/open-telemetry/semantic-conventions/tree/v1.41.0/docs/gen-ai>).
//!
//! A [`GenAiStep`] is one span of an agent run, opened from an
//! [`Auditor`](crate::Auditor): `invoke_agent {agent}` ([`Auditor::invoke_agent`](crate::Auditor::invoke_agent)),
//! `chat {model}` of kind CLIENT ([`Auditor::chat`](crate::Auditor::chat)) and
//! `execute_tool {tool}` ([`Auditor::execute_tool`](crate::Auditor::execute_tool)). The step's own
//! auditor ([`GenAiStep::auditor`]) carries the span's trace id and span
//! id, so every record emitted through it points at a span the tracer
//! knows; its parent is the handle's span when that is a step's, else the
//! handle's parent (the application's span, or none: the step then starts
//! the trace and the tracer chooses its id).
//!
//! Spans go to the [`Telemetry`] the auditor was given
//! ([`Auditor::with_telemetry`](crate::Auditor::with_telemetry)), else to the global providers
//! (`opentelemetry::global`): they join the application's own
//! TracerProvider, sampler and exporters. With no provider installed the
//! API is a no-op, and the step's ids are ours.
//!
//! Message content, tool arguments and results go on spans only with
//! [`TelemetryOptions::capture_content`], and then only after the
//! dispatcher's [`PayloadFilter`](crate::PayloadFilter) (the redaction the
//! records get).
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_core::otel::ChatOutcome;
//! use agent_audit_core::{Auditor, Dispatcher, EventType, MemorySink, SinkOptions};
//! use serde_json::json;
//!
//! let sink = MemorySink::new();
//! let dispatcher = Dispatcher::builder().sink(SinkOptions::new("m"), sink.clone()).start().await?;
//! let request = Auditor::new(dispatcher.clone()).for_request(None);
//!
//! // Your own loop: one step per model call and per tool call.
//! let run = request.invoke_agent("assistant", Some("openai"), None);
//! let mut chat = run.auditor().chat(Some("openai"), "gpt-4o-mini");
//! chat.auditor().emit(EventType::AssistantInput, &json!({"messages": []})).await?;
//! chat.set_response(&ChatOutcome {
//!     model: Some("gpt-4o-mini-2024-07-18"),
//!     id: Some("chatcmpl-1"),
//!     finish_reasons: &["tool_calls"],
//!     input_tokens: Some(42),
//!     output_tokens: Some(7),
//! });
//! chat.auditor().emit(EventType::AssistantOutput, &json!({"content": null})).await?;
//! chat.end();
//! let tool = run.auditor().execute_tool("get_account_balance", "call_1");
//! tool.auditor().emit(EventType::ToolCall, &json!({"tool": "get_account_balance"})).await?;
//! tool.end();
//! run.end();
//!
//! dispatcher.shutdown(std::time::Duration::from_secs(5)).await;
//! let records = sink.records();
//! // The chat's records sit in the chat's span, a child of the run's.
//! assert_eq!(records[0].parent_span_id, records[2].parent_span_id);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```

mod metrics;
mod step;

use std::sync::Arc;

use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry::{Context, InstrumentationScope};

use crate::ids::{SpanId, TraceContext, TraceFlags, TraceId};

pub use metrics::{HealthMetrics, names};
pub use step::{ChatOutcome, GenAiStep, MAX_SUPPLIED_LEN, Operation};

/// The semantic conventions version the spans and metrics follow.
pub const SEMCONV_VERSION: &str = "1.41.0";
/// Its schema URL, set on the instrumentation scope.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";
/// The instrumentation scope's name.
pub const SCOPE_NAME: &str = "agent-audit";

/// How the agent runtime's telemetry behaves.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TelemetryOptions {
    /// Put message content, tool arguments and tool results on spans
    /// (`gen_ai.input.messages`, `gen_ai.output.messages`,
    /// `gen_ai.tool.call.arguments`, `gen_ai.tool.call.result`), after
    /// the dispatcher's redaction. Off by default: spans travel a lossy,
    /// unchained path to places the audit trail's readers may not be.
    pub capture_content: bool,
}

impl TelemetryOptions {
    /// Whether content goes on spans (see the field).
    pub fn capture_content(mut self, on: bool) -> Self {
        self.capture_content = on;
        self
    }
}

/// Where spans and metrics of agent runs go: a tracer and a meter, and the
/// [`TelemetryOptions`]. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    tracer: BoxedTracer,
    meter: Meter,
    instruments: metrics::Instruments,
    options: TelemetryOptions,
    /// The response models admitted as a metric attribute so far.
    response_models: std::sync::Mutex<Vec<String>>,
}

/// How many distinct response models become a metric attribute; later
/// ones are left off the metrics (they stay on the spans).
const MAX_RESPONSE_MODELS: usize = 32;

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(SCHEMA_URL)
        .build()
}

impl Telemetry {
    /// Spans and metrics through the application's providers.
    pub fn new<T, M>(tracer_provider: &T, meter_provider: &M, options: TelemetryOptions) -> Self
    where
        T: TracerProvider,
        T::Tracer: Send + Sync + 'static,
        <T::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
        M: MeterProvider + ?Sized,
    {
        let tracer = BoxedTracer::new(Box::new(tracer_provider.tracer_with_scope(scope())));
        Self::from_parts(tracer, meter_provider.meter_with_scope(scope()), options)
    }

    /// Spans and metrics through the global providers as they are now
    /// (`opentelemetry::global::tracer_provider()`, `meter_provider()`);
    /// a no-op while none is installed.
    pub fn global(options: TelemetryOptions) -> Self {
        let tracer = opentelemetry::global::tracer_with_scope(scope());
        Self::from_parts(
            tracer,
            opentelemetry::global::meter_with_scope(scope()),
            options,
        )
    }

    fn from_parts(tracer: BoxedTracer, meter: Meter, options: TelemetryOptions) -> Self {
        Telemetry {
            inner: Arc::new(Inner {
                tracer,
                instruments: metrics::Instruments::new(&meter),
                meter,
                options,
                response_models: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &TelemetryOptions {
        &self.inner.options
    }

    /// Its meter, for instruments of the application's own.
    pub fn meter(&self) -> &Meter {
        &self.inner.meter
    }

    /// Whether `model` may be a metric attribute: it is one of the first
    /// [`MAX_RESPONSE_MODELS`] response models seen.
    pub(crate) fn admit_response_model(&self, model: &str) -> bool {
        let Ok(mut seen) = self.inner.response_models.lock() else {
            return false;
        };
        if seen.iter().any(|m| m == model) {
            return true;
        }
        if seen.len() >= MAX_RESPONSE_MODELS {
            return false;
        }
        seen.push(model.to_string());
        true
    }

    /// Records how long the runtime waited for an acknowledgement (audit
    /// before act), as `agent_audit.ack.duration`.
    pub fn record_ack_wait(&self, seconds: f64, level: crate::AckLevel) {
        self.inner.instruments.ack_wait(seconds, level);
    }
}

impl crate::Auditor {
    /// The same handle, its GenAI steps reporting to `telemetry` instead of
    /// the global providers.
    pub fn with_telemetry(&self, telemetry: Telemetry) -> crate::Auditor {
        let mut next = self.clone();
        next.otel.telemetry = Some(telemetry);
        next
    }

    /// The telemetry its steps report to: the one given to
    /// [`Auditor::with_telemetry`](crate::Auditor::with_telemetry), else the
    /// global providers' (looked up on each call while none was given).
    pub fn telemetry(&self) -> Telemetry {
        self.otel
            .telemetry
            .clone()
            .unwrap_or_else(|| Telemetry::global(TelemetryOptions::default()))
    }
}

/// What an [`Auditor`](crate::Auditor) knows of OpenTelemetry: the
/// telemetry given to it, and the span id of the step whose handle it is
/// (a handle made from it by `child_span` or `for_request` has another
/// span id and so no step).
#[derive(Clone, Debug, Default)]
pub(crate) struct OtelLink {
    pub(crate) telemetry: Option<Telemetry>,
    pub(crate) step_span: Option<SpanId>,
}

/// The current `opentelemetry::Context`'s span as a [`TraceContext`], if
/// it has a valid one: the application's span a request joins when no
/// trace context was given.
pub(crate) fn current_context() -> Option<TraceContext> {
    let cx = Context::current();
    if !cx.has_active_span() {
        return None;
    }
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(TraceContext::new(
        from_otel_trace(sc.trace_id())?,
        Some(from_otel_span(sc.span_id())?),
        TraceFlags::new(sc.trace_flags().to_u8()),
    ))
}

pub(crate) fn to_otel_trace(id: TraceId) -> opentelemetry::trace::TraceId {
    opentelemetry::trace::TraceId::from_bytes(id.to_bytes())
}

pub(crate) fn to_otel_span(id: SpanId) -> opentelemetry::trace::SpanId {
    opentelemetry::trace::SpanId::from_bytes(id.to_bytes())
}

pub(crate) fn from_otel_trace(id: opentelemetry::trace::TraceId) -> Option<TraceId> {
    TraceId::from_bytes(id.to_bytes())
}

pub(crate) fn from_otel_span(id: opentelemetry::trace::SpanId) -> Option<SpanId> {
    SpanId::from_bytes(id.to_bytes())
}
