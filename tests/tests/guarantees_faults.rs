//! Guarantees under faults (docs/guarantees.md, "Faults"): a full disk
//! (`/dev/full`, a file size limit), write permission revoked from an open
//! log, the log moved away or deleted underneath, a sink stalled with a
//! bounded queue. For each: the failure shows on the next emit (its
//! receipt, or an error when the sink is required) or in the health
//! snapshot within a bounded time; the other sinks keep every record; the
//! shutdown report's counts are exact; memory stays within the queues.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_audit::jsonl::{JsonlOptions, JsonlSink};
use agent_audit::{
    AckLevel, Auditor, Dispatcher, EmitError, EventType, SinkHealth, SinkOptions, SinkReport,
};
use agent_audit_tests::chain::{self, Checked, check_file};
use agent_audit_tests::disk::Tmpfs;
use agent_audit_tests::procs::{Lines, Reported, wait_for_report};
use serde_json::{Value, json};

// ------------------------------------------------------------ helpers

fn jsonl(path: impl AsRef<Path>) -> JsonlSink {
    JsonlSink::new(JsonlOptions::new(path.as_ref())).unwrap()
}

fn records(path: &Path) -> Vec<Checked> {
    let s = check_file(path, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.torn_tail, None, "{} ends in a torn line", path.display());
    s.records
}

fn of_type<'a>(recs: &'a [Checked], t: &str) -> Vec<&'a Checked> {
    recs.iter().filter(|r| r.event_type() == t).collect()
}

/// Sum of `lost` over the `sink_failed` gap records about `sink`.
fn lost_in_gaps(recs: &[Checked], reason: &str, sink: &str) -> u64 {
    recs.iter()
        .filter(|r| r.event_type() == "audit_gap")
        .filter(|r| r.payload()["reason"] == reason && r.payload()["sink"] == sink)
        .map(|r| r.payload()["lost"].as_u64().unwrap())
        .sum()
}

fn report<'a>(r: &'a [SinkReport], name: &str) -> &'a SinkReport {
    r.iter().find(|s| s.health.name == name).unwrap()
}

