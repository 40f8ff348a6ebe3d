//! `type = "sql"` through the real binary: the tutorial's run into a
//! SQLite file and into a PostgreSQL server of the test's own, read back
//! with plain SQL; seq continuing across runs; a second writer refused; the
//! server killed with SIGKILL mid-run under a required sink; and the
//! configuration errors of every key the type adds.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_audit::jsonl::chain::Chain;
use agent_audit_tests::postgres::PgServer;
use common::{PROMPT, agent_audit, text};
use sqlx::Connection;

const TUTORIAL_SEQUENCE: [&str; 8] = [
    "user_request",
    "assistant_input",
    "assistant_output",
    "tool_call",
    "tool_result",
    "assistant_input",
    "assistant_output",
    "final_result",
];

/// seq, event_type, request_id, line: read with plain SQL.
type Row = (i64, String, Option<String>, String);

fn rows(url: &str) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sql = "SELECT seq, event_type, request_id, line FROM audit_records ORDER BY seq";
        if url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        }
    })
}

/// The lines form one chain from genesis with contiguous seqs from 1, and
/// no seq twice.
fn assert_one_chain(rows: &[Row]) {
    let mut chain = Chain::plain();
    for (i, (seq, _, _, line)) in rows.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "seqs contiguous from 1, none twice");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], *seq);
        assert_eq!(v["prev"], chain.head(), "row {seq} links to the one before");
        chain.next(line.as_bytes());
    }
}

fn config(dir: &Path, url: &str, extra: &str) {
    std::fs::write(
        dir.join("audit.toml"),
        format!("[[sinks]]\ntype = \"sql\"\nurl = \"{url}\"\nrequired = true\n{extra}"),
    )
    .unwrap();
}

fn run(dir: &Path, request_id: &str) -> std::process::Output {
    agent_audit(
        dir,
        &[
            "run",
            "--config",
            "audit.toml",
            "--request-id",
            request_id,
            PROMPT,
        ],
    )
}

/// Two tutorial runs: the eight records of each in order under one request
/// id, seq continuing, one chain; a second writer refused while a run holds
/// the table.
fn tutorial(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), url, "");
    let out = run(dir.path(), "req-42");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let first = rows(url);
    let types: Vec<&str> = first
        .iter()
        .filter(|r| TUTORIAL_SEQUENCE.contains(&r.1.as_str()))
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(types, TUTORIAL_SEQUENCE);
    assert!(
        first
            .iter()
            .filter(|r| TUTORIAL_SEQUENCE.contains(&r.1.as_str()))
            .all(|r| r.2.as_deref() == Some("req-42")),
        "one request id: {first:?}"
    );
    assert_one_chain(&first);

    let out = run(dir.path(), "req-43");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let both = rows(url);
    assert_one_chain(&both);
    let second: Vec<&Row> = both
        .iter()
        .filter(|r| r.2.as_deref() == Some("req-43"))
        .collect();
    assert_eq!(second.len(), 8);
    assert!(
        second[0].0 > first.last().unwrap().0,
        "seq continues across runs"
    );

    // A writer holding the table (the sink in this process) refuses the
    // run's, which names the sink and the lock.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let holder = rt.block_on(async {
        let sink =
            agent_audit::sql::SqlSink::new(&agent_audit::sql::SqlOptions::for_url(url)).unwrap();
        agent_audit::Dispatcher::builder()
            .async_sink(agent_audit::SinkOptions::new("holder"), sink)
            .start()
            .await
            .unwrap()
    });
    let out = run(dir.path(), "req-44");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("sql") && err.contains("already written by another agent-audit sink"),
        "{err}"
    );
    rt.block_on(holder.shutdown(Duration::from_secs(5)));
    assert_eq!(rows(url).len(), both.len(), "the refused run wrote nothing");
}

#[test]
fn the_tutorial_into_sqlite_is_queryable_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("trail.db").display());
    tutorial(&url);
}

