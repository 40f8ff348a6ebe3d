//! Schema v2's `user_id`, `session_id` and attribute values go through the
//! rules like payload fields: a `hash` rule makes the user id a stable
//! pseudonym (the same in two runs under the same key, never in clear in
//! any sink's bytes), detectors and built-in names catch attribute values,
//! and the record's `session_id` stays findable under the defaults.

use std::ffi::OsString;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::{Auditor, Dispatcher, EventType, MemorySink, SinkOptions, StoredRecord};
use agent_audit_redact::{RedactionConfig, Redactor};
use agent_audit_stdout::{StdoutFormat, StdoutOptions, StdoutSink};
use serde_json::json;

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct AuditToml {
    redaction: RedactionConfig,
}

const HASH_USERS: &str = r#"
[redaction]
detectors = ["email", "api_key"]
key_env = "AUDIT_REDACTION_KEY"

[[redaction.rules]]
name = "user"
fields = ["user_id"]
action = "hash"
"#;

/// One run: a dispatcher with a memory sink and two stdout sinks (JSON
/// and pretty) behind the redactor, one request by `user`; every sink's
/// bytes and the records.
async fn run(toml: &str, key: &str, user: &str) -> (Vec<StoredRecord>, String) {
    let config = toml::from_str::<AuditToml>(toml).unwrap().redaction;
    let key = key.to_string();
    let redactor = Redactor::from_config_with_env(&config, |name| {
        (name == "AUDIT_REDACTION_KEY").then(|| OsString::from(key.clone()))
    })
    .unwrap();
    let memory = MemorySink::new();
    let (json, pretty) = (SharedBuf::default(), SharedBuf::default());
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .sink(
            SinkOptions::new("json"),
            StdoutSink::with_writer(
                StdoutOptions {
                    format: StdoutFormat::Json,
                },
                "json",
                json.clone(),
            ),
        )
        .sink(
            SinkOptions::new("pretty"),
            StdoutSink::with_writer(StdoutOptions::default(), "pretty", pretty.clone()),
        )
        .filter(Arc::new(redactor))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone())
        .with_user(user)
        .with_session("s-7")
        .with_attribute("contact", "bob@example.com")
        .unwrap()
        .with_attribute("api_token", "opaque-value-1234")
        .unwrap()
        .with_attribute("purpose", "support")
        .unwrap()
        .for_request(None);
    a.emit(EventType::UserRequest, &json!({"content": "balance?"}))
        .await
        .unwrap();
    a.child_span()
        .emit(EventType::FinalResult, &json!({"answer": "ok"}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let records: Vec<StoredRecord> = memory.records().iter().map(|r| r.to_stored("")).collect();
    let mut bytes = String::new();
    for r in memory.records() {
        let mut line = Vec::new();
        r.encode_line("", &mut line);
        bytes.push_str(&String::from_utf8(line).unwrap());
    }
    bytes.push_str(&String::from_utf8(json.0.lock().unwrap().clone()).unwrap());
    bytes.push_str(&String::from_utf8(pretty.0.lock().unwrap().clone()).unwrap());
    (records, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_user_id_is_one_pseudonym_across_runs_and_never_in_clear() {
    let key = "identity-test-key-0123456789";
    let (first, bytes1) = run(HASH_USERS, key, "alice@example.com").await;
    let (second, bytes2) = run(HASH_USERS, key, "alice@example.com").await;
    let pseudonym = first[0].user_id.clone().unwrap();
    assert!(pseudonym.starts_with("hmac:"), "{pseudonym}");
    for r in first.iter().chain(&second) {
        assert_eq!(r.user_id.as_deref(), Some(pseudonym.as_str()));
        assert_eq!(r.session_id.as_deref(), Some("s-7"));
        assert_eq!(r.attributes["contact"], "[REDACTED:email]");
        assert_eq!(r.attributes["api_token"], "[REDACTED:token]");
        assert_eq!(r.attributes["purpose"], "support");
    }
    for bytes in [&bytes1, &bytes2] {
        assert!(bytes.contains(&pseudonym), "{bytes}");
        for secret in ["alice", "bob@example.com", "opaque-value-1234"] {
            assert!(!bytes.contains(secret), "{secret} reached a sink: {bytes}");
        }
    }
    // Another key, another pseudonym: it names no one without the key.
    let (other, _) = run(
        HASH_USERS,
        "another-key-0123456789abcdef",
        "alice@example.com",
    )
    .await;
    assert_ne!(other[0].user_id.as_deref(), Some(pseudonym.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_naming_session_id_hashes_the_record_session() {
    let toml = r#"
[redaction]
key_env = "AUDIT_REDACTION_KEY"

[[redaction.rules]]
name = "session"
fields = ["session_id"]
action = "hash"
"#;
    let (records, bytes) = run(toml, "identity-test-key-0123456789", "u-42").await;
    let s = records[0].session_id.clone().unwrap();
    assert!(s.starts_with("hmac:"), "{s}");
    assert!(!bytes.contains("\"s-7\""), "{bytes}");
    assert_eq!(records[0].user_id.as_deref(), Some("u-42"));
}

/// An attribute's key is scanned as a payload object's key is: a token or
/// an e-mail address given as the key (`--attr "$TOKEN"` where the token
/// ends in `=`, an address as the name) reaches no sink in clear, whether
/// the request sets it or the dispatcher's `[attributes]` do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_or_address_as_an_attribute_key_reaches_no_sink_in_clear() {
    let config = toml::from_str::<AuditToml>("[redaction]\ndetectors = [\"email\", \"api_key\"]\n")
        .unwrap()
        .redaction;
    let redactor = Redactor::from_config_with_env(&config, |_| None).unwrap();
    let token = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    let memory = MemorySink::new();
    let json = SharedBuf::default();
    let base = agent_audit_core::Attributes::new()
        .with("carol@example.com", "owner")
        .unwrap()
        .with("tenant", "emea")
        .unwrap();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .sink(
            SinkOptions::new("json"),
            StdoutSink::with_writer(
                StdoutOptions {
                    format: StdoutFormat::Json,
                },
                "json",
                json.clone(),
            ),
        )
        .attributes(base)
        .filter(Arc::new(redactor))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone())
        .with_attribute(token, "1")
        .unwrap()
        .with_attribute("dave@example.com", "reviewer")
        .unwrap()
        .for_request(None);
    a.emit(EventType::UserRequest, &json!({"content": "hi"}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let records = memory.records();
    assert_eq!(records.len(), 1);
    let mut bytes = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
    let mut line = Vec::new();
    records[0].encode_line("", &mut line);
    bytes.push_str(&String::from_utf8(line).unwrap());
    for secret in [token, "carol@example.com", "dave@example.com"] {
        assert!(!bytes.contains(secret), "{secret} reached a sink: {bytes}");
    }
    let attrs = &records[0].attributes;
    assert_eq!(
        attrs.get("tenant"),
        Some(&"emea".into()),
        "{}",
        attrs.json()
    );
    // Masked, not lost: each attribute is still there under its masked key.
    assert_eq!(attrs.len(), 4, "{}", attrs.json());
    assert!(
        attrs.json().contains("[REDACTED:email]"),
        "{}",
        attrs.json()
    );
    assert!(
        attrs.json().contains("[REDACTED:api_key]"),
        "{}",
        attrs.json()
    );
}
