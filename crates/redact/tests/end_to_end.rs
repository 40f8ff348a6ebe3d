//! Redaction through a real dispatcher, before fan-out: a memory sink, the
//! stdout sink printing JSON into an OS pipe read by another thread, and
//! the stdout sink printing pretty lines into a buffer. Nothing sensitive
//! reaches any of them, and `_redacted` lists rule names only.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Dispatcher, EventType, MemorySink, SinkOptions, StoredRecord,
};
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

const AUDIT_TOML: &str = r#"
[redaction]
detectors = ["email", "payment_card", "api_key", "bearer_token", "iban"]
action = "mask"
key_env = "AUDIT_REDACTION_KEY"

[[redaction.rules]]
name = "account_id"
pattern = "\\b[0-9]{5}\\b"
action = "hash"
"#;

const SECRETS: [&str; 8] = [
    "alice@example.com",
    "4111 1111 1111 1111",
    "4111111111111111",
    "sk-proj-Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8",
    "eyJhbGciOiJIUzI1NiJ9",
    "DE89 3704 0044 0532 0130 00",
    "12345",
    "hunter2",
];

#[tokio::test(flavor = "multi_thread")]
async fn nothing_sensitive_reaches_any_sink() {
    let config = toml::from_str::<AuditToml>(AUDIT_TOML).unwrap().redaction;
    let redactor = Redactor::from_config_with_env(&config, |name| {
        (name == "AUDIT_REDACTION_KEY").then(|| OsString::from("end-to-end-test-key-0123456789"))
    })
    .unwrap();
    let rule_names: Vec<String> = redactor
        .rule_names()
        .iter()
        .map(|s| s.to_string())
        .collect();

    let (reader, writer) = std::io::pipe().unwrap();
    let pretty = SharedBuf::default();
    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .sink(
            SinkOptions::new("stdout-json"),
            StdoutSink::with_writer(
                StdoutOptions {
                    format: StdoutFormat::Json,
                },
                "pipe",
                writer,
            ),
        )
        .sink(
            SinkOptions::new("stdout-pretty"),
            StdoutSink::with_writer(StdoutOptions::default(), "buffer", pretty.clone()),
        )
        .filter(Arc::new(redactor))
        .start()
        .await
        .unwrap();

    let flow = vec![
        (
            EventType::UserRequest,
            json!({"text": "I am alice@example.com, card 4111 1111 1111 1111. What is the balance of account 12345?"}),
        ),
        (
            EventType::AssistantInput,
            json!({"messages": [{"role": "user", "content": "balance of 12345 for alice@example.com"}],
                   "request": {"headers": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"}}}),
        ),
        (
            EventType::ToolCall,
            json!({"tool": "get_account_balance", "call_id": "call_1", "arguments": {"account_id": "12345"},
                   "client": {"api_key": "sk-proj-Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8", "db_password": "hunter2"}}),
        ),
        (
            EventType::ToolResult,
            json!({"tool": "get_account_balance", "call_id": "call_1",
                   "result": "Account 12345 (IBAN DE89 3704 0044 0532 0130 00) holds 1,024.50 EUR"}),
        ),
        (
            EventType::FinalResult,
            json!({"answer": "Account 12345 holds 1,024.50 EUR. A receipt goes to alice@example.com.", "turns": 2}),
        ),
        (EventType::SessionEnd, json!({"reason": "done"})),
    ];
    let a = Auditor::new(d.clone())
        .for_request(Some("req-e2e"))
        .with_agent("assistant");
    let mut last = 0;
    for (t, p) in &flow {
        last = a.emit(t.clone(), p).await.unwrap().seq;
    }
    assert_eq!(
        d.wait(last, AckLevel::Written).await.unwrap().level,
        AckLevel::Written
    );
    let lines: Vec<String> = tokio::task::spawn_blocking(move || {
        BufReader::new(reader)
            .lines()
            .take(flow.len())
            .map(Result::unwrap)
            .collect()
    })
    .await
    .unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");

    // Every sink got every record, redacted identically (once, before fan-out).
    let records = memory.records();
    assert_eq!(records.len(), 6);
    assert_eq!(lines.len(), 6);
    let pretty_text = String::from_utf8(pretty.0.lock().unwrap().clone()).unwrap();
    assert_eq!(pretty_text.lines().count(), 6);
    for (line, record) in lines.iter().zip(&records) {
        let stored: StoredRecord = serde_json::from_str(line).unwrap();
        assert_eq!(stored.payload, record.payload_value());
    }

    // Nothing sensitive anywhere.
    let memory_text: String = records
        .iter()
        .map(|r| r.payload_json().to_string() + "\n")
        .collect();
    let json_payloads: String = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<StoredRecord>(l)
                .unwrap()
                .payload
                .to_string()
                + "\n"
        })
        .collect();
    for (sink, text) in [
        ("memory", &memory_text),
        ("stdout json", &json_payloads),
        ("stdout pretty", &pretty_text),
    ] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret:?} reached {sink}:\n{text}");
        }
    }

    // `_redacted` holds rule names, and only on records where rules fired.
    let fired: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let p = r.payload_value();
            match p.get("_redacted") {
                None => Vec::new(),
                Some(v) => v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
                    .collect(),
            }
        })
        .collect();
    assert_eq!(fired[0], ["account_id", "email", "payment_card"]);
    assert_eq!(fired[1], ["account_id", "authorization", "email"]);
    assert_eq!(fired[2], ["account_id", "api_key", "password"]);
    assert_eq!(fired[3], ["account_id", "iban"]);
    assert_eq!(fired[4], ["account_id", "email"]);
    assert!(fired[5].is_empty());
    for name in fired.iter().flatten() {
        assert!(rule_names.contains(name), "{name} is not a rule name");
    }
    assert!(
        pretty_text.contains("[redacted: account_id, email, payment_card]"),
        "{pretty_text}"
    );

    // One account id, one pseudonym, across records and sinks.
    let call = records[2].payload_value();
    let pseudonym = call["arguments"]["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        pseudonym.starts_with("hmac:") && pseudonym.len() == 21,
        "{pseudonym}"
    );
    for i in [0, 1, 3, 4] {
        assert!(
            records[i].payload_json().contains(&pseudonym),
            "record {i}: {}",
            records[i].payload_json()
        );
    }
    assert!(json_payloads.matches(&pseudonym).count() >= 5);
    // What is not sensitive is kept.
    assert_eq!(call["tool"], "get_account_balance");
    assert_eq!(
        records[3].payload_value()["result"],
        format!("Account {pseudonym} (IBAN [REDACTED:iban]) holds 1,024.50 EUR")
    );
}

