//! Configurations that would let an agent act with no trail, or that would
//! knock the process over, are refused before the agent does anything:
//! no sinks, a JSONL path that is a FIFO or a device, a configuration file
//! that is a FIFO, and every size beyond its documented upper bound.
//!
//! Each case runs the real binary under a watchdog: a case that hangs (a
//! FIFO nobody reads) fails the test by name instead of stalling the run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{PROMPT, agent_audit_within, text};

const LIMIT: Duration = Duration::from_secs(30);

fn write_config(dir: &Path, body: &str) -> String {
    let p = dir.join("audit.toml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(st.success(), "mkfifo {}", path.display());
}

#[test]
fn no_sinks_is_a_configuration_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "# no trail\nsinks = []\n\n[service]\nname = \"x\"\n",
    );
    let out = agent_audit_within(dir.path(), &["run", "--config", &cfg, PROMPT], LIMIT);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("audit.toml:2:"), "{err}");
    assert!(
        err.contains("`sinks`") && err.contains("at least one"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "the agent ran: {}",
        text(&out.stdout)
    );
}

#[test]
fn a_jsonl_path_that_is_not_a_regular_file_is_refused_before_the_agent_acts() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    mkfifo(&fifo);
    let cases = [
        (fifo.display().to_string(), "FIFO"),
        ("/dev/null".to_string(), "character device"),
        ("/dev/full".to_string(), "character device"),
    ];
    for (path, what) in cases {
        // No stdout sink: anything on stdout would be the agent's answer.
        let cfg = write_config(
            dir.path(),
            &format!("[[sinks]]\ntype = \"jsonl\"\npath = \"{path}\"\n"),
        );
        let out = agent_audit_within(dir.path(), &["run", "--config", &cfg, PROMPT], LIMIT);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{path}: {err}");
        assert!(err.contains(&path) && err.contains(what), "{path}: {err}");
        assert!(err.contains("regular file"), "says what is expected: {err}");
        assert!(
            out.stdout.is_empty(),
            "{path}: the agent ran: {}",
            text(&out.stdout)
        );

        // `bench` writes to the same sinks and must not hang on a FIFO.
        let out = agent_audit_within(
            dir.path(),
            &["bench", "--config", &cfg, "--records", "1000"],
            LIMIT,
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "bench {path}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains(what), "{}", text(&out.stderr));
    }
}

#[test]
fn a_configuration_file_that_is_not_a_regular_file_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.toml.fifo");
    mkfifo(&fifo);
    let fifo = fifo.display().to_string();
    for (path, what) in [
        (fifo.as_str(), "FIFO"),
        ("/dev/zero", "character device"),
        ("/tmp", "directory"),
    ] {
        let out = agent_audit_within(dir.path(), &["run", "--config", path, PROMPT], LIMIT);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains(path) && err.contains(what), "{path}: {err}");
        assert!(out.stdout.is_empty(), "{path}: the agent ran");
    }
}

