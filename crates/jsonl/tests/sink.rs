//! The JSONL sink on the real file system, through the real dispatcher.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agent_audit_core::conformance::{Target, run_all};
use agent_audit_core::{
    AckLevel, Auditor, Dispatcher, EventType, Sink, SinkOptions, StartError, StoredRecord,
};
use agent_audit_jsonl::{
    FsyncPolicy, JsonlError, JsonlOptions, JsonlSink, ReadError, Reader, chain::GENESIS, files,
};
use common::*;
use hmac::{Hmac, Mac};

struct JsonlTarget {
    opts: JsonlOptions,
}

impl Target for JsonlTarget {
    fn make(&self) -> Box<dyn Sink> {
        Box::new(JsonlSink::new(self.opts.clone()).unwrap())
    }
    fn read_back(&self) -> Option<Vec<StoredRecord>> {
        Some(stored(&log_records(&self.opts.path)))
    }
    fn persistent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_under_every_fsync_policy_and_with_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let variants = [
        ("batch", JsonlOptions::new(dir.path().join("batch.jsonl"))),
        (
            "never",
            JsonlOptions::new(dir.path().join("never.jsonl")).fsync(FsyncPolicy::Never),
        ),
        (
            "every",
            JsonlOptions::new(dir.path().join("every.jsonl")).fsync(FsyncPolicy::Every),
        ),
        (
            "interval",
            JsonlOptions::new(dir.path().join("interval.jsonl"))
                .fsync(FsyncPolicy::Interval)
                .fsync_interval(std::time::Duration::from_millis(20)),
        ),
        (
            "rotating",
            JsonlOptions::new(dir.path().join("rot.jsonl")).rotate_bytes(4096),
        ),
        (
            "keyed",
            JsonlOptions::new(dir.path().join("keyed.jsonl")).chain_key(b"k"),
        ),
    ];
    for (name, opts) in variants {
        let target = JsonlTarget { opts: opts.clone() };
        run_all(&target)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if name != "keyed" {
            // The suite's failure checks leave seqs the sink was never
            // given, so only the links are checked here.
            assert_links(&log_records(&opts.path));
        }
    }
    assert!(files::list(&dir.path().join("rot.jsonl")).unwrap().len() > 5);
}

