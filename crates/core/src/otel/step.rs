//! One GenAI span and the auditor whose records point at it.

use std::time::Instant;

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{
    Span, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, TraceState, Tracer,
};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use serde::Serialize;

use super::{Telemetry, from_otel_span, from_otel_trace, to_otel_span, to_otel_trace};
use crate::ids::{SpanId, TraceFlags};
use crate::{AttrValue, Auditor};

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

/// The longest string a server or a model supplied that goes on a span,
/// in bytes (after redaction and escaping).
pub const MAX_SUPPLIED_LEN: usize = 256;

/// How much of a supplied string the redaction rules see: enough that a
/// secret in the kept part is whole, little enough that a huge value costs
/// nothing.
const SCAN_LEN: usize = 16 * 1024;

/// `text` cut to at most `max` bytes at a char boundary, with `…` when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// JSON text `text` as the dispatcher's [`PayloadFilter`](crate::PayloadFilter)
/// leaves it (wrapped so that the filter sees an object, as it sees
/// payloads); `None` when the rules dropped it whole. A filter that can
/// tell from the text that nothing applies spares the Value round trip.
fn redacted_json(auditor: &Auditor, text: String) -> Option<String> {
    let Some(filter) = auditor.dispatcher().filter() else {
        return Some(text);
    };
    let wrapped = format!("{{\"content\":{text}}}");
    if !filter.may_apply(&wrapped) {
        return Some(text);
    }
    let mut wrapped = serde_json::from_str::<serde_json::Value>(&wrapped).ok()?;
    filter.apply(&mut wrapped);
    wrapped.get("content").map(|v| v.to_string())
}

/// A string the server or the model supplied (a response model or id, a
/// finish reason, a tool name or call id), made fit for a span: through
/// the dispatcher's redaction as records are, control characters escaped
/// ([`text::sanitize`](crate::text::sanitize)), and at most
/// [`MAX_SUPPLIED_LEN`] bytes.
pub(crate) fn redacted_str(auditor: &Auditor, value: &str) -> String {
    let scanned = bounded(value, SCAN_LEN);
    let text = match serde_json::to_string(&scanned)
        .ok()
        .and_then(|json| redacted_json(auditor, json))
    {
        None => return String::new(),
        Some(json) => serde_json::from_str::<String>(&json).unwrap_or(json),
    };
    fitted(&text)
}

/// A string fit for a span: control characters escaped
/// ([`text::sanitize`](crate::text::sanitize)), at most
/// [`MAX_SUPPLIED_LEN`] bytes.
fn fitted(text: &str) -> String {
    bounded(&crate::text::sanitize(text), MAX_SUPPLIED_LEN)
}

/// Who asked, as a span carries it: `user.id` and `session.id` (the OTel
/// conventions' names), then each attribute under
/// [`otel_key`](crate::otel_key), the OTLP log records' name for it.
/// The values are the scope's, which the redaction rules already made
/// what the records carry (a `hash` rule's pseudonym, never the clear
/// id); strings are escaped and bounded like every other string a span
/// takes from outside ([`fitted`]), so a span's `user.id` is the record's
/// `user_id` cut to [`MAX_SUPPLIED_LEN`] bytes when longer.
fn identity(auditor: &Auditor) -> Vec<KeyValue> {
    let scope = &auditor.scope;
    let mut out = Vec::with_capacity(2 + scope.attributes.len());
    if let Some(user) = &scope.user_id {
        out.push(KeyValue::new("user.id", fitted(user)));
    }
    if let Some(session) = &scope.session_id {
        out.push(KeyValue::new("session.id", fitted(session)));
    }
    for (key, value) in scope.attributes.iter() {
        out.push(KeyValue::new(crate::otel_key(key), span_value(value)));
    }
    out
}

/// An attribute value as a span attribute: strings as strings (escaped and
/// bounded), integers that fit `i64` as integers, other numbers as floats
/// (beyond `i64`, their decimal text, so that nothing is rounded), and
/// booleans as booleans.
fn span_value(value: &AttrValue) -> Value {
    match value {
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::I64(i),
            (None, Some(f)) if n.is_f64() => Value::F64(f),
            _ => Value::String(n.to_string().into()),
        },
        AttrValue::String(s) => Value::String(fitted(s).into()),
    }
}

