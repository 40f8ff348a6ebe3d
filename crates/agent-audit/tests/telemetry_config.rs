//! `[telemetry]` in audit.toml: its keys, errors naming the file, line and
//! key, and the `[service]` name that must yield to the environment only
//! when the table does not set it.
#![cfg(feature = "otel")]

use agent_audit::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "audit.toml")
}

#[test]
fn the_telemetry_section_takes_its_keys_and_defaults() {
    let c = parse(
        r#"
[telemetry]
endpoint = "http://collector:4317"
protocol = "grpc"
capture_content = true
headers = { authorization = "Bearer s3cret" }
timeout_ms = 2000
metrics_interval_ms = 1000
"#,
    )
    .unwrap();
    let t = c.telemetry.as_ref().unwrap();
    assert!(t.traces && t.metrics && t.capture_content);
    assert_eq!(t.endpoint.as_deref(), Some("http://collector:4317"));
    assert!(!format!("{t:?}").contains("s3cret"), "{t:?}");
    let c = parse("[telemetry]\n").unwrap();
    let t = c.telemetry.unwrap();
    assert!(t.traces && t.metrics && !t.capture_content);
    assert!(parse("").unwrap().telemetry.is_none());
}

#[test]
fn telemetry_errors_name_the_file_line_and_key() {
    for (text, line, key) in [
        (
            "[service]\nname = \"x\"\n\n[telemetry]\nendpont = \"http://x:1\"\n",
            5,
            "endpont",
        ),
        (
            "[telemetry]\ntraces = true\nprotocol = \"http/json\"\n",
            3,
            "telemetry.protocol",
        ),
        (
            "[telemetry]\nmetrics_interval_ms = 5\n",
            2,
            "telemetry.metrics_interval_ms",
        ),
        ("[telemetry]\n\ntimeout_ms = 0\n", 3, "telemetry.timeout_ms"),
        (
            "[telemetry]\nendpoint = \"http://user:pw@collector:4317\"\n",
            2,
            "telemetry.endpoint",
        ),
        (
            "[telemetry]\nendpoint = \"http://c:4317\"\n\nheaders = { \"bad header\" = \"x\" }\n",
            4,
            "telemetry.headers",
        ),
        (
            "[telemetry]\ntraces = true\nheaders = { authorization = \"a\\nb\" }\n",
            3,
            "telemetry.headers",
        ),
        (
            "[telemetry]\nendpoint = \"https://c:4317\"\ntls = { client_cert_file = \"/nonexistent/c.pem\" }\n",
            3,
            "telemetry.tls",
        ),
        (
            "[telemetry]\nendpoint = \"not a url\"\n",
            2,
            "telemetry.endpoint",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with(&format!("audit.toml:{line}:")), "{text}: {e}");
        assert!(e.contains(key), "{text}: {e}");
        assert!(!e.contains("pw@"), "{e}");
        assert!(!e.contains("otlp sink"), "{text}: {e}");
    }
}

#[test]
fn the_service_name_is_none_unless_the_table_sets_it() {
    assert_eq!(parse("").unwrap().service.name, None);
    assert_eq!(
        parse("[service]\nversion = \"1\"\n").unwrap().service.name,
        None
    );
    assert_eq!(
        parse("[service]\nname = \"bank\"\n")
            .unwrap()
            .service
            .name
            .as_deref(),
        Some("bank")
    );
}