/// Asserts each line's prev is the SHA-256 of the line before it, from
/// the genesis value, with seqs ascending.
fn assert_links(lines: &[agent_audit_jsonl::Line]) {
    let mut head = GENESIS.to_string();
    let mut seq = 0;
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l.record.prev, head,
            "prev of record seq {} (index {i})",
            l.record.seq
        );
        assert!(
            l.record.seq > seq,
            "seq {} after {seq} at index {i}",
            l.record.seq
        );
        seq = l.record.seq;
        head = sha256_hex(&l.bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_chain_is_sha256_of_each_previous_line_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    for run in 0..3u64 {
        let d = start(JsonlOptions::new(&path)).await;
        let a = Auditor::new(d.clone())
            .for_request(Some("r"))
            .with_agent("assistant");
        for i in 0..100 {
            a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
        }
        assert!(d.shutdown(SHUTDOWN).await.is_clean());
        let lines = records(&path);
        assert_eq!(lines.len() as u64, 100 * (run + 1));
        assert_chain(&lines);
    }
    // Each line is what Python's json.loads-per-line reader expects.
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["event_type"], "tool_call");
        assert_eq!(v["payload"]["arguments"]["account_id"], "12345");
    }
    assert!(text.ends_with('\n'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_chain_is_hmac_sha256_under_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let d = start(JsonlOptions::new(&path).chain_key(b"chain-key")).await;
    let a = Auditor::new(d.clone());
    for i in 0..20 {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let lines = records(&path);
    let mut head = GENESIS.to_string();
    for l in &lines {
        assert_eq!(l.record.prev, head);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"chain-key").unwrap();
        mac.update(&l.bytes);
        head = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(head, sha256_hex(&l.bytes));
    }
    // Reopening with the key continues the keyed chain.
    let mut sink = JsonlSink::new(JsonlOptions::new(&path).chain_key(b"chain-key")).unwrap();
    sink.open_file().unwrap();
    assert_eq!(sink.chain_head(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_is_created_0600_and_rotated_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let d = start(JsonlOptions::new(&path).rotate_bytes(1000)).await;
    let a = Auditor::new(d.clone());
    for i in 0..20 {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let list = files::list(&path).unwrap();
    assert!(list.len() > 3, "{list:?}");
    for f in list {
        let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_carries_the_chain_and_names_files_by_their_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let opts = JsonlOptions::new(&path).rotate_bytes(2000);
    let d = start(opts.clone()).await;
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    for i in 0..60 {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let list = files::list(&path).unwrap();
    assert!(list.len() >= 10, "{list:?}");
    assert!(list.last().unwrap().active);
    for f in &list {
        let size = std::fs::metadata(&f.path).unwrap().len();
        assert!(size <= 2000, "{} is {size} bytes", f.path.display());
        let lines = records(&f.path);
        assert!(!lines.is_empty());
        if let Some((first, last)) = f.seqs {
            assert_eq!(
                lines.first().unwrap().record.seq,
                first,
                "{}",
                f.path.display()
            );
            assert_eq!(
                lines.last().unwrap().record.seq,
                last,
                "{}",
                f.path.display()
            );
        }
    }
    let all = log_records(&path);
    assert_eq!(all.len(), 60);
    assert_chain(&all);

    // A crash between renaming the full file and creating the next one
    // leaves no active file: the chain and seq continue from the newest
    // rotated file.
    let active = records(&path);
    let to = files::rotated_name(
        &path,
        active.first().unwrap().record.seq,
        active.last().unwrap().record.seq,
    );
    std::fs::rename(&path, &to).unwrap();
    let d = start(opts).await;
    let r = Auditor::new(d.clone())
        .emit_wait(
            EventType::SessionStart,
            &serde_json::json!({}),
            AckLevel::Durable,
        )
        .await
        .unwrap();
    assert_eq!(r.seq, 61);
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let all = log_records(&path);
    assert_eq!(all.len(), 61);
    assert_chain(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_bigger_than_rotate_bytes_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let d = start(JsonlOptions::new(&path).rotate_bytes(100)).await;
    let a = Auditor::new(d.clone());
    for i in 0..5 {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let list = files::list(&path).unwrap();
    assert_eq!(list.len(), 5, "{list:?}");
    for f in &list {
        assert_eq!(records(&f.path).len(), 1);
    }
    assert_chain(&log_records(&path));
}

/// Writes `n` records with a fresh dispatcher and shuts it down.
async fn write_n(path: &Path, n: u64) {
    let d = start(JsonlOptions::new(path)).await;
    let a = Auditor::new(d.clone());
    for i in 0..n {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
}

fn append_raw(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_reported_and_the_chain_resumes_from_the_last_whole_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_n(&path, 5).await;
    let before = std::fs::read(&path).unwrap();
    let torn = br#"{"v":1,"seq":6,"ts":"2026-11-25T23:32:22.1"#;
    append_raw(&path, torn);

    // Before reopening, the reader sees exactly one torn final line.
    let read_now = read(&path);
    assert_eq!(read_now.len(), 6);
    match &read_now[5] {
        Err(ReadError::TornFinalLine {
            line: 6,
            offset,
            len,
            ..
        }) => {
            assert_eq!(*offset, before.len() as u64);
            assert_eq!(*len, torn.len() as u64);
        }
        other => panic!("expected a torn final line, got {other:?}"),
    }

    // The sink cuts it off the file (truncated to the end of the last whole
    // line) and reports the path, offset, length and SHA-256, not the bytes.
    // Its prefix names seq 6, which does not set the seq: the dispatcher
    // continues after the last whole record (the seq lease, when there is
    // one, keeps seqs a dead writer handed out).
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&path, &copy).unwrap();
    let mut sink = JsonlSink::new(JsonlOptions::new(&copy)).unwrap();
    let open = sink.open_file().unwrap();
    assert_eq!(open.last_seq, Some(5));
    assert_eq!(open.notices.len(), 1);
    let notice = &open.notices[0];
    for part in [
        format!("byte offset {}", before.len()),
        copy.display().to_string(),
        format!("{} bytes", torn.len()),
        format!("SHA-256 {}", sha256_hex(torn)),
        "torn".to_string(),
        "cut".to_string(),
    ] {
        assert!(notice.contains(&part), "notice lacks `{part}`: {notice}");
    }
    assert!(!notice.contains("2026-11-25T23:32:22.1"), "{notice}");
    assert_eq!(std::fs::read(&copy).unwrap(), before, "cut on open");
    sink.close_file().unwrap();

    // Through the dispatcher the notice becomes an audit_gap record where
    // the torn line was, chained to the last whole record.
    let d = start(JsonlOptions::new(&path)).await;
    let r = Auditor::new(d.clone())
        .emit_wait(EventType::ToolCall, &tool_call(99), AckLevel::Durable)
        .await
        .unwrap();
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        &bytes[..before.len()],
        &before[..],
        "earlier lines untouched"
    );
    let lines = read(&path);
    assert_eq!(lines.len(), 7);
    let gap = lines[5].as_ref().unwrap();
    let last_whole = lines[4].as_ref().unwrap();
    assert_eq!(gap.record.event_type, EventType::AuditGap);
    assert_eq!(gap.record.seq, 6);
    assert_eq!(gap.record.prev, sha256_hex(&last_whole.bytes));
    let detail = gap.record.payload["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("byte offset {}", before.len()))
            && detail.contains(&sha256_hex(torn)),
        "{detail}"
    );
    let next = lines[6].as_ref().unwrap();
    assert_eq!((next.record.seq, r.seq), (7, 7));
    assert_eq!(next.record.prev, sha256_hex(&gap.bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_without_a_readable_seq_and_a_file_that_is_only_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_n(&path, 3).await;
    let before = std::fs::read(&path).unwrap();
    append_raw(&path, br#"{"v":1,"se"#);
    let mut sink = JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    let open = sink.open_file().unwrap();
    assert_eq!(open.last_seq, Some(3));
    assert_eq!(open.notices.len(), 1);
    assert!(open.notices[0].contains("cut"), "{}", open.notices[0]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    sink.close_file().unwrap();

    let only = dir.path().join("only-torn.jsonl");
    std::fs::write(&only, br#"{"v":1,"seq":1,"t"#).unwrap();
    let mut sink = JsonlSink::new(JsonlOptions::new(&only)).unwrap();
    let open = sink.open_file().unwrap();
    assert_eq!(open.last_seq, None);
    assert_eq!(open.notices.len(), 1);
    assert!(
        open.notices[0].contains("start of the log"),
        "{}",
        open.notices[0]
    );
    assert_eq!(sink.chain_head(), GENESIS);
    assert_eq!(std::fs::metadata(&only).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_last_record_missing_only_its_newline_is_kept_without_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_n(&path, 3).await;
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let last = read(&path).pop().unwrap().unwrap();
    assert!(!last.terminated);
    let mut sink = JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    let open = sink.open_file().unwrap();
    assert_eq!(open.last_seq, Some(3));
    assert!(open.notices.is_empty(), "{:?}", open.notices);
    assert_eq!(sink.chain_head(), sha256_hex(&last.bytes));
    sink.close_file().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    write_n(&path, 2).await;
    assert_chain(&records(&path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_after_the_last_record_torn_shaped_are_cut_and_others_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_n(&path, 2).await;
    let whole = std::fs::read(&path).unwrap();
    // A line that is not a record and not the start of one, then a torn
    // line an earlier version ended with a newline (and crashed before
    // writing its notice), then a torn final line.
    let junk = b"{\"v\":1,\"seq\":3,\"ts\":\"20\"}";
    let ended = b"{\"v\":1,\"seq\":4,\"ts\":\"20";
    let torn = b"{\"v\":1,\"seq\":5,\"t";
    append_raw(&path, &[&junk[..], b"\n", ended, b"\n", torn].concat());
    let mut sink = JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    let open = sink.open_file().unwrap();
    // No prefix sets the seq.
    assert_eq!(open.last_seq, Some(2));
    assert_eq!(open.notices.len(), 3, "{:?}", open.notices);
    let junk_at = whole.len();
    let ended_at = junk_at + junk.len() + 1;
    let torn_at = ended_at + ended.len() + 1;
    for (notice, (bytes, at, what)) in open.notices.iter().zip([
        (&junk[..], junk_at, "left in place"),
        (&ended[..], ended_at, "cut a torn line"),
        (&torn[..], torn_at, "cut a torn final line"),
    ]) {
        for part in [
            format!("{} bytes at byte offset {at} ", bytes.len()),
            format!("SHA-256 {}", sha256_hex(bytes)),
            what.to_string(),
        ] {
            assert!(notice.contains(&part), "notice lacks `{part}`: {notice}");
        }
    }
    sink.close_file().unwrap();
    // The whole line stays, the torn ones are gone.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        [&whole[..], junk, b"\n"].concat()
    );
}

#[test]
fn a_file_that_does_not_end_in_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "some text\n".repeat(100)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file()
        .unwrap_err();
    assert!(matches!(err, JsonlError::NotAnAuditLog { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "refused file untouched"
    );
}

/// A lock let go moments later (as a child process spawned between our
/// open and its exec holds it) is waited for, not reported as in use.
#[test]
fn a_lock_let_go_within_moments_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    std::fs::write(&path, b"").unwrap();
    // Another open file description: its lock conflicts with the sink's.
    let holder = std::fs::File::open(&path).unwrap();
    holder.lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(60));
        drop(holder);
    });
    let opened = JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file();
    release.join().unwrap();
    assert!(opened.is_ok(), "{:?}", opened.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_in_the_same_process_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let d = start(JsonlOptions::new(&path)).await;
    let err = JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file()
        .unwrap_err();
    assert!(matches!(err, JsonlError::InUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("in use"),
        "{msg}"
    );
    let err = Dispatcher::builder()
        .sink(
            SinkOptions::new("second"),
            JsonlSink::new(JsonlOptions::new(&path)).unwrap(),
        )
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Open { .. }));
    assert!(err.to_string().contains("in use"), "{err}");
    // Once the first writer is gone, the file opens again.
    assert!(d.shutdown(SHUTDOWN).await.is_clean());
    let mut sink = JsonlSink::new(JsonlOptions::new(&path)).unwrap();
    sink.open_file().unwrap();
}

/// A small tmpfs of its own, filled to the last byte: a disk that really
/// is full (`/dev/full` is a device, which the sink refuses as a path).
struct FullDisk {
    dir: tempfile::TempDir,
}

impl FullDisk {
    fn mount() -> FullDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=65536,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("mount not runnable: {e}"));
        assert!(
            out.status.success(),
            "mount -t tmpfs {} failed (this test runs as root, like the fault tests): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut filler = std::fs::File::create(dir.path().join("filler")).unwrap();
        let block = vec![0u8; 4096];
        for chunk in [&block[..], &block[..1]] {
            while let Ok(n) = filler.write(chunk) {
                if n == 0 {
                    break;
                }
            }
        }
        FullDisk { dir }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_emit_with_the_path_and_cause() {
    let disk = FullDisk::mount();
    let path = disk.dir.path().join("audit-log.jsonl");
    let d = start(JsonlOptions::new(&path)).await;
    let err = Auditor::new(d.clone())
        .emit_wait(EventType::ToolCall, &tool_call(1), AckLevel::Durable)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("cannot write"),
        "{msg}"
    );
    assert!(
        std::error::Error::source(&err)
            .map(|s| format!("{s}"))
            .unwrap_or_default()
            .contains("No space left"),
        "{err:?}"
    );
    // The sink is broken: the next emit fails at once.
    assert!(
        Auditor::new(d.clone())
            .emit(EventType::ToolCall, &tool_call(2))
            .await
            .is_err()
    );
    let report = d.shutdown(SHUTDOWN).await;
    assert_eq!(report.sinks[0].health.failed, 1);
}

/// `open_file` on another thread, so a sink that blocks (a FIFO opened
/// for reading) fails the test instead of hanging it.
fn open_within(path: &Path, limit: std::time::Duration) -> Result<(), JsonlError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let r = JsonlSink::new(JsonlOptions::new(&p))
            .unwrap()
            .open_file()
            .map(|_| ());
        let _ = tx.send(r);
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("opening {} hung for {limit:?}", path.display()))
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_a_device_or_a_socket_at_the_path_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.jsonl");
    mkfifo(&fifo);
    let socket = dir.path().join("socket.jsonl");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for (path, kind) in [
        (fifo.clone(), "FIFO"),
        (PathBuf::from("/dev/null"), "character device"),
        (PathBuf::from("/dev/full"), "character device"),
        (socket.clone(), "socket"),
    ] {
        let err = open_within(&path, std::time::Duration::from_secs(10)).unwrap_err();
        assert!(
            matches!(err, JsonlError::NotRegular { .. }),
            "{path:?}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains(kind)
                && msg.contains("not a regular file"),
            "{msg}"
        );
    }
    // Through the dispatcher, the start fails: no record can be accepted.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(
            Dispatcher::builder()
                .sink(
                    SinkOptions::new("trail"),
                    JsonlSink::new(JsonlOptions::new(&fifo)).unwrap(),
                )
                .start(),
        )
        .unwrap_err();
    assert!(matches!(err, StartError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("FIFO"), "{err}");
}

#[test]
fn a_fifo_under_a_rotated_name_is_refused_instead_of_read() {
    // With no active file the sink resumes the chain from the newest
    // rotated file: a FIFO there would block that read forever.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let rotated = files::rotated_name(&path, 1, 2);
    mkfifo(&rotated);
    let err = open_within(&path, std::time::Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, JsonlError::NotRegular { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&rotated.display().to_string()),
        "{err}"
    );
    let err = files::list(&path).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
}

#[test]
fn sizes_above_their_bounds_are_refused_by_name_and_the_bounds_are_accepted() {
    use agent_audit_jsonl::{MAX_FSYNC_INTERVAL_MS, MAX_ROTATE_BYTES, MAX_ROTATE_EVERY};
    use std::time::Duration;
    let at = [
        JsonlOptions::new("a.jsonl").fsync_interval(Duration::from_millis(MAX_FSYNC_INTERVAL_MS)),
        JsonlOptions::new("a.jsonl").rotate_bytes(MAX_ROTATE_BYTES),
        JsonlOptions::new("a.jsonl").rotate_every(MAX_ROTATE_EVERY),
    ];
    for opts in at {
        opts.validate().unwrap_or_else(|e| panic!("{opts:?}: {e}"));
    }
    for (opts, field) in [
        (
            JsonlOptions::new("a.jsonl")
                .fsync_interval(Duration::from_millis(MAX_FSYNC_INTERVAL_MS + 1)),
            "fsync_interval_ms",
        ),
        (
            JsonlOptions::new("a.jsonl").rotate_bytes(MAX_ROTATE_BYTES + 1),
            "rotate_bytes",
        ),
        (
            JsonlOptions::new("a.jsonl").rotate_every(MAX_ROTATE_EVERY + Duration::from_secs(1)),
            "rotate_every",
        ),
        (
            JsonlOptions::new("a.jsonl").fsync_interval(Duration::MAX),
            "fsync_interval_ms",
        ),
    ] {
        let err = JsonlSink::new(opts).unwrap_err();
        assert!(err.field == field, "{err:?}");
        assert!(err.to_string().contains("at most"), "{err}");
    }
}

#[test]
fn a_directory_as_the_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = JsonlSink::new(JsonlOptions::new(dir.path()))
        .unwrap()
        .open_file()
        .unwrap_err();
    assert!(matches!(err, JsonlError::IsDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn a_path_under_a_regular_file_is_a_clear_error() {
    // Root ignores directory permissions, so this is the case that fails
    // for every user; the read-only directory case runs as `nobody` in
    // tests/processes.rs.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let path = file.join("audit-log.jsonl");
    let err = JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file()
        .unwrap_err();
    match &err {
        JsonlError::Open { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR)),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_symlink_at_the_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere.jsonl");
    std::fs::write(&target, b"").unwrap();
    let path = dir.path().join("audit-log.jsonl");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let err = JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file()
        .unwrap_err();
    assert!(matches!(err, JsonlError::Symlink { .. }), "{err:?}");
    assert!(err.to_string().contains("symbolic link"));
}

#[test]
fn invalid_options_are_rejected_by_name() {
    for (opts, field) in [
        (JsonlOptions::new("a.jsonl").rotate_bytes(0), "rotate_bytes"),
        (
            JsonlOptions::new("a.jsonl").fsync_interval(std::time::Duration::ZERO),
            "fsync_interval_ms",
        ),
        (JsonlOptions::new(""), "path"),
        (JsonlOptions::new("a.jsonl").chain_key(b""), "chain_key"),
    ] {
        let err = JsonlSink::new(opts).unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
    let err =
        serde_json::from_str::<JsonlOptions>(r#"{"path":"a","fsync":"sometimes"}"#).unwrap_err();
    assert!(err.to_string().contains("sometimes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_levels_follow_the_fsync_policy() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, max) in [
        (FsyncPolicy::Never, AckLevel::Written),
        (FsyncPolicy::Interval, AckLevel::Durable),
        (FsyncPolicy::Batch, AckLevel::Durable),
        (FsyncPolicy::Every, AckLevel::Durable),
    ] {
        let path = dir.path().join(format!("{policy}.jsonl"));
        let d = start(
            JsonlOptions::new(&path)
                .fsync(policy)
                .fsync_interval(std::time::Duration::from_millis(10)),
        )
        .await;
        assert_eq!(d.health().sinks[0].max_level, max, "{policy}");
        let a = Auditor::new(d.clone());
        let written = a
            .emit_wait(EventType::ToolCall, &tool_call(1), AckLevel::Written)
            .await
            .unwrap();
        assert!(written.level >= AckLevel::Written, "{policy}");
        let durable = a
            .emit_wait(EventType::ToolCall, &tool_call(2), AckLevel::Durable)
            .await
            .unwrap();
        assert_eq!(durable.level, max, "{policy}");
        assert!(d.shutdown(SHUTDOWN).await.is_clean());
        assert_eq!(records(&path).len(), 2);
    }
}

#[test]
fn reader_reports_bad_lines_with_their_numbers_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let good = r#"{"v":1,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":null,"correlation_id":null,"trace_id":null,"span_id":null,"parent_span_id":null,"agent":null,"payload":{},"prev":"x"}"#;
    let extra_key = good.replace(r#""v":1"#, r#""v":1,"extra":true"#);
    let mut text = format!("{good}\n{{not json\n{extra_key}\n");
    text.push_str(good);
    text.push('\n');
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\xc3\x28\n");
    bytes.extend_from_slice(&good.as_bytes()[..50]);
    std::fs::write(&path, &bytes).unwrap();
    let got: Vec<_> = Reader::open(&path).unwrap().collect();
    assert_eq!(got.len(), 6);
    assert_eq!(got[0].as_ref().unwrap().number, 1);
    assert!(matches!(got[1], Err(ReadError::BadRecord { line: 2, .. })));
    let e = got[2].as_ref().unwrap_err();
    assert!(
        e.to_string().contains(":3:") && e.to_string().contains("extra"),
        "{e}"
    );
    assert_eq!(got[3].as_ref().unwrap().number, 4);
    assert!(matches!(
        got[4],
        Err(ReadError::NotUtf8 {
            line: 5,
            column: 1,
            ..
        })
    ));
    assert!(matches!(
        got[5],
        Err(ReadError::TornFinalLine {
            line: 6,
            len: 50,
            ..
        })
    ));
    let missing = Reader::open(dir.path().join("missing.jsonl")).unwrap_err();
    assert!(missing.to_string().contains("missing.jsonl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_written_in_chunks_and_rotate_mid_batch_with_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let sink = JsonlSink::new(JsonlOptions::new(&path).rotate_bytes(300_000)).unwrap();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(8192).max_batch(4096), sink)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    // Emitted without waiting, so batches hold hundreds of records: more
    // than one 128 KiB chunk, and a rotation inside a batch.
    for i in 0..5000 {
        a.emit(EventType::ToolCall, &tool_call(i)).await.unwrap();
    }
    let report = d.shutdown(SHUTDOWN).await;
    assert!(report.is_clean(), "{report}");
    let list = files::list(&path).unwrap();
    assert!(list.len() >= 5, "{list:?}");
    for f in &list {
        assert!(std::fs::metadata(&f.path).unwrap().len() <= 300_000);
    }
    let all = log_records(&path);
    assert_eq!(all.len(), 5000);
    assert_chain(&all);
}
