//! The record (schema v2, reading v1 too): what every sink receives and
//! what every reader parses.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::attributes::Attributes;
use crate::ids::{SpanId, TraceFlags, TraceId};
use crate::time::Timestamp;

/// Schema version written in the `v` key of every record. Version 2 added
/// `user_id`, `session_id` and `attributes`; a v2 writer always writes 2
/// and all three keys (null, null, `{}` when unset).
pub const SCHEMA_VERSION: u32 = 2;

/// The oldest schema version readers accept: a file may start in v1 and
/// continue in v2 after an upgrade, one chain across the boundary.
pub const MIN_SCHEMA_VERSION: u32 = 1;

/// What happened. The tutorial's six names are kept verbatim so its reader
/// works unchanged; any other name is allowed as [`EventType::Custom`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// A user asked something.
    UserRequest,
    /// Messages sent to the model.
    AssistantInput,
    /// What the model answered.
    AssistantOutput,
    /// A tool is about to run.
    ToolCall,
    /// A tool returned.
    ToolResult,
    /// The answer given back to the user.
    FinalResult,
    /// A tool failed or got invalid arguments.
    ToolError,
    /// The model call failed.
    ModelError,
    /// One agent addressed another.
    AgentMessage,
    /// An audited session began.
    SessionStart,
    /// An audited session ended.
    SessionEnd,
    /// Records were lost or a sink failed; the payload names the seq range.
    AuditGap,
    /// A signed integrity checkpoint.
    Checkpoint,
    /// Any other name chosen by the application.
    Custom(Arc<str>),
}

impl EventType {
    /// Every built-in event type, in schema order.
    pub const BUILT_IN: [EventType; 13] = [
        EventType::UserRequest,
        EventType::AssistantInput,
        EventType::AssistantOutput,
        EventType::ToolCall,
        EventType::ToolResult,
        EventType::FinalResult,
        EventType::ToolError,
        EventType::ModelError,
        EventType::AgentMessage,
        EventType::SessionStart,
        EventType::SessionEnd,
        EventType::AuditGap,
        EventType::Checkpoint,
    ];

