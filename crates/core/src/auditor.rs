//! The handle agents emit through, carrying who and where they are.

use std::sync::Arc;

use serde::Serialize;

use crate::attributes::{self, AttrValue, AttributeError};
use crate::dispatcher::{Dispatcher, Draft, Receipt};
use crate::error::EmitError;
use crate::ids::{SpanId, TraceContext, TraceFlags, TraceId, new_request_id};
use crate::record::{EventType, RecordMeta, Scope};
use crate::redact::IdRewrite;
use crate::sink::AckLevel;

/// Emits records into a [`Dispatcher`] with a [`Scope`].
///
/// Cheap to clone; the `with_*` methods return a new handle with a narrower
/// scope, so each agent and each step carries its own ids.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, MemorySink, SinkOptions};
///
/// let sink = MemorySink::new();
/// let dispatcher = Dispatcher::builder()
///     .sink(SinkOptions::new("memory"), sink.clone())
///     .start()
///     .await?;
/// let auditor = Auditor::new(dispatcher.clone()).for_request(None).with_agent("assistant");
/// let receipt = auditor
///     .emit_wait(EventType::UserRequest, &serde_json::json!({"text": "balance?"}), AckLevel::Written)
///     .await?;
/// assert_eq!(receipt.seq, 1);
/// dispatcher.shutdown(std::time::Duration::from_secs(5)).await;
/// assert_eq!(sink.records().len(), 1);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Auditor {
    dispatcher: Dispatcher,
    pub(crate) scope: Arc<Scope>,
    /// The application's trace context, if it gave one: requests under it
    /// join its trace instead of starting their own.
    context: Option<TraceContext>,
    /// The telemetry of GenAI steps, and the step this handle is.
    #[cfg(feature = "otel")]
    pub(crate) otel: crate::otel::OtelLink,
    /// Ids given to [`Auditor::with_user`] or [`Auditor::with_session`]
    /// over [`MAX_ID_BYTES`](crate::MAX_ID_BYTES): the setters cannot
    /// fail, so the refusal waits for the next emit.
    over_long: OverLongIds,
}

/// The lengths of the over-long ids a handle was given, kept instead of
/// the ids themselves.
#[derive(Debug, Clone, Copy, Default)]
struct OverLongIds {
    request: Option<usize>,
    correlation: Option<usize>,
    user: Option<usize>,
    session: Option<usize>,
}

impl OverLongIds {
    /// Refuses a record of a handle given an over-long id.
    fn check(&self) -> Result<(), EmitError> {
        for (field, len) in [
            ("request_id", self.request),
            ("correlation_id", self.correlation),
            ("user_id", self.user),
            ("session_id", self.session),
        ] {
            if let Some(len) = len {
                return Err(EmitError::IdTooLong {
                    field,
                    len,
                    max: crate::MAX_ID_BYTES,
                });
            }
        }
        Ok(())
    }
}

/// The length of `id` when it is over [`MAX_ID_BYTES`](crate::MAX_ID_BYTES).
fn over_long(field: &'static str, id: &str) -> Option<usize> {
    attributes::check_id(field, id).err().map(|_| id.len())
}

impl Auditor {
    /// A handle with a fresh trace and no request.
    pub fn new(dispatcher: Dispatcher) -> Auditor {
        let scope = Scope {
            attributes: dispatcher.attributes().clone(),
            ..Scope::new(TraceId::random(), None)
        };
        Auditor {
            dispatcher,
            scope: Arc::new(scope),
            context: None,
            #[cfg(feature = "otel")]
            otel: Default::default(),
            over_long: OverLongIds::default(),
        }
    }

    /// The dispatcher behind this handle.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The current scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The scope to change, copied first if records or other handles
    /// share it (they keep what they were emitted with).
    pub(crate) fn scope_mut(&mut self) -> &mut Scope {
        Arc::make_mut(&mut self.scope)
    }

