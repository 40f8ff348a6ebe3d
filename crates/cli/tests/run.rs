//! `agent-audit run` end to end: the real binary, the real file system, the
//! tutorial's Python reader.

mod common;
mod hostile;

use std::path::Path;

use common::{PROMPT, agent_audit, text};
use std::process::Command;

use agent_audit_tests::disk::Tmpfs;
use sha2::{Digest, Sha256};

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

/// The top-level keys of a JSON object in the order they are written.
fn top_level_keys(line: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Keys>(line).unwrap().0
}

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

const WHO: [&str; 6] = [
    "--user-id",
    "u-42",
    "--session-id",
    "s-7",
    "--attr",
    "purpose=support",
];

#[test]
fn run_in_an_empty_directory_writes_the_tutorial_sequence_as_a_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["run", "--request-id", "req-42"];
    args.extend(WHO);
    args.push(PROMPT);
    let out = agent_audit(dir.path(), &args);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("offline"),
        "says it uses the offline model"
    );
    assert!(
        text(&out.stdout).contains("12345"),
        "prints the answer: {}",
        text(&out.stdout)
    );

    let log = dir.path().join("audit-log.jsonl");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let lines = lines(&log);
    let records: Vec<serde_json::Value> = lines.iter().map(|l| json(l)).collect();
    let audited: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| TUTORIAL_SEQUENCE.contains(&r["event_type"].as_str().unwrap()))
        .collect();
    let types: Vec<&str> = audited
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, TUTORIAL_SEQUENCE);
    // Who asked, on every record of the run.
    for r in &records {
        assert_eq!(r["v"], 2);
        assert_eq!(r["user_id"], "u-42");
        assert_eq!(r["session_id"], "s-7");
        assert_eq!(r["attributes"], serde_json::json!({"purpose": "support"}));
    }
    for r in &audited {
        assert_eq!(r["request_id"], "req-42");
        assert_eq!(r["correlation_id"], audited[0]["correlation_id"]);
        assert!(r["correlation_id"].is_string());
    }
    let call = audited[3];
    assert_eq!(call["payload"]["tool"], "get_account_balance");
    assert_eq!(
        call["payload"]["arguments"],
        serde_json::json!({"account_id": "12345"})
    );
    assert_eq!(audited[4]["payload"]["call_id"], call["payload"]["call_id"]);

    // Keys in schema order, seq contiguous, ts RFC 3339 UTC, chain intact.
    let mut prev: Option<String> = None;
    for (i, (line, r)) in lines.iter().zip(&records).enumerate() {
        let keys = top_level_keys(line);
        assert_eq!(
            keys,
            [
                "v",
                "seq",
                "ts",
                "event_type",
                "request_id",
                "correlation_id",
                "trace_id",
                "span_id",
                "parent_span_id",
                "agent",
                "user_id",
                "session_id",
                "attributes",
                "payload",
                "prev"
            ],
            "line {}",
            i + 1
        );
        assert!(line.starts_with("{\"v\":2,\"seq\":"));
        assert_eq!(
            r["seq"].as_u64().unwrap(),
            records[0]["seq"].as_u64().unwrap() + i as u64
        );
        let ts = r["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap();
        if let Some(p) = &prev {
            assert_eq!(r["prev"].as_str().unwrap(), p, "line {}", i + 1);
        }
        prev = Some(hex::encode(Sha256::digest(line.as_bytes())));
    }

    // The tutorial's own reader, unchanged.
    let reader = "import json\nn=0\nfor line in open('audit-log.jsonl'):\n    r=json.loads(line)\n    r['event_type']; r['payload']; n+=1\nprint(n)\n";
    let py = Command::new("python3")
        .arg("-c")
        .arg(reader)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    assert_eq!(text(&py.stdout).trim(), lines.len().to_string());
}

