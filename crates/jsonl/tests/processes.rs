//! The JSONL sink across real processes: a lock held by another process, a
//! read-only directory for an unprivileged user, and writers killed with
//! SIGKILL mid-write.
//!
//! Child processes are this test binary run again with
//! `AGENT_AUDIT_JSONL_CHILD` set, which makes `child_process_entry_point`
//! play the child's part.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_jsonl::{FsyncPolicy, JsonlError, JsonlOptions, JsonlSink, ReadError, Reader};
use common::*;
use rand::Rng;

const CHILD_ENV: &str = "AGENT_AUDIT_JSONL_CHILD";

/// Not a test: the entry point of the child processes the tests below
/// spawn. Without the environment variable it does nothing.
#[test]
fn child_process_entry_point() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (role, path) = role.split_once('=').expect("ROLE=PATH");
    let path = PathBuf::from(path);
    match role {
        "hold" => hold_lock(&path),
        "readonly" => open_in_readonly_dir(&path),
        "crash" => write_until_killed(&path),
        "fsize" => write_past_the_file_size_limit(&path),
        other => panic!("unknown child role {other}"),
    }
}

fn spawn_child(role: &str, path: &Path, configure: impl FnOnce(&mut Command)) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child_process_entry_point",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(CHILD_ENV, format!("{role}={}", path.display()))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    configure(&mut cmd);
    cmd.spawn().expect("spawn the test binary as a child")
}

// ------------------------------------------------------------ lock

fn hold_lock(path: &Path) {
    let mut sink = JsonlSink::new(JsonlOptions::new(path)).unwrap();
    sink.open_file().unwrap();
    println!("LOCKED");
    std::io::stdout().flush().unwrap();
    // Hold the lock until the parent closes stdin or kills us.
    let mut line = String::new();
    while std::io::stdin()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_opening_a_file_in_use_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let mut child = spawn_child("hold", &path, |_| {});
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // libtest prints its own lines first.
    let mut line = String::new();
    while line.trim() != "LOCKED" {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited without taking the lock"
        );
    }

    let err = JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file()
        .unwrap_err();
    assert!(matches!(err, JsonlError::InUse { .. }), "{err:?}");
    let err = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(JsonlOptions::new(&path)).unwrap(),
        )
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("in use"),
        "{err}"
    );

    // The kernel releases the lock when the holder dies, even by SIGKILL.
    child.kill().unwrap();
    child.wait().unwrap();
    JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file()
        .unwrap();
}

// ------------------------------------------------------------ read-only directory

fn open_in_readonly_dir(path: &Path) {
    let err = JsonlSink::new(JsonlOptions::new(path))
        .unwrap()
        .open_file()
        .unwrap_err();
    match &err {
        JsonlError::Open { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied, "{err}")
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
    println!("REFUSED {err}");
}

#[test]
fn a_read_only_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let path = ro.join("audit-log.jsonl");
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    if !root {
        open_in_readonly_dir(&path);
        return;
    }
    // Root ignores directory permissions, so the check runs in a child
    // process as `nobody` (uid/gid 65534), for whom the directory is
    // read-only as it would be for a service account.
    let child = spawn_child("readonly", &path, |cmd| {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    });
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("REFUSED "))
        .unwrap_or_else(|| panic!("child printed no error: {stdout}"));
    assert!(line.contains(&path.display().to_string()), "{line}");
    assert!(line.contains("Permission denied"), "{line}");
    assert!(!path.exists());
}

// ------------------------------------------------------------ SIGKILL

fn write_until_killed(path: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = JsonlSink::new(JsonlOptions::new(path).fsync(FsyncPolicy::Batch)).unwrap();
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("jsonl").queue(4096), sink)
            .start()
            .await
            .unwrap();
        let pid = std::process::id();
        let a = Auditor::new(d.clone())
            .for_request(Some("crash"))
            .with_agent("child");
        // Audit-before-act callers, each printing a seq only once its
        // receipt says Durable.
        for task in 0..6 {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0u64.. {
                    let mut payload = tool_call(i);
                    payload["call_id"] = format!("{pid}-{task}-{i}").into();
                    let r = a
                        .emit_wait(EventType::ToolCall, &payload, AckLevel::Durable)
                        .await
                        .unwrap();
                    assert_eq!(r.level, AckLevel::Durable);
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "DURABLE {} {pid}-{task}-{i}", r.seq).unwrap();
                    out.flush().unwrap();
                }
            });
        }
        // One emitter at full speed, so batches are large and a kill can
        // land in the middle of a big write.
        let a2 = a.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                a2.emit(EventType::ToolResult, &tool_call(i)).await.unwrap();
            }
        });
        std::future::pending::<()>().await;
    });
}

