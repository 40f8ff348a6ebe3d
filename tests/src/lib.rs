//! # agent-audit-tests
//!
//! End-to-end proofs of what `docs/guarantees.md` promises: crash loops,
//! fault injection, concurrency, hostile input and secret scans, run against
//! real files, real child processes and real loopback servers. The tests
//! live in `tests/tests/guarantees_*.rs`; this library holds what they
//! share, so other test files can reuse it too:
//!
//! - [`chain`]: a chain and seq checker written independently of the JSONL
//!   crate (plain `sha2`), so a bug in the sink's own chain code cannot hide
//!   itself.
//! - [`secrets`]: the one scan every test uses to prove a secret never
//!   reached a sink's bytes.
//! - [`procs`]: child processes (the binaries in `src/bin`), their memory.
//! - [`chat`]: a real Chat Completions server on loopback.
//! - [`http`]: a scripted HTTP server on loopback (a collector or proxy).
//! - [`disk`]: a real full disk (a small tmpfs filled to the last byte).
//! - [`collector`]: a real OpenTelemetry collector (rotel), and a server
//!   that accepts and never answers.
//! - [`postgres`]: a real, throwaway PostgreSQL server on loopback.
//!
//! ```
//! use agent_audit_tests::secrets::SecretScan;
//!
//! let scan = SecretScan::new().secret("model API key", "sk-3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f");
//! assert!(scan.scan_bytes("stdout", b"all clear").is_empty());
//! let hits = scan.scan_bytes("stdout", b"Bearer sk-3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f");
//! assert_eq!(hits[0].secret, "model API key");
//! ```
//!
//! ## Feature flags
//!
//! None.

pub mod chain;
pub mod chat;
pub mod collector;
pub mod disk;
pub mod http;
pub mod postgres;
pub mod procs;
pub mod secrets;

use std::path::PathBuf;

/// The payload of the crash writer's task `task`, record `n`: the parent
/// rebuilds it to compare with what the file holds. Quotes, a newline, a
/// tab and non-ASCII text make sure escaping is part of what is checked.
pub fn crash_payload(task: usize, n: u64) -> serde_json::Value {
    serde_json::json!({
        "tool": "get_account_balance",
        "task": task,
        "n": n,
        "arguments": {"account_id": format!("{:05}", n % 100_000)},
        "note": "crash loop: \"quoted\", newline\n, tab\t, unicode \u{2713} \u{e9} \u{1d11e}",
    })
}

/// The workspace root (the directory above this package).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}