#[test]
fn show_and_stats_find_the_records_of_one_user_session_and_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["run", "--request-id", "req-42"];
    args.extend(WHO);
    args.push(PROMPT);
    let first = agent_audit(dir.path(), &args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let other = [
        "run",
        "--request-id",
        "req-7",
        "--user-id",
        "u-7",
        "--attr",
        "purpose=billing",
        PROMPT,
    ];
    let second = agent_audit(dir.path(), &other);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let all = lines(&dir.path().join("audit-log.jsonl"));
    let of = |rid: &str| -> Vec<String> {
        all.iter()
            .filter(|l| json(l)["request_id"] == rid)
            .cloned()
            .collect()
    };
    assert!(!of("req-42").is_empty() && !of("req-7").is_empty());
    let show = |flags: &[&str]| -> Vec<String> {
        let mut a = vec!["show", "--json"];
        a.extend(flags);
        a.push("audit-log.jsonl");
        let out = agent_audit(dir.path(), &a);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_string).collect()
    };
    // Exactly that request's records, byte for byte.
    assert_eq!(show(&["--user-id", "u-42"]), of("req-42"));
    assert_eq!(show(&["--session-id", "s-7"]), of("req-42"));
    assert_eq!(show(&["--attr", "purpose=billing"]), of("req-7"));
    assert!(show(&["--user-id", "u-42", "--attr", "purpose=billing"]).is_empty());
    let stats = agent_audit(dir.path(), &["stats", "audit-log.jsonl"]);
    let stats = text(&stats.stdout);
    assert!(stats.contains("Records by user"), "{stats}");
    assert!(
        stats.lines().any(|l| l.trim_start().starts_with("u-42")),
        "{stats}"
    );
    let bad = agent_audit(
        dir.path(),
        &["show", "--attr", "novalue", "audit-log.jsonl"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("--attr"),
        "{}",
        text(&bad.stderr)
    );
    let report = agent_audit(
        dir.path(),
        &[
            "report",
            "--user-id",
            "u-42",
            "--html",
            "r.html",
            "audit-log.jsonl",
        ],
    );
    assert!(report.status.success(), "{}", text(&report.stderr));
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(
        html.contains("<span id=\"user-id\"><code>u-42</code></span>"),
        "who asked"
    );
}

#[test]
fn an_oversized_attribute_is_refused_naming_it_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(
        "note={}",
        "x".repeat(agent_audit::MAX_ATTRIBUTE_VALUE_BYTES + 1)
    );
    let out = agent_audit(dir.path(), &["run", "--attr", &big, PROMPT]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`note`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("audit-log.jsonl").exists());
}