fn sink_health(d: &Dispatcher, name: &str) -> SinkHealth {
    d.health()
        .sinks
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

/// Polls the health snapshot until `pred` holds; panics after `within`.
async fn health_shows(
    d: &Dispatcher,
    name: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&SinkHealth) -> bool,
) -> SinkHealth {
    let start = Instant::now();
    loop {
        let h = sink_health(d, name);
        if pred(&h) {
            return h;
        }
        assert!(
            start.elapsed() < within,
            "health of `{name}` did not show {what} within {within:?}: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn tool(i: u64) -> Value {
    json!({"tool": "transfer", "arguments": {"amount": i}, "i": i})
}

// ------------------------------------------------------------ a disk full from the start

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_optional_sink_fails_on_the_first_emit_and_the_other_sink_keeps_everything() {
    const N: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.jsonl");
    let disk = Tmpfs::full();
    let full_path = disk.path().join("full.jsonl");
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("full").required(false), jsonl(&full_path))
        .sink(SinkOptions::new("kept"), jsonl(&kept))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r1"));

    // The very first emit that waits for its receipt learns of the failure.
    let first = a
        .emit_wait(EventType::ToolCall, &tool(0), AckLevel::Durable)
        .await
        .unwrap();
    assert_eq!(first.level, AckLevel::Durable, "the kept sink synced it");
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert_eq!(first.failed[0].sink, "full");
    let err = first.failed[0].error.to_string();
    assert!(
        err.contains(&full_path.display().to_string()) && err.contains("No space left on device"),
        "{err}"
    );
    let h = sink_health(&d, "full");
    assert_eq!((h.failed, h.delivered), (1, 0));
    assert!(h.last_error.as_deref().unwrap().contains("No space left"));

    for i in 1..N {
        a.emit(EventType::ToolCall, &tool(i)).await.unwrap();
    }
    let rep = d.shutdown(Duration::from_secs(10)).await;
    let full = report(&rep.sinks, "full");
    assert_eq!(
        (
            full.health.delivered,
            full.health.failed,
            full.health.dropped,
            full.undelivered
        ),
        (0, N, 0, 0),
        "{rep}"
    );
    let recs = records(&kept);
    let calls = of_type(&recs, "tool_call");
    assert_eq!(calls.len() as u64, N);
    for (i, r) in calls.iter().enumerate() {
        assert_eq!(*r.payload(), tool(i as u64));
    }
    // Every lost record is named by an audit_gap record in the other sink.
    assert_eq!(lost_in_gaps(&recs, "sink_failed", "full"), N);
    let kept_r = report(&rep.sinks, "kept");
    assert_eq!(kept_r.health.delivered, recs.len() as u64);
    assert_eq!((kept_r.health.failed, kept_r.undelivered), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_required_sink_fails_the_emit_and_refuses_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.jsonl");
    let disk = Tmpfs::full();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("full").required(true),
            jsonl(disk.path().join("full.jsonl")),
        )
        .sink(SinkOptions::new("kept").required(false), jsonl(&kept))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    let err = a
        .emit_wait(EventType::ToolCall, &tool(0), AckLevel::Durable)
        .await
        .unwrap_err();
    match &err {
        EmitError::SinkFailed { sink, .. } => assert_eq!(sink, "full"),
        other => panic!("expected SinkFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("No space left on device"), "{err}");
    // Audit before act: the next emit is refused before it gets a seq.
    let next = d.next_seq().await;
    let again = a.emit(EventType::ToolCall, &tool(1)).await.unwrap_err();
    assert!(matches!(again, EmitError::SinkFailed { .. }), "{again:?}");
    assert_eq!(d.next_seq().await, next, "a refused emit used a seq");

    let rep = d.shutdown(Duration::from_secs(10)).await;
    let full = report(&rep.sinks, "full");
    assert_eq!((full.health.delivered, full.health.failed), (0, 1), "{rep}");
    let recs = records(&kept);
    assert_eq!(of_type(&recs, "tool_call").len(), 1);
    assert_eq!(lost_in_gaps(&recs, "sink_failed", "full"), 1);
}

// ------------------------------------------------------------ RLIMIT_FSIZE

struct ChildRun {
    report: Value,
    stdout: Vec<String>,
    stderr: String,
}

/// Runs `fault-writer` with `args`; stdout is read as it comes (the stdout
/// sink writes there).
fn fault_writer(args: &[&str]) -> ChildRun {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fault-writer"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::spawn(child.stdout.take().unwrap());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    let report = stderr
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .unwrap_or_else(|| panic!("fault-writer gave no report ({status}): {stderr}"));
    ChildRun {
        report: serde_json::from_str(report).unwrap(),
        stdout: lines.rest(),
        stderr,
    }
}

fn config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("audit.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn sink_in<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["shutdown"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sink {name} in {report}"))
}

fn stdout_records(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const FSIZE_LIMIT: u64 = 64 * 1024;

#[test]
fn file_size_limit_optional_jsonl_fails_cleanly_and_stdout_keeps_everything() {
    const N: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[sinks]]
type = "jsonl"
path = "{}"
fsync = "batch"
required = false

[[sinks]]
type = "stdout"
format = "json"
required = true
"#,
            log.display()
        ),
    );
    let run = fault_writer(&[
        "--config",
        cfg.to_str().unwrap(),
        "--records",
        &N.to_string(),
        "--payload-bytes",
        "200",
        "--fsize-limit",
        &FSIZE_LIMIT.to_string(),
        "--wait",
        "written",
    ]);
    let r = &run.report;
    assert_eq!(r["emitted"], N, "{}", run.stderr);
    assert_eq!(r["errors"], 0);
    // Surfaced on the emit whose record did not fit: its receipt names
    // the sink, the file and the cause.
    let f = &r["first_receipt_failure"];
    assert_eq!(f["sink"], "jsonl", "{r}");
    let msg = f["error"].as_str().unwrap();
    assert!(
        msg.contains("File too large") && msg.contains(&log.display().to_string()),
        "{msg}"
    );
    assert!(r["health"]["sinks"][0]["failed"].as_u64().unwrap() > 0);

    // The file stops at the limit with whole lines only: the cut-off
    // partial write was removed, the chain is intact.
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= FSIZE_LIMIT, "{size}");
    let recs = records(&log);
    let j = sink_in(r, "jsonl");
    assert_eq!(j["delivered"].as_u64().unwrap(), recs.len() as u64);
    // Exact: every record sent to the sink is either in the file or counted
    // failed (its own failure notes are not sent to it).
    let out = stdout_records(&run.stdout);
    let calls: Vec<&Value> = out
        .iter()
        .filter(|v| v["event_type"] == "tool_call")
        .collect();
    assert_eq!(calls.len() as u64, N, "stdout kept every record");
    for (i, v) in calls.iter().enumerate() {
        assert_eq!(v["payload"]["i"], i as u64);
    }
    let routed_to_jsonl = out
        .iter()
        .filter(|v| !(v["event_type"] == "audit_gap" && v["payload"]["sink"] == "jsonl"))
        .count() as u64;
    let failed = j["failed"].as_u64().unwrap();
    assert_eq!(j["delivered"].as_u64().unwrap() + failed, routed_to_jsonl);
    let lost: u64 = out
        .iter()
        .filter(|v| v["event_type"] == "audit_gap" && v["payload"]["reason"] == "sink_failed")
        .map(|v| v["payload"]["lost"].as_u64().unwrap())
        .sum();
    assert_eq!(lost, failed, "gap records name exactly the failed records");
    let s = sink_in(r, "stdout");
    assert_eq!(s["delivered"].as_u64().unwrap(), out.len() as u64);
}