/// An application that scopes requests by customer e-mail or account must
/// not get those into every record's `request_id` / `correlation_id`: the
/// `Auditor` redacts ids when they enter its scope, and the records of one
/// request still join each other.
#[tokio::test(flavor = "multi_thread")]
async fn ids_are_redacted_when_they_enter_the_scope() {
    let (d, memory) = redacted_memory(
        r#"
[redaction]
detectors = ["email"]
key_env = "AUDIT_REDACTION_KEY"

[[redaction.rules]]
name = "request_ids"
fields = ["request_id"]
action = "hash"

[[redaction.rules]]
name = "account_id"
pattern = "\\bacct-[0-9]{5}\\b"
action = "drop"
"#,
    )
    .await;

    let root = Auditor::new(d.clone());
    // A detector on the correlation id, a field rule (hash) on the request id.
    let a = root
        .with_correlation_id("alice@example.com")
        .for_request(Some("customer-4711"));
    // The same request id again hashes to the same pseudonym.
    let b = root.for_request(Some("customer-4711"));
    // A drop rule: a fresh random id, not the account.
    let c = root.with_correlation_id("acct-12345").for_request(None);
    for au in [&a, &a, &b, &c] {
        au.emit(EventType::UserRequest, &json!({"text": "hi"}))
            .await
            .unwrap();
    }
    d.shutdown(Duration::from_secs(5)).await;
    let records = memory.records();
    assert_eq!(records.len(), 4);
    let ids: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r.request_id.as_deref().unwrap().to_string(),
                r.correlation_id.as_deref().unwrap().to_string(),
            )
        })
        .collect();
    for (request, correlation) in &ids {
        for secret in ["alice@example.com", "customer-4711", "acct-12345", "12345"] {
            assert!(!request.contains(secret), "{request} holds {secret}");
            assert!(
                !correlation.contains(secret),
                "{correlation} holds {secret}"
            );
        }
    }
    assert_eq!(ids[0], ids[1], "one scope, one pair of ids");
    assert_eq!(ids[0].0, ids[2].0, "hash: one customer, one pseudonym");
    assert!(
        !ids[3].1.is_empty(),
        "a dropped id is replaced, not emptied"
    );
}

/// `run --request-id alice@example.com` with a rule on `correlation_id`
/// only: the correlation id is derived from the request id, and the rule
/// must still apply to it (it used to carry the raw request id).
#[tokio::test(flavor = "multi_thread")]
async fn a_correlation_rule_applies_to_a_correlation_id_derived_from_the_request_id() {
    let (d, memory) = redacted_memory(
        r#"
[redaction]
key_env = "AUDIT_REDACTION_KEY"

[[redaction.rules]]
name = "conversation"
fields = ["correlation_id"]
action = "hash"
"#,
    )
    .await;
    let a = Auditor::new(d.clone()).for_request(Some("customer-4711"));
    a.emit(EventType::UserRequest, &json!({"text": "hi"}))
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let r = &memory.records()[0];
    assert_eq!(
        r.request_id.as_deref(),
        Some("customer-4711"),
        "no rule on request_id"
    );
    let correlation = r.correlation_id.as_deref().unwrap();
    assert!(!correlation.contains("4711"), "{correlation}");
}

