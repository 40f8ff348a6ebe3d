//! `[attributes]` in `audit.toml`: stamped on every record a dispatcher
//! built from the file writes, its own records included; a value that is
//! not a scalar or breaks a limit is an error naming file, line and key.

use std::time::Duration;

use agent_audit::config::{Config, ConfigError};
use agent_audit::{Auditor, EventType, StoredRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_attributes_are_on_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let text = format!(
        "[attributes]\ntenant = \"emea-retail\"\ntier = 2\npii = false\n\n[[sinks]]\ntype = \"jsonl\"\npath = {:?}\n",
        log.display().to_string()
    );
    let config = Config::parse(&text, "audit.toml").unwrap();
    assert_eq!(config.attributes.len(), 3);
    let d = config.start().await.unwrap();
    Auditor::new(d.clone())
        .with_user("u-42")
        .for_request(None)
        .emit(
            EventType::UserRequest,
            &serde_json::json!({"content": "hi"}),
        )
        .await
        .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let lines = std::fs::read_to_string(&log).unwrap();
    let records: Vec<StoredRecord> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.v, 2);
        assert_eq!(r.attributes["tenant"], "emea-retail");
        assert_eq!(r.attributes["tier"], 2);
        assert_eq!(r.attributes["pii"], false);
    }
    assert!(lines.contains(r#""attributes":{"pii":false,"tenant":"emea-retail","tier":2}"#));
}

fn parse_error(text: &str) -> (usize, Option<String>, String) {
    match Config::parse(text, "audit.toml") {
        Err(ConfigError::Parse {
            path,
            line,
            key,
            message,
            ..
        }) => {
            assert_eq!(path, "audit.toml");
            (line, key, message)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn attribute_errors_name_file_line_and_key() {
    let (line, key, message) = parse_error(
        "[service]\nname = \"x\"\n\n[attributes]\ntenant = \"a\"\ndeep = { a = { b = { c = 1 } } }\n",
    );
    assert_eq!((line, key.as_deref()), (6, Some("attributes.deep")));
    assert!(message.contains("a table"), "{message}");

    let big = "x".repeat(agent_audit::MAX_ATTRIBUTE_VALUE_BYTES + 1);
    let (line, key, message) = parse_error(&format!("[attributes]\nok = 1\nnote = \"{big}\"\n"));
    assert_eq!((line, key.as_deref()), (3, Some("attributes.note")));
    assert!(
        message.contains("`note`") && message.contains("over the limit"),
        "{message}"
    );

    let (line, key, _) = parse_error("[attributes]\nlist = [1, 2]\n");
    assert_eq!((line, key.as_deref()), (2, Some("attributes.list")));

    let mut many = String::from("[attributes]\n");
    for i in 0..=agent_audit::MAX_ATTRIBUTES {
        many.push_str(&format!("k{i:02} = {i}\n"));
    }
    let (line, key, message) = parse_error(&many);
    let last = format!("k{:02}", agent_audit::MAX_ATTRIBUTES);
    assert_eq!(key, Some(format!("attributes.{last}")));
    assert_eq!(line, agent_audit::MAX_ATTRIBUTES + 2);
    assert!(message.contains("limit"), "{message}");

    // A dotted key is a TOML table; the message says so and how to quote
    // it, instead of the deserialiser's "expected a borrowed string".
    let (line, key, message) = parse_error("[attributes]\nok = 1\ntenant.id = \"emea\"\n");
    assert_eq!(line, 3);
    assert_eq!(key.as_deref(), Some("attributes.tenant.id"));
    assert!(
        message.contains("dotted") && message.contains("\"tenant.id\" ="),
        "{message}"
    );
    assert!(!message.contains("borrowed"), "{message}");

    // The whole error, as the CLI prints it, names all three.
    let e = Config::parse("[attributes]\nx = []\n", "/etc/audit.toml").unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("/etc/audit.toml") && shown.contains(":2") && shown.contains("attributes.x"),
        "{shown}"
    );
}