#[test]
fn the_tutorial_into_postgres_is_queryable_and_continues() {
    let server = PgServer::start().unwrap_or_else(|why| panic!("cannot start PostgreSQL: {why}"));
    tutorial(&server.url());
}

/// Reads one HTTP request (headers, then Content-Length bytes).
fn read_request(stream: &mut std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = stream.read_exact(&mut body);
}

/// Starts `agent-audit run` into `url` with a model the test answers by
/// hand, and returns once the run waits on it with its first records
/// committed (seen from another session): the run, the model's
/// connection, and the rows committed so far.
fn run_until_the_model_call(
    dir: &Path,
    url: &str,
) -> (std::process::Child, std::net::TcpStream, Vec<Row>) {
    let model = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", model.local_addr().unwrap());
    config(
        dir,
        url,
        &format!("\n[model]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"{base}\"\n"),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args([
            "run",
            "--config",
            "audit.toml",
            "--request-id",
            "req-k",
            PROMPT,
        ])
        .current_dir(dir)
        .env_remove("AGENT_AUDIT_CONFIG")
        .env("OPENAI_API_KEY", "sk-test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stream, _) = model.accept().unwrap();
    read_request(&mut stream);
    let mut before = rows(url);
    for _ in 0..200 {
        if before.iter().any(|r| r.1 == "assistant_input") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        before = rows(url);
    }
    assert!(
        before.iter().any(|r| r.1 == "assistant_input"),
        "the run's first records were never committed: {before:?}"
    );
    (child, stream, before)
}

/// The next run (offline model) continues the table after `kept` without
/// a seq twice, one chain over both.
fn next_run_continues(dir: &Path, url: &str, kept: &[Row]) {
    config(dir, url, "");
    let out = run(dir, "req-after");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let all = rows(url);
    assert_one_chain(&all);
    assert_eq!(all[..kept.len()], kept[..]);
    let after: Vec<&Row> = all
        .iter()
        .filter(|r| r.2.as_deref() == Some("req-after"))
        .collect();
    assert_eq!(after.len(), 8);
    assert!(after[0].0 > kept.last().unwrap().0);
}

#[test]
fn postgres_killed_mid_run_stops_a_required_sink_and_the_next_run_continues() {
    let mut server =
        PgServer::start().unwrap_or_else(|why| panic!("cannot start PostgreSQL: {why}"));
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (child, mut stream, before) = run_until_the_model_call(dir.path(), &url);
    server.kill();
    let reply = serde_json::json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_account_balance", "arguments": "{\"account_id\": \"12345\"}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
    .to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    drop(stream);
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("sink sql") && err.contains("cannot connect"),
        "names the sink and the cause: {err}"
    );
    assert!(
        !text(&out.stdout).contains("balance"),
        "the tool did not run without its audit record: {}",
        text(&out.stdout)
    );

    server.restart().unwrap();
    let kept = rows(&url);
    assert_one_chain(&kept);
    assert_eq!(
        kept[..before.len()],
        before[..],
        "every record committed before the kill is there"
    );
    assert!(
        !kept.iter().any(|r| r.1 == "tool_result"),
        "no tool ran after its record failed"
    );

    next_run_continues(dir.path(), &url, &kept);
}

/// SQLite lives in the agent's process: killing the run with SIGKILL
/// mid-way leaves every committed row, releases the writer's lock with the
/// process, and the next run continues.
#[test]
fn a_run_into_sqlite_killed_mid_way_leaves_its_commits_and_the_next_run_continues() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("trail.db").display());
    let (mut child, stream, before) = run_until_the_model_call(dir.path(), &url);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stream);
    let kept = rows(&url);
    assert_eq!(kept, before, "every committed row, nothing else");
    assert_one_chain(&kept);
    next_run_continues(dir.path(), &url, &kept);
}

