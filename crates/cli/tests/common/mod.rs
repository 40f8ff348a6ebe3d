//! What the CLI's end-to-end tests share: the tutorial's prompt and running
//! the real binary in a directory of the test's own.

use std::path::Path;
use std::process::{Command, Output};

/// The tutorial's prompt.
pub const PROMPT: &str = "What is the balance of account 12345?";

/// Runs the real `agent-audit` binary in `dir`, with no configuration or
/// API key inherited from the environment.
pub fn agent_audit(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(args)
        .current_dir(dir)
        .env_remove("AGENT_AUDIT_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("the agent-audit binary runs")
}

/// Output bytes as text, for messages and `contains` checks.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
