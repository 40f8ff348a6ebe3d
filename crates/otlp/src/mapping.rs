//! One agent-audit record -> one OTLP LogRecord.

use std::fmt;

use agent_audit_core::{EventType, Record};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::config::{SCHEMA_URL, ServiceInfo};
use crate::wire::Envelope;

/// Prefix of every exported `event_name`.
pub const EVENT_NAME_PREFIX: &str = "agent_audit.";

/// The `prev` value of the first record a sink exports.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Maps records, keeping this sink's hash chain (`audit.prev`).
pub(crate) struct Mapper {
    resource: Resource,
    scope: InstrumentationScope,
    envelope: Envelope,
    /// Chain value of the last record mapped, i.e. `prev` of the next one.
    next_prev: String,
    /// `prev` of the record being mapped.
    prev: String,
    line: Vec<u8>,
}

const SCOPE_NAME: &str = "agent-audit";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Mapper {
    pub(crate) fn new(service: &ServiceInfo) -> Mapper {
        let pairs = service.resource_attributes();
        Mapper {
            resource: Resource {
                attributes: pairs.iter().map(|(k, v)| kv_str(k, v)).collect(),
                ..Default::default()
            },
            scope: InstrumentationScope {
                name: SCOPE_NAME.to_string(),
                version: SCOPE_VERSION.to_string(),
                ..Default::default()
            },
            envelope: Envelope::new(&pairs, SCOPE_NAME, SCOPE_VERSION, SCHEMA_URL),
            next_prev: GENESIS_PREV.to_string(),
            prev: String::with_capacity(64),
            line: Vec::with_capacity(1024),
        }
    }

    /// Wraps log records into one `ResourceLogs`.
    pub(crate) fn resource_logs(&self, log_records: Vec<LogRecord>) -> ResourceLogs {
        ResourceLogs {
            resource: Some(self.resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(self.scope.clone()),
                log_records,
                schema_url: SCHEMA_URL.to_string(),
            }],
            schema_url: SCHEMA_URL.to_string(),
        }
    }

    /// The protobuf `ExportLogsServiceRequest` around encoded LogRecords.
    pub(crate) fn request_bytes(&self, records: &[u8]) -> Vec<u8> {
        self.envelope.request(records)
    }

    /// Advances the chain over `record`'s line; returns the record's `prev`.
    fn chain(&mut self, record: &Record) -> &str {
        std::mem::swap(&mut self.prev, &mut self.next_prev);
        self.line.clear();
        record.encode_line(&self.prev, &mut self.line);
        let mut hex_digest = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(Sha256::digest(&self.line), &mut hex_digest);
        self.next_prev.clear();
        self.next_prev
            .push_str(std::str::from_utf8(&hex_digest).unwrap_or(GENESIS_PREV));
        &self.prev
    }

    /// Maps one record to the struct form (HTTP/JSON).
    pub(crate) fn map(&mut self, record: &Record, observed_unix_nanos: u64) -> LogRecord {
        let prev = self.chain(record).to_string();
        map_record(record, &prev, observed_unix_nanos)
    }

    /// Appends one record, protobuf-encoded, to `buf` (gRPC, HTTP/protobuf).
    pub(crate) fn encode(&mut self, record: &Record, observed_unix_nanos: u64, buf: &mut Vec<u8>) {
        self.chain(record);
        crate::wire::encode_record(buf, record, &self.prev, observed_unix_nanos);
    }
}