#[test]
fn every_sql_key_error_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 9] = [
        (
            "url = \"postgres://audit:Hunter22@db/trail\"",
            "audit.toml:3:1: key `sinks[0].url`",
        ),
        (
            "url = \"mysql://db/trail\"",
            "audit.toml:3:1: key `sinks[0].url`",
        ),
        (
            "url = \"sqlite://a.db\"\nurl_env = \"X_DB\"",
            "audit.toml:4:1: key `sinks[0].url_env`",
        ),
        (
            "url_env = \"AGENT_AUDIT_TEST_UNSET_VAR\"",
            "audit.toml:3:1: key `sinks[0].url_env`: environment variable AGENT_AUDIT_TEST_UNSET_VAR is not set",
        ),
        (
            "url = \"sqlite://a.db\"\ntable = \"a;b\"",
            "audit.toml:4:1: key `sinks[0].table`",
        ),
        (
            "url = \"sqlite://a.db\"\nbatch_size = 0",
            "audit.toml:4:1: key `sinks[0].batch_size`",
        ),
        (
            "url = \"sqlite://a.db\"\nconnect_timeout_ms = 0",
            "audit.toml:4:1: key `sinks[0].connect_timeout_ms`",
        ),
        (
            "url = \"sqlite://a.db\"\nstatement_timeout_ms = 0",
            "audit.toml:4:1: key `sinks[0].statement_timeout_ms`: must be between 1 and 600000, got 0",
        ),
        (
            "url = \"sqlite://a.db\"\nstatement_timeout_ms = 600001",
            "audit.toml:4:1: key `sinks[0].statement_timeout_ms`",
        ),
    ];
    for (keys, want) in cases {
        std::fs::write(
            dir.path().join("audit.toml"),
            format!("[[sinks]]\ntype = \"sql\"\n{keys}\n"),
        )
        .unwrap();
        let out = agent_audit(dir.path(), &["run", "--config", "audit.toml", PROMPT]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{keys}: {err}");
        assert!(err.contains(want), "{keys}: {err}");
        assert!(!err.contains("Hunter22"), "{err}");
    }
    std::fs::write(
        dir.path().join("audit.toml"),
        "[[sinks]]\ntype = \"sql\"\ntable = \"t\"\n",
    )
    .unwrap();
    let out = agent_audit(dir.path(), &["run", "--config", "audit.toml", PROMPT]);
    assert!(
        text(&out.stderr).contains("audit.toml:1:1: key `sinks[0].url`")
            || text(&out.stderr).contains("key `sinks[0].url`: missing"),
        "{}",
        text(&out.stderr)
    );
}

/// The URL with its password comes from the variable `url_env` names;
/// the password reaches no output, error or row, whether the server is
/// there or not.
#[test]
fn a_password_from_url_env_reaches_no_output_error_or_row() {
    const PASSWORD: &str = "S3cret-from-env";
    let server = PgServer::start().unwrap_or_else(|why| panic!("cannot start PostgreSQL: {why}"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "[[sinks]]\ntype = \"sql\"\nurl_env = \"AUDIT_DB_URL\"\nrequired = true\n",
    )
    .unwrap();
    let run_with = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_agent-audit"))
            .args(["run", "--config", "audit.toml", PROMPT])
            .current_dir(dir.path())
            .env_remove("AGENT_AUDIT_CONFIG")
            .env_remove("OPENAI_API_KEY")
            .env("AUDIT_DB_URL", url)
            .output()
            .unwrap()
    };
    // Trust authentication takes the password without checking it.
    let url = format!(
        "postgres://agentaudit:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port()
    );
    let out = run_with(url);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let all = rows(&server.url());
    assert!(all.len() >= 8);
    for (seq, _, _, line) in &all {
        assert!(!line.contains(PASSWORD), "row {seq}: {line}");
    }
    assert!(!text(&out.stdout).contains(PASSWORD));
    assert!(!text(&out.stderr).contains(PASSWORD));

    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let out = run_with(format!(
        "postgres://agentaudit:{PASSWORD}@127.0.0.1:{port}/postgres"
    ));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("agentaudit:***@127.0.0.1"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(!text(&out.stdout).contains(PASSWORD));
}
