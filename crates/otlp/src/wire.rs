//! Direct protobuf encoding of records as OTLP LogRecords, for gRPC and
//! HTTP/protobuf: the payload's JSON is streamed straight into AnyValue
//! bytes, without building `opentelemetry_proto` structs first. It writes
//! exactly what [`crate::map_record`] builds (a unit test decodes one and
//! compares it with the other); it exists because building and dropping
//! those structs cost more than everything else the sink does.

use std::fmt;

use agent_audit_core::Record;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::mapping::{EVENT_NAME_PREFIX, model_key, operation_name};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Room left for a nested message's length before its content is known.
const LEN_ROOM: usize = 5;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_tag(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, u64::from(field << 3 | u32::from(wire)));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_tag(buf, field, LEN);
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    put_tag(buf, field, FIXED32);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Starts a nested message; returns where its content begins.
fn begin(buf: &mut Vec<u8>, field: u32) -> usize {
    put_tag(buf, field, LEN);
    buf.extend_from_slice(&[0; LEN_ROOM]);
    buf.len()
}

/// Ends a nested message: writes its length (minimal varint) and moves the
/// content back over the unused room.
fn end(buf: &mut Vec<u8>, start: usize) {
    let len = buf.len() - start;
    let mut tmp = [0u8; 10];
    let mut n = 0;
    let mut v = len as u64;
    while v >= 0x80 {
        tmp[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    tmp[n] = v as u8;
    n += 1;
    let at = start - LEN_ROOM;
    if n < LEN_ROOM {
        buf.copy_within(start.., at + n);
        buf.truncate(buf.len() - (LEN_ROOM - n));
    }
    buf[at..at + n].copy_from_slice(&tmp[..n]);
}

fn put_kv_str(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    let kv = begin(buf, field);
    put_bytes(buf, 1, key.as_bytes());
    let v = begin(buf, 2);
    put_bytes(buf, 1, value.as_bytes());
    end(buf, v);
    end(buf, kv);
}

/// A KeyValue whose value is an array of one string.
fn put_kv_str_array(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    let kv = begin(buf, field);
    put_bytes(buf, 1, key.as_bytes());
    let v = begin(buf, 2);
    let arr = begin(buf, 5);
    let elem = begin(buf, 1);
    put_bytes(buf, 1, value.as_bytes());
    end(buf, elem);
    end(buf, arr);
    end(buf, v);
    end(buf, kv);
}

fn put_kv_int(buf: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    let kv = begin(buf, field);
    put_bytes(buf, 1, key.as_bytes());
    let v = begin(buf, 2);
    put_tag(buf, 3, VARINT);
    put_varint(buf, value as u64);
    end(buf, v);
    end(buf, kv);
}

/// A record attribute as a log attribute (field 6), typed as
/// `mapping::attr_any` types it.
fn put_kv_attr(buf: &mut Vec<u8>, key: &str, value: &agent_audit_core::AttrValue) {
    use agent_audit_core::AttrValue;
    let kv = begin(buf, 6);
    put_bytes(buf, 1, key.as_bytes());
    let v = begin(buf, 2);
    match value {
        AttrValue::Bool(b) => {
            put_tag(buf, 2, VARINT);
            put_varint(buf, u64::from(*b));
        }
        AttrValue::Number(n) if n.as_i64().is_some() => {
            put_tag(buf, 3, VARINT);
            put_varint(buf, n.as_i64().unwrap_or_default() as u64);
        }
        AttrValue::Number(n) if n.is_f64() => {
            put_fixed64(buf, 4, n.as_f64().unwrap_or_default().to_bits());
        }
        other => put_bytes(buf, 1, other.to_string().as_bytes()),
    }
    end(buf, v);
    end(buf, kv);
}

/// The static parts of a request: the resource and the scope, encoded once.
pub(crate) struct Envelope {
    /// `Resource` as field 1 of `ResourceLogs`.
    resource: Vec<u8>,
    /// `InstrumentationScope` as field 1 of `ScopeLogs`.
    scope: Vec<u8>,
    /// `schema_url`, field 3 of both `ScopeLogs` and `ResourceLogs`.
    schema_url: Vec<u8>,
}

impl Envelope {
    pub(crate) fn new(
        resource: &[(&str, &str)],
        scope_name: &str,
        scope_version: &str,
        schema_url: &str,
    ) -> Envelope {
        let mut r = Vec::new();
        let start = begin(&mut r, 1);
        for (k, v) in resource {
            put_kv_str(&mut r, 1, k, v);
        }
        end(&mut r, start);
        let mut s = Vec::new();
        let start = begin(&mut s, 1);
        put_bytes(&mut s, 1, scope_name.as_bytes());
        put_bytes(&mut s, 2, scope_version.as_bytes());
        end(&mut s, start);
        let mut u = Vec::new();
        put_bytes(&mut u, 3, schema_url.as_bytes());
        Envelope {
            resource: r,
            scope: s,
            schema_url: u,
        }
    }

    /// An `ExportLogsServiceRequest` around `records` (LogRecords already
    /// encoded as field 2 of `ScopeLogs`).
    pub(crate) fn request(&self, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            records.len() + self.resource.len() + self.scope.len() + 2 * self.schema_url.len() + 32,
        );
        let rl = begin(&mut out, 1);
        out.extend_from_slice(&self.resource);
        let sl = begin(&mut out, 2);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(records);
        out.extend_from_slice(&self.schema_url);
        end(&mut out, sl);
        out.extend_from_slice(&self.schema_url);
        end(&mut out, rl);
        out
    }
}

/// Values pulled out of the payload for `gen_ai.*` attributes; the first
/// occurrence wins, as in [`crate::map_record`].
#[derive(Default)]
struct Captures {
    provider: Option<String>,
    tool: Option<String>,
    call_id: Option<String>,
    model: Option<String>,
    response_id: Option<String>,
    finish_reason: Option<String>,
    kind: Option<String>,
    input_tokens: Option<i64>,
    prompt_tokens: Option<i64>,
    output_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    usage_seen: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    None,
    Root,
    Provider,
    Tool,
    CallId,
    Model,
    ResponseId,
    FinishReason,
    Kind,
    Usage,
    InputTokens,
    PromptTokens,
    OutputTokens,
    CompletionTokens,
}

/// Appends `record` as a LogRecord (field 2 of `ScopeLogs`) to `buf`.
pub(crate) fn encode_record(
    buf: &mut Vec<u8>,
    record: &Record,
    prev: &str,
    observed_unix_nanos: u64,
) {
    let lr = begin(buf, 2);
    let ts = u64::try_from(record.ts.unix_nanos()).unwrap_or(0);
    put_fixed64(buf, 1, ts);
    let error = record.event_type.is_error();
    put_tag(buf, 2, VARINT);
    put_varint(buf, if error { 17 } else { 9 });
    put_bytes(buf, 3, if error { b"ERROR" } else { b"INFO" });

    let mut caps = Captures::default();
    let body = begin(buf, 5);
    let mut de = serde_json::Deserializer::from_str(record.payload_json());
    let mark = buf.len();
    if (AnySeed {
        buf: &mut *buf,
        slot: Slot::Root,
        caps: &mut caps,
    })
    .deserialize(&mut de)
    .is_err()
    {
        // The payload was produced by serde_json, so this does not happen;
        // an empty body keeps library code free of panics if it did.
        buf.truncate(mark);
        caps = Captures::default();
    }
    end(buf, body);

    put_kv_int(
        buf,
        6,
        "audit.seq",
        i64::try_from(record.seq).unwrap_or(i64::MAX),
    );
    if let Some(r) = &record.request_id {
        put_kv_str(buf, 6, "audit.request_id", r);
    }
    put_kv_str(buf, 6, "audit.prev", prev);
    if let Some(p) = record.parent_span_id {
        put_kv_str(buf, 6, "audit.parent_span_id", &p.to_string());
    }
    if let Some(c) = &record.correlation_id {
        put_kv_str(buf, 6, "gen_ai.conversation.id", c);
    }
    if let Some(a) = &record.agent {
        put_kv_str(buf, 6, "gen_ai.agent.name", a);
    }
    if let Some(u) = &record.user_id {
        put_kv_str(buf, 6, "user.id", u);
    }
    if let Some(s) = &record.session_id {
        put_kv_str(buf, 6, "session.id", s);
    }
    for (k, v) in record.attributes.iter() {
        put_kv_attr(buf, &agent_audit_core::otel_key(k), v);
    }
    if let Some(op) = operation_name(&record.event_type) {
        put_kv_str(buf, 6, "gen_ai.operation.name", op);
    }
    if let Some(p) = &caps.provider {
        put_kv_str(buf, 6, "gen_ai.provider.name", p);
    }
    if let Some(t) = &caps.tool {
        put_kv_str(buf, 6, "gen_ai.tool.name", t);
    }
    if let Some(id) = &caps.call_id {
        put_kv_str(buf, 6, "gen_ai.tool.call.id", id);
    }
    if let Some(m) = &caps.model {
        put_kv_str(buf, 6, model_key(&record.event_type), m);
    }
    if let Some(id) = &caps.response_id {
        put_kv_str(buf, 6, "gen_ai.response.id", id);
    }
    if let Some(r) = &caps.finish_reason {
        put_kv_str_array(buf, 6, "gen_ai.response.finish_reasons", r);
    }
    if let Some(n) = caps.input_tokens.or(caps.prompt_tokens) {
        put_kv_int(buf, 6, "gen_ai.usage.input_tokens", n);
    }
    if let Some(n) = caps.output_tokens.or(caps.completion_tokens) {
        put_kv_int(buf, 6, "gen_ai.usage.output_tokens", n);
    }
    if let Some(k) = caps.kind.as_ref().filter(|_| error) {
        put_kv_str(buf, 6, "error.type", k);
    }
    let flags = u32::from(record.trace_flags.bits());
    if flags != 0 {
        put_fixed32(buf, 8, flags);
    }
    put_bytes(buf, 9, &record.trace_id.to_bytes());
    put_bytes(buf, 10, &record.span_id.to_bytes());
    put_fixed64(buf, 11, observed_unix_nanos);
    let name = record.event_type.as_str();
    put_tag(buf, 12, LEN);
    put_varint(buf, (EVENT_NAME_PREFIX.len() + name.len()) as u64);
    buf.extend_from_slice(EVENT_NAME_PREFIX.as_bytes());
    buf.extend_from_slice(name.as_bytes());
    end(buf, lr);
}

/// Writes one JSON value as AnyValue fields into the already opened
/// message.
struct AnySeed<'a> {
    buf: &'a mut Vec<u8>,
    slot: Slot,
    caps: &'a mut Captures,
}

