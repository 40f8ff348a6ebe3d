//! One GenAI span and the auditor whose records point at it.

use std::time::Instant;

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{
    Span, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, TraceState, Tracer,
};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use serde::Serialize;

use super::{Telemetry, from_otel_span, from_otel_trace, to_otel_span, to_otel_trace};
use crate::Auditor;
use crate::ids::{SpanId, TraceFlags};

/// The GenAI operation a step is (`gen_ai.operation.name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `invoke_agent`: one agent's run.
    InvokeAgent,
    /// `chat`: one model call.
    Chat,
    /// `execute_tool`: one tool call.
    ExecuteTool,
}

impl Operation {
    /// The value of `gen_ai.operation.name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::InvokeAgent => "invoke_agent",
            Operation::Chat => "chat",
            Operation::ExecuteTool => "execute_tool",
        }
    }
}

/// What a model call answered, for [`GenAiStep::set_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatOutcome<'a> {
    /// The model the server reports (`gen_ai.response.model`).
    pub model: Option<&'a str>,
    /// The server's response id (`gen_ai.response.id`).
    pub id: Option<&'a str>,
    /// Why the model stopped, one per choice (`gen_ai.response.finish_reasons`).
    pub finish_reasons: &'a [&'a str],
    /// Prompt tokens (`gen_ai.usage.input_tokens`).
    pub input_tokens: Option<u64>,
    /// Completion tokens (`gen_ai.usage.output_tokens`).
    pub output_tokens: Option<u64>,
}

/// One span of an agent run and the auditor whose records point at it.
///
/// Ends when [`GenAiStep::end`] is called or when dropped; a `chat` step
/// then records `gen_ai.client.operation.duration`.
pub struct GenAiStep {
    span: BoxedSpan,
    auditor: Auditor,
    telemetry: Telemetry,
    operation: Operation,
    started: Instant,
    /// Attributes of the duration and token metrics (chat steps).
    metric_attrs: Vec<KeyValue>,
    error_type: Option<String>,
    ended: bool,
}

impl std::fmt::Debug for GenAiStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenAiStep")
            .field("operation", &self.operation)
            .field("span_id", &self.auditor.scope.span_id)
            .finish_non_exhaustive()
    }
}

fn opt(key: &'static str, value: Option<&str>) -> Option<KeyValue> {
    value.map(|v| KeyValue::new(key, v.to_string()))
}

impl Auditor {
    /// Opens `invoke_agent {agent}`: one agent's run. `provider` and
    /// `model` name the agent's model when it has one.
    ///
    /// The step's auditor names the agent. Opened on a handle that is not
    /// a step's (a request's), the step takes that handle's place in the
    /// tree: its parent is the handle's parent.
    pub fn invoke_agent(
        &self,
        agent: &str,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> GenAiStep {
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", Operation::InvokeAgent.as_str()),
            KeyValue::new("gen_ai.agent.name", agent.to_string()),
        ];
        attrs.extend(opt("gen_ai.provider.name", provider));
        attrs.extend(opt("gen_ai.request.model", model));
        let mut step = GenAiStep::start(
            self,
            Operation::InvokeAgent,
            format!("invoke_agent {agent}"),
            SpanKind::Internal,
            attrs,
            Vec::new(),
        );
        step.auditor = step.auditor.with_agent(agent);
        step
    }

    /// Opens `chat {model}` (kind CLIENT): one model call of
    /// `request_model` at `provider`.
    pub fn chat(&self, provider: Option<&str>, request_model: &str) -> GenAiStep {
        let mut metric_attrs = vec![
            KeyValue::new("gen_ai.operation.name", Operation::Chat.as_str()),
            KeyValue::new("gen_ai.request.model", request_model.to_string()),
        ];
        metric_attrs.extend(opt("gen_ai.provider.name", provider));
        GenAiStep::start(
            self,
            Operation::Chat,
            format!("chat {request_model}"),
            SpanKind::Client,
            metric_attrs.clone(),
            metric_attrs,
        )
    }

    /// Opens `execute_tool {tool}`: one call of `tool`, `call_id` being
    /// the model's id for it.
    pub fn execute_tool(&self, tool: &str, call_id: &str) -> GenAiStep {
        let attrs = vec![
            KeyValue::new("gen_ai.operation.name", Operation::ExecuteTool.as_str()),
            KeyValue::new("gen_ai.tool.name", tool.to_string()),
            KeyValue::new("gen_ai.tool.call.id", call_id.to_string()),
            KeyValue::new("gen_ai.tool.type", "function"),
        ];
        GenAiStep::start(
            self,
            Operation::ExecuteTool,
            format!("execute_tool {tool}"),
            SpanKind::Internal,
            attrs,
            Vec::new(),
        )
    }
}