/// Issue 10 item 9 (review): tool arguments and results travel as JSON
/// text inside strings in the message history the runtime records
/// (`assistant_input`'s `messages[].tool_calls[].function.arguments` and a
/// `tool` message's `content`, as crates/agents writes them). The
/// `tool_call` record redacted the real object; the next turn's
/// `assistant_input` held the same secrets verbatim. Through a real
/// dispatcher with the default rules: hidden in both, the rest kept, and
/// the text still JSON.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_json_text_and_assignments_inside_strings_are_redacted() {
    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .filter(Arc::new(
            Redactor::from_config(&RedactionConfig::default()).unwrap(),
        ))
        .start()
        .await
        .unwrap();
    let arguments =
        r#"{"account_id":"ACC-1","pwd":"hunter2-the-password","client_secret":"CS-very-secret"}"#;
    let tool_call = json!({"tool": "open_account", "call_id": "call_1",
        "arguments": serde_json::from_str::<serde_json::Value>(arguments).unwrap()});
    // Exactly the shape of crates/agents' `AssistantInput` on the second turn.
    let assistant_input = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful bank assistant."},
            {"role": "user", "content": "Open account ACC-1 with password hunter2-the-password"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "open_account", "arguments": arguments}}
            ]},
            {"role": "tool", "tool_call_id": "call_1",
             "content": r#"{"ok":true,"account_id":"ACC-1","login":{"token":"tok-0123456789"},"note":"db password=pa55word-in-text; Authorization: Basic YWxpY2U6aHVudGVyMg== end"}"#},
            {"role": "tool", "tool_call_id": "call_2",
             "content": "login ok, api_secret=AS-in-plain-text&next=1"},
        ],
        "tools": ["open_account"],
    });
    let a = Auditor::new(d.clone()).with_agent("assistant");
    a.emit(EventType::ToolCall, &tool_call).await.unwrap();
    let last = a
        .emit(EventType::AssistantInput, &assistant_input)
        .await
        .unwrap()
        .seq;
    d.wait(last, AckLevel::Written).await.unwrap();
    d.shutdown(Duration::from_secs(5)).await;

    let records = memory.records();
    let all: String = records
        .iter()
        .map(|r| r.payload_value().to_string())
        .collect();
    for secret in [
        "hunter2-the-password\\\"",
        "CS-very-secret",
        "tok-0123456789",
        "pa55word-in-text",
        "YWxpY2U6aHVudGVyMg",
        "AS-in-plain-text",
    ] {
        assert!(!all.contains(secret), "{secret} reached the sink: {all}");
    }
    let input = records[1].payload_value();
    let args = input["messages"][2]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    let args: serde_json::Value = serde_json::from_str(args).unwrap();
    assert_eq!(
        args,
        json!({"account_id": "ACC-1", "pwd": "[REDACTED:password]", "client_secret": "[REDACTED:secret]"})
    );
    let result: serde_json::Value =
        serde_json::from_str(input["messages"][3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["account_id"], "ACC-1");
    assert_eq!(result["login"]["token"], "[REDACTED:token]");
    assert_eq!(
        result["note"],
        "db password=[REDACTED:password]; Authorization: [REDACTED:authorization] end"
    );
    assert_eq!(
        input["messages"][4]["content"],
        "login ok, api_secret=[REDACTED:secret]&next=1"
    );
    // Prose mentioning a password keeps its words; the user's own message
    // is free text (out of reach, docs/redaction.md).
    assert_eq!(
        input["messages"][0]["content"],
        "You are a helpful bank assistant."
    );
    let fired: Vec<&str> = input["_redacted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        fired,
        [
            "password",
            "authorization",
            "token",
            "secret",
            "bearer_token"
        ]
    );
}

/// A dispatcher whose one sink is memory, behind a redactor built from the
/// `[redaction]` TOML `toml` with the test key in `AUDIT_REDACTION_KEY`.
async fn redacted_memory(toml: &str) -> (Dispatcher, MemorySink) {
    let config = toml::from_str::<AuditToml>(toml).unwrap().redaction;
    let redactor = Redactor::from_config_with_env(&config, |name| {
        (name == "AUDIT_REDACTION_KEY").then(|| OsString::from("end-to-end-test-key-0123456789"))
    })
    .unwrap();
    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .filter(Arc::new(redactor))
        .start()
        .await
        .unwrap();
    (d, memory)
}