#[test]
fn two_runs_on_one_file_form_one_chain_with_seq_continuing() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = agent_audit(dir.path(), &["run", PROMPT]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let lines = lines(&dir.path().join("audit-log.jsonl"));
    let mut seqs = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let r = json(l);
        seqs.push(r["seq"].as_u64().unwrap());
        if i > 0 {
            assert_eq!(
                r["prev"].as_str().unwrap(),
                hex::encode(Sha256::digest(lines[i - 1].as_bytes()))
            );
        }
    }
    let expected: Vec<u64> = (seqs[0]..seqs[0] + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "seq continues without a duplicate");
    // The seq lease beside the log ends at the last seq after a clean exit,
    // so the next run continues without a gap.
    let lease = dir.path().join("audit-log.jsonl.seq");
    assert_eq!(
        std::fs::read_to_string(&lease).unwrap(),
        format!("upto {:020}\n", seqs.last().unwrap())
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&lease).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // ... and is not taken for a log by `verify DIR`.
    let out = agent_audit(dir.path(), &["verify", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let requests: std::collections::BTreeSet<String> = lines
        .iter()
        .filter_map(|l| json(l)["request_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(requests.len(), 2);
}

fn write_config(dir: &Path, body: &str) -> String {
    let p = dir.join("audit.toml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn configuration_errors_name_file_line_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[service]\nname = \"x\"\n\n[[sinks]]\ntype = \"jsonl\"\npath = \"a.jsonl\"\nfsyncc = \"batch\"\n",
            7,
            "fsyncc",
        ),
        (
            "[[sinks]]\ntype = \"jsonl\"\npath = \"a.jsonl\"\nrequired = \"yes\"\n",
            4,
            "required",
        ),
        (
            "[[sinks]]\ntype = \"jsonl\"\npath = \"a.jsonl\"\nqueue = \"big\"\n",
            4,
            "queue",
        ),
        (
            "[[sinks]]\ntype = \"jsonl\"\npath = \"a.jsonl\"\nfsync = \"sometimes\"\n",
            4,
            "fsync",
        ),
        (
            "[service]\nname = \"x\"\n\n[[sinks]]\ntype = \"kafka\"\n",
            5,
            "type",
        ),
        ("[service]\nnmae = \"x\"\n", 2, "nmae"),
    ];
    for (body, line, key) in cases {
        let cfg = write_config(dir.path(), body);
        let out = agent_audit(dir.path(), &["run", "--config", &cfg, PROMPT]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}\n{err}");
        assert!(
            err.contains(&format!("audit.toml:{line}:")),
            "line {line} in: {err}"
        );
        assert!(err.contains(key), "key {key} in: {err}");
    }
    let out = agent_audit(
        dir.path(),
        &["run", "--config", "/nonexistent/audit.toml", PROMPT],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/audit.toml"));
}

#[test]
fn an_unwritable_log_path_fails_clearly_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a-directory")).unwrap();
    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    for path in ["a-directory", "a-file/below-a-file.jsonl"] {
        let cfg = write_config(
            dir.path(),
            &format!("[[sinks]]\ntype = \"jsonl\"\npath = \"{path}\"\nfsync = \"batch\"\n"),
        );
        let out = agent_audit(dir.path(), &["run", "--config", &cfg, PROMPT]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{path}: {err}");
        assert!(err.contains(path) || err.contains("jsonl"), "{path}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_failing_optional_sink_is_reported_and_a_failing_required_one_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::full();
    let optional = write_config(
        dir.path(),
        &format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"good.jsonl\"\n\n[[sinks]]\nname = \"full-disk\"\ntype = \"jsonl\"\npath = \"{}\"\nrequired = false\n",
            disk.path().join("full.jsonl").display()
        ),
    );
    let out = agent_audit(dir.path(), &["run", "--config", &optional, PROMPT]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("full-disk"), "the failure is reported: {err}");
    let good = lines(&dir.path().join("good.jsonl"));
    let types: Vec<String> = good
        .iter()
        .map(|l| json(l)["event_type"].as_str().unwrap().to_string())
        .collect();
    for t in TUTORIAL_SEQUENCE {
        assert!(
            types.iter().any(|x| x == t),
            "{t} missing from the good file"
        );
    }
    assert!(
        types.iter().any(|t| t == "audit_gap"),
        "the failure is written to the surviving sink"
    );

    let required = write_config(
        dir.path(),
        &format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"good2.jsonl\"\n\n[[sinks]]\nname = \"full-disk\"\ntype = \"jsonl\"\npath = \"{}\"\nrequired = true\n",
            disk.path().join("full2.jsonl").display()
        ),
    );
    let out = agent_audit(dir.path(), &["run", "--config", &required, PROMPT]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("full-disk"), "names the sink: {err}");
    assert!(
        err.to_lowercase().contains("no space"),
        "names the cause: {err}"
    );
}

#[test]
fn bench_reports_its_figures_as_json_on_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[sinks]]\ntype = \"jsonl\"\npath = \"bench.jsonl\"\nfsync = \"batch\"\n",
    );
    let out = agent_audit(
        dir.path(),
        &["bench", "--config", &cfg, "--records", "20000", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let v = json(last);
    for key in [
        "records",
        "records_per_sec",
        "mb_per_sec",
        "emit_p50_us",
        "emit_p99_us",
        "lost",
        "peak_rss_bytes",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {last}");
    }
    assert_eq!(v["records"], 20000);
    assert_eq!(v["lost"], 0);
    assert_eq!(lines(&dir.path().join("bench.jsonl")).len(), 20000);
}

#[test]
fn a_second_process_on_a_file_in_use_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[sinks]]\ntype = \"jsonl\"\npath = \"shared.jsonl\"\nfsync = \"never\"\n",
    );
    let mut writer = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(["bench", "--config", &cfg, "--records", "50000000"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.path().join("shared.jsonl");
    while std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = agent_audit(dir.path(), &["run", "--config", &cfg, PROMPT]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("shared.jsonl"), "{err}");
    assert!(err.contains("in use") || err.contains("locked"), "{err}");
}

#[test]
fn integrity_from_configuration_gives_a_keyed_chain_with_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = agent_audit(dir.path(), &["keygen", "--out", "keys"]);
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    // The key file is found beside the configuration, wherever the process runs.
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    let cfg = write_config(
        dir.path(),
        "[[sinks]]\ntype = \"jsonl\"\npath = \"audit-log.jsonl\"\n\n[integrity]\nkey_env = \"TEST_CHAIN_KEY\"\nsigning_key_file = \"keys/audit-signing-key.pem\"\ncheckpoint_every = 3\n",
    );
    let key = "a-chain-key-of-32-bytes-at-least";
    let run = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(["run", "--config", &cfg, PROMPT])
        .current_dir(dir.path().join("elsewhere"))
        .env("TEST_CHAIN_KEY", key)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let log = dir.path().join("elsewhere/audit-log.jsonl");
    let checkpoints = lines(&log)
        .iter()
        .filter(|l| json(l)["event_type"] == "checkpoint")
        .count();
    assert!(
        checkpoints >= 2,
        "after 3 records and at shutdown: {checkpoints}"
    );
    let verify = |with_key: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
        c.args([
            "verify",
            "--public-key",
            "keys/audit-signing-key.pub.pem",
            log.to_str().unwrap(),
        ])
        .current_dir(dir.path());
        if with_key {
            c.args(["--key-env", "TEST_CHAIN_KEY"])
                .env("TEST_CHAIN_KEY", key);
        }
        c.output().unwrap()
    };
    let ok = verify(true);
    assert!(
        ok.status.success(),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    assert!(text(&ok.stdout).contains("hmac-sha256"));
    let without_key = verify(false);
    assert_eq!(
        without_key.status.code(),
        Some(1),
        "a keyed chain fails plain verification"
    );

    // Without the key in the environment the run refuses to start.
    let run = agent_audit(dir.path(), &["run", "--config", &cfg, PROMPT]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stderr).contains("TEST_CHAIN_KEY"),
        "{}",
        text(&run.stderr)
    );
}