impl<'de> DeserializeSeed<'de> for AnySeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        put_tag(self.buf, 2, VARINT);
        put_varint(self.buf, u64::from(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let c = &mut *self.caps;
        let slot = match self.slot {
            Slot::InputTokens => Some(&mut c.input_tokens),
            Slot::PromptTokens => Some(&mut c.prompt_tokens),
            Slot::OutputTokens => Some(&mut c.output_tokens),
            Slot::CompletionTokens => Some(&mut c.completion_tokens),
            _ => None,
        };
        if let Some(s) = slot
            && s.is_none()
        {
            *s = Some(v);
        }
        put_tag(self.buf, 3, VARINT);
        put_varint(self.buf, v as u64);
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(n) => self.visit_i64(n),
            // Beyond i64: the decimal string, so nothing is rounded.
            Err(_) => {
                put_bytes(self.buf, 1, v.to_string().as_bytes());
                Ok(())
            }
        }
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        put_fixed64(self.buf, 4, v.to_bits());
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let c = &mut *self.caps;
        let slot = match self.slot {
            Slot::Provider => Some(&mut c.provider),
            Slot::Tool => Some(&mut c.tool),
            Slot::CallId => Some(&mut c.call_id),
            Slot::Model => Some(&mut c.model),
            Slot::ResponseId => Some(&mut c.response_id),
            Slot::FinishReason => Some(&mut c.finish_reason),
            Slot::Kind => Some(&mut c.kind),
            _ => None,
        };
        if let Some(s) = slot
            && s.is_none()
        {
            *s = Some(v.to_string());
        }
        put_bytes(self.buf, 1, v.as_bytes());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let arr = begin(self.buf, 5);
        while seq
            .next_element_seed(ElemSeed {
                buf: &mut *self.buf,
                caps: &mut *self.caps,
            })?
            .is_some()
        {}
        end(self.buf, arr);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let list = begin(self.buf, 6);
        let usage_map = self.slot == Slot::Usage && !self.caps.usage_seen;
        if self.slot == Slot::Usage {
            self.caps.usage_seen = true;
        }
        // Only the root's first `usage` object feeds the token counts.
        let parent = match self.slot {
            Slot::Root => Slot::Root,
            Slot::Usage if usage_map => Slot::Usage,
            _ => Slot::None,
        };
        while let Some((kv, slot)) = map.next_key_seed(KeySeed {
            buf: &mut *self.buf,
            parent,
        })? {
            let v = begin(self.buf, 2);
            map.next_value_seed(AnySeed {
                buf: &mut *self.buf,
                slot,
                caps: &mut *self.caps,
            })?;
            end(self.buf, v);
            end(self.buf, kv);
        }
        end(self.buf, list);
        Ok(())
    }
}

