//! `agent-audit run` shows the answer only once the trail holds it: the
//! user must never read an answer whose record the trail lacks.
//!
//! The disks here are real: a small tmpfs with room for only part of a
//! run, or none at all.

mod common;

use std::time::Duration;

use agent_audit_tests::disk::Tmpfs;
use common::{PROMPT, agent_audit_within, text};

const LIMIT: Duration = Duration::from_secs(60);
/// What the offline model's answer to [`PROMPT`] says.
const ANSWER: &str = "14917.04";

fn final_results(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event_type\":\"final_result\""))
        .count()
}

#[test]
fn a_required_sink_that_runs_out_of_room_mid_run_withholds_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB with 56 KiB taken: room for the lease and the first few
    // records, not for the answer's.
    let disk = Tmpfs::mount(64 * 1024);
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 14 * 4096]).unwrap();
    let log = disk.path().join("audit-log.jsonl");
    let cfg = dir.path().join("audit.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let out = agent_audit_within(
        dir.path(),
        &["run", "--config", cfg.to_str().unwrap(), PROMPT],
        LIMIT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        final_results(&log),
        0,
        "the disk held the whole run: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stdout.contains(ANSWER),
        "answer shown without its record: {stdout}"
    );
    assert!(stderr.contains("withheld"), "{stderr}");
}

#[test]
fn when_no_sink_holds_every_record_the_run_fails_and_withholds_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::full();
    let cfg = dir.path().join("audit.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nrequired = false\n",
            disk.path().join("audit-log.jsonl").display()
        ),
    )
    .unwrap();
    let out = agent_audit_within(
        dir.path(),
        &["run", "--config", cfg.to_str().unwrap(), PROMPT],
        LIMIT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stderr.contains("no sink is required"),
        "warned at start: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stdout.contains(ANSWER),
        "answer shown with no trail: {stdout}"
    );
    assert!(stderr.contains("no sink holds every record"), "{stderr}");
}

#[test]
fn an_optional_sink_that_fails_beside_one_that_holds_everything_keeps_the_run_good() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::full();
    let good = dir.path().join("good.jsonl");
    let cfg = dir.path().join("audit.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nrequired = false\n\n[[sinks]]\nname = \"full\"\ntype = \"jsonl\"\npath = \"{}\"\nrequired = false\n",
            good.display(),
            disk.path().join("audit-log.jsonl").display()
        ),
    )
    .unwrap();
    let out = agent_audit_within(
        dir.path(),
        &["run", "--config", cfg.to_str().unwrap(), PROMPT],
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(text(&out.stdout).contains(ANSWER));
    assert_eq!(final_results(&good), 1);
    assert!(stderr.contains("full"), "the failure is reported: {stderr}");
}