    /// Starts a request: the given id or a new one, a correlation id (kept
    /// if already set, else the request id) and a new span.
    ///
    /// The request's span starts a new trace, so that each request a
    /// long-running process handles is a trace of its own; under
    /// [`Auditor::with_trace_context`] it is instead a child of the
    /// application's span, in the application's trace.
    ///
    /// A given id passes the dispatcher's [`PayloadFilter::apply_id`](crate::PayloadFilter::apply_id)
    /// first, so redaction rules apply to it as to payload values.
    ///
    /// A given id longer than [`MAX_ID_BYTES`](crate::MAX_ID_BYTES) is not
    /// kept (a fresh one stands in): every emit of the returned handle and
    /// of the handles made from it fails with [`EmitError::IdTooLong`]
    /// naming `request_id`, never the id, as for
    /// [`Auditor::with_user`].
    pub fn for_request(&self, request_id: Option<&str>) -> Auditor {
        let over_long = request_id.and_then(|id| over_long("request_id", id));
        let request_id = request_id.filter(|_| over_long.is_none());
        let id: Arc<str> = match request_id {
            Some(id) => self.filtered_id("request_id", id),
            None => Arc::from(new_request_id()),
        };
        let mut next = self.clone();
        next.over_long.request = over_long;
        next.scope_mut().span_id = SpanId::random();
        // With `otel`, the application's current span is the context a
        // request joins when none was given.
        #[cfg(feature = "otel")]
        let context = self.context.or_else(crate::otel::current_context);
        #[cfg(not(feature = "otel"))]
        let context = self.context;
        match context {
            Some(cx) => {
                next.scope_mut().trace_id = cx.trace_id();
                next.scope_mut().parent_span_id = cx.parent_span_id();
                next.scope_mut().trace_flags = cx.flags();
            }
            None => {
                next.scope_mut().trace_id = TraceId::random();
                next.scope_mut().parent_span_id = None;
                next.scope_mut().trace_flags = TraceFlags::SAMPLED;
            }
        }
        let correlation = match (&self.scope.correlation_id, request_id) {
            (Some(c), _) => c.clone(),
            // Derived from the request id: the rules of both fields apply,
            // so the raw id cannot leak through the field without a rule.
            (None, Some(raw)) => self
                .rewritten_id("correlation_id", raw)
                .unwrap_or_else(|| id.clone()),
            (None, None) => id.clone(),
        };
        next.scope_mut().correlation_id = Some(correlation);
        next.scope_mut().request_id = Some(id);
        next
    }

    /// Sets the correlation id shared by every agent of a conversation,
    /// after the dispatcher's [`PayloadFilter::apply_id`](crate::PayloadFilter::apply_id).
    /// An id longer than [`MAX_ID_BYTES`](crate::MAX_ID_BYTES) is not kept:
    /// emits fail with [`EmitError::IdTooLong`] naming `correlation_id`, as
    /// for [`Auditor::with_user`].
    pub fn with_correlation_id(&self, id: &str) -> Auditor {
        let mut next = self.clone();
        next.over_long.correlation = over_long("correlation_id", id);
        if next.over_long.correlation.is_none() {
            next.scope_mut().correlation_id = Some(self.filtered_id("correlation_id", id));
        }
        next
    }

    /// `id` as the redaction rules want it recorded. Done once per scope,
    /// not per record: ids are fixed for the scope's lifetime.
    fn filtered_id(&self, field: &str, id: &str) -> Arc<str> {
        self.rewritten_id(field, id)
            .unwrap_or_else(|| Arc::from(id))
    }

    /// What the rules make of `id`, or `None` when they keep it.
    fn rewritten_id(&self, field: &str, id: &str) -> Option<Arc<str>> {
        match self.dispatcher.filter()?.apply_id(field, id) {
            IdRewrite::Keep => None,
            IdRewrite::Replace(id) => Some(Arc::from(id)),
            // A fresh id, not none: the records of the request must still
            // join each other, only not the person behind the old id.
            IdRewrite::Drop => Some(Arc::from(new_request_id())),
        }
    }