#[test]
fn file_size_limit_required_jsonl_fails_the_emit_and_refuses_the_rest() {
    const N: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[sinks]]
type = "jsonl"
path = "{}"
required = true

[[sinks]]
type = "stdout"
format = "json"
required = false
"#,
            log.display()
        ),
    );
    let run = fault_writer(&[
        "--config",
        cfg.to_str().unwrap(),
        "--records",
        &N.to_string(),
        "--payload-bytes",
        "200",
        "--fsize-limit",
        &FSIZE_LIMIT.to_string(),
        "--wait",
        "durable",
    ]);
    let r = &run.report;
    let ok = r["emitted"].as_u64().unwrap();
    let errors = r["errors"].as_u64().unwrap();
    assert!(ok > 0 && errors > 0 && ok + errors == N, "{r}");
    let first = r["first_error"]["error"].as_str().unwrap();
    assert!(
        first.contains("required sink `jsonl` failed") && first.contains("File too large"),
        "{first}"
    );
    // Every emit that returned Ok is durable in the file; the failing one
    // got a seq (the other sink has it), the refused ones did not.
    let recs = records(&log);
    let in_file = of_type(&recs, "tool_call");
    assert_eq!(in_file.len() as u64, ok);
    let out = stdout_records(&run.stdout);
    let calls = out
        .iter()
        .filter(|v| v["event_type"] == "tool_call")
        .count() as u64;
    assert_eq!(
        calls,
        ok + 1,
        "the failing record reached stdout, refused ones got no seq"
    );
    let j = sink_in(r, "jsonl");
    assert_eq!(j["delivered"].as_u64().unwrap(), recs.len() as u64);
    assert_eq!(j["failed"].as_u64().unwrap(), 1);
}

// ------------------------------------------------------------ permissions

