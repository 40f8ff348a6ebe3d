//! What the CLI's end-to-end tests share: the tutorial's prompt and running
//! the real binary in a directory of the test's own.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The tutorial's prompt.
pub const PROMPT: &str = "What is the balance of account 12345?";

/// Runs the real `agent-audit` binary in `dir`, with no configuration or
/// API key inherited from the environment.
#[allow(dead_code)] // each test file uses what it needs of this module
pub fn agent_audit(dir: &Path, args: &[&str]) -> Output {
    command(dir, args)
        .output()
        .expect("the agent-audit binary runs")
}

/// Like [`agent_audit`], for a case that might hang (a FIFO, a dead
/// peer): a child still running after `limit` is killed and the test fails
/// saying it hung, instead of the whole test run waiting forever.
#[allow(dead_code)]
pub fn agent_audit_within(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = command(dir, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the agent-audit binary runs");
    // Drained on threads of their own, so a chatty child never blocks on a
    // full pipe and looks hung.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for agent-audit") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "agent-audit {args:?} hung (killed after {limit:?}); stderr: {}",
                text(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
    c.args(args)
        .current_dir(dir)
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY");
    c
}

/// Output bytes as text, for messages and `contains` checks.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