impl GenAiStep {
    fn start(
        parent: &Auditor,
        operation: Operation,
        name: String,
        kind: SpanKind,
        mut attrs: Vec<KeyValue>,
        metric_attrs: Vec<KeyValue>,
    ) -> GenAiStep {
        let telemetry = parent.telemetry();
        if let Some(c) = &parent.scope.correlation_id {
            attrs.push(KeyValue::new("gen_ai.conversation.id", c.to_string()));
        }
        let own = parent.otel.step_span == Some(parent.scope.span_id);
        let parent_span = if own {
            Some(parent.scope.span_id)
        } else {
            parent.scope.parent_span_id
        };
        let cx = match parent_span {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                to_otel_trace(parent.scope.trace_id),
                to_otel_span(p),
                opentelemetry::trace::TraceFlags::new(parent.scope.trace_flags.bits()),
                true,
                TraceState::NONE,
            )),
            // A root step: the application's current span, if any, is
            // its parent (what the tracer would pick by itself).
            None => Context::current(),
        };
        let builder = SpanBuilder::from_name(name)
            .with_kind(kind)
            .with_attributes(attrs);
        let span = telemetry.inner.tracer.build_with_context(builder, &cx);
        let mut auditor = parent.clone();
        let sc = span.span_context();
        let before = cx.span().span_context().clone();
        // A no-op tracer hands back its parent's context (or an invalid
        // one): the step then has ids of our own.
        let opened = sc.is_valid() && sc.span_id() != before.span_id();
        match (
            opened,
            from_otel_trace(sc.trace_id()),
            from_otel_span(sc.span_id()),
        ) {
            (true, Some(trace), Some(span_id)) => {
                auditor.scope.trace_id = trace;
                auditor.scope.span_id = span_id;
                auditor.scope.trace_flags = TraceFlags::new(sc.trace_flags().to_u8());
                auditor.scope.parent_span_id = if before.is_valid() {
                    from_otel_span(before.span_id())
                } else {
                    None
                };
            }
            _ => {
                auditor.scope.span_id = SpanId::random();
                auditor.scope.parent_span_id = parent_span;
            }
        }
        auditor.otel.step_span = Some(auditor.scope.span_id);
        auditor.otel.telemetry = Some(telemetry.clone());
        GenAiStep {
            span,
            auditor,
            telemetry,
            operation,
            started: Instant::now(),
            metric_attrs,
            error_type: None,
            ended: false,
        }
    }

    /// The auditor whose records carry this step's trace and span ids;
    /// steps opened on it are this step's children.
    pub fn auditor(&self) -> &Auditor {
        &self.auditor
    }

    /// Which operation it is.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// Sets the answer's attributes on a `chat` step and records its token
    /// usage (`gen_ai.client.token.usage`, one point per token type).
    pub fn set_response(&mut self, outcome: &ChatOutcome<'_>) {
        if let Some(model) = outcome.model {
            let kv = KeyValue::new("gen_ai.response.model", model.to_string());
            self.metric_attrs.push(kv.clone());
            self.span.set_attribute(kv);
        }
        if let Some(id) = outcome.id {
            self.span
                .set_attribute(KeyValue::new("gen_ai.response.id", id.to_string()));
        }
        if !outcome.finish_reasons.is_empty() {
            let reasons: Vec<StringValue> = outcome
                .finish_reasons
                .iter()
                .map(|r| StringValue::from(r.to_string()))
                .collect();
            self.span.set_attribute(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(reasons)),
            ));
        }
        for (key, kind, tokens) in [
            ("gen_ai.usage.input_tokens", "input", outcome.input_tokens),
            (
                "gen_ai.usage.output_tokens",
                "output",
                outcome.output_tokens,
            ),
        ] {
            let Some(tokens) = tokens else { continue };
            self.span.set_attribute(KeyValue::new(
                key,
                i64::try_from(tokens).unwrap_or(i64::MAX),
            ));
            self.telemetry
                .inner
                .instruments
                .tokens(tokens, kind, &self.metric_attrs);
        }
    }

    /// Whether [`GenAiStep::capture_content`] would put anything on the
    /// span: content capture is on and the span is recorded. Lets a caller
    /// skip building content nobody keeps.
    pub fn captures_content(&self) -> bool {
        self.telemetry.options().capture_content && self.span.is_recording()
    }

    /// Puts content on the span as the attribute `key` (for example
    /// `gen_ai.input.messages`, `gen_ai.tool.call.result`), as JSON text,
    /// only when [`TelemetryOptions::capture_content`](super::TelemetryOptions::capture_content)
    /// is on, and only after the dispatcher's redaction. Returns whether it
    /// was set.
    pub fn capture_content<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> bool {
        if !self.captures_content() {
            return false;
        }
        let Ok(text) = serde_json::to_string(value) else {
            return false;
        };
        let text = match self.auditor.dispatcher().filter() {
            None => text,
            Some(filter) => {
                // Wrapped so that the filter sees an object, as it sees
                // payloads; a filter that can tell from the text that
                // nothing applies spares the Value round trip, as for records.
                let wrapped = format!("{{\"content\":{text}}}");
                if !filter.may_apply(&wrapped) {
                    text
                } else {
                    let Ok(mut wrapped) = serde_json::from_str::<serde_json::Value>(&wrapped)
                    else {
                        return false;
                    };
                    filter.apply(&mut wrapped);
                    match wrapped.get("content") {
                        Some(v) => v.to_string(),
                        // The rules dropped it whole.
                        None => return false,
                    }
                }
            }
        };
        // A plain string is put as it is, anything else as JSON text.
        let text = if text.starts_with('"') {
            serde_json::from_str::<String>(&text).unwrap_or(text)
        } else {
            text
        };
        self.span.set_attribute(KeyValue::new(key, text));
        true
    }

    /// Marks the step failed: `error.type` set to `error_type` (a low
    /// cardinality name such as `timeout`, `rate_limited`,
    /// `invalid_arguments`) and the span's status Error.
    pub fn fail(&mut self, error_type: &str) {
        self.span
            .set_attribute(KeyValue::new("error.type", error_type.to_string()));
        self.span.set_status(Status::error(error_type.to_string()));
        self.error_type = Some(error_type.to_string());
    }

    /// Ends the span (and records a `chat` step's duration).
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.operation == Operation::Chat {
            if let Some(e) = &self.error_type {
                self.metric_attrs
                    .push(KeyValue::new("error.type", e.clone()));
            }
            self.telemetry
                .inner
                .instruments
                .duration(self.started.elapsed().as_secs_f64(), &self.metric_attrs);
        }
        self.span.end();
    }
}

impl Drop for GenAiStep {
    fn drop(&mut self) {
        self.finish();
    }
}
