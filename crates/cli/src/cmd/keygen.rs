//! `agent-audit keygen`: writes an Ed25519 key pair for signed checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_audit::jsonl::keys::{self, KeyError};

use crate::error::CliError;

/// Arguments of `keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `audit-signing-key.pem` (private, mode 0600) and
    /// `audit-signing-key.pub.pem` (public) into; created with mode 0700 if
    /// missing. Existing keys are never overwritten.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Writes the key pair and says how to use it.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let files = keys::generate_key_pair(&args.out).map_err(|e| match e {
        KeyError::Exists { .. } => CliError::Usage(e.to_string()),
        other => CliError::Runtime(other.to_string()),
    })?;
    outln!(
        "wrote private key {} (mode 0600; the writer signs checkpoints with it: keep it secret, off backups others can read)",
        files.private_key.display()
    );
    outln!(
        "wrote public key  {} (give it to whoever verifies: agent-audit verify --public-key {} ...)",
        files.public_key.display(),
        files.public_key.display()
    );
    outln!("key id {}", files.key_id);
    outln!();
    outln!("# audit.toml");
    outln!("[integrity]");
    outln!(
        "signing_key_file = {}",
        toml_string(&files.private_key.to_string_lossy())
    );
    Ok(ExitCode::SUCCESS)
}

/// A TOML basic string (JSON string escapes are valid TOML ones).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}