/// Every number that sizes a buffer, a batch, a timer or a count has an
/// upper bound; one past it (and the largest TOML integer) is refused as a
/// configuration error naming file, line and key, never an allocation
/// failure (SIGABRT) or an overflowing timer.
#[test]
fn every_size_has_an_upper_bound_and_exceeding_it_is_a_configuration_error() {
    const BIG: i64 = i64::MAX;
    let jsonl = "[[sinks]]\ntype = \"jsonl\"\npath = \"a.jsonl\"\n";
    let otlp = "[[sinks]]\ntype = \"jsonl\"\npath = \"a.jsonl\"\n\n[[sinks]]\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:9\"\nrequired = false\n";
    let model =
        "[model]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let cases: Vec<(String, usize, &str)> = vec![
        (format!("{jsonl}queue = 10000001\n"), 4, "queue"),
        (
            format!("{jsonl}fsync_interval_ms = 3600001\n"),
            4,
            "fsync_interval_ms",
        ),
        (
            format!("{jsonl}fsync_interval_ms = {BIG}\n"),
            4,
            "fsync_interval_ms",
        ),
        (format!("{jsonl}rotate_bytes = {BIG}\n"), 4, "rotate_bytes"),
        (
            format!("{jsonl}rotate_every = \"367d\"\n"),
            4,
            "rotate_every",
        ),
        (
            format!("{jsonl}\n[limits]\nmax_record_bytes = {BIG}\n"),
            6,
            "max_record_bytes",
        ),
        (
            format!("{jsonl}\n[integrity]\ncheckpoint_every = 10000001\n"),
            6,
            "checkpoint_every",
        ),
        (
            format!("{jsonl}\n[integrity]\ncheckpoint_interval_secs = {BIG}\n"),
            6,
            "checkpoint_interval_secs",
        ),
        (
            format!("{jsonl}\n{model}timeout_ms = {BIG}\n"),
            9,
            "timeout_ms",
        ),
        (
            format!("{jsonl}\n{model}max_retries = 1000\n"),
            9,
            "max_retries",
        ),
        (
            format!("{otlp}batch_size = 1000000000000\n"),
            9,
            "batch_size",
        ),
        (
            format!("{otlp}max_in_flight = 1000000000\n"),
            9,
            "max_in_flight",
        ),
        (format!("{otlp}timeout_ms = {BIG}\n"), 9, "timeout_ms"),
        (format!("{otlp}linger_ms = {BIG}\n"), 9, "linger_ms"),
        (
            format!("{otlp}max_request_bytes = {BIG}\n"),
            9,
            "max_request_bytes",
        ),
        (
            format!("{otlp}retry = {{ max_elapsed_ms = {BIG} }}\n"),
            9,
            "max_elapsed_ms",
        ),
        (
            format!("{otlp}retry = {{ initial_backoff_ms = {BIG} }}\n"),
            9,
            "initial_backoff_ms",
        ),
        (
            format!("{otlp}retry = {{ max_backoff_ms = {BIG} }}\n"),
            9,
            "max_backoff_ms",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (body, line, key) in cases {
        let cfg = write_config(dir.path(), &body);
        let out = agent_audit_within(dir.path(), &["run", "--config", &cfg, PROMPT], LIMIT);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}\n{err}");
        assert!(
            err.contains(&format!("audit.toml:{line}:")),
            "line {line} in: {body}\n{err}"
        );
        assert!(err.contains(key), "key {key} in: {err}");
        assert!(
            err.contains("at most") || err.contains("between"),
            "names the bound: {err}"
        );
        assert!(out.stdout.is_empty(), "the agent ran: {body}");
    }
}

/// A required stdout sink with stdout on /dev/null (`run > /dev/null`) is
/// the same class as /dev/null as a JSONL path: it used to run and exit 0
/// with no trail. An optional one beside a JSONL file still runs.
#[test]
fn a_required_stdout_sink_on_dev_null_is_refused_before_the_agent_acts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[sinks]]\ntype = \"stdout\"\nrequired = true\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .current_dir(dir.path())
        .env_remove("AGENT_AUDIT_CONFIG")
        .args(["run", "--config", &cfg, PROMPT])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    // Exit 1, as every sink that cannot be built: it depends on where
    // stdout points when the run starts, not on the file alone.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("audit.toml: sink `stdout` (line 1)") && err.contains("/dev/null"),
        "{err}"
    );
    assert!(
        !std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".jsonl")),
        "something was written"
    );

    let cfg = write_config(
        dir.path(),
        "[[sinks]]\ntype = \"jsonl\"\npath = \"audit-log.jsonl\"\n\n[[sinks]]\ntype = \"stdout\"\nrequired = false\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .current_dir(dir.path())
        .env_remove("AGENT_AUDIT_CONFIG")
        .args(["run", "--config", &cfg, PROMPT])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A file naming thousands of sinks used to take minutes to load (each
/// table's line looked up from the start) and then start a thread per
/// sink: the number of sinks has a bound, refused with the line of the
/// first sink past it.
#[test]
fn more_sinks_than_the_bound_are_refused_promptly_naming_the_first_one_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let many = "[[sinks]]\ntype = \"stdout\"\nrequired = false\n".repeat(20_000);
    let cfg = write_config(dir.path(), &many);
    let out = agent_audit_within(dir.path(), &["run", "--config", &cfg, PROMPT], LIMIT);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let past = agent_audit::config::MAX_SINKS;
    assert!(
        err.contains(&format!("audit.toml:{}:", past * 3 + 1))
            && err.contains(&format!("sinks[{past}]"))
            && err.contains("at most"),
        "{err}"
    );
}