    /// Names the end user the records are for (`user_id`, schema v2):
    /// every record of this handle and of the handles made from it
    /// (requests, agents, child spans) carries it, and with the `otel`
    /// feature so does every GenAI span opened on them (`user.id`). The id
    /// passes the dispatcher's [`PayloadFilter::apply_id`](crate::PayloadFilter::apply_id)
    /// under the field name `user_id` first, once: a `hash` rule makes it
    /// a stable pseudonym; a `drop` rule records no user.
    ///
    /// An id longer than [`MAX_ID_BYTES`](crate::MAX_ID_BYTES) is not
    /// kept: every emit of the returned handle, and of every handle made
    /// from it, fails with [`EmitError::IdTooLong`] naming `user_id`
    /// (never the id) until `with_user` is given an id within the limit,
    /// and its spans carry no `user.id`. For an id from outside (a request
    /// header, a command line), [`Auditor::try_with_user`] refuses it
    /// where it is given instead.
    pub fn with_user(&self, id: &str) -> Auditor {
        let mut next = self.clone();
        let (user, over_long) = self.bounded_identity("user_id", id);
        next.scope_mut().user_id = user;
        next.over_long.user = over_long;
        next
    }

    /// [`Auditor::with_user`] for an id from outside (a request header, a
    /// command line): an id longer than [`MAX_ID_BYTES`](crate::MAX_ID_BYTES)
    /// is refused with [`AttributeError::IdTooLong`] naming `user_id`
    /// (not the id), and `self` is unchanged.
    pub fn try_with_user(&self, id: &str) -> Result<Auditor, AttributeError> {
        attributes::check_id("user_id", id)?;
        Ok(self.with_user(id))
    }

    /// [`Auditor::with_session`] within [`MAX_ID_BYTES`](crate::MAX_ID_BYTES),
    /// as [`Auditor::try_with_user`]: the error names `session_id`.
    pub fn try_with_session(&self, id: &str) -> Result<Auditor, AttributeError> {
        attributes::check_id("session_id", id)?;
        Ok(self.with_session(id))
    }

    /// Names the user's session (`session_id`, schema v2; `session.id` on
    /// spans), carried like [`Auditor::with_user`]'s id and redacted the
    /// same way under the field name `session_id`. An id longer than
    /// [`MAX_ID_BYTES`](crate::MAX_ID_BYTES) makes every emit of the
    /// returned handle fail with [`EmitError::IdTooLong`] naming
    /// `session_id`, as for a user id; [`Auditor::try_with_session`]
    /// refuses it where it is given.
    pub fn with_session(&self, id: &str) -> Auditor {
        let mut next = self.clone();
        let (session, over_long) = self.bounded_identity("session_id", id);
        next.scope_mut().session_id = session;
        next.over_long.session = over_long;
        next
    }

    /// Sets one attribute (`attributes`, schema v2) on every record of
    /// this handle and the handles made from it, beside the dispatcher's
    /// own ([`Dispatcher::attributes`]); a key set again replaces the
    /// value. The limits ([`MAX_ATTRIBUTES`](crate::MAX_ATTRIBUTES),
    /// [`MAX_ATTRIBUTE_KEY_BYTES`](crate::MAX_ATTRIBUTE_KEY_BYTES),
    /// [`MAX_ATTRIBUTE_VALUE_BYTES`](crate::MAX_ATTRIBUTE_VALUE_BYTES)) are
    /// checked on the value as given; an error names the attribute and
    /// leaves `self` as it was. The key is then scanned by the detectors
    /// as a payload object's keys are (a token or an e-mail address given
    /// as a key is recorded masked), and string and number values pass
    /// the redaction rules under the attribute's key, as a payload field
    /// would.
    pub fn with_attribute(
        &self,
        key: &str,
        value: impl Into<AttrValue>,
    ) -> Result<Auditor, AttributeError> {
        let value = value.into();
        attributes::check(key, &value)?;
        let mut next = self.clone();
        match attributes::redacted(self.dispatcher.filter(), &Arc::from(key), value) {
            Some((k, v)) => {
                // A key the rules renamed (masked) does not replace another
                // attribute masked alike: `#2`, `#3` as in a payload.
                let mut name = k.clone();
                let mut n = 2;
                while &*k != key && self.scope.attributes.get(&name).is_some() {
                    name = Arc::from(format!("{k}#{n}"));
                    n += 1;
                }
                next.scope_mut().attributes = self.scope.attributes.with(&name, v)?
            }
            // Dropped by a rule: the attribute is not recorded at all, and
            // an earlier value of the key must not stay behind either.
            None => {
                next.scope_mut().attributes = self.scope.attributes.without(key);
            }
        }
        Ok(next)
    }