    /// The name written in the `event_type` key.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::UserRequest => "user_request",
            EventType::AssistantInput => "assistant_input",
            EventType::AssistantOutput => "assistant_output",
            EventType::ToolCall => "tool_call",
            EventType::ToolResult => "tool_result",
            EventType::FinalResult => "final_result",
            EventType::ToolError => "tool_error",
            EventType::ModelError => "model_error",
            EventType::AgentMessage => "agent_message",
            EventType::SessionStart => "session_start",
            EventType::SessionEnd => "session_end",
            EventType::AuditGap => "audit_gap",
            EventType::Checkpoint => "checkpoint",
            EventType::Custom(name) => name,
        }
    }

    /// Parses a name; unknown names become [`EventType::Custom`].
    pub fn from_name(name: &str) -> EventType {
        EventType::BUILT_IN
            .iter()
            .find(|t| t.as_str() == name)
            .cloned()
            .unwrap_or_else(|| EventType::Custom(Arc::from(name)))
    }

    /// Whether the event reports a failure (`*_error` and `audit_gap`).
    pub fn is_error(&self) -> bool {
        matches!(self, EventType::AuditGap) || self.as_str().ends_with("_error")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for EventType {
    fn from(name: &str) -> Self {
        EventType::from_name(name)
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(EventType::from_name(&name))
    }
}

/// One audit record as the dispatcher hands it to sinks.
///
/// The keys between `event_type` and `payload` are serialised once, on the
/// emitting thread, into [`Record::body`]; sinks that write JSON copy those
/// bytes instead of serialising again, and sinks that need structure use the
/// typed fields or [`Record::payload_value`].
#[derive(Debug, Clone)]
pub struct Record {
    /// Position in the dispatcher's sequence; a gap means loss.
    pub seq: u64,
    /// When the dispatcher accepted the record.
    pub ts: Timestamp,
    /// What happened.
    pub event_type: EventType,
    /// Who emitted it, in which request, conversation and span. Its fields
    /// read as the record's own (`record.request_id`): see the `Deref`
    /// impl. Shared with the handle that emitted it (and every record it
    /// emits under the same scope): one reference count a record, not one
    /// per id.
    pub scope: Arc<Scope>,
    body: String,
    payload_at: usize,
}

impl Record {
    /// Assembles a record from an already serialised body (see
    /// [`Record::body`]); `payload_at` is the byte offset of the payload value.
    pub(crate) fn from_parts(
        seq: u64,
        ts: Timestamp,
        meta: RecordMeta,
        body: String,
        payload_at: usize,
    ) -> Record {
        Record {
            seq,
            ts,
            event_type: meta.event_type,
            scope: meta.scope,
            body,
            payload_at,
        }
    }

    /// Fills a record being reused (see `dispatcher::recycle`) with a new
    /// one's parts; returns the old body, whose buffer the caller may reuse.
    pub(crate) fn refill(
        &mut self,
        seq: u64,
        ts: Timestamp,
        meta: RecordMeta,
        body: String,
        payload_at: usize,
    ) -> String {
        // A whole new record, built by `from_parts`, whose struct literal
        // names every field: a field added to `Record` and not filled in
        // here cannot compile, so nothing of the old record can stay.
        let new = Record::from_parts(seq, ts, meta, body, payload_at);
        std::mem::replace(self, new).body
    }

    /// Lets go of the body's buffer when it holds more than `max` bytes.
    pub(crate) fn shrink_body(&mut self, max: usize) {
        if self.body.capacity() > max {
            self.body = String::new();
            self.payload_at = 0;
        }
    }

    /// The exact JSON of the keys from `event_type` to `payload`, without
    /// surrounding braces: `"event_type":"…",…,"attributes":{…},"payload":{…}`.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The payload's exact JSON text.
    pub fn payload_json(&self) -> &str {
        &self.body[self.payload_at..]
    }

    /// The payload parsed into a JSON value.
    pub fn payload_value(&self) -> serde_json::Value {
        // The body was produced by serde_json from a valid value, so this
        // cannot fail; an empty object keeps library code free of panics.
        serde_json::from_str(self.payload_json())
            .unwrap_or_else(|_| serde_json::Value::Object(Default::default()))
    }

    /// Appends the record's line (without newline) with the given `prev`
    /// chain value: `{"v":2,"seq":…,"ts":"…",<body>,"prev":"…"}`.
    pub fn encode_line(&self, prev: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"v\":2,\"seq\":");
        push_u64(out, self.seq);
        out.extend_from_slice(b",\"ts\":\"");
        out.extend_from_slice(self.ts.as_bytes());
        out.extend_from_slice(b"\",");
        out.extend_from_slice(self.body.as_bytes());
        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(prev.as_bytes());
        out.extend_from_slice(b"\"}");
    }

    /// The record as a [`StoredRecord`] with the given `prev`.
    pub fn to_stored(&self, prev: &str) -> StoredRecord {
        StoredRecord {
            v: SCHEMA_VERSION,
            seq: self.seq,
            ts: self.ts.as_str().to_string(),
            event_type: self.event_type.clone(),
            request_id: self.request_id.as_deref().map(str::to_string),
            correlation_id: self.correlation_id.as_deref().map(str::to_string),
            trace_id: Some(self.trace_id.to_string()),
            span_id: Some(self.span_id.to_string()),
            parent_span_id: self.parent_span_id.map(|s| s.to_string()),
            agent: self.agent.as_deref().map(str::to_string),
            user_id: self.user_id.as_deref().map(str::to_string),
            session_id: self.session_id.as_deref().map(str::to_string),
            attributes: self.attributes.to_json_map(),
            payload: self.payload_value(),
            prev: prev.to_string(),
        }
    }
}

/// The highest seq a record can get. Numbering stops there with
/// [`crate::EmitError::SeqExhausted`] and never wraps (a wrap would hand out
/// 0, 1, 2… again and break the chain's numbering). `u64::MAX` itself is
/// never used, so "one past the last seq", which the dispatcher counts
/// acknowledgements by, is always a `u64`.
pub const MAX_SEQ: u64 = u64::MAX - 1;

/// Appends the decimal digits of `n` without allocating.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Everything about a record except its seq, time and payload.
#[derive(Debug, Clone)]
pub struct RecordMeta {
    /// What happened.
    pub event_type: EventType,
    /// Who emitted it and where.
    pub scope: Arc<Scope>,
}