/// Makes a file immutable (`chattr +i`) for as long as it lives.
///
/// Revoking write permission from a file that is already open does not
/// stop writes on Linux (permissions are checked at open), and the tests
/// run as root, whom no mode bit stops anyway; a read-only remount needs a
/// privilege the test machine does not give. The immutable attribute is
/// what really fails an open descriptor's next write, for root too
/// (`EPERM`), so that is the revocation used here.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let out = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "chattr not runnable ({e}): run .ci/setup.d/e2fsprogs.sh (scripts/test.sh does)"
                )
            });
        assert!(
            out.status.success(),
            "chattr +i {} failed (needs CAP_LINUX_IMMUTABLE and a file system with attributes, e.g. ext4): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_permission_revoked_from_the_open_log_fails_the_next_emit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let copy = dir.path().join("copy.jsonl");
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("log"), jsonl(&log))
        .sink(SinkOptions::new("copy").required(false), jsonl(&copy))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    for i in 0..10 {
        a.emit_wait(EventType::ToolCall, &tool(i), AckLevel::Durable)
            .await
            .unwrap();
    }
    let before = std::fs::read(&log).unwrap();
    let guard = Immutable::set(&log);

    let err = a
        .emit_wait(EventType::ToolCall, &tool(10), AckLevel::Durable)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, EmitError::SinkFailed { sink, .. } if sink == "log")
            && msg.contains(&log.display().to_string())
            && msg.contains("Operation not permitted"),
        "{msg}"
    );
    let h = sink_health(&d, "log");
    assert_eq!((h.delivered, h.failed), (10, 1));
    assert!(h.last_error.unwrap().contains("Operation not permitted"));
    assert!(matches!(
        a.emit(EventType::ToolCall, &tool(11)).await,
        Err(EmitError::SinkFailed { .. })
    ));
    let rep = d.shutdown(Duration::from_secs(10)).await;
    drop(guard);

    let l = report(&rep.sinks, "log");
    assert_eq!(
        (l.health.delivered, l.health.failed, l.undelivered),
        (10, 1, 0),
        "{rep}"
    );
    // Not one byte reached the revoked file.
    assert_eq!(std::fs::read(&log).unwrap(), before);
    assert_eq!(of_type(&records(&log), "tool_call").len(), 10);
    let c = records(&copy);
    assert_eq!(of_type(&c, "tool_call").len(), 11);
    assert_eq!(lost_in_gaps(&c, "sink_failed", "log"), 1);
}

// ------------------------------------------------------------ moved, deleted

/// What logrotate and operators do to an open log.
#[derive(Clone, Copy, Debug)]
enum Underneath {
    /// `mv audit-log.jsonl audit-log.jsonl.1` (logrotate with `nocreate`).
    Moved,
    /// `mv`, then a new empty file at the path (logrotate's `create 0600`).
    MovedAndCreated,
    /// `rm audit-log.jsonl`.
    Deleted,
}

