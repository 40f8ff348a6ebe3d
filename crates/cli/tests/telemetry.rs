//! `[telemetry]` through a real collector (rotel, with trace and metrics
//! processors that write what they receive to files): one `agent-audit run`
//! with an OTLP sink and telemetry exports its spans and metrics beside its
//! records, with the resource the environment names; a telemetry collector
//! that is down never fails the run and is named on stderr;
//! `OTEL_SDK_DISABLED=true` exports no span and leaves the records as they
//! were.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use agent_audit_tests::collector::{Rotel, free_port};
use common::{PROMPT, text};
use serde_json::Value;

/// The tutorial's records for the prompt: user_request, assistant_input,
/// assistant_output, tool_call, tool_result, assistant_input,
/// assistant_output, final_result.
const RECORDS: usize = 8;

const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";

/// The span attributes that carry content when `capture_content` is on.
const CONTENT_KEYS: [&str; 4] = [
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
];

fn run(dir: &Path, config: &str, env: &[(&str, &str)]) -> Output {
    run_prompt(dir, config, env, PROMPT)
}

fn run_prompt(dir: &Path, config: &str, env: &[(&str, &str)], prompt: &str) -> Output {
    std::fs::write(dir.join("audit.toml"), config).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
    c.args(["run", "--config", "audit.toml", prompt])
        .current_dir(dir)
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY");
    for var in [
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied());
    c.output().expect("the agent-audit binary runs")
}

/// An OTLP sink (required) to `rotel`, and telemetry to `telemetry`.
fn config(rotel: &Rotel, telemetry: &str, protocol: &str) -> String {
    format!(
        r#"
[[sinks]]
type = "otlp"
endpoint = "{}"
protocol = "grpc"
required = true

[telemetry]
endpoint = "{telemetry}"
protocol = "{protocol}"
"#,
        rotel.grpc_endpoint()
    )
}

/// Polls (rotel answers before its processors have written) until `ready`
/// holds or 20 s passed.
fn wait(ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn event_types(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event_name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_run_exports_its_spans_and_metrics_beside_its_records_with_the_environments_resource() {
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    // HTTP/protobuf for telemetry, gRPC for the records: both paths.
    let http = format!("http://127.0.0.1:{}", rotel.http_port);
    let out = run(
        dir.path(),
        &config(&rotel, &http, "http/protobuf"),
        &[
            ("OTEL_SERVICE_NAME", "bank-from-env"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "k8s.pod.name=pod-7,deployment.environment=test%20eu",
            ),
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("telemetry could not export"),
        "{}",
        text(&out.stderr)
    );
    let records = rotel.wait_for(RECORDS, Duration::from_secs(20));
    assert_eq!(records.len(), RECORDS, "{records:?}");
    wait(|| {
        let names: BTreeSet<String> = rotel
            .spans()
            .iter()
            .filter_map(|s| {
                s["name"]
                    .as_str()
                    .map(|n| n.split(' ').next().unwrap_or("").to_string())
            })
            .collect();
        ["invoke_agent", "chat", "execute_tool"]
            .iter()
            .all(|n| names.contains(*n))
            && rotel
                .metrics()
                .iter()
                .any(|m| m["name"] == "gen_ai.client.operation.duration")
    });
    let spans = rotel.spans();
    assert!(!spans.is_empty(), "no span arrived: {}", rotel.log());

    // The resource the environment names, on the records and the spans.
    for r in &records {
        assert_eq!(r["resource"]["service.name"], "bank-from-env", "{r}");
        assert_eq!(r["resource"]["k8s.pod.name"], "pod-7", "{r}");
        assert_eq!(r["resource"]["deployment.environment"], "test eu", "{r}");
    }
    // Content stays off spans by default.
    for s in &spans {
        for key in CONTENT_KEYS {
            assert!(s["attributes"].get(key).is_none(), "{key} on {s}");
        }
    }
    for s in &spans {
        assert_eq!(s["resource"]["service.name"], "bank-from-env", "{s}");
        assert_eq!(s["resource"]["k8s.pod.name"], "pod-7", "{s}");
        assert_eq!(s["resource_schema_url"], SCHEMA_URL, "{s}");
    }

    // One trace; the tree's three kinds of step; every record points at
    // an exported span.
    let traces: BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| s["trace_id"].as_str())
        .collect();
    assert_eq!(traces.len(), 1, "{spans:?}");
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    for prefix in ["invoke_agent", "chat", "execute_tool"] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "{names:?}");
    }
    let span_ids: BTreeSet<(&str, &str)> = spans
        .iter()
        .filter_map(|s| Some((s["trace_id"].as_str()?, s["span_id"].as_str()?)))
        .collect();
    for r in &records {
        let id = (
            r["trace_id"].as_str().unwrap_or(""),
            r["span_id"].as_str().unwrap_or(""),
        );
        assert!(
            span_ids.contains(&id),
            "record {} points at no exported span {id:?}",
            r["event_name"]
        );
    }

    // The duration histogram counts one point per model call.
    let chats = names.iter().filter(|n| n.starts_with("chat")).count() as u64;
    let metrics = rotel.metrics();
    let duration = metrics
        .iter()
        .rev()
        .find(|m| m["name"] == "gen_ai.client.operation.duration")
        .unwrap_or_else(|| panic!("no duration histogram: {metrics:?}"));
    let count: u64 = duration["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attributes"]["gen_ai.operation.name"] == "chat")
        .filter_map(|p| p["count"].as_u64())
        .sum();
    assert_eq!(count, chats, "{duration}");
}

