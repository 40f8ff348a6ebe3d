//! `agent-audit bench`'s measuring flags, run as the real binary against a
//! JSONL sink in a directory of the test's own: `--baseline`, CPU per
//! record, `--durable-probe` (with its loaded peer), the check of the
//! lines the file gained, and the flags refused. No figure is compared
//! with a speed: only that each is there, is sane, and agrees with the
//! others.

// The shared module's PROMPT is for the tests that run the agent.
#[allow(dead_code)]
mod common;

use std::path::Path;

use common::{agent_audit, text};
use serde_json::Value;

const RECORDS: u64 = 20_000;

fn write_config(dir: &Path, fsync: &str) -> String {
    let p = dir.join("audit.toml");
    std::fs::write(
        &p,
        format!("[[sinks]]\ntype = \"jsonl\"\npath = \"bench.jsonl\"\nfsync = \"{fsync}\"\n"),
    )
    .unwrap();
    p.display().to_string()
}

/// Runs `bench --json` with `extra` flags; the last line of stdout, parsed.
fn bench_json(dir: &Path, cfg: &str, extra: &[&str]) -> Value {
    let records = RECORDS.to_string();
    let mut args = vec!["bench", "--config", cfg, "--records", &records, "--json"];
    args.extend_from_slice(extra);
    let out = agent_audit(dir, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// The names in `dir`: a scratch file left behind shows here.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn baseline_writes_as_many_lines_of_the_same_size_and_reports_cpu_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "batch");
    let v = bench_json(dir.path(), &cfg, &["--baseline"]);
    let b = &v["baseline"];
    assert_eq!(b["records"], RECORDS, "{v}");
    assert_eq!(
        b["fdatasync"], true,
        "fsync = batch syncs the baseline: {v}"
    );
    assert!(
        b["method"]
            .as_str()
            .unwrap()
            .contains("one fdatasync at the end"),
        "{v}"
    );
    // Same shape: the baseline's lines within a few bytes of ours.
    let ours = f(&v, "bytes_per_line");
    let theirs = f(b, "bytes_per_line");
    assert!((ours - theirs).abs() < 0.05 * ours, "{ours} vs {theirs}");
    assert!(f(&v, "cpu_us_per_record") > 0.0, "{v}");
    assert!(f(b, "cpu_us_per_record") > 0.0, "{v}");
    let ratio = f(&v, "records_per_sec") / f(b, "records_per_sec");
    assert!((f(&v, "x_baseline") - ratio).abs() < 1e-9 * ratio, "{v}");
    // The baseline's file is gone; ours holds exactly the records.
    assert_eq!(
        names(dir.path()),
        ["audit.toml", "bench.jsonl", "bench.jsonl.seq"]
    );
    assert_eq!(
        line_count(&dir.path().join("bench.jsonl")),
        RECORDS as usize
    );
    let c = &v["seq_check"];
    assert_eq!(c["lines"], RECORDS, "{v}");
    assert_eq!(c["contiguous"], true, "{v}");
    assert_eq!(c["tool_calls"], RECORDS, "{v}");
    assert_eq!(c["first_seq"], 1, "{v}");
    assert_eq!(c["last_seq"], RECORDS, "{v}");
}

#[test]
fn baseline_of_a_sink_that_never_syncs_does_not_sync_and_says_so_in_text() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "never");
    let out = agent_audit(
        dir.path(),
        &["bench", "--config", &cfg, "--records", "5000", "--baseline"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for want in [
        "CPU us/record",
        "x baseline",
        "no fsync",
        "file check       5000 lines, seq 1..=5000 contiguous, 5000 of 5000 tool_calls: ok",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("fdatasync"), "{stdout}");
    // No --durable-probe, no probe figures.
    assert!(!stdout.contains("durable wait"), "{stdout}");
}

#[test]
fn durable_probe_reports_p50_and_p99_of_the_wait_and_of_bare_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "batch");
    let v = bench_json(dir.path(), &cfg, &["--durable-probe"]);
    let p = &v["durable_probe"];
    let samples = p["samples"].as_u64().unwrap();
    assert!(samples >= 1, "{v}");
    assert_eq!(p["below_durable"], 0, "{v}");
    assert_eq!(p["fdatasync_samples"], 200, "{v}");
    assert!(
        f(p, "p50_us") > 0.0 && f(p, "p50_us") <= f(p, "p99_us"),
        "{v}"
    );
    assert!(
        f(p, "fdatasync_p50_us") > 0.0 && f(p, "fdatasync_p50_us") <= f(p, "fdatasync_p99_us"),
        "{v}"
    );
    let ratio = f(p, "p99_us") / f(p, "fdatasync_p99_us");
    assert!((f(p, "p99_ratio") - ratio).abs() < 1e-9 * ratio, "{v}");
    // The loaded peer, measured in the same run: its probes' figures, the
    // load beside them, and our p99 against its.
    assert!(p["loaded_peer_samples"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        f(p, "loaded_peer_p50_us") > 0.0
            && f(p, "loaded_peer_p50_us") <= f(p, "loaded_peer_p99_us"),
        "{v}"
    );
    let ratio = f(p, "p99_us") / f(p, "loaded_peer_p99_us");
    assert!(
        (f(p, "p99_ratio_loaded") - ratio).abs() < 1e-9 * ratio,
        "{v}"
    );
    for key in [
        "loaded_peer_records_per_sec",
        "loaded_peer_mb_per_sec",
        "loaded_peer_seconds",
    ] {
        assert!(f(p, key) > 0.0, "{key}: {v}");
    }
    // At least as long as our run (the probe stops once it has passed),
    // so under load for as long.
    assert!(f(p, "loaded_peer_seconds") >= f(&v, "seconds"), "{v}");
    // The probes are records too: counted, in the file, in seq.
    let c = &v["seq_check"];
    assert_eq!(c["expected_tool_calls"], RECORDS + samples, "{v}");
    assert_eq!(c["tool_calls"], RECORDS + samples, "{v}");
    assert_eq!(c["contiguous"], true, "{v}");
    assert_eq!(
        line_count(&dir.path().join("bench.jsonl")) as u64,
        RECORDS + samples
    );
    // The bare fdatasyncs' and the loaded peer's scratch files are gone,
    // and none of their lines went into ours.
    assert_eq!(
        names(dir.path()),
        ["audit.toml", "bench.jsonl", "bench.jsonl.seq"]
    );
    // Without the flag, none of it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "batch");
    let v = bench_json(dir.path(), &cfg, &[]);
    assert!(
        v["durable_probe"].is_null() && v["baseline"].is_null(),
        "{v}"
    );
}