/// Checks a log file as a verifier would, incrementally: one chain over the
/// record lines, seqs contiguous, every line a record except a torn final
/// line; and once a writer has opened the file after a kill left a torn
/// final line, those bytes are gone (cut back to the end of the last whole
/// line) and the first record written there is the audit_gap notice naming
/// their offset, length and SHA-256.
#[derive(Default)]
struct Verifier {
    /// Where the next pass starts: just past the last terminated record.
    resume_at: u64,
    head: String,
    last_seq: u64,
    /// call_id of each record by seq.
    seqs: HashMap<u64, String>,
    /// The torn final line the last pass saw: its offset and bytes.
    torn: Option<(u64, Vec<u8>)>,
    /// Torn lines a restart cut off and named.
    cut_and_named: usize,
}

impl Verifier {
    fn new() -> Verifier {
        Verifier {
            head: agent_audit_jsonl::chain::GENESIS.to_string(),
            ..Verifier::default()
        }
    }

    fn torn_final(&self) -> bool {
        self.torn.is_some()
    }

    fn pass(&mut self, path: &Path) {
        let mut file = std::fs::File::open(path).unwrap();
        let base = self.resume_at;
        file.seek(SeekFrom::Start(base)).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        let mut reader = Reader::new(path, &bytes[..]);
        let (mut head, mut last_seq) = (self.head.clone(), self.last_seq);
        // What the last pass left at `base`: a torn line, which the writer
        // that ran since must have cut, naming it in its first record.
        let mut expect_cut = self.torn.take();
        while let Some(raw) = reader.next_raw() {
            let raw = raw.unwrap();
            let (offset, terminated, len) = (base + raw.offset, raw.terminated, raw.len);
            match reader.parse(raw) {
                Ok(line) => {
                    let r = &line.record;
                    assert_eq!(r.prev, head, "chain broken at byte {offset}");
                    assert_eq!(r.seq, last_seq + 1, "seq at byte {offset}");
                    if let Some((at, torn)) = expect_cut.take() {
                        assert_eq!(offset, at, "the torn line was not cut back to its start");
                        assert_eq!(r.event_type, EventType::AuditGap, "byte {offset}");
                        let detail = r.payload["detail"].as_str().unwrap();
                        for part in [
                            format!("{} bytes at byte offset {at} ", torn.len()),
                            format!("SHA-256 {}", sha256_hex(&torn)),
                        ] {
                            assert!(detail.contains(&part), "notice lacks `{part}`: {detail}");
                        }
                        self.cut_and_named += 1;
                    }
                    last_seq = r.seq;
                    head = sha256_hex(&line.bytes);
                    if let Some(id) = r.payload["call_id"].as_str() {
                        self.seqs.insert(r.seq, id.to_string());
                    }
                    if terminated {
                        self.resume_at = offset + len + 1;
                        self.head = head.clone();
                        self.last_seq = last_seq;
                    }
                }
                Err(ReadError::TornFinalLine { .. }) => {
                    assert!(!terminated);
                    // The writer since was killed before its notice was
                    // whole (or before it wrote anything): the line at the
                    // same place is torn again, and the next open cuts it.
                    if let Some((at, _)) = expect_cut.take() {
                        assert_eq!(offset, at, "the torn line was not cut back to its start");
                    }
                    self.torn = Some((
                        offset,
                        bytes[(offset - base) as usize..(offset - base + len) as usize].to_vec(),
                    ));
                }
                Err(e) => panic!("a damaged line other than a torn final line: {e}"),
            }
        }
    }
}