    /// `id` as the rules want a `user_id` or `session_id` recorded; none
    /// when a rule drops it (unlike a request id, no record needs it to
    /// join the others).
    /// [`Auditor::identity`] of an id within [`MAX_ID_BYTES`](crate::MAX_ID_BYTES);
    /// an over-long one is neither kept nor redacted (the rules would scan,
    /// or hash, the whole id for nothing, and no record may carry it): its
    /// length is returned instead, for the next emit to refuse.
    fn bounded_identity(&self, field: &'static str, id: &str) -> (Option<Arc<str>>, Option<usize>) {
        match over_long(field, id) {
            None => (self.identity(field, id), None),
            Some(len) => (None, Some(len)),
        }
    }

    fn identity(&self, field: &str, id: &str) -> Option<Arc<str>> {
        let Some(filter) = self.dispatcher.filter() else {
            return Some(Arc::from(id));
        };
        match filter.apply_id(field, id) {
            IdRewrite::Keep => Some(Arc::from(id)),
            IdRewrite::Replace(id) => Some(Arc::from(id)),
            _ => None,
        }
    }

    /// Names the emitting agent.
    pub fn with_agent(&self, name: &str) -> Auditor {
        let mut next = self.clone();
        next.scope_mut().agent = Some(Arc::from(name));
        next
    }

    /// A new span whose parent is the current one.
    pub fn child_span(&self) -> Auditor {
        let mut next = self.clone();
        next.scope_mut().parent_span_id = Some(self.scope.span_id);
        next.scope_mut().span_id = SpanId::random();
        next
    }

    /// Joins the application's trace: records carry its trace id and
    /// flags, in a new span whose parent is the application's current span;
    /// so do the requests started under the returned handle
    /// ([`Auditor::for_request`]).
    ///
    /// `context` is a [`TraceContext`], parsed from a W3C `traceparent`
    /// header value or built from ids, or a `(TraceId, Option<SpanId>)`
    /// pair.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use agent_audit_core::ids::TraceContext;
    /// use agent_audit_core::{Auditor, Dispatcher, MemorySink, SinkOptions};
    ///
    /// let dispatcher = Dispatcher::builder().sink(SinkOptions::new("m"), MemorySink::new()).start().await?;
    /// let cx: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
    /// let request = Auditor::new(dispatcher.clone()).with_trace_context(cx).for_request(None);
    /// assert_eq!(request.scope().trace_id, cx.trace_id());
    /// assert_eq!(request.scope().parent_span_id, cx.parent_span_id());
    /// dispatcher.shutdown(std::time::Duration::from_secs(5)).await;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn with_trace_context(&self, context: impl Into<TraceContext>) -> Auditor {
        let cx = context.into();
        let mut next = self.clone();
        next.scope_mut().trace_id = cx.trace_id();
        next.scope_mut().parent_span_id = cx.parent_span_id();
        next.scope_mut().trace_flags = cx.flags();
        next.scope_mut().span_id = SpanId::random();
        next.context = Some(cx);
        next
    }

    /// The application's trace context this handle joined, if any.
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.context.as_ref()
    }

    /// Queues a record on every sink and returns its receipt at level
    /// `Accepted`. Fails if a required sink has failed, a `fail_closed`
    /// queue is full, the payload is not a JSON object, or the handle was
    /// given an over-long user or session id ([`EmitError::IdTooLong`]).
    pub async fn emit<P: Serialize + ?Sized>(
        &self,
        event_type: impl Into<EventType>,
        payload: &P,
    ) -> Result<Receipt, EmitError> {
        self.over_long.check()?;
        let seq = self.submit(event_type.into(), payload).await?;
        Ok(Receipt {
            seq,
            level: AckLevel::Accepted,
            failed: Vec::new(),
        })
    }

    /// Like [`Auditor::emit`], then waits until the record reached `level`
    /// on every sink that can reach it. "Audit before act" is
    /// `emit_wait(EventType::ToolCall, .., AckLevel::Durable)`.
    pub async fn emit_wait<P: Serialize + ?Sized>(
        &self,
        event_type: impl Into<EventType>,
        payload: &P,
        level: AckLevel,
    ) -> Result<Receipt, EmitError> {
        self.over_long.check()?;
        let seq = self.submit(event_type.into(), payload).await?;
        self.dispatcher.wait(seq, level).await
    }

    async fn submit<P: Serialize + ?Sized>(
        &self,
        event_type: EventType,
        payload: &P,
    ) -> Result<u64, EmitError> {
        let meta = RecordMeta {
            event_type,
            scope: self.scope.clone(),
        };
        // A checkpoint holds only seqs, hashes and a signature, and
        // rewriting any of them would break the signature.
        let filter = self
            .dispatcher
            .filter()
            .filter(|_| meta.event_type != EventType::Checkpoint);
        let draft = match filter {
            Some(filter) => {
                // Most payloads hold nothing to redact: a filter that can
                // tell so from the text spares the Value round trip.
                let draft = serialize_draft(meta, payload)?;
                if filter.may_apply(&draft.body[draft.payload_at..]) {
                    let mut value = serde_json::to_value(payload)?;
                    let fired = filter.apply(&mut value);
                    if !fired.is_empty()
                        && let serde_json::Value::Object(map) = &mut value
                    {
                        map.insert("_redacted".into(), fired.into());
                    }
                    let Draft { meta, body, .. } = draft;
                    crate::dispatcher::reuse_body(body);
                    serialize_draft(meta, &value)?
                } else {
                    draft
                }
            }
            None => serialize_draft(meta, payload)?,
        };
        let size = draft.body.len() + 160;
        if size > self.dispatcher.max_record_bytes() {
            return Err(EmitError::TooLarge {
                size,
                max: self.dispatcher.max_record_bytes(),
            });
        }
        self.dispatcher.submit(draft).await
    }
}