/// The OTLP form of `record`, with `prev` as its `audit.prev` attribute.
pub fn map_record(record: &Record, prev: &str, observed_unix_nanos: u64) -> LogRecord {
    let body = json_to_any_value(record.payload_json());
    let mut attributes = Vec::with_capacity(16);
    attributes.push(kv_int("audit.seq", clamp_i64(record.seq)));
    if let Some(r) = &record.request_id {
        attributes.push(kv_str("audit.request_id", r));
    }
    attributes.push(kv_str("audit.prev", prev));
    if let Some(p) = record.parent_span_id {
        attributes.push(kv_str("audit.parent_span_id", &p.to_string()));
    }
    if let Some(c) = &record.correlation_id {
        attributes.push(kv_str("gen_ai.conversation.id", c));
    }
    if let Some(a) = &record.agent {
        attributes.push(kv_str("gen_ai.agent.name", a));
    }
    // Schema v2: who asked (OTel's `user.id` and `session.id`) and the
    // deployment's attributes, each under its own key.
    if let Some(u) = &record.user_id {
        attributes.push(kv_str("user.id", u));
    }
    if let Some(s) = &record.session_id {
        attributes.push(kv_str("session.id", s));
    }
    for (k, v) in record.attributes.iter() {
        attributes.push(KeyValue {
            key: agent_audit_core::otel_key(k),
            value: Some(attr_any(v)),
            key_strindex: 0,
        });
    }
    if let Some(op) = operation_name(&record.event_type) {
        attributes.push(kv_str("gen_ai.operation.name", op));
    }
    if let Some(Value::KvlistValue(map)) = body.value.as_ref() {
        if let Some(provider) = get_str(map, "provider") {
            attributes.push(kv_str("gen_ai.provider.name", provider));
        }
        if let Some(tool) = get_str(map, "tool") {
            attributes.push(kv_str("gen_ai.tool.name", tool));
        }
        if let Some(id) = get_str(map, "call_id") {
            attributes.push(kv_str("gen_ai.tool.call.id", id));
        }
        if let Some(model) = get_str(map, "model") {
            attributes.push(kv_str(model_key(&record.event_type), model));
        }
        if let Some(id) = get_str(map, "response_id") {
            attributes.push(kv_str("gen_ai.response.id", id));
        }
        if let Some(reason) = get_str(map, "finish_reason") {
            attributes.push(KeyValue {
                key: "gen_ai.response.finish_reasons".to_string(),
                value: Some(any(Value::ArrayValue(ArrayValue {
                    values: vec![any(Value::StringValue(reason.to_string()))],
                }))),
                key_strindex: 0,
            });
        }
        if let Some(Value::KvlistValue(usage)) = get(map, "usage") {
            if let Some(n) =
                get_int(usage, "input_tokens").or_else(|| get_int(usage, "prompt_tokens"))
            {
                attributes.push(kv_int("gen_ai.usage.input_tokens", n));
            }
            if let Some(n) =
                get_int(usage, "output_tokens").or_else(|| get_int(usage, "completion_tokens"))
            {
                attributes.push(kv_int("gen_ai.usage.output_tokens", n));
            }
        }
        if record.event_type.is_error()
            && let Some(kind) = get_str(map, "kind")
        {
            attributes.push(kv_str("error.type", kind));
        }
    }
    let error = record.event_type.is_error();
    let ts = record.ts.unix_nanos();
    LogRecord {
        time_unix_nano: u64::try_from(ts).unwrap_or(0),
        observed_time_unix_nano: observed_unix_nanos,
        severity_number: if error {
            SeverityNumber::Error as i32
        } else {
            SeverityNumber::Info as i32
        },
        severity_text: if error { "ERROR" } else { "INFO" }.to_string(),
        body: Some(body),
        attributes,
        dropped_attributes_count: 0,
        // The trace's W3C flags (bits 0-7), so a backend can tell a
        // sampled trace's records from the others'.
        flags: u32::from(record.trace_flags.bits()),
        trace_id: record.trace_id.to_bytes().to_vec(),
        span_id: record.span_id.to_bytes().to_vec(),
        event_name: format!("{EVENT_NAME_PREFIX}{}", record.event_type.as_str()),
    }
}

/// The attribute a payload's `model` goes to: the model the server
/// reported for `assistant_output`, else the model asked for.
pub(crate) fn model_key(event_type: &EventType) -> &'static str {
    match event_type {
        EventType::AssistantOutput => "gen_ai.response.model",
        _ => "gen_ai.request.model",
    }
}