/// Who emits and in which request, conversation and span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// One user request.
    pub request_id: Option<Arc<str>>,
    /// One conversation across agents.
    pub correlation_id: Option<Arc<str>>,
    /// W3C trace id.
    pub trace_id: TraceId,
    /// Current span.
    pub span_id: SpanId,
    /// The span that caused this one.
    pub parent_span_id: Option<SpanId>,
    /// The trace's W3C flags (sampled or not), for exporters such as the
    /// OTLP sink; not a key of the schema v1 record.
    pub trace_flags: TraceFlags,
    /// Emitting agent.
    pub agent: Option<Arc<str>>,
    /// The end user the request is for (schema v2), after redaction.
    pub user_id: Option<Arc<str>>,
    /// The user's session (schema v2), after redaction.
    pub session_id: Option<Arc<str>>,
    /// Policy metadata (schema v2): tenant, purpose, classification…
    pub attributes: Attributes,
}

impl Scope {
    /// A scope in trace `trace_id` with a fresh span, no request, no
    /// parent. The trace counts as sampled: a trace agent-audit starts
    /// keeps every record.
    pub fn new(trace_id: TraceId, agent: Option<Arc<str>>) -> Scope {
        Scope {
            request_id: None,
            correlation_id: None,
            trace_id,
            span_id: SpanId::random(),
            parent_span_id: None,
            trace_flags: TraceFlags::SAMPLED,
            agent,
            user_id: None,
            session_id: None,
            attributes: Attributes::default(),
        }
    }
}

/// A record's scope fields read as its own: `record.request_id`,
/// `record.agent`. The scope is one struct so that the `Auditor`, the
/// draft and the record share one definition of who and where.
impl std::ops::Deref for Record {
    type Target = Scope;

    fn deref(&self) -> &Scope {
        &self.scope
    }
}

/// A record as read back from storage: every key of schema v1 or v2,
/// owned. A v1 record reads with `user_id` and `session_id` `None` and no
/// attributes.
///
/// Serialising it writes the keys of its own version `v`, in schema order
/// (a v1 record without the v2 keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRecord {
    /// Schema version.
    pub v: u32,
    /// Sequence number.
    pub seq: u64,
    /// RFC 3339 UTC time with nanoseconds.
    pub ts: String,
    /// What happened.
    pub event_type: EventType,
    /// One user request.
    #[serde(default)]
    pub request_id: Option<String>,
    /// One conversation across agents.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// W3C trace id (32 hex).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// W3C span id (16 hex).
    #[serde(default)]
    pub span_id: Option<String>,
    /// Parent span id.
    #[serde(default)]
    pub parent_span_id: Option<String>,
    /// Emitting agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// The end user the request is for (v2).
    #[serde(default)]
    pub user_id: Option<String>,
    /// The user's session (v2).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Policy metadata (v2): string keys to strings, numbers or booleans.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The event's content.
    pub payload: serde_json::Value,
    /// Chain value of the previous line.
    pub prev: String,
}

impl Serialize for StoredRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let v2 = self.v >= 2;
        let mut st = s.serialize_struct("StoredRecord", if v2 { 15 } else { 12 })?;
        st.serialize_field("v", &self.v)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("ts", &self.ts)?;
        st.serialize_field("event_type", &self.event_type)?;
        st.serialize_field("request_id", &self.request_id)?;
        st.serialize_field("correlation_id", &self.correlation_id)?;
        st.serialize_field("trace_id", &self.trace_id)?;
        st.serialize_field("span_id", &self.span_id)?;
        st.serialize_field("parent_span_id", &self.parent_span_id)?;
        st.serialize_field("agent", &self.agent)?;
        if v2 {
            st.serialize_field("user_id", &self.user_id)?;
            st.serialize_field("session_id", &self.session_id)?;
            st.serialize_field("attributes", &self.attributes)?;
        }
        st.serialize_field("payload", &self.payload)?;
        st.serialize_field("prev", &self.prev)?;
        st.end()
    }
}

impl StoredRecord {
    /// The record's time, parsed.
    pub fn timestamp(&self) -> Option<Timestamp> {
        Timestamp::parse(&self.ts)
    }
}
