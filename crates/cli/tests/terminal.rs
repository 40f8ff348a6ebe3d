//! What agent-audit shows people: `run` on a real terminal (a pty opened by
//! util-linux's `script`, which copies everything the terminal received to
//! its own stdout) against a hostile model server answering terminal escape
//! sequences, and the HTML report's file (mode under umask 000, symlinks).

mod hostile;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use hostile::{Server, completion, error};

const PROMPT: &str = "What is the balance of account 12345?";
const KEY_VAR: &str = "TERMINAL_TEST_KEY";

/// A JSON string literal (raw text) with what a hostile model would send a
/// terminal: clear screen and cursor home, OSC 52 (write the clipboard),
/// OSC 0 (window title), the C1 CSI (U+009B), a carriage return that
/// would overwrite the line, bidi overrides, isolates and marks.
const HOSTILE: &str = r#""Done.\u001b[2J\u001b[H\u001b]52;c;cHduZWQ=\u0007\u001b]0;pwned\u0007\u009b2J\rfake line \u202etxt.exe \u2066x\u2069 \u200f\u200e\u061c\nsecond line\tend""#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `agent-audit ARGS` on a pty in `dir` (stdin, stdout and stderr all
/// on the terminal) and returns every byte the terminal received.
fn on_terminal(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = String::from("exec \"$AGENT_AUDIT_BIN\"");
    for (i, _) in args.iter().enumerate() {
        cmd.push_str(&format!(" \"$ARG{i}\""));
    }
    let mut c = Command::new("script");
    c.args(["--quiet", "--return", "--command", &cmd, "/dev/null"])
        .current_dir(dir)
        .env("AGENT_AUDIT_BIN", env!("CARGO_BIN_EXE_agent-audit"))
        .env(KEY_VAR, "terminal-test-key-0123456789")
        .env_remove("AGENT_AUDIT_CONFIG")
        .stdin(Stdio::null());
    for (i, a) in args.iter().enumerate() {
        c.env(format!("ARG{i}"), a);
    }
    c.output()
        .expect("util-linux `script` runs (apt-get install bsdutils)")
}

/// Every byte that would act on a terminal: C0 controls other than the
/// pty's own `\r\n` line ends and tabs, DEL, C1 controls, bidi formatting.
fn terminal_controls(out: &str) -> Vec<String> {
    let mut found = Vec::new();
    let chars: Vec<char> = out.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let harmless = c == '\n' || c == '\t' || (c == '\r' && chars.get(i + 1) == Some(&'\n'));
        let bidi = matches!(
            c as u32,
            0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C
        );
        if (c.is_control() && !harmless) || bidi {
            found.push(format!("U+{:04X} at char {i}", c as u32));
        }
    }
    found
}

#[test]
fn run_on_a_terminal_escapes_the_model_s_answer_and_error_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _| (200, completion(HOSTILE)));
    let cfg = hostile::config(dir.path(), "audit-log.jsonl", "", &server, KEY_VAR);
    let out = on_terminal(dir.path(), &["run", "--config", &cfg, PROMPT]);
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}{}", text(&out.stderr));
    assert_eq!(server.requests().len(), 1, "{screen}");
    let controls = terminal_controls(&screen);
    assert!(
        controls.is_empty(),
        "reached the terminal: {controls:?} in {screen:?}"
    );
    // Shown, escaped, not dropped; lines and tabs stay as they are.
    for shown in [
        "Done.\\u{1b}[2J\\u{1b}[H\\u{1b}]52;c;cHduZWQ=\\u{7}\\u{1b}]0;pwned\\u{7}\\u{9b}2J\\u{d}fake line \\u{202e}txt.exe \\u{2066}x\\u{2069} \\u{200f}\\u{200e}\\u{61c}",
        "\r\nsecond line\tend",
    ] {
        assert!(screen.contains(shown), "{shown:?} not in {screen:?}");
    }
    // The trail holds the answer exactly as the model gave it.
    let log = std::fs::read_to_string(dir.path().join("audit-log.jsonl")).unwrap();
    let last: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|r| r["event_type"] == "final_result")
        .unwrap();
    let answer: String = serde_json::from_str(HOSTILE).unwrap();
    assert!(
        last["payload"]
            .to_string()
            .contains(&serde_json::to_string(&answer).unwrap()),
        "{last}"
    );

    // A model error quoting escape sequences reaches stderr escaped.
    let refusing = Server::start(|_, _| (401, error(HOSTILE)));
    let cfg = hostile::config(dir.path(), "refused.jsonl", "", &refusing, KEY_VAR);
    let out = on_terminal(dir.path(), &["run", "--config", &cfg, PROMPT]);
    let screen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{screen}");
    assert!(screen.contains("authentication failed"), "{screen}");
    let controls = terminal_controls(&screen);
    assert!(
        controls.is_empty(),
        "reached the terminal: {controls:?} in {screen:?}"
    );
    assert!(screen.contains("\\u{1b}]52;c;"), "{screen:?}");
}

#[test]
fn run_into_a_pipe_writes_the_answer_exactly_as_the_model_gave_it() {
    // The documented choice: off a terminal the answer is data.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _| (200, completion(HOSTILE)));
    let cfg = hostile::config(dir.path(), "audit-log.jsonl", "", &server, KEY_VAR);
    let out = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(["run", "--config", &cfg, PROMPT])
        .current_dir(dir.path())
        .env(KEY_VAR, "terminal-test-key-0123456789")
        .env_remove("AGENT_AUDIT_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: String = serde_json::from_str(HOSTILE).unwrap();
    assert_eq!(text(&out.stdout), format!("{answer}\n"));
}

fn a_log_with_request(dir: &Path, request: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(["run", "--request-id", request, PROMPT])
        .current_dir(dir)
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `agent-audit report` under umask 000, in a shell child so the test
/// process's own umask is untouched.
fn report_umask_000(dir: &Path, request: &str, html: &str) -> Output {
    Command::new("sh")
        .args(["-c", "umask 000 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_agent-audit"))
        .args([
            "report",
            "--request-id",
            request,
            "--html",
            html,
            "audit-log.jsonl",
        ])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn the_html_report_is_created_0600_under_umask_000_and_never_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    a_log_with_request(dir.path(), "req-report");

    let out = report_umask_000(dir.path(), "req-report", "report.html");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = std::fs::metadata(dir.path().join("report.html"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "report mode {:o}", mode & 0o777);
    // Replacing an existing, more open report leaves a 0600 one.
    std::fs::set_permissions(
        dir.path().join("report.html"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let out = report_umask_000(dir.path(), "req-report", "report.html");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = std::fs::metadata(dir.path().join("report.html"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "replaced report mode {:o}",
        mode & 0o777
    );

    // A symlink at the output path is refused; its target is untouched.
    let target = dir.path().join("elsewhere.txt");
    std::fs::write(&target, b"not a report").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("linked.html")).unwrap();
    let out = report_umask_000(dir.path(), "req-report", "linked.html");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("linked.html") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"not a report");
    assert!(
        std::fs::symlink_metadata(dir.path().join("linked.html"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