/// One array element: an AnyValue message (field 1 of ArrayValue).
struct ElemSeed<'a> {
    buf: &'a mut Vec<u8>,
    caps: &'a mut Captures,
}

impl<'de> DeserializeSeed<'de> for ElemSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let e = begin(self.buf, 1);
        d.deserialize_any(AnySeed {
            buf: &mut *self.buf,
            slot: Slot::None,
            caps: self.caps,
        })?;
        end(self.buf, e);
        Ok(())
    }
}

/// A map key: opens a KeyValue (field 1 of KeyValueList), writes the key,
/// and says which capture slot its value fills.
struct KeySeed<'a> {
    buf: &'a mut Vec<u8>,
    parent: Slot,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (usize, Slot);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(usize, Slot), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = (usize, Slot);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, key: &str) -> Result<(usize, Slot), E> {
        let kv = begin(self.buf, 1);
        put_bytes(self.buf, 1, key.as_bytes());
        let slot = match (self.parent, key) {
            (Slot::Root, "provider") => Slot::Provider,
            (Slot::Root, "tool") => Slot::Tool,
            (Slot::Root, "call_id") => Slot::CallId,
            (Slot::Root, "model") => Slot::Model,
            (Slot::Root, "response_id") => Slot::ResponseId,
            (Slot::Root, "finish_reason") => Slot::FinishReason,
            (Slot::Root, "kind") => Slot::Kind,
            (Slot::Root, "usage") => Slot::Usage,
            (Slot::Usage, "input_tokens") => Slot::InputTokens,
            (Slot::Usage, "prompt_tokens") => Slot::PromptTokens,
            (Slot::Usage, "output_tokens") => Slot::OutputTokens,
            (Slot::Usage, "completion_tokens") => Slot::CompletionTokens,
            _ => Slot::None,
        };
        Ok((kv, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_audit_core::{Auditor, EventType};
    use opentelemetry_proto::tonic::logs::v1::ScopeLogs;
    use prost::Message as _;
    use serde_json::json;

    /// Records as the dispatcher makes them, for a variety of payloads.
    fn records() -> Vec<std::sync::Arc<Record>> {
        let payloads = [
            (
                EventType::ToolCall,
                json!({"tool": "get_balance", "call_id": "c1", "arguments": {"a": [1, null, {"b": "é😀"}]}}),
            ),
            (
                EventType::AssistantOutput,
                json!({"model": "m", "usage": {"prompt_tokens": 5, "completion_tokens": 6, "input_tokens": 7}}),
            ),
            (
                EventType::AssistantOutput,
                json!({"usage": {"details": {"input_tokens": 1}, "output_tokens": -2}, "model": 3}),
            ),
            (
                EventType::ToolError,
                json!({"tool": {"not": "a string"}, "call_id": null, "big": 18446744073709551615u64, "neg": i64::MIN, "f": -0.5e-300}),
            ),
            (EventType::AuditGap, json!({})),
            (
                EventType::from("custom_thing"),
                json!({"nested": {"usage": {"input_tokens": 9}}, "list": [[], {}, "", true, false]}),
            ),
            (EventType::UserRequest, json!({"text": "x".repeat(300)})),
            (
                EventType::AssistantOutput,
                json!({"provider": "openai", "model": "gpt-4o-2024-08-06", "response_id": "chatcmpl-1", "finish_reason": "stop"}),
            ),
            (
                EventType::ModelError,
                json!({"kind": "rate_limit", "model": "gpt-4o", "provider": 7}),
            ),
            (
                EventType::ToolError,
                json!({"kind": ["not", "a string"], "finish_reason": null}),
            ),
            (
                EventType::ToolResult,
                json!({"kind": "not an error record"}),
            ),
        ];
        crate::mapping::testing::records_emitted(
            agent_audit_core::Attributes::default(),
            async |root: Auditor| {
                let scoped = crate::mapping::testing::with_user_and_two_attributes(&root)
                    .with_attribute("ratio", agent_audit_core::AttrValue::float(0.5).unwrap())
                    .unwrap()
                    .with_attribute("big", u64::MAX)
                    .unwrap()
                    .with_attribute("pii", false)
                    .unwrap()
                    .with_attribute("tenant.id", "emea")
                    .unwrap()
                    .for_request(Some("req"))
                    .with_agent("a")
                    .child_span();
                let unsampled = root
                    .with_trace_context(
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
                            .parse::<agent_audit_core::TraceContext>()
                            .unwrap(),
                    )
                    .for_request(None);
                for (i, (t, p)) in payloads.iter().enumerate() {
                    let a = [&root, &scoped, &unsampled][i % 3];
                    a.emit(t.clone(), p).await.unwrap();
                }
            },
        )
    }

    #[test]
    fn direct_encoding_equals_the_struct_mapping() {
        for r in records() {
            let mut buf = Vec::new();
            encode_record(&mut buf, &r, "ab", 42);
            // `buf` is field 2 of ScopeLogs: decode it as such.
            let scope = ScopeLogs::decode(&buf[..]).unwrap();
            assert_eq!(scope.log_records.len(), 1);
            assert_eq!(
                scope.log_records[0],
                crate::map_record(&r, "ab", 42),
                "seq {}: {}",
                r.seq,
                r.payload_json()
            );
        }
    }

    #[test]
    fn envelope_wraps_records_into_a_valid_request() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        let env = Envelope::new(
            &[("service.name", "s"), ("host.name", "h")],
            "agent-audit",
            "1",
            crate::SCHEMA_URL,
        );
        let rs = records();
        let mut buf = Vec::new();
        for r in &rs {
            encode_record(&mut buf, r, "p", 1);
        }
        let req = ExportLogsServiceRequest::decode(&env.request(&buf)[..]).unwrap();
        let rl = &req.resource_logs[0];
        assert_eq!(rl.resource.as_ref().unwrap().attributes.len(), 2);
        assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "agent-audit");
        assert_eq!(rl.scope_logs[0].log_records.len(), rs.len());
        assert_eq!(rl.schema_url, crate::SCHEMA_URL);
        assert_eq!(rl.scope_logs[0].schema_url, crate::SCHEMA_URL);
    }

    #[test]
    fn nested_lengths_use_minimal_varints() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut buf = vec![9u8];
            let s = begin(&mut buf, 5);
            buf.extend(std::iter::repeat_n(7u8, len));
            end(&mut buf, s);
            let mut want = vec![9u8];
            put_tag(&mut want, 5, LEN);
            put_varint(&mut want, len as u64);
            want.extend(std::iter::repeat_n(7u8, len));
            assert_eq!(buf, want, "len {len}");
        }
    }
}
