//! `audited-program | head -n1` with real processes: the program's own
//! stdout is a pipe that `head` closes after one line. The program must
//! then fail its emit with a clear error and exit normally: no panic, no
//! death by SIGPIPE.
//!
//! A plain `main` (harness = false) so the child prints nothing but records
//! on its stdout; the test runs this same executable as the child.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_stdout::{StdoutOptions, StdoutSink};

const CHILD_ENV: &str = "AGENT_AUDIT_STDOUT_HEAD_PIPE_CHILD";
/// Far more than a pipe buffer holds, so the child cannot finish before
/// `head` has exited; reaching it means EPIPE was never reported.
const MAX_RECORDS: u32 = 1_000_000;

fn child() -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    rt.block_on(async {
        let d = Dispatcher::builder()
            .sink(
                SinkOptions::new("stdout").required(true),
                StdoutSink::stdout(StdoutOptions::default()),
            )
            .start()
            .await
            .unwrap();
        let a = Auditor::new(d.clone()).with_agent("assistant");
        for i in 0..MAX_RECORDS {
            let payload = serde_json::json!({"text": format!("record number {i}")});
            if let Err(e) = a
                .emit_wait(EventType::AgentMessage, &payload, AckLevel::Written)
                .await
            {
                eprintln!("emit failed: {e}");
                d.shutdown(Duration::from_secs(5)).await;
                return ExitCode::from(1);
            }
        }
        eprintln!("wrote {MAX_RECORDS} records without an error");
        ExitCode::from(3)
    })
}

fn main() -> ExitCode {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let exe = std::env::current_exe().unwrap();
    let mut program = Command::new(&exe)
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let head = Command::new("head")
        .arg("-n1")
        .stdin(Stdio::from(program.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("`head` (coreutils) must be installed for this test");
    let head_out = head.wait_with_output().unwrap();
    let out = program.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = String::from_utf8_lossy(&head_out.stdout);

    let mut failures = Vec::new();
    if first.lines().count() != 1 || !first.contains(" #1 ") || !first.contains("record number 0") {
        failures.push(format!(
            "head printed {first:?}, expected the first pretty line"
        ));
    }
    if out.status.code() != Some(1) {
        failures.push(format!(
            "the program ended with {:?} (signal or panic?), expected exit code 1",
            out.status
        ));
    }
    if stderr.contains("panicked") {
        failures.push("the program panicked".to_string());
    }
    if !(stderr.contains("required sink `stdout` failed") && stderr.contains("EPIPE")) {
        failures.push("stderr does not name the stdout sink and EPIPE".to_string());
    }
    if failures.is_empty() {
        println!("test head_pipe ... ok ({})", stderr.trim());
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "head_pipe FAILED:\n- {}\nchild stderr:\n{stderr}",
            failures.join("\n- ")
        );
        ExitCode::FAILURE
    }
}