/// `gen_ai.operation.name` for an event type, per the GenAI semantic
/// conventions.
pub fn operation_name(event_type: &EventType) -> Option<&'static str> {
    match event_type {
        EventType::UserRequest | EventType::FinalResult => Some("invoke_agent"),
        EventType::AssistantInput | EventType::AssistantOutput | EventType::ModelError => {
            Some("chat")
        }
        EventType::ToolCall | EventType::ToolResult | EventType::ToolError => Some("execute_tool"),
        _ => None,
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn get<'a>(map: &'a KeyValueList, key: &str) -> Option<&'a Value> {
    map.values
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn get_str<'a>(map: &'a KeyValueList, key: &str) -> Option<&'a str> {
    match get(map, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn get_int(map: &KeyValueList, key: &str) -> Option<i64> {
    match get(map, key) {
        Some(Value::IntValue(n)) => Some(*n),
        _ => None,
    }
}

fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_string())),
        }),
        key_strindex: 0,
    }
}

fn attr_any(v: &agent_audit_core::AttrValue) -> AnyValue {
    use agent_audit_core::AttrValue;
    let value = match v {
        AttrValue::String(s) => Value::StringValue(s.to_string()),
        AttrValue::Bool(b) => Value::BoolValue(*b),
        AttrValue::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => match n.as_f64() {
                Some(f) if n.is_f64() => Value::DoubleValue(f),
                // Beyond i64: the decimal text, as for payload numbers.
                _ => Value::StringValue(n.to_string()),
            },
        },
        _ => Value::StringValue(v.to_string()),
    };
    AnyValue { value: Some(value) }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        key_strindex: 0,
    }
}

/// Parses JSON text straight into an `AnyValue`, keeping object key order.
/// JSON `null` becomes an empty `AnyValue` (`{}` in OTLP/JSON); integers
/// beyond `i64` become their decimal string so nothing is rounded.
pub fn json_to_any_value(json: &str) -> AnyValue {
    let mut de = serde_json::Deserializer::from_str(json);
    // The payload was produced by serde_json, so it parses; an empty
    // AnyValue keeps library code free of panics if it ever did not.
    AnyValueSeed.deserialize(&mut de).unwrap_or_default()
}

struct AnyValueSeed;

impl<'de> DeserializeSeed<'de> for AnyValueSeed {
    type Value = AnyValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(AnyValueVisitor)
    }
}

struct AnyValueVisitor;

