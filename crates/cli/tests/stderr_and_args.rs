//! What the binary says about its own arguments, and what it does when it
//! cannot say anything: no escape sequence from a command line reaches the
//! terminal through clap's error, and a stderr that cannot be written is
//! not a crash.

use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent-audit"))
}

/// `agent-audit tail -n $'\e]0;X\a'` used to print clap's error with the
/// raw ESC and BEL (a window-title change) and raw bidi characters.
#[test]
fn a_bad_argument_is_quoted_escaped_and_exits_2() {
    for args in [
        vec!["tail", "-n", "\u{1b}]0;pwned\u{7}\u{202e}", "x.jsonl"],
        vec!["\u{1b}[2Jnot-a-command"],
        vec!["show", "--no-such-flag\u{9b}2J", "x.jsonl"],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr
                .chars()
                .any(|c| c != '\n' && agent_audit::text::is_terminal_unsafe(c)),
            "{args:?}: {stderr:?}"
        );
        assert!(stderr.starts_with("error:"), "{stderr}");
    }
    // Help is ours and still goes to stdout, exit 0.
    let help = bin().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("verify"));
}

/// `agent-audit run hi 2>/dev/full` used to panic (exit 101) on its first
/// note. Now the run completes and its exit code tells the outcome; the
/// trail is written.
#[test]
fn a_stderr_that_cannot_be_written_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = bin()
        .current_dir(dir.path())
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .args(["run", "What is the balance of account 12345?"])
        .stdin(Stdio::null())
        .stderr(Stdio::from(full))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    let log = std::fs::read_to_string(dir.path().join("audit-log.jsonl")).unwrap();
    assert!(log.contains("\"final_result\""), "{log}");

    // A reading command whose error cannot be said still fails with its code.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = bin()
        .args(["verify", "no-such-file.jsonl"])
        .stderr(Stdio::from(full))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{:?}", out.status);
}

/// `--attr "=$TOKEN"` or `--attr "$TOKEN"` (a value given without its key)
/// used to be quoted whole in the usage error: the token reached stderr,
/// which a CI job keeps. The error names the flag, not the argument.
#[test]
fn a_malformed_attr_flag_is_refused_without_quoting_its_value() {
    let token = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    std::fs::write(&log, "").unwrap();
    let log = log.to_str().unwrap();
    for arg in [format!("={token}"), token.to_string()] {
        for args in [
            vec!["run", "--attr", &arg, "hi"],
            vec!["show", "--attr", &arg, log],
            vec!["stats", "--attr", &arg, log],
        ] {
            let out = bin().current_dir(dir.path()).args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains("--attr"), "{args:?}: {stderr}");
            assert!(!stderr.contains("abcdefghij"), "{args:?}: {stderr}");
        }
    }
    assert!(
        !dir.path().join("audit-log.jsonl.seq").exists(),
        "a refused run writes nothing"
    );
}

/// `--user-id` and `--session-id` had no limit: a 100 KB id was copied
/// into every record of the run (and one near `max_record_bytes` made
/// every record fail). Over `MAX_ID_BYTES` the run is refused before it
/// starts, naming the flag and not the id.
#[test]
fn an_oversized_user_or_session_id_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let id = format!("secret-{}", "u".repeat(agent_audit::MAX_ID_BYTES));
    for flag in ["--user-id", "--session-id"] {
        for cmd in ["run", "bench"] {
            let mut args = vec![cmd, flag, &id];
            if cmd == "run" {
                args.push("hi");
            }
            let out = bin().current_dir(dir.path()).args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {flag}: {stderr}");
            assert!(stderr.contains(flag), "{cmd} {flag}: {stderr}");
            assert!(stderr.contains("over the limit"), "{cmd} {flag}: {stderr}");
            assert!(!stderr.contains("secret-"), "{cmd} {flag}: {stderr}");
        }
    }
    assert!(
        !dir.path().join("audit-log.jsonl").exists(),
        "a refused run writes nothing"
    );
    // At the limit, the run goes ahead.
    let id = "u".repeat(agent_audit::MAX_ID_BYTES);
    let out = bin()
        .current_dir(dir.path())
        .args(["run", "--user-id", &id, "hi"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