fn kind_of(first: u8) -> &'static str {
    match first {
        b'[' => "an array",
        b'"' => "a string",
        b'n' => "null",
        b't' | b'f' => "a boolean",
        _ => "a number",
    }
}

/// Deepest nesting of objects and arrays a payload may have, the payload
/// object itself counting as 1. Deeper payloads fail
/// [`EmitError::TooDeep`]: readers of the log (`serde_json`'s default
/// recursion limit of 128, which the JSONL reader and verifier keep) could
/// not parse the record, and serialising an unbounded depth could overflow
/// the emitting thread's stack.
pub const MAX_PAYLOAD_DEPTH: usize = 100;

const TOO_DEEP: &str = "agent-audit: payload nesting exceeds MAX_PAYLOAD_DEPTH";

/// serde_json's compact output, refusing to open more than
/// [`MAX_PAYLOAD_DEPTH`] objects and arrays: the serialiser stops there, so
/// no recursion goes deeper, whatever the payload.
struct DepthLimit(usize);

impl DepthLimit {
    fn enter(&mut self) -> std::io::Result<()> {
        self.0 += 1;
        if self.0 > MAX_PAYLOAD_DEPTH {
            return Err(std::io::Error::other(TOO_DEEP));
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for DepthLimit {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.enter()?;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0 -= 1;
        w.write_all(b"]")
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.enter()?;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0 -= 1;
        w.write_all(b"}")
    }
}

thread_local! {
    /// The JSON of the scope keys (`request_id` to `attributes`) of the
    /// last scope this thread wrote: a handle emits many records under one
    /// scope, whose ids and attributes are then copied instead of escaped
    /// and hex-formatted again. The whole scope is compared, so a scope
    /// that differs in anything is written afresh, never from a stale text.
    static SCOPE_JSON: std::cell::RefCell<(Option<Arc<Scope>>, Vec<u8>)> =
        const { std::cell::RefCell::new((None, Vec::new())) };
}

/// Appends `,"request_id":…,"attributes":{…}` for `scope`.
fn push_scope_json(scope: &Arc<Scope>, out: &mut Vec<u8>) -> Result<(), EmitError> {
    SCOPE_JSON.with(|cell| match cell.try_borrow_mut() {
        Ok(mut cached) => {
            // The same handle's scope is the same allocation: no field to
            // compare.
            let same = cached
                .0
                .as_ref()
                .is_some_and(|k| Arc::ptr_eq(k, scope) || **k == **scope);
            if !same {
                let (key, text) = &mut *cached;
                text.clear();
                // A failed write leaves no entry behind.
                *key = None;
                write_scope_json(scope, text)?;
                *key = Some(scope.clone());
            }
            out.extend_from_slice(&cached.1);
            Ok(())
        }
        Err(_) => write_scope_json(scope, out),
    })
}

fn write_scope_json(scope: &Scope, out: &mut Vec<u8>) -> Result<(), EmitError> {
    out.extend_from_slice(b",\"request_id\":");
    serde_json::to_writer(&mut *out, &scope.request_id.as_deref())?;
    out.extend_from_slice(b",\"correlation_id\":");
    serde_json::to_writer(&mut *out, &scope.correlation_id.as_deref())?;
    out.extend_from_slice(b",\"trace_id\":\"");
    scope.trace_id.push_hex(&mut *out);
    out.extend_from_slice(b"\",\"span_id\":\"");
    scope.span_id.push_hex(&mut *out);
    out.extend_from_slice(b"\",\"parent_span_id\":");
    match scope.parent_span_id {
        Some(p) => {
            out.push(b'"');
            p.push_hex(&mut *out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"agent\":");
    serde_json::to_writer(&mut *out, &scope.agent.as_deref())?;
    out.extend_from_slice(b",\"user_id\":");
    serde_json::to_writer(&mut *out, &scope.user_id.as_deref())?;
    out.extend_from_slice(b",\"session_id\":");
    serde_json::to_writer(&mut *out, &scope.session_id.as_deref())?;
    out.extend_from_slice(b",\"attributes\":");
    out.extend_from_slice(scope.attributes.json().as_bytes());
    Ok(())
}

/// Serialises everything from `event_type` to `payload` in schema order.
pub(crate) fn serialize_draft<P: Serialize + ?Sized>(
    meta: RecordMeta,
    payload: &P,
) -> Result<Draft, EmitError> {
    let mut out = crate::dispatcher::body_buffer();
    out.extend_from_slice(b"\"event_type\":");
    serde_json::to_writer(&mut out, meta.event_type.as_str())?;
    push_scope_json(&meta.scope, &mut out)?;
    out.extend_from_slice(b",\"payload\":");
    let payload_at = out.len();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, DepthLimit(0));
    if let Err(e) = payload.serialize(&mut ser) {
        return Err(if e.is_io() && e.to_string().contains(TOO_DEEP) {
            EmitError::TooDeep {
                max: MAX_PAYLOAD_DEPTH,
            }
        } else {
            EmitError::Serialize(e)
        });
    }
    if out[payload_at] != b'{' {
        return Err(EmitError::PayloadNotObject {
            found: kind_of(out[payload_at]),
        });
    }
    // serde_json writes valid UTF-8 only.
    let body = String::from_utf8(out).map_err(|_| EmitError::PayloadNotObject {
        found: "invalid UTF-8",
    })?;
    Ok(Draft {
        meta,
        body,
        payload_at,
    })
}

/// A minimal internal draft used only if serialising a `json!` value failed,
/// which serde_json does not do.
pub(crate) fn empty_draft(trace_id: TraceId) -> Draft {
    let meta = RecordMeta {
        event_type: EventType::AuditGap,
        scope: Arc::new(Scope::new(trace_id, None)),
    };
    let body = format!(
        "\"event_type\":\"audit_gap\",\"request_id\":null,\"correlation_id\":null,\"trace_id\":\"{}\",\"span_id\":\"{}\",\"parent_span_id\":null,\"agent\":null,\"user_id\":null,\"session_id\":null,\"attributes\":{{}},\"payload\":{{}}",
        meta.scope.trace_id, meta.scope.span_id
    );
    let payload_at = body.len() - 2;
    Draft {
        meta,
        body,
        payload_at,
    }
}

#[cfg(test)]
#[path = "auditor_identity_tests.rs"]
mod identity_tests;