async fn log_changed_underneath(how: Underneath) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let old = dir.path().join("audit-log.jsonl.1");
    let copy = dir.path().join("copy.jsonl");
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("log"), jsonl(&log))
        .sink(SinkOptions::new("copy").required(false), jsonl(&copy))
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    for i in 0..5 {
        a.emit_wait(EventType::ToolCall, &tool(i), AckLevel::Durable)
            .await
            .unwrap();
    }
    let before = check_file(&log, None).unwrap();
    match how {
        Underneath::Moved => std::fs::rename(&log, &old).unwrap(),
        Underneath::MovedAndCreated => {
            std::fs::rename(&log, &old).unwrap();
            std::fs::write(&log, b"").unwrap();
        }
        Underneath::Deleted => std::fs::remove_file(&log).unwrap(),
    }
    // The next emit is not lost in the old file: it lands at the path.
    let r = a
        .emit_wait(EventType::ToolCall, &tool(5), AckLevel::Durable)
        .await
        .unwrap();
    assert!(r.failed.is_empty(), "{r:?}");
    let h = health_shows(&d, "log", Duration::from_secs(5), "a notice", |h| {
        h.notices == 1
    })
    .await;
    let notice = h.last_notice.unwrap();
    let expected = match how {
        Underneath::Moved => "moved away while open (nothing is at the path now)",
        Underneath::MovedAndCreated => "moved away while open and another file is at the path now",
        Underneath::Deleted => "was deleted while open",
    };
    assert!(
        notice.contains(expected) && notice.contains(&log.display().to_string()),
        "{notice}"
    );
    for i in 6..10 {
        a.emit_wait(EventType::ToolCall, &tool(i), AckLevel::Durable)
            .await
            .unwrap();
    }
    let rep = d.shutdown(Duration::from_secs(10)).await;
    assert!(rep.is_clean(), "{rep}");

    // The file at the path continues the chain of the old one.
    let last_seq = before.records.last().unwrap().seq;
    let now =
        check_file(&log, Some((&before.head, Some(last_seq)))).unwrap_or_else(|e| panic!("{e}"));
    let calls: Vec<u64> = of_type(&now.records, "tool_call")
        .iter()
        .map(|r| r.payload()["i"].as_u64().unwrap())
        .collect();
    assert_eq!(calls, (5..10).collect::<Vec<_>>());
    let gaps = of_type(&now.records, "audit_gap");
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].payload()["reason"], "sink_notice");
    assert_eq!(gaps[0].payload()["sink"], "log");
    if !matches!(how, Underneath::Deleted) {
        // The moved file is untouched.
        let moved = check_file(&old, None).unwrap();
        assert_eq!(moved.records.len(), 5);
        assert_eq!(moved.head, before.head);
    }
    // The other sink kept everything, the notice included.
    let c = records(&copy);
    assert_eq!(of_type(&c, "tool_call").len(), 10);
    assert_eq!(of_type(&c, "audit_gap").len(), 1);
    let _ = chain::GENESIS;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_moved_away_underneath_is_reopened_with_the_chain_continued() {
    log_changed_underneath(Underneath::Moved).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rotated_by_logrotate_create_is_followed() {
    log_changed_underneath(Underneath::MovedAndCreated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_deleted_underneath_is_recreated_and_reported() {
    log_changed_underneath(Underneath::Deleted).await;
}

// ------------------------------------------------------------ stalled sink, memory

/// A stdout sink writing into a pipe nobody reads stalls for good once the
/// pipe's 64 KiB are full. With `queue = 64` and `drop_newest`, the child
/// emitting 96 MiB of records must stay far below that in memory, count
/// every drop, write the gaps to the JSONL file (which gets every record),
/// and report exact counts at a shutdown deadline it cannot drain by.
#[test]
fn stalled_sink_memory_stays_within_the_queues_and_counts_are_exact() {
    const N: u64 = 1536;
    const PAYLOAD: usize = 64 * 1024; // 1536 x 64 KiB = 96 MiB emitted
    const QUEUE: u64 = 64;
    const LIMIT_KIB: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[sinks]]
type = "jsonl"
path = "{}"
fsync = "never"
queue = {QUEUE}

[[sinks]]
type = "stdout"
format = "json"
required = false
overflow = "drop_newest"
queue = {QUEUE}
"#,
            log.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_fault-writer"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--records",
            &N.to_string(),
            "--payload-bytes",
            &PAYLOAD.to_string(),
            "--shutdown-ms",
            "500",
        ])
        .stdin(Stdio::null())
        // Held open, never read: the stdout sink stalls.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stalled_pipe = child.stdout.take().unwrap();
    // Sampled while it runs, on top of the child's own peak.
    let Reported {
        report,
        peak_sampled_kib: peak_sampled,
    } = wait_for_report(&mut child);
    let hwm = report["vm_hwm_kib"].as_u64().unwrap();
    let emitted_kib = N * PAYLOAD as u64 / 1024;
    assert!(
        hwm < LIMIT_KIB && peak_sampled < LIMIT_KIB,
        "peak RSS {hwm} KiB (sampled {peak_sampled} KiB) with queues of {QUEUE}; limit {LIMIT_KIB} KiB, {emitted_kib} KiB emitted"
    );
    assert_eq!(report["emitted"], N);
    assert_eq!(report["errors"], 0);

    // Health before shutdown showed the stall as drops.
    let h = &report["health"]["sinks"][1];
    assert_eq!(h["name"], "stdout");
    assert!(h["dropped"].as_u64().unwrap() > 0, "{h}");

    // The JSONL file has every seq, the drops named by gap records.
    let recs = records(&log);
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "contiguous"
    );
    assert_eq!(of_type(&recs, "tool_call").len() as u64, N);
    let s = sink_in(&report, "stdout");
    let (delivered, dropped, failed, undelivered) = (
        s["delivered"].as_u64().unwrap(),
        s["dropped"].as_u64().unwrap(),
        s["failed"].as_u64().unwrap(),
        s["undelivered"].as_u64().unwrap(),
    );
    assert_eq!(s["finished"], false, "stalled in a write at the deadline");
    assert_eq!(
        delivered + dropped + failed + undelivered,
        recs.len() as u64,
        "every record sent to the stalled sink is accounted for exactly: {s}"
    );
    assert_eq!(lost_in_gaps(&recs, "queue_full", "stdout"), dropped);
    let j = sink_in(&report, "jsonl");
    assert_eq!(j["delivered"].as_u64().unwrap(), recs.len() as u64);
    drop(stalled_pipe);
}