#[test]
fn a_closed_stdout_does_not_panic_and_the_audit_file_stays_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(["run", PROMPT])
        .current_dir(dir.path())
        .env_remove("AGENT_AUDIT_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is printed, as `| head -0` does.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.status.success(),
        "the required JSONL sink is complete: {err}"
    );
    assert!(
        err.contains("stdout"),
        "the failed optional stdout sink is reported: {err}"
    );
    let types: Vec<String> = lines(&dir.path().join("audit-log.jsonl"))
        .iter()
        .map(|l| json(l)["event_type"].as_str().unwrap().to_string())
        .collect();
    for t in TUTORIAL_SEQUENCE {
        assert!(types.iter().any(|x| x == t), "{t} missing");
    }
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

/// The forms of `key` that must not be in `bytes`: as it is, JSON-encoded,
/// `\u`-escaped, upper-cased, base64 of `Bearer KEY`, and any 16-byte run.
fn key_leaks(bytes: &[u8], key: &str) -> Vec<String> {
    let has = |n: &str| bytes.windows(n.len()).any(|w| w == n.as_bytes());
    let json = serde_json::to_string(key).unwrap();
    let mut found: Vec<String> = [
        ("the key", key.to_string()),
        ("the key JSON-encoded", json[1..json.len() - 1].to_string()),
        ("the key \\u-escaped", hostile::u_escape(key)),
        ("the key upper-cased", key.to_uppercase()),
        ("base64 of `Bearer KEY`", base64(&format!("Bearer {key}"))),
    ]
    .into_iter()
    .filter(|(_, f)| has(f))
    .map(|(w, _)| w.to_string())
    .collect();
    if key
        .as_bytes()
        .windows(16)
        .any(|w| bytes.windows(16).any(|x| x == w))
    {
        found.push("a 16-byte run of the key".into());
    }
    found
}

#[test]
fn run_against_a_server_echoing_the_key_leaves_no_trace_of_it_on_stdout_stderr_or_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // Not `sk-` shaped, with JSON-special characters.
    let key = format!(
        "loc\"al\\key/{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    // The key `\u`-escaped (a JSON string that decodes to it),
    // upper-cased, and as base64 of the header it came in.
    let echo = |k: &str| {
        serde_json::to_string(&format!(
            "@U@ {} {}",
            k.to_uppercase(),
            base64(&format!("Bearer {k}"))
        ))
        .unwrap()
        .replace("@U@", &hostile::u_escape(k))
    };
    let mut problems = Vec::new();
    for (scenario, status, code) in [("answer", 200u16, 0), ("401", 401, 1), ("500", 500, 1)] {
        let server = hostile::Server::start(move |_, req| {
            let body = match status {
                200 => hostile::completion(&echo(&req.key())),
                _ => hostile::error(&echo(&req.key())),
            };
            (status, body)
        });
        let log = format!("{scenario}.jsonl");
        let cfg = hostile::config(
            dir.path(),
            &log,
            "[[sinks]]\ntype = \"stdout\"\nformat = \"json\"\nrequired = false\n\n[[sinks]]\nname = \"readable\"\ntype = \"stdout\"\nrequired = false\n",
            &server,
            "HOSTILE_MODEL_KEY",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
            .args(["run", "--config", &cfg, PROMPT])
            .current_dir(dir.path())
            .env_remove("AGENT_AUDIT_CONFIG")
            .env("HOSTILE_MODEL_KEY", &key)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{scenario}: {}",
            text(&out.stderr)
        );
        let sent = server.requests();
        assert!(
            !sent.is_empty() && sent.iter().all(|r| r.key() == key),
            "{scenario}"
        );
        let events = lines(&dir.path().join(&log))
            .iter()
            .map(|l| json(l)["event_type"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        let expected = if status == 200 {
            "final_result"
        } else {
            "model_error"
        };
        assert!(
            events.iter().any(|e| e == expected),
            "{scenario}: {events:?}"
        );
        for (what, bytes) in [
            ("stdout", out.stdout.clone()),
            ("stderr", out.stderr.clone()),
            ("the log", std::fs::read(dir.path().join(&log)).unwrap()),
        ] {
            for leak in key_leaks(&bytes, &key) {
                problems.push(format!("{scenario}: {what} holds {leak}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