#[test]
fn records_acknowledged_durable_survive_sigkill_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let mut rng = rand::thread_rng();
    let mut durable_total = 0usize;
    let mut torn_seen = 0usize;
    let mut verifier = Verifier::new();
    for round in 0..20 {
        let mut child = spawn_child("crash", &path, |_| {});
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let mut parts = l.strip_prefix("DURABLE ")?.split(' ');
                    Some((
                        parts.next()?.parse::<u64>().ok()?,
                        parts.next()?.to_string(),
                    ))
                })
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let durable = reader.join().unwrap();
        if round % 3 == 1 {
            // A kill lands between whole lines (the sink hands the kernel
            // whole lines); a power loss or a disk that fills mid-line
            // leaves the start of the next record, as here.
            let data = std::fs::read(&path).unwrap();
            if let Some(last) = data
                .strip_suffix(b"\n")
                .and_then(|d| d.rsplit(|&b| b == b'\n').next())
            {
                let seq = serde_json::from_slice::<serde_json::Value>(last).unwrap()["seq"]
                    .as_u64()
                    .unwrap();
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                write!(f, r#"{{"v":1,"seq":{},"ts":"2026-11-25T23:32"#, seq + 1).unwrap();
            }
        }
        verifier.pass(&path);
        for (seq, id) in &durable {
            assert_eq!(
                verifier.seqs.get(seq),
                Some(id),
                "round {round}: seq {seq} was Durable but is not in the file as written"
            );
        }
        durable_total += durable.len();
        torn_seen += usize::from(verifier.torn_final());
    }
    // The file reopens: seq and chain continue after everything it holds.
    let before = verifier.last_seq;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = start(JsonlOptions::new(&path)).await;
        let r = Auditor::new(d.clone())
            .emit_wait(
                EventType::SessionStart,
                &serde_json::json!({}),
                AckLevel::Durable,
            )
            .await
            .unwrap();
        assert!(r.seq > before);
        assert!(d.shutdown(SHUTDOWN).await.is_clean());
    });
    verifier.pass(&path);
    assert!(!verifier.torn_final());
    assert!(
        torn_seen == 0 || verifier.cut_and_named > 0,
        "{torn_seen} torn tails seen, none cut and named by the next writer"
    );
    assert!(verifier.last_seq > before);
    assert!(durable_total > 0, "no child reported a durable record");
    eprintln!(
        "20 SIGKILLs: {durable_total} durable receipts checked, {} records in the file, {torn_seen} torn tails seen, {} cut by the next writer and named",
        verifier.last_seq, verifier.cut_and_named
    );
}

// ------------------------------------------------------------ a failed write

fn write_past_the_file_size_limit(path: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = JsonlSink::new(JsonlOptions::new(path).fsync(FsyncPolicy::Never)).unwrap();
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("jsonl").required(false).queue(1024), sink)
            .start()
            .await
            .unwrap();
        let a = Auditor::new(d.clone());
        for i in 0..20 {
            let r = a
                .emit_wait(EventType::ToolCall, &tool_call(i), AckLevel::Written)
                .await
                .unwrap();
            assert!(r.failed.is_empty());
        }
        // Then a burst that crosses the limit somewhere inside a batch.
        let mut last = 0;
        for i in 20..400 {
            last = a
                .emit(EventType::ToolCall, &tool_call(i))
                .await
                .unwrap()
                .seq;
        }
        d.wait(last, AckLevel::Written).await.unwrap();
        let report = d.shutdown(SHUTDOWN).await;
        let h = &report.sinks[0].health;
        let msg = h
            .last_error
            .clone()
            .expect("the write past the limit did not fail");
        assert!(
            msg.contains("cannot write") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("File too large"), "{msg}");
        println!("FAILED {} DELIVERED {}", h.failed, h.delivered);
    });
}

#[test]
fn a_write_cut_short_by_the_file_size_limit_leaves_only_whole_chained_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let limit = 64 * 1024;
    // RLIMIT_FSIZE makes write() stop at the limit with EFBIG, part way
    // through a batch; SIGXFSZ is ignored (inherited through exec) so the
    // error reaches the sink instead of killing the process.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={limit} \"$0\" --exact child_process_entry_point --nocapture --test-threads=1 -q"
        ))
        .arg(&exe)
        .env(CHILD_ENV, format!("fsize={}", path.display()))
        .output()
        .expect("sh and prlimit (util-linux) are needed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FAILED "))
        .unwrap_or_else(|| panic!("no counts from the child: {stdout}"));
    let (failed, delivered) = counts.split_once(" DELIVERED ").unwrap();
    let (failed, delivered): (u64, u64) = (failed.parse().unwrap(), delivered.parse().unwrap());
    assert!(failed > 0 && delivered >= 20, "{counts}");
    // (The dispatcher does not ask a sink to record its own failure.)
    assert_eq!(failed + delivered, 400, "every record counted once");

    // The failed batches' partial bytes were cut off: the file is whole
    // lines, one chain, and holds exactly the delivered records.
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() <= limit && bytes.ends_with(b"\n"));
    let lines = records(&path);
    assert_eq!(lines.len() as u64, delivered);
    let mut head = agent_audit_jsonl::chain::GENESIS.to_string();
    let mut last = 0;
    for l in &lines {
        assert_eq!(l.record.prev, head, "line {}", l.number);
        assert!(l.record.seq > last);
        last = l.record.seq;
        head = sha256_hex(&l.bytes);
    }
}