#[test]
fn durable_probe_prints_the_loaded_peer_beside_ours_and_the_bare_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "batch");
    let out = agent_audit(
        dir.path(),
        &[
            "bench",
            "--config",
            &cfg,
            "--records",
            "5000",
            "--durable-probe",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let re = regex::Regex::new(concat!(
        r"(?m)^durable/fsync    [0-9.]+x at p99\n",
        r"loaded peer      p50 [0-9]+ us, p99 [0-9]+ us \([1-9][0-9]* lines appended \+ flush \+ fdatasync, one every 5 ms, through the lock of a plain writer appending flat out to the same file beside the log, after the run\)\n",
        r"  its load       [1-9][0-9]* records/s, [0-9.]+ MB/s over [0-9.]+ s .*\n",
        r"durable/peer     [0-9.]+x at p99 \(Durable p99 x loaded peer p99\)$",
    ))
    .unwrap();
    assert!(re.is_match(&stdout), "{stdout}");
    assert_eq!(
        names(dir.path()),
        ["audit.toml", "bench.jsonl", "bench.jsonl.seq"]
    );
}

#[test]
fn eight_tasks_leave_contiguous_seqs_and_every_record_and_a_second_run_is_checked_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "never");
    let first = bench_json(dir.path(), &cfg, &["--tasks", "8"]);
    assert_eq!(first["tasks"], 8);
    assert_eq!(first["lost"], 0);
    assert_eq!(first["seq_check"]["tool_calls"], RECORDS, "{first}");
    assert_eq!(first["seq_check"]["contiguous"], true, "{first}");
    // An uneven split over the tasks, on a file that already holds a run:
    // only this run's lines are counted, and they continue the seq.
    let records = "20003";
    let out = agent_audit(
        dir.path(),
        &[
            "bench",
            "--config",
            &cfg,
            "--records",
            records,
            "--tasks",
            "8",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    let c = &second["seq_check"];
    assert_eq!(c["lines"], 20003, "{second}");
    assert_eq!(c["tool_calls"], 20003, "{second}");
    assert_eq!(c["first_seq"], RECORDS + 1, "{second}");
    assert_eq!(c["last_seq"], RECORDS + 20003, "{second}");
    assert_eq!(
        line_count(&dir.path().join("bench.jsonl")),
        RECORDS as usize + 20003
    );
}

#[test]
fn flags_that_cannot_be_honoured_are_refused_with_exit_2_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let never = write_config(dir.path(), "never");
    let stdout_only = dir.path().join("stdout.toml");
    std::fs::write(&stdout_only, "[[sinks]]\ntype = \"stdout\"\n").unwrap();
    let stdout_only = stdout_only.display().to_string();
    let cases: [(&[&str], &str, &[&str]); 5] = [
        (
            &["--config", &never, "--durable-probe"],
            "--durable-probe",
            &["fsync = \"batch\"", "bench.jsonl", "never"],
        ),
        (
            &["--config", &stdout_only, "--durable-probe"],
            "--durable-probe",
            &["no JSONL sink"],
        ),
        (
            &["--config", &stdout_only, "--baseline"],
            "--baseline",
            &["type = \"jsonl\"", "same disk"],
        ),
        (
            &["--config", &never, "--records", "0"],
            "--records",
            &["at least 1"],
        ),
        (
            &["--config", &never, "--tasks", "0"],
            "--tasks",
            &["at least 1"],
        ),
    ];
    for (flags, flag, says) in cases {
        let mut args = vec!["bench"];
        args.extend_from_slice(flags);
        let out = agent_audit(dir.path(), &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} names {flag}: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?} says {s:?}: {err}");
        }
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    assert_eq!(names(dir.path()), ["audit.toml", "stdout.toml"]);
    // A value given to a switch is clap's error, naming the flag.
    let out = agent_audit(
        dir.path(),
        &["bench", "--config", &never, "--durable-probe=yes"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--durable-probe"),
        "{}",
        text(&out.stderr)
    );
}