#[test]
fn a_telemetry_collector_that_is_down_fails_nothing_and_is_named_on_stderr() {
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}", free_port());
    let out = run(dir.path(), &config(&rotel, &down, "grpc"), &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let records = rotel.wait_for(RECORDS, Duration::from_secs(20));
    assert_eq!(records.len(), RECORDS, "every audit record is delivered");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("telemetry traces to {down} (grpc)"))
            && stderr.contains("span(s) could not be exported"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("telemetry metrics to {down} (grpc)")),
        "{stderr}"
    );
    assert!(
        stderr.contains("Connection refused") || stderr.contains("connect"),
        "{stderr}"
    );
    assert!(rotel.spans().is_empty());
}

#[test]
fn otel_sdk_disabled_exports_no_span_and_leaves_the_records_unchanged() {
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&rotel, &rotel.grpc_endpoint(), "grpc");
    let out = run(dir.path(), &config, &[("OTEL_SDK_DISABLED", "true")]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("OTEL_SDK_DISABLED=true"),
        "{}",
        text(&out.stderr)
    );
    let disabled = rotel.wait_for(RECORDS, Duration::from_secs(20));
    assert_eq!(disabled.len(), RECORDS);

    // The same run with telemetry on: spans arrive, and the records are
    // the same events.
    let out = run(dir.path(), &config, &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let all = rotel.wait_for(2 * RECORDS, Duration::from_secs(20));
    assert_eq!(event_types(&all[RECORDS..]), event_types(&disabled));
    wait(|| !rotel.spans().is_empty());
    let spans = rotel.spans();
    assert!(!spans.is_empty(), "the run with telemetry on exports spans");
    // Every span is the second run's: none came from the disabled one.
    let first_traces: BTreeSet<&str> = disabled
        .iter()
        .filter_map(|r| r["trace_id"].as_str())
        .collect();
    assert!(
        spans
            .iter()
            .all(|s| !first_traces.contains(s["trace_id"].as_str().unwrap_or(""))),
        "a span of the OTEL_SDK_DISABLED run arrived"
    );
}

#[test]
fn capture_content_puts_redacted_content_on_the_spans() {
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}capture_content = true\n",
        config(&rotel, &rotel.grpc_endpoint(), "grpc")
    );
    // A key the default redaction rules remove, in the user's message.
    let secret = "sk-proj-Zq8vN3xT5bW2mK9pL4rY7sD1fG6hJ0aQ";
    let prompt = format!("{PROMPT} My API key is {secret}");
    let out = run_prompt(dir.path(), &config, &[], &prompt);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    wait(|| {
        rotel
            .spans()
            .iter()
            .any(|s| s["attributes"].get("gen_ai.input.messages").is_some())
    });
    let spans = rotel.spans();
    assert!(
        spans
            .iter()
            .any(|s| s["attributes"].get("gen_ai.input.messages").is_some()),
        "capture_content = true puts the messages on the spans: {spans:?}"
    );
    for s in &spans {
        assert!(
            !s.to_string().contains(secret),
            "the secret reached a span: {s}"
        );
    }
}

