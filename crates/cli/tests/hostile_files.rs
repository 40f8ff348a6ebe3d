//! Files an attacker controls, given to the tools that check logs (attack
//! review findings 6, 7, 10, 11):
//!
//! - a FIFO where a log, a public key, a checkpoints copy or a signing key
//!   is expected: every command exits non-zero within seconds, naming the
//!   path and what it is, instead of waiting for a writer forever (each
//!   command runs under a watchdog that kills it and fails on a hang);
//! - a log file named with terminal escapes (OSC 0, clear screen, RLO), a
//!   record key holding them, a checkpoint's `key_id` or `reason` holding
//!   them: nothing of them reaches the terminal raw, through `verify`'s
//!   progress bar, its report, its JSON, or any reading command's stderr.
//!   Checked on a real pty (util-linux `script`) and on the bytes of
//!   piped stdout and stderr.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{PROMPT, agent_audit, agent_audit_within, text};

const LIMIT: Duration = Duration::from_secs(20);

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(path)
        .status();
    assert!(made.unwrap().success(), "mkfifo {}", path.display());
}

/// A signed log at `l/audit-log.jsonl` (offline model, a checkpoint every
/// 3 records) and its key pair in `keys/`.
fn signed_trail(dir: &Path) {
    let out = agent_audit(dir, &["keygen", "--out", "keys"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::create_dir_all(dir.join("l")).unwrap();
    std::fs::write(
        dir.join("a.toml"),
        "[[sinks]]\ntype = \"jsonl\"\npath = \"l/audit-log.jsonl\"\n[integrity]\nsigning_key_file = \"keys/audit-signing-key.pem\"\ncheckpoint_every = 3\n",
    )
    .unwrap();
    let out = agent_audit(dir, &["run", "--config", "a.toml", PROMPT]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Runs `args` under the watchdog and checks it failed naming `fifo` as a
/// FIFO.
fn refuses_fifo(dir: &Path, args: &[&str], fifo: &str) {
    let out = agent_audit_within(dir, args, LIMIT);
    let err = text(&out.stderr);
    let all = format!("{}{err}", text(&out.stdout));
    assert!(!out.status.success(), "{args:?} succeeded: {all}");
    assert!(
        all.contains(&format!(
            "{fifo}: it is a FIFO (named pipe), not a regular file"
        )),
        "{args:?} does not name the FIFO {fifo}: {all}"
    );
}

#[test]
fn every_command_refuses_a_fifo_where_it_reads_a_file_at_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    signed_trail(d);
    let log = "l/audit-log.jsonl";
    mkfifo(&d.join("pub.pem"));
    mkfifo(&d.join("cps.jsonl"));
    refuses_fifo(d, &["verify", "--public-key", "pub.pem", log], "pub.pem");
    refuses_fifo(
        d,
        &["verify", "--checkpoints", "cps.jsonl", log],
        "cps.jsonl",
    );
    let out = agent_audit_within(
        d,
        &["verify", "--json", "--checkpoints", "cps.jsonl", log],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("a FIFO (named pipe)"));

    // The log itself a FIFO.
    std::fs::rename(d.join(log), d.join("l/kept.jsonl")).unwrap();
    mkfifo(&d.join(log));
    for args in [
        &["verify", log][..],
        &["verify", "l/kept.jsonl", log],
        &["show", log],
        &["show", "--no-rotated", log],
        &["stats", log],
        &["tail", log],
        &["tail", "-f", log],
        &["timeline", "--request-id", "x", log],
        &["report", "--request-id", "x", "--html", "o.html", log],
    ] {
        refuses_fifo(d, args, log);
    }
    // A FIFO under a rotated file's name, read before the active file.
    std::fs::remove_file(d.join(log)).unwrap();
    std::fs::rename(d.join("l/kept.jsonl"), d.join(log)).unwrap();
    let rotated = "l/audit-log.000000000001-000000000002.jsonl";
    mkfifo(&d.join(rotated));
    for args in [&["verify", "l"][..], &["show", log], &["tail", log]] {
        refuses_fifo(d, args, rotated);
    }
}

#[test]
fn run_refuses_a_fifo_as_its_signing_key_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mkfifo(&d.join("sk.pem"));
    std::fs::create_dir(d.join("w")).unwrap();
    std::fs::write(
        d.join("s.toml"),
        "[[sinks]]\ntype = \"jsonl\"\npath = \"w/audit-log.jsonl\"\n[integrity]\nsigning_key_file = \"sk.pem\"\n",
    )
    .unwrap();
    refuses_fifo(d, &["run", "--config", "s.toml", "hi"], "sk.pem");
}

/// Runs `agent-audit ARGS` on a pty in `dir` (stdin, stdout and stderr all
/// on the terminal) and returns every byte the terminal received.
fn on_terminal(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = String::from("exec \"$AGENT_AUDIT_BIN\"");
    for i in 0..args.len() {
        cmd.push_str(&format!(" \"$ARG{i}\""));
    }
    let mut c = Command::new("script");
    c.args(["--quiet", "--return", "--command", &cmd, "/dev/null"])
        .current_dir(dir)
        .env("AGENT_AUDIT_BIN", env!("CARGO_BIN_EXE_agent-audit"))
        .env_remove("AGENT_AUDIT_CONFIG")
        .stdin(Stdio::null());
    for (i, a) in args.iter().enumerate() {
        c.env(format!("ARG{i}"), a);
    }
    c.output()
        .expect("util-linux `script` runs (apt-get install bsdutils)")
}

/// What the hostile text would do on a terminal, as it would arrive:
/// OSC 0 (window title), the BEL ending it, clear screen, RLO.
const RAW: [&str; 4] = ["\u{1b}]0;PWNED", "\u{7}", "\u{1b}[2J", "\u{202e}"];

fn assert_no_raw(what: &str, bytes: &[u8]) {
    let screen = text(bytes);
    for raw in RAW {
        assert!(
            !screen.contains(raw),
            "{what}: {raw:?} reached the terminal raw: {screen:?}"
        );
    }
}

/// A copy of the signed log named with escapes, with a junk line.
fn hostile_name(d: &Path) -> String {
    std::fs::create_dir(d.join("fn")).unwrap();
    let name = "fn/x\u{1b}]0;PWNED\u{7}\u{1b}[2J\u{202e}.jsonl".to_string();
    let mut bytes = std::fs::read(d.join("l/audit-log.jsonl")).unwrap();
    bytes.extend_from_slice(b"junk\n");
    std::fs::write(d.join(&name), bytes).unwrap();
    name
}

#[test]
fn a_log_file_named_with_escapes_is_shown_escaped_by_every_reading_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    signed_trail(d);
    let name = hostile_name(d);
    let escaped = "x\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J\\u{202e}.jsonl";
    let cases: [&[&str]; 8] = [
        &["verify", "fn"],
        &["verify", &name],
        &["verify", "--json", &name],
        &["show", &name],
        &["stats", &name],
        &["tail", &name],
        &["timeline", "--request-id", "x", &name],
        &["report", "--request-id", "x", "--html", "o.html", &name],
    ];
    for args in cases {
        let out = on_terminal(d, args);
        assert_no_raw(&format!("{args:?} on a terminal"), &out.stdout);
        let out = agent_audit(d, args);
        assert_no_raw(&format!("{args:?} stdout"), &out.stdout);
        assert_no_raw(&format!("{args:?} stderr"), &out.stderr);
    }
    // Shown, escaped, not dropped: the NOT INTACT line names the file.
    let out = agent_audit(d, &["verify", "fn"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!("NOT INTACT: fn/{escaped}:")),
        "{}",
        text(&out.stdout)
    );
    let out = agent_audit(d, &["show", &name]);
    assert!(text(&out.stderr).contains(escaped), "{}", text(&out.stderr));
    // The JSON report stays JSON meaning the same path.
    let out = agent_audit(d, &["verify", "--json", &name]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let quoted = serde_json::to_string(&name).unwrap();
    assert!(
        report.to_string().contains(quoted.trim_matches('"')),
        "{report}"
    );
}

#[test]
fn escapes_in_record_keys_and_checkpoint_fields_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    signed_trail(d);
    let log = std::fs::read_to_string(d.join("l/audit-log.jsonl")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    const E: &str = r"\u001b]0;PWNED\u0007\u001b[2J\u202e";
    // A record with an unknown key holding escapes.
    let mut keyed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let l = &keyed[3];
    keyed[3] = format!("{},\"{E}\":1}}", &l[..l.len() - 1]);
    std::fs::write(d.join("key.jsonl"), keyed.join("\n") + "\n").unwrap();
    // A checkpoint whose key_id, or reason, holds them.
    let cp = lines
        .iter()
        .position(|l| l.contains(r#""event_type":"checkpoint""#))
        .unwrap();
    for (file, field) in [("kid.jsonl", "key_id"), ("reason.jsonl", "reason")] {
        let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        v[cp] = v[cp].replace(&format!("\"{field}\":\""), &format!("\"{field}\":\"{E}"));
        std::fs::write(d.join(file), v.join("\n") + "\n").unwrap();
    }
    let public = "keys/audit-signing-key.pub.pem";
    let cases: [&[&str]; 8] = [
        &["verify", "key.jsonl"],
        &["verify", "--json", "key.jsonl"],
        &["show", "key.jsonl"],
        &["stats", "key.jsonl"],
        &["verify", "--public-key", public, "kid.jsonl"],
        &["verify", "--json", "--public-key", public, "kid.jsonl"],
        &["verify", "--public-key", public, "reason.jsonl"],
        &["verify", "--json", "--public-key", public, "reason.jsonl"],
    ];
    for args in cases {
        let out = on_terminal(d, args);
        assert_no_raw(&format!("{args:?} on a terminal"), &out.stdout);
        let out = agent_audit(d, args);
        assert_no_raw(&format!("{args:?} stdout"), &out.stdout);
        assert_no_raw(&format!("{args:?} stderr"), &out.stderr);
        // `stats` counts unreadable lines in its figures, not as failure.
        assert_eq!(out.status.success(), args[0] == "stats", "{args:?}");
        if args[1] == "--json" {
            let _: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out.stdout)));
        } else {
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(all.contains("\\u{1b}]0;PWNED\\u{7}"), "{args:?}: {all}");
        }
    }
}
