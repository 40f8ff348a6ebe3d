//! Guarantee: secrets of the runtime itself (the model API key, OTLP
//! header values) never reach a record (docs/guarantees.md, "Secrets").
//!
//! The suite's secret-bearing scenarios run as a user's application would
//! (`src/bin/audit-app.rs`: `audit.toml` through the facade, the tutorial's
//! agents, a real Chat Completions server and a real OpenTelemetry
//! collector on loopback), then every byte every sink wrote is scanned for
//! the secrets: the JSONL files, the captured stdout (and stderr), the
//! collector's received records and its logs, and the bodies an OTLP/HTTP
//! receiver got. Scenarios include servers that echo the secret back in
//! their error bodies, so a sink or client that copies an error text into a
//! record is caught.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agent_audit_tests::chat::{ChatServer, Script};
use agent_audit_tests::collector::Rotel;
use agent_audit_tests::http::{HttpServer, Reply};
use agent_audit_tests::secrets::{SecretScan, assert_no_hits, random_secret};

const KEY_VAR: &str = "GUARANTEES_MODEL_API_KEY";
const PROMPT: &str = "What is the balance of account 12345?";

struct Secrets {
    model_key: String,
    grpc_token: String,
    grpc_header: String,
    http_key: String,
}

fn config(
    cfg_dir: &Path,
    name: &str,
    log: &Path,
    model_url: &str,
    rotel: &Rotel,
    http_url: &str,
    s: &Secrets,
) -> PathBuf {
    let text = format!(
        r#"
[service]
name = "secret-scan"

[[sinks]]
type = "jsonl"
path = "{log}"

[[sinks]]
type = "stdout"
format = "json"
required = false

[[sinks]]
type = "otlp"
name = "collector"
endpoint = "{grpc}"
protocol = "grpc"
headers = {{ authorization = "Bearer {grpc_token}", "x-audit-token" = "{grpc_header}" }}
required = false
retry = {{ max_elapsed_ms = 0 }}

[[sinks]]
type = "otlp"
name = "receiver"
endpoint = "{http_url}/v1/logs"
protocol = "http/json"
headers = {{ "x-collector-key" = "{http_key}" }}
required = false
retry = {{ max_elapsed_ms = 0 }}

[model]
provider = "openai"
base_url = "{model_url}"
model = "test-model"
api_key_env = "{KEY_VAR}"
timeout_ms = 10000
max_retries = 0
"#,
        log = log.display(),
        grpc = rotel.grpc_endpoint(),
        grpc_token = s.grpc_token,
        grpc_header = s.grpc_header,
        http_key = s.http_key,
    );
    let path = cfg_dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run_app(config: &Path, key: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_audit-app"))
        .arg("--config")
        .arg(config)
        .arg(PROMPT)
        .env(KEY_VAR, key)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn jsonl_events(path: &Path) -> Vec<String> {
    agent_audit_tests::chain::check_file(path, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .records
        .iter()
        .map(|r| r.event_type().to_string())
        .collect()
}

fn u_escape(text: &str) -> String {
    text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect()
}

fn base64(t: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::new();
    for ch in t.as_bytes().chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=ch.len() {
            o.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    o
}

/// The encoded forms of the model key the scan also looks for.
fn hostile_forms(key: &str) -> Vec<(String, &'static str)> {
    vec![
        (u_escape(key), "model API key \\u-escaped"),
        (key.to_uppercase(), "model API key upper-cased"),
        (
            key.bytes().map(|b| format!("%{b:02X}")).collect(),
            "model API key percent-encoded",
        ),
        (
            base64(&format!("Bearer {key}")),
            "base64 of `Bearer <model API key>`",
        ),
    ]
}

/// A model server that sends back the key it received in every form of
/// [`hostile_forms`] and `\u`-escaped in the raw JSON, so that the
/// decoded strings hold the key itself.
fn hostile_reply(status: u16, r: &agent_audit_tests::http::Request) -> Reply {
    let key = r
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let forms: Vec<String> = hostile_forms(key).into_iter().map(|(f, _)| f).collect();
    let text = format!("@U@ {}", forms.join(" "));
    let body = match status {
        200 => {
            let has_tool_result = std::str::from_utf8(&r.body)
                .unwrap_or("")
                .contains("\"role\":\"tool\"");
            let message = if has_tool_result {
                serde_json::json!({"role": "assistant", "content": text})
            } else {
                let args = format!(r#"{{"account_id":"12345","note":"{}"}}"#, u_escape(key));
                serde_json::json!({"role": "assistant", "content": text, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "get_account_balance", "arguments": args}}]})
            };
            serde_json::json!({
                "id": "chatcmpl-hostile", "object": "chat.completion", "created": 1_700_000_000,
                "model": "@U@",
                "choices": [{"index": 0, "message": message,
                             "finish_reason": if has_tool_result { "stop" } else { "tool_calls" }}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            })
        }
        _ => {
            serde_json::json!({"error": {"message": text, "type": "server_error", "param": null, "code": status}})
        }
    };
    Reply::json(status, &body.to_string().replace("@U@", &u_escape(key)))
}

#[test]
fn no_sink_writes_a_secret_the_runtime_was_given() {
    let s = Secrets {
        model_key: random_secret("sk-proj-"),
        grpc_token: random_secret("otlp-bearer-"),
        grpc_header: random_secret("audit-token-"),
        http_key: random_secret("collector-key-"),
    };
    let mut scan = SecretScan::new()
        .secret("model API key", &s.model_key)
        .secret("OTLP gRPC authorization header", &s.grpc_token)
        .secret("OTLP gRPC x-audit-token header", &s.grpc_header)
        .secret("OTLP HTTP x-collector-key header", &s.http_key);
    // Sink output only in `out`; configuration files (which hold the header
    // values, by design) elsewhere.
    let out = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let rotel = Rotel::start();
    let mut hits = Vec::new();
    let mut captured: Vec<(String, Vec<u8>)> = Vec::new();

    // 1. The tutorial, everything answering normally.
    let model = ChatServer::start(Script::Tutorial).unwrap();
    let receiver = HttpServer::start(|_| Reply::json(200, "{}")).unwrap();
    let log1 = out.path().join("tutorial.jsonl");
    let c = config(
        cfg.path(),
        "tutorial.toml",
        &log1,
        &model.base_url(),
        &rotel,
        &receiver.base_url(),
        &s,
    );
    let o = run_app(&c, &s.model_key);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "tutorial run failed: {err}");
    assert!(err.contains("ANSWER The balance of account 12345"), "{err}");
    // The secrets really were used: the key went to the model server, the
    // header to the OTLP/HTTP receiver, and the records to the collector.
    let reqs = model.requests();
    assert!(reqs.len() >= 2, "{reqs:?}");
    let want = format!("Bearer {}", s.model_key);
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some(want.as_str()))
    );
    let got = receiver.requests();
    assert!(!got.is_empty(), "the OTLP/HTTP receiver got nothing");
    assert!(
        got.iter()
            .all(|r| r.header("x-collector-key") == Some(s.http_key.as_str()))
    );
    let events = jsonl_events(&log1);
    assert_eq!(
        events.iter().filter(|e| *e == "tool_call").count(),
        1,
        "{events:?}"
    );
    let at_collector = rotel.wait_for(events.len(), Duration::from_secs(20));
    assert!(
        at_collector.len() >= events.len(),
        "the collector got {} of {} records; the app said: {err}\nrotel: {}",
        at_collector.len(),
        events.len(),
        rotel.log()
    );
    for (i, r) in got.iter().enumerate() {
        captured.push((format!("OTLP/HTTP body {i} (tutorial)"), r.body.clone()));
    }
    captured.push(("stdout (tutorial)".into(), o.stdout));
    captured.push(("stderr (tutorial)".into(), o.stderr));

    // 2. The model refuses the key (an OpenAI-style 401, key masked).
    // 3. The model server echoes the whole key in its error body.
    for (script, name, label) in [
        (Script::Unauthorized, "unauthorized", "401"),
        (Script::EchoKey, "echo-key", "echoed key"),
    ] {
        let model = ChatServer::start(script).unwrap();
        let log = out.path().join(format!("{name}.jsonl"));
        let c = config(
            cfg.path(),
            &format!("{name}.toml"),
            &log,
            &model.base_url(),
            &rotel,
            &receiver.base_url(),
            &s,
        );
        let o = run_app(&c, &s.model_key);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(jsonl_events(&log).contains(&"model_error".to_string()));
        captured.push((format!("stdout ({label})"), o.stdout));
        captured.push((format!("stderr ({label})"), o.stderr));
    }

    // 4. The OTLP/HTTP receiver refuses with a 401 that echoes the header
    //    value: the sink fails, and its error becomes audit_gap records in
    //    the other sinks.
    let echo = s.http_key.clone();
    let refusing = HttpServer::start(move |r| {
        Reply::json(
            401,
            &format!(
                r#"{{"code":16,"message":"bad x-collector-key {}"}}"#,
                r.header("x-collector-key").unwrap_or(&echo)
            ),
        )
    })
    .unwrap();
    let model = ChatServer::start(Script::Tutorial).unwrap();
    let log4 = out.path().join("receiver-refuses.jsonl");
    let c = config(
        cfg.path(),
        "receiver-refuses.toml",
        &log4,
        &model.base_url(),
        &rotel,
        &refusing.base_url(),
        &s,
    );
    let o = run_app(&c, &s.model_key);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("sink receiver") && err.contains("failed"),
        "the delivery report names the failing sink: {err}"
    );
    let gaps: Vec<String> = jsonl_events(&log4)
        .into_iter()
        .filter(|e| e == "audit_gap")
        .collect();
    assert!(!gaps.is_empty(), "the receiver's failure is recorded");
    for (i, r) in refusing.requests().iter().enumerate() {
        captured.push((format!("OTLP/HTTP body {i} (refusing)"), r.body.clone()));
    }
    captured.push(("stdout (refusing receiver)".into(), o.stdout));
    captured.push(("stderr (refusing receiver)".into(), o.stderr));

    // 5. A hostile model server echoes the key in forms a byte-level
    //    scrub of the raw body cannot see: `\u`-escaped (so decoding the
    //    JSON reveals it), inside tool-call arguments (escaped twice),
    //    upper-cased, percent-encoded and as base64 of its header; in a
    //    200 answer, a 401 and a 500.
    for (forms, label) in hostile_forms(&s.model_key) {
        scan.add(label, &forms);
    }
    let before = receiver.requests().len();
    for (status, name) in [
        (200u16, "hostile-answer"),
        (401, "hostile-401"),
        (500, "hostile-500"),
    ] {
        let model = HttpServer::start(move |r| hostile_reply(status, r)).unwrap();
        let log = out.path().join(format!("{name}.jsonl"));
        let c = config(
            cfg.path(),
            &format!("{name}.toml"),
            &log,
            &format!("{}/v1", model.base_url()),
            &rotel,
            &receiver.base_url(),
            &s,
        );
        let o = run_app(&c, &s.model_key);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            o.status.code(),
            Some(if status == 200 { 0 } else { 1 }),
            "{name}: {err}"
        );
        let reqs = model.requests();
        assert!(
            !reqs.is_empty()
                && reqs
                    .iter()
                    .all(|r| r.header("authorization") == Some(want.as_str())),
            "{name}: the key went to the server"
        );
        let events = jsonl_events(&log);
        let expected = if status == 200 {
            "final_result"
        } else {
            "model_error"
        };
        assert!(events.iter().any(|e| e == expected), "{name}: {events:?}");
        if status == 200 {
            assert!(
                events.iter().any(|e| e == "tool_call"),
                "{name}: {events:?}"
            );
        }
        captured.push((format!("stdout ({name})"), o.stdout));
        captured.push((format!("stderr ({name})"), o.stderr));
    }
    for (i, r) in receiver.requests().iter().enumerate().skip(before) {
        captured.push((
            format!("OTLP/HTTP body {i} (hostile model)"),
            r.body.clone(),
        ));
    }

    // Everything every sink wrote.
    hits.extend(scan.scan_path(out.path()).unwrap());
    hits.extend(scan.scan_path(&rotel.out).unwrap());
    hits.extend(scan.scan_path(&rotel.logs).unwrap());
    for (origin, bytes) in &captured {
        hits.extend(scan.scan_capture(origin, bytes));
    }
    assert_no_hits(&hits);
    assert!(
        scan.scanned_bytes > 10_000,
        "suspiciously little output: {}",
        scan.scanned_bytes
    );
    eprintln!(
        "secret scan: 4 secrets (the model key in 5 forms), {} sources, {} bytes scanned, no hit",
        scan.scanned_files, scan.scanned_bytes
    );
}