// ------------------------------------------------------------ a real full disk

/// The files in `dir`, by name.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

async fn start_leased(log: &Path) -> Result<Dispatcher, agent_audit::StartError> {
    let lease = agent_audit::jsonl::FileLease::for_log(log).unwrap();
    Dispatcher::builder()
        .sink(SinkOptions::new("jsonl"), jsonl(log))
        .seq_lease(std::sync::Arc::new(lease))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_first_start_leaves_no_torn_lease_and_the_next_start_continues_the_seq() {
    let disk = Tmpfs::mount(256 * 1024);
    let log = disk.path().join("audit-log.jsonl");
    let seq_file = disk.path().join("audit-log.jsonl.seq");

    // First start on a full disk: refused, naming the lease and the cause.
    let filler = disk.fill("filler");
    let err = start_leased(&log).await.unwrap_err().to_string();
    assert!(
        err.contains("audit-log.jsonl.seq") && err.contains("No space left"),
        "{err}"
    );
    // Before, a 0-byte lease was left here and every later start failed
    // until someone deleted it.
    assert_eq!(names_in(disk.path()), ["audit-log.jsonl", "filler"]);

    // Room again: the next start succeeds.
    std::fs::remove_file(&filler).unwrap();
    let d = start_leased(&log).await.unwrap();
    let a = Auditor::new(d.clone());
    for i in 0..5 {
        let r = a
            .emit_wait(EventType::ToolCall, &tool(i), AckLevel::Durable)
            .await
            .unwrap();
        assert_eq!(r.seq, i + 1);
    }
    assert!(d.shutdown(Duration::from_secs(5)).await.is_clean());
    let before = std::fs::read(&seq_file).unwrap();
    assert_eq!(before, b"upto 00000000000000000005\n");

    // A later start on a full disk: the store fails, the old lease stays
    // whole and nothing else is left behind.
    let filler = disk.fill("filler");
    let err = start_leased(&log).await.unwrap_err().to_string();
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(std::fs::read(&seq_file).unwrap(), before);
    assert_eq!(
        names_in(disk.path()),
        ["audit-log.jsonl", "audit-log.jsonl.seq", "filler"]
    );

    // Freed: numbering continues where it stopped, in one chain.
    std::fs::remove_file(&filler).unwrap();
    let d = start_leased(&log).await.unwrap();
    let r = Auditor::new(d.clone())
        .emit_wait(EventType::ToolCall, &tool(5), AckLevel::Durable)
        .await
        .unwrap();
    assert_eq!(r.seq, 6);
    assert!(d.shutdown(Duration::from_secs(5)).await.is_clean());
    let seqs: Vec<u64> = records(&log).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
}

/// Emits `n` records of varying size (so that the last free bytes take
/// some and not others) without waiting for each, then waits until every
/// sink wrote or failed them.
async fn emit_varied(d: &Dispatcher, a: &Auditor, i: &mut u64, n: u64) {
    for _ in 0..n {
        let pad = "x".repeat(((*i * 7919) % 1500) as usize);
        a.emit(EventType::ToolCall, &json!({"i": *i, "pad": pad}))
            .await
            .unwrap();
        *i += 1;
    }
    let last = d.next_seq().await - 1;
    d.wait(last, AckLevel::Written).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_the_gap_ranges_are_exactly_the_seqs_the_file_lacks_every_run() {
    use agent_audit::jsonl::FsyncPolicy;
    use std::collections::BTreeSet;
    // Each run fills the disk, then frees a little at a time (a cleanup
    // job deleting old files), so failed and written batches alternate
    // within the second a sink_failed record gathers; the policies differ
    // in whether a failed batch already committed some of its lines.
    let policies = [
        FsyncPolicy::Batch,
        FsyncPolicy::Every,
        FsyncPolicy::Never,
        FsyncPolicy::Every,
        FsyncPolicy::Batch,
    ];
    for (run, fsync) in policies.into_iter().enumerate() {
        let disk = Tmpfs::mount(128 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let log = disk.path().join("audit-log.jsonl");
        let kept = dir.path().join("kept.jsonl");
        // Room that a cleanup frees later, 4 KiB (one tmpfs page) each.
        let spare: Vec<PathBuf> = (0..6)
            .map(|i| {
                let p = disk.path().join(format!("old-{i}"));
                std::fs::write(&p, vec![0u8; 4096]).unwrap();
                p
            })
            .collect();
        let d = Dispatcher::builder()
            .sink(
                SinkOptions::new("tmpfs").required(false).max_batch(8),
                JsonlSink::new(JsonlOptions::new(&log).fsync(fsync)).unwrap(),
            )
            .sink(SinkOptions::new("kept"), jsonl(&kept))
            .start()
            .await
            .unwrap();
        let a = Auditor::new(d.clone());
        let mut i = 0u64;
        // Until the disk is full and the file sink has failed.
        while sink_health(&d, "tmpfs").failed == 0 {
            emit_varied(&d, &a, &mut i, 20).await;
            assert!(i < 10_000, "the disk never filled");
        }
        for old in &spare {
            std::fs::remove_file(old).unwrap();
            emit_varied(&d, &a, &mut i, 12).await;
        }
        emit_varied(&d, &a, &mut i, 40).await;
        let rep = d.shutdown(Duration::from_secs(10)).await;
        let t = report(&rep.sinks, "tmpfs");

        let held: BTreeSet<u64> = records(&log).iter().map(|r| r.seq).collect();
        let kept_recs = records(&kept);
        let about_tmpfs = |r: &Checked| {
            r.event_type() == "audit_gap"
                && r.payload()["reason"] == "sink_failed"
                && r.payload()["sink"] == "tmpfs"
        };
        // Everything but the notes about its own failures went to the
        // file sink.
        let sent: BTreeSet<u64> = kept_recs
            .iter()
            .filter(|r| !about_tmpfs(r))
            .map(|r| r.seq)
            .collect();
        let missing: BTreeSet<u64> = sent.difference(&held).copied().collect();
        let mut named = BTreeSet::new();
        let mut lost = 0;
        for g in kept_recs.iter().filter(|r| about_tmpfs(r)) {
            lost += g.payload()["lost"].as_u64().unwrap();
            for range in g.payload()["ranges"].as_array().unwrap() {
                let (from, to) = (range[0].as_u64().unwrap(), range[1].as_u64().unwrap());
                named.extend(from..=to);
            }
        }
        let ctx = format!("run {run} (fsync {fsync:?}), {rep}");
        assert!(!missing.is_empty() && !held.is_empty(), "{ctx}");
        let wrong: Vec<u64> = named.intersection(&held).copied().collect();
        assert!(
            wrong.is_empty(),
            "gap ranges name seqs the file holds: {wrong:?}; {ctx}"
        );
        assert_eq!(named, missing, "{ctx}");
        assert_eq!(lost, missing.len() as u64, "{ctx}");
        assert_eq!(t.health.failed, lost, "{ctx}");
        assert_eq!(t.health.delivered, held.len() as u64, "{ctx}");
    }
}