/// Whether a response model, as [`redacted_str`] left it, looks like a
/// model name (short, of the characters model names use), so that it can
/// be a metric attribute.
fn model_like(model: &str) -> bool {
    model.len() <= 64
        && !model.is_empty()
        && model.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@')
        })
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

    /// Opens `execute_tool {tool}`: one call of `tool`, a tool the
    /// application declared, `call_id` being the model's id for the call.
    /// Both go through the dispatcher's redaction, escaped and bounded
    /// ([`MAX_SUPPLIED_LEN`]): the model chose them.
    pub fn execute_tool(&self, tool: &str, call_id: &str) -> GenAiStep {
        self.execute_tool_named(tool, call_id, true)
    }

    /// Opens `execute_tool` for a tool the model asked for that the
    /// application did not declare: the span's name does not carry the
    /// model's choice; `gen_ai.tool.name` does, redacted, escaped and
    /// bounded.
    pub fn execute_undeclared_tool(&self, tool: &str, call_id: &str) -> GenAiStep {
        self.execute_tool_named(tool, call_id, false)
    }

    fn execute_tool_named(&self, tool: &str, call_id: &str, declared: bool) -> GenAiStep {
        let tool = redacted_str(self, tool);
        let name = if declared && !tool.is_empty() {
            format!("execute_tool {tool}")
        } else {
            Operation::ExecuteTool.as_str().to_string()
        };
        let attrs = vec![
            KeyValue::new("gen_ai.operation.name", Operation::ExecuteTool.as_str()),
            KeyValue::new("gen_ai.tool.name", tool),
            KeyValue::new("gen_ai.tool.call.id", redacted_str(self, call_id)),
            KeyValue::new("gen_ai.tool.type", "function"),
        ];
        GenAiStep::start(
            self,
            Operation::ExecuteTool,
            name,
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
            // Given by the caller, often from a request header: escaped
            // and bounded like the user and session ids.
            attrs.push(KeyValue::new("gen_ai.conversation.id", fitted(c)));
        }
        // On the span only: ids and attributes would give the metrics a
        // series per user.
        attrs.extend(identity(parent));
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
                auditor.scope_mut().trace_id = trace;
                auditor.scope_mut().span_id = span_id;
                auditor.scope_mut().trace_flags = TraceFlags::new(sc.trace_flags().to_u8());
                auditor.scope_mut().parent_span_id = if before.is_valid() {
                    from_otel_span(before.span_id())
                } else {
                    None
                };
            }
            _ => {
                auditor.scope_mut().span_id = SpanId::random();
                auditor.scope_mut().parent_span_id = parent_span;
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
    ///
    /// The server chose every string of `outcome`: each goes through the
    /// dispatcher's redaction, escaped and bounded ([`MAX_SUPPLIED_LEN`]).
    /// The response model is a metric attribute only when it looks like a
    /// model name and is one of the first few the telemetry has seen, so
    /// that a server cannot grow the metrics' series without bound.
    pub fn set_response(&mut self, outcome: &ChatOutcome<'_>) {
        if let Some(model) = outcome.model {
            let model = redacted_str(&self.auditor, model);
            if model_like(&model) && self.telemetry.admit_response_model(&model) {
                self.metric_attrs
                    .push(KeyValue::new("gen_ai.response.model", model.clone()));
            }
            self.span
                .set_attribute(KeyValue::new("gen_ai.response.model", model));
        }
        if let Some(id) = outcome.id {
            self.span.set_attribute(KeyValue::new(
                "gen_ai.response.id",
                redacted_str(&self.auditor, id),
            ));
        }
        if !outcome.finish_reasons.is_empty() {
            let reasons: Vec<StringValue> = outcome
                .finish_reasons
                .iter()
                .take(16)
                .map(|r| StringValue::from(redacted_str(&self.auditor, r)))
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
        // `None`: the rules dropped it whole.
        let Some(text) = redacted_json(&self.auditor, text) else {
            return false;
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