/// A telemetry collector that accepts connections and never answers
/// (http/protobuf): `run` still ends soon after `--drain-secs` (the flush
/// left running must not hold the process), and stderr counts the spans
/// that ended but were never exported, in a report that ends its line.
#[test]
fn a_collector_that_never_answers_holds_run_no_longer_than_the_drain_and_its_spans_are_counted() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"audit-log.jsonl\"\n\n[telemetry]\nendpoint = \"{endpoint}\"\nprotocol = \"http/protobuf\"\n"
    );
    std::fs::write(dir.path().join("audit.toml"), config).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
    c.args(["run", "--config", "audit.toml", "--drain-secs", "1", PROMPT])
        .current_dir(dir.path())
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY");
    for (var, _) in std::env::vars() {
        if var.starts_with("OTEL_") {
            c.env_remove(var);
        }
    }
    let started = Instant::now();
    let out = c.output().expect("the agent-audit binary runs");
    let took = started.elapsed();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    // A bound on a hang, not a speed test: the drain (1 s) and 2 s.
    assert!(took < Duration::from_secs(3), "run took {took:?}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "telemetry traces to {endpoint}/v1/traces (http/protobuf)"
        )),
        "{stderr}"
    );
    let counted = stderr
        .split("; ")
        .find_map(|part| {
            part.strip_suffix(" span(s) not exported (queued or in flight at the deadline)")
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n > 0), "{stderr}");
    assert!(
        stderr.ends_with('\n'),
        "the report ends its line: {stderr:?}"
    );
}

/// The table's `headers` are the only ones telemetry sends: with
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
/// set too, a loopback HTTP collector sees the table's value for its key
/// and none of the variables' headers (docs/configuration.md: a table's
/// `headers` replaces the variables').
#[test]
fn the_tables_headers_are_the_only_ones_sent_whatever_the_variables_say() {
    use std::io::{BufRead, BufReader, Read, Write};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", server.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.trim_end().to_ascii_lowercase();
                if let Some(n) = lower.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
                log.lock().unwrap().push(lower);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut conn = conn;
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"audit-log.jsonl\"\n\n[telemetry]\nendpoint = \"{endpoint}\"\nprotocol = \"http/protobuf\"\nmetrics = false\nheaders = {{ authorization = \"Bearer from-table\" }}\n"
    );
    std::fs::write(dir.path().join("audit.toml"), config).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
    c.args(["run", "--config", "audit.toml", PROMPT])
        .current_dir(dir.path())
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY");
    for (var, _) in std::env::vars() {
        if var.starts_with("OTEL_") {
            c.env_remove(var);
        }
    }
    c.env(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "authorization=Bearer from-env,x-env-all=1",
    )
    .env(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "authorization=Bearer from-traces-env,x-env-traces=1",
    );
    let out = c.output().expect("the agent-audit binary runs");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(!stderr.contains("telemetry could not export"), "{stderr}");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|l| l.starts_with("post /v1/traces")),
        "{seen:?}"
    );
    let auth: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with("authorization:"))
        .collect();
    assert!(!auth.is_empty(), "{seen:?}");
    assert!(
        auth.iter()
            .all(|l| *l == "authorization: bearer from-table"),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("x-env-")),
        "a variable's header was sent: {seen:?}"
    );
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=http/json` is refused for telemetry,
/// naming the variable, instead of being sent as http/protobuf.
#[test]
fn http_json_from_the_environment_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[sinks]]\ntype = \"jsonl\"\npath = \"audit-log.jsonl\"\n\n[telemetry]\nendpoint = \"http://127.0.0.1:9\"\n";
    std::fs::write(dir.path().join("audit.toml"), config).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
    c.args(["run", "--config", "audit.toml", PROMPT])
        .current_dir(dir.path())
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY");
    for (var, _) in std::env::vars() {
        if var.starts_with("OTEL_") {
            c.env_remove(var);
        }
    }
    c.env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
    let out = c.output().expect("the agent-audit binary runs");
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr.contains("http/json"),
        "{stderr}"
    );
}
