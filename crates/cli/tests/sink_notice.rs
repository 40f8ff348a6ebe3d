//! `agent-audit run` with an OTLP sink: a dead collector is announced on
//! stderr while the sink retries (not after its five-minute budget), and
//! an endpoint's credentials or query secret never reach stderr, stdout
//! or the trail.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PROMPT: &str = "What is the balance of account A-1?";

fn agent_audit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
    // The sink's endpoint comes from the table unless a test says otherwise.
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "AGENT_AUDIT_CONFIG",
    ] {
        c.env_remove(var);
    }
    c
}

/// A loopback port that refuses connections: bound, then closed.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn write_config(dir: &Path, otlp: &str) -> std::path::PathBuf {
    let path = dir.join("audit.toml");
    std::fs::write(
        &path,
        format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nrequired = false\n\n[[sinks]]\nname = \"otlp\"\ntype = \"otlp\"\n{otlp}",
            dir.join("audit-log.jsonl").display()
        ),
    )
    .unwrap();
    path
}

/// The notice comes while the run is still held by the retrying sink and
/// before the time it names; then the run fails because the sink is
/// required, and says which.
#[test]
fn a_required_sink_with_a_dead_collector_says_it_is_retrying_and_until_when() {
    let until_re = regex::Regex::new(r"retrying until (\S+Z) \(retry budget 6 s\)").unwrap();
    for protocol in ["grpc", "http/protobuf"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(
            dir.path(),
            &format!(
                "endpoint = \"http://127.0.0.1:{}\"\nprotocol = \"{protocol}\"\nrequired = true\nretry = {{ initial_backoff_ms = 100, max_backoff_ms = 500, max_elapsed_ms = 6000 }}\n",
                dead_port()
            ),
        );
        let mut child = agent_audit()
            .args(["run", "--drain-secs", "3", "--config"])
            .arg(&cfg)
            .arg(PROMPT)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let notice = loop {
            // Generous: only a line that never comes fails here.
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("[{protocol}] no retry notice on stderr; saw {seen:?}"));
            if line.contains("cannot deliver") {
                break line;
            }
            seen.push(line);
        };
        // Read as it streamed: the agent is still held by the sink, and the
        // time the notice names has not come yet.
        let now = time::OffsetDateTime::now_utc();
        assert!(
            child.try_wait().unwrap().is_none(),
            "[{protocol}] the notice came only after the run ended: {notice}"
        );
        let until = until_re
            .captures(&notice)
            .unwrap_or_else(|| panic!("[{protocol}] {notice}"))[1]
            .to_string();
        let until =
            time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert!(
            now < until + Duration::from_secs(1),
            "[{protocol}] noticed at {now}, after the budget ended at {until}"
        );
        assert!(
            notice.starts_with("agent-audit: sink \"otlp\" cannot deliver (")
                && notice.ends_with("then the run fails because the sink is required"),
            "[{protocol}] {notice}"
        );
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let rest: Vec<String> = rx.try_iter().collect();
        assert_eq!(
            status.code(),
            Some(1),
            "[{protocol}] {notice}\n{}",
            rest.join("\n")
        );
        assert!(
            rest.iter().any(|l| l.contains("otlp")),
            "[{protocol}] the failure does not name the sink: {rest:?}"
        );
    }
}

const USER: &str = "alice-the-user";
const PASSWORD: &str = "hunter2-pass";

fn assert_refused_quietly(out: &std::process::Output, dir: &Path, names: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(names) && stderr.contains("header"),
        "the error names neither {names} nor headers: {stderr}"
    );
    for text in [&*stderr, &*stdout] {
        assert!(
            !text.contains(USER) && !text.contains(PASSWORD),
            "credentials printed: {text}"
        );
    }
    // Nothing ran, so there is no trail to leak into; check anyway.
    if let Ok(log) = std::fs::read_to_string(dir.join("audit-log.jsonl")) {
        assert!(!log.contains(USER) && !log.contains(PASSWORD), "{log}");
    }
}

#[test]
fn credentials_in_the_endpoint_are_refused_without_being_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "endpoint = \"http://{USER}:{PASSWORD}@127.0.0.1:{}\"\n",
            dead_port()
        ),
    );
    let out = agent_audit()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(PROMPT)
        .output()
        .unwrap();
    assert_refused_quietly(&out, dir.path(), "endpoint");
}

#[test]
fn credentials_in_the_endpoint_variables_are_refused_without_being_printed() {
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), "protocol = \"http/protobuf\"\n");
        let out = agent_audit()
            .env(
                var,
                format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", dead_port()),
            )
            .args(["run", "--config"])
            .arg(&cfg)
            .arg(PROMPT)
            .output()
            .unwrap();
        assert_refused_quietly(&out, dir.path(), var);
    }
}

/// A query secret is allowed in the endpoint (some collectors take a key
/// there) but never shown: not in the retry notice, the delivery report,
/// the errors, nor the `audit_gap` records of the trail.
#[test]
fn a_query_secret_in_the_endpoint_is_never_printed_nor_recorded() {
    const SECRET: &str = "qs3cret-api-key";
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "endpoint = \"http://127.0.0.1:{}/v1/logs?api_key={SECRET}\"\nprotocol = \"http/protobuf\"\nretry = {{ initial_backoff_ms = 100, max_backoff_ms = 200, max_elapsed_ms = 1000 }}\n",
            dead_port()
        ),
    );
    let out = agent_audit()
        .args(["run", "--drain-secs", "5", "--config"])
        .arg(&cfg)
        .arg(PROMPT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.path().join("audit-log.jsonl")).unwrap();
    assert!(
        log.contains("audit_gap") && stderr.contains("cannot deliver"),
        "the failure was neither recorded nor announced: {stderr}\n{log}"
    );
    for text in [&*stderr, &*stdout, &*log] {
        assert!(!text.contains(SECRET), "the query secret leaked: {text}");
    }
}

/// A collector that accepts the connection and never replies: no attempt
/// fails for the sink's whole timeout, so there is no retry to announce.
/// `run` still says within seconds that the required sink is holding the
/// agent (it used to stay silent for the whole timeout).
#[test]
fn a_required_sink_whose_collector_never_answers_is_announced_within_seconds() {
    for protocol in ["grpc", "http/protobuf"] {
        // Accepts and holds every connection, reads nothing, answers nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            let end = std::time::Instant::now() + Duration::from_secs(40);
            while std::time::Instant::now() < end {
                if let Ok((s, _)) = listener.accept() {
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(
            dir.path(),
            &format!(
                "endpoint = \"http://127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\nrequired = true\ntimeout_ms = 20000\nretry = {{ max_elapsed_ms = 0 }}\n"
            ),
        );
        let mut child = agent_audit()
            .args(["run", "--drain-secs", "1", "--config"])
            .arg(&cfg)
            .arg(PROMPT)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let started = std::time::Instant::now();
        let mut seen = Vec::new();
        let notice = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("[{protocol}] no notice on stderr; saw {seen:?}"));
            if line.contains("has not answered") {
                break line;
            }
            seen.push(line);
        };
        // Well inside the 20 s timeout: the run is still held.
        assert!(started.elapsed() < Duration::from_secs(15), "{notice}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "[{protocol}] the notice came only after the run ended: {notice}"
        );
        assert!(
            notice.starts_with("agent-audit: sink \"otlp\" has not answered for ")
                && notice.contains("the agent waits for it (a required sink)"),
            "[{protocol}] {notice}"
        );
        let _ = child.kill();
        let _ = child.wait();
        drop(holder);
    }
}
