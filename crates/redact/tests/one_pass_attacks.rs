//! Attacks on the pre-check (issue 15), by a helper that did not write it:
//! payloads and configurations where `may_redact` might say "no" while
//! `redact` changes the payload, which would write the payload unredacted.
//!
//! Each test states the promise on the parsed payload: `may_redact(text)`
//! is `true` whenever `redact(parse(text))` changes anything.

use agent_audit_redact::{Action, Detector, MAX_DEPTH, RedactionConfig, Redactor, RuleConfig};
use serde_json::Value;

/// Fails when `redact` changes the payload that `text` is while
/// `may_redact(text)` says nothing would.
fn assert_promise(r: &Redactor, text: &str) {
    let v: Value = serde_json::from_str(text).expect("test payloads are JSON");
    let mut w = v.clone();
    r.redact(&mut w);
    if w != v {
        assert!(
            r.may_redact(text),
            "may_redact said no, redact gave {w}: {text}"
        );
    }
}

fn rule(
    name: &str,
    pattern: Option<&str>,
    fields: Option<&[&str]>,
    action: Option<Action>,
) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        pattern: pattern.map(String::from),
        fields: fields.map(|f| f.iter().map(|s| s.to_string()).collect()),
        action,
    }
}

fn key_env(name: &str) -> Option<std::ffi::OsString> {
    (name == "AUDIT_REDACTION_KEY").then(|| "attack-test-key-0123456789".into())
}

/// Configurations that have the one pass (no `iban`) and one that does not.
fn configs() -> Vec<Redactor> {
    let custom = RedactionConfig {
        action: Action::Hash,
        rules: vec![
            rule(
                "custom",
                None,
                Some(&["customer_name", "x_api_key", "tax_id"]),
                Some(Action::Drop),
            ),
            rule("acct", Some(r"\bACCT-[0-9]{4}\b"), None, None),
        ],
        ..RedactionConfig::default()
    };
    let fields_only = RedactionConfig {
        fields: vec!["password".into(), "api_key".into()],
        ..RedactionConfig::none()
    };
    let email_card = RedactionConfig {
        detectors: vec![Detector::Email, Detector::PaymentCard],
        ..RedactionConfig::default()
    };
    [
        RedactionConfig::default(),
        custom,
        fields_only,
        email_card,
        RedactionConfig::all_detectors(),
    ]
    .iter()
    .map(|c| Redactor::from_config_with_env(c, key_env).expect("valid config"))
    .collect()
}

/// Serialisers other than serde_json's compact writer put JSON whitespace
/// between a key's closing quote and its `:` (`{"password" : …}`), and
/// such text reaches `may_redact` in two ways: as the payload's own text,
/// when the payload holds a `serde_json::value::RawValue` (written as it
/// came), and as JSON text inside a string (tool arguments), which the
/// walk parses. The pre-check found keys only as `"` right before `:`.
#[test]
fn keys_with_whitespace_before_their_colon_are_keys() {
    let values = [
        r#""hunter2""#,
        "1234",
        r#"{"v":"hunter2"}"#,
        r#"["hunter2"]"#,
        "true",
    ];
    let gaps = [" ", "  ", "\t", "\n", "\r\n", " \n\t "];
    for r in configs() {
        for value in values {
            for gap in gaps {
                // The payload's own text (a RawValue): ASCII, no backslash,
                // so the one pass answers; the same with a non-ASCII
                // neighbour, so the full path does.
                for text in [
                    format!("{{\"password\"{gap}:{gap}{value}}}"),
                    format!("{{\"a\":1,\"db_password\"{gap}:{value}}}"),
                    format!("{{\"\u{e9}\":1,\"password\"{gap}:{value}}}"),
                ] {
                    assert_promise(&r, &text);
                }
                // JSON text in a string, one and two levels down.
                let inner = format!("{{\"password\"{gap}:{gap}{value}}}");
                let once = serde_json::to_string(&Value::String(inner)).unwrap();
                assert_promise(&r, &format!("{{\"arguments\":{once}}}"));
                let twice = serde_json::to_string(&Value::String(format!("[{once}]"))).unwrap();
                assert_promise(&r, &format!("{{\"arguments\":{twice}}}"));
            }
        }
    }
}

/// Strings holding JSON text deepen the walk by one level without a
/// bracket of their own, so the walk can reach [`MAX_DEPTH`] (and mask
/// what lies there as unscannable) with fewer than `MAX_DEPTH` brackets.
/// (Not a secret: the pre-check read the whole text; but the promise
/// was broken. serde_json parses at most 127 levels.)
#[test]
fn json_text_in_strings_counts_towards_the_depth() {
    for r in configs() {
        // One level of JSON text without a backslash: the one pass reads it.
        for n in MAX_DEPTH - 6..MAX_DEPTH {
            let text = format!("{}\"[1]\"{}", "[".repeat(n), "]".repeat(n));
            assert_promise(&r, &text);
        }
        // Four levels, escaped: the full path.
        for n in MAX_DEPTH - 8..MAX_DEPTH {
            let mut inner = Value::String("[1]".into());
            for _ in 0..3 {
                inner = Value::String(format!("[{}]", serde_json::to_string(&inner).unwrap()));
            }
            let s = serde_json::to_string(&inner).unwrap();
            let text = format!("{}{s}{}", "[".repeat(n), "]".repeat(n));
            assert_promise(&r, &text);
        }
    }
}

/// End to end: a payload holding a `RawValue` (tool arguments kept as the
/// model wrote them) goes through a real dispatcher with the default
/// rules into a memory sink; no secret of it is in the record's body.
#[tokio::test(flavor = "multi_thread")]
async fn raw_json_with_spaced_keys_is_redacted_before_the_sink() {
    use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, MemorySink, SinkOptions};
    use serde_json::value::RawValue;

    #[derive(serde::Serialize)]
    struct ToolCall {
        tool: &'static str,
        arguments: Box<RawValue>,
    }

    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .filter(std::sync::Arc::new(
            Redactor::from_config(&RedactionConfig::default()).unwrap(),
        ))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("req-raw"));
    let arguments = [
        "{\"user\":\"alice\",\"password\" : \"hunter2-one\"}",
        "{\n  \"db_password\"\n    : \"hunter2-two\"\n}",
        "{\"api_key\"\t:\t{\"v\":\"hunter2-three\"}}",
        "{\"token\" :[\"hunter2-four\"]}",
    ];
    let mut last = 0;
    for raw in arguments {
        let payload = ToolCall {
            tool: "login",
            arguments: RawValue::from_string(raw.to_string()).unwrap(),
        };
        last = a.emit(EventType::ToolCall, &payload).await.unwrap().seq;
    }
    d.wait(last, AckLevel::Written).await.unwrap();
    let report = d.shutdown(std::time::Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    let records = memory.records();
    assert_eq!(records.len(), arguments.len());
    for r in &records {
        let body = r.payload_json();
        assert!(
            !body.contains("hunter2"),
            "a secret reached the sink: {body}"
        );
        assert!(body.contains("_redacted"), "{body}");
    }
}