fn any(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

impl<'de> Visitor<'de> for AnyValueVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<AnyValue, E> {
        Ok(any(Value::BoolValue(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<AnyValue, E> {
        Ok(any(Value::IntValue(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<AnyValue, E> {
        Ok(any(match i64::try_from(v) {
            Ok(n) => Value::IntValue(n),
            Err(_) => Value::StringValue(v.to_string()),
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<AnyValue, E> {
        Ok(any(Value::DoubleValue(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(v)))
    }
    fn visit_unit<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_none<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(AnyValueSeed)? {
            values.push(v);
        }
        Ok(any(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(AnyValueSeed)?;
            values.push(KeyValue {
                key,
                value: Some(value),
                key_strindex: 0,
            });
        }
        Ok(any(Value::KvlistValue(KeyValueList { values })))
    }
}

/// What the mapping and wire tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use agent_audit_core::{Attributes, Auditor, Dispatcher, MemorySink, Record, SinkOptions};

    /// The records `emit` writes through a real dispatcher (stamping `base`
    /// on every record) into memory, after a drain.
    pub(crate) fn records_emitted(
        base: Attributes,
        emit: impl AsyncFnOnce(Auditor),
    ) -> Vec<Arc<Record>> {
        let memory = MemorySink::new();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let d = Dispatcher::builder()
                    .sink(SinkOptions::new("m"), memory.clone())
                    .attributes(base)
                    .start()
                    .await
                    .unwrap();
                emit(Auditor::new(d.clone())).await;
                d.shutdown(std::time::Duration::from_secs(5)).await;
            });
        memory.records()
    }

    /// `auditor` for user `u-42` in session `s-7`, with the attributes
    /// `purpose = "support"` and `tier = 3`.
    pub(crate) fn with_user_and_two_attributes(auditor: &Auditor) -> Auditor {
        auditor
            .with_user("u-42")
            .with_session("s-7")
            .with_attribute("purpose", "support")
            .unwrap()
            .with_attribute("tier", 3)
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{records_emitted, with_user_and_two_attributes};
    use super::*;

    #[test]
    fn json_maps_to_any_value_in_order_without_rounding() {
        let v = json_to_any_value(
            r#"{"z":1,"a":[true,null,1.5,"s"],"big":18446744073709551615,"o":{"k":-3}}"#,
        );
        let Some(Value::KvlistValue(map)) = v.value else {
            panic!("not a map: {v:?}")
        };
        let keys: Vec<&str> = map.values.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["z", "a", "big", "o"]);
        assert_eq!(get_str(&map, "big"), Some("18446744073709551615"));
        let Some(Value::ArrayValue(arr)) = get(&map, "a") else {
            panic!()
        };
        assert_eq!(arr.values[0].value, Some(Value::BoolValue(true)));
        assert_eq!(arr.values[1].value, None);
        assert_eq!(arr.values[2].value, Some(Value::DoubleValue(1.5)));
        let Some(Value::KvlistValue(o)) = get(&map, "o") else {
            panic!()
        };
        assert_eq!(get_int(o, "k"), Some(-3));
    }

    #[test]
    fn operation_names_follow_the_genai_conventions() {
        assert_eq!(
            operation_name(&EventType::UserRequest),
            Some("invoke_agent")
        );
        assert_eq!(
            operation_name(&EventType::FinalResult),
            Some("invoke_agent")
        );
        assert_eq!(operation_name(&EventType::AssistantOutput), Some("chat"));
        assert_eq!(operation_name(&EventType::ToolResult), Some("execute_tool"));
        assert_eq!(operation_name(&EventType::SessionStart), None);
    }

    /// Records as the agents runtime writes them, through a real
    /// dispatcher, under `traceparent`.
    fn emitted(traceparent: &str, events: &[(EventType, serde_json::Value)]) -> Vec<LogRecord> {
        use agent_audit_core::{Attributes, Auditor, TraceContext};
        let cx: TraceContext = traceparent.parse().unwrap();
        records_emitted(Attributes::default(), async |root: Auditor| {
            let a = root.with_trace_context(cx).for_request(None);
            for (t, p) in events {
                a.emit(t.clone(), p).await.unwrap();
            }
        })
        .iter()
        .map(|r| map_record(r, GENESIS_PREV, 1))
        .collect()
    }

    fn attr(log: &LogRecord, key: &str) -> Option<Value> {
        log.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    }

    fn string(s: &str) -> Option<Value> {
        Some(Value::StringValue(s.to_string()))
    }

    #[test]
    fn user_session_and_each_attribute_are_log_attributes() {
        use agent_audit_core::{Attributes, Auditor};
        let base = Attributes::new().with("tenant.id", "emea-retail").unwrap();
        let records = records_emitted(base, async |root: Auditor| {
            let a = with_user_and_two_attributes(&root)
                .with_attribute("audit.seq", "spoof")
                .unwrap()
                .for_request(None);
            a.emit(EventType::UserRequest, &serde_json::json!({}))
                .await
                .unwrap();
        });
        let log = map_record(&records[0], GENESIS_PREV, 1);
        assert_eq!(attr(&log, "user.id"), string("u-42"));
        assert_eq!(attr(&log, "session.id"), string("s-7"));
        assert_eq!(attr(&log, "tenant.id"), string("emea-retail"));
        assert_eq!(attr(&log, "audit.attribute.purpose"), string("support"));
        assert_eq!(attr(&log, "audit.attribute.tier"), Some(Value::IntValue(3)));
        assert_eq!(attr(&log, "audit.attribute.audit.seq"), string("spoof"));
        let seqs = log
            .attributes
            .iter()
            .filter(|kv| kv.key == "audit.seq")
            .count();
        assert_eq!(seqs, 1, "an attribute cannot pose as the record's own keys");
    }

    #[test]
    fn an_attribute_cannot_pose_as_error_type_or_the_resource() {
        use agent_audit_core::{Attributes, Auditor};
        let records = records_emitted(Attributes::default(), async |root: Auditor| {
            let a = root
                .with_attribute("error.type", "spoof")
                .unwrap()
                .with_attribute("service.name", "other-service")
                .unwrap()
                .with_attribute("telemetry.sdk.name", "spoof")
                .unwrap()
                .for_request(None);
            a.emit(EventType::ToolResult, &serde_json::json!({"tool": "t"}))
                .await
                .unwrap();
            a.emit(
                EventType::ToolError,
                &serde_json::json!({"kind": "timeout"}),
            )
            .await
            .unwrap();
        });
        for (record, error_type) in [(&records[0], None), (&records[1], string("timeout"))] {
            let log = map_record(record, GENESIS_PREV, 1);
            assert_eq!(attr(&log, "error.type"), error_type);
            let n = log
                .attributes
                .iter()
                .filter(|kv| kv.key == "error.type")
                .count();
            assert!(n <= 1, "error.type {n} times");
            assert_eq!(attr(&log, "service.name"), None);
            assert_eq!(attr(&log, "telemetry.sdk.name"), None);
            assert_eq!(attr(&log, "audit.attribute.error.type"), string("spoof"));
            assert_eq!(
                attr(&log, "audit.attribute.service.name"),
                string("other-service")
            );
        }
    }

    #[test]
    fn the_trace_flags_reach_the_log_record() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        let ev = [(EventType::UserRequest, serde_json::json!({}))];
        let sampled = emitted(&format!("{tp}-01"), &ev);
        assert_eq!(sampled[0].flags, 1);
        assert_eq!(
            hex::encode(&sampled[0].trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let unsampled = emitted(&format!("{tp}-00"), &ev);
        assert_eq!(unsampled[0].flags, 0);
    }

    #[test]
    fn model_names_provider_response_and_errors_map_to_genai_attributes() {
        use serde_json::json;
        let logs = emitted(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            &[
                (
                    EventType::AssistantInput,
                    json!({"provider": "openai", "model": "gpt-4o", "messages": []}),
                ),
                (
                    EventType::AssistantOutput,
                    json!({"provider": "openai", "model": "gpt-4o-2024-08-06", "response_id": "chatcmpl-9",
                           "finish_reason": "tool_calls", "usage": {"prompt_tokens": 11, "completion_tokens": 7}}),
                ),
                (
                    EventType::ModelError,
                    json!({"kind": "rate_limit", "model": "gpt-4o", "provider": "openai"}),
                ),
                (
                    EventType::ToolError,
                    json!({"tool": "t", "call_id": "c", "kind": "invalid_arguments"}),
                ),
                (EventType::ToolResult, json!({"tool": "t", "kind": "x"})),
            ],
        );
        let [input, output, model_error, tool_error, tool_result] = &logs[..] else {
            panic!("{} records", logs.len())
        };
        assert_eq!(attr(input, "gen_ai.request.model"), string("gpt-4o"));
        assert_eq!(attr(input, "gen_ai.response.model"), None);
        assert_eq!(attr(input, "gen_ai.provider.name"), string("openai"));
        // The server's model is the response model, not the requested one.
        assert_eq!(
            attr(output, "gen_ai.response.model"),
            string("gpt-4o-2024-08-06")
        );
        assert_eq!(attr(output, "gen_ai.request.model"), None);
        assert_eq!(attr(output, "gen_ai.response.id"), string("chatcmpl-9"));
        assert_eq!(
            attr(output, "gen_ai.response.finish_reasons"),
            Some(Value::ArrayValue(ArrayValue {
                values: vec![any(Value::StringValue("tool_calls".into()))]
            }))
        );
        assert_eq!(
            attr(output, "gen_ai.usage.input_tokens"),
            Some(Value::IntValue(11))
        );
        assert_eq!(attr(output, "error.type"), None);
        assert_eq!(attr(model_error, "error.type"), string("rate_limit"));
        assert_eq!(attr(model_error, "gen_ai.request.model"), string("gpt-4o"));
        assert_eq!(attr(tool_error, "error.type"), string("invalid_arguments"));
        // `kind` on a record that is no error is just payload.
        assert_eq!(attr(tool_result, "error.type"), None);
    }
}
