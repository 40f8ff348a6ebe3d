//! `agent-audit run` at the top of the seq space: a lease near or at
//! `u64::MAX` is refused with a clear error and exit 1, never a wrap, and
//! the log stays one valid chain.

mod common;

use std::path::Path;

use common::{PROMPT, agent_audit, text};

/// The last seq a record can get (`agent_audit::MAX_SEQ`).
const MAX_SEQ: u64 = u64::MAX - 1;

fn seqs(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_lease_at_the_top_of_the_seq_space_is_refused_with_exit_1_and_the_log_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent_audit(dir.path(), &["run", PROMPT]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = dir.path().join("audit-log.jsonl");
    let seq_file = dir.path().join("audit-log.jsonl.seq");
    let before = std::fs::read(&log).unwrap();
    let lease = format!("upto {:020}\n", u64::MAX);
    std::fs::write(&seq_file, &lease).unwrap();

    let out = agent_audit(dir.path(), &["run", PROMPT]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("audit-log.jsonl.seq") && err.contains("never wrap"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), before, "the log is untouched");
    assert_eq!(std::fs::read_to_string(&seq_file).unwrap(), lease);
    let out = agent_audit(dir.path(), &["verify", "audit-log.jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_run_reaching_the_last_seq_stops_with_exit_1_and_leaves_a_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent_audit(dir.path(), &["run", PROMPT]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = dir.path().join("audit-log.jsonl");
    let seq_file = dir.path().join("audit-log.jsonl.seq");
    let first_run = seqs(&log);
    // Room for the seq_skipped note and three records; the tutorial's run
    // needs more.
    std::fs::write(&seq_file, format!("upto {:020}\n", MAX_SEQ - 4)).unwrap();

    let out = agent_audit(dir.path(), &["run", PROMPT]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("seq space is used up"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let all = seqs(&log);
    assert_eq!(all[..first_run.len()], first_run[..]);
    let second: Vec<u64> = all[first_run.len()..].to_vec();
    assert_eq!(
        second,
        ((MAX_SEQ - 3)..=MAX_SEQ).collect::<Vec<_>>(),
        "numbered up to the last seq, then nothing: no wrap to 0"
    );
    let out = agent_audit(dir.path(), &["verify", "audit-log.jsonl"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&seq_file).unwrap(),
        format!("upto {MAX_SEQ:020}\n")
    );

    // The next run is refused before it writes anything.
    let before = std::fs::read(&log).unwrap();
    let out = agent_audit(dir.path(), &["run", PROMPT]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("never wrap"));
    assert_eq!(std::fs::read(&log).unwrap(), before);
}
