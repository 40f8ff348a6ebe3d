//! The JSONL sink asks for everything queued in one batch (issue 15): a
//! huge queue of big records, taken in one batch, must not become one huge
//! buffer; a write that fails part way through such a batch (a disk that
//! fills after a few rotations) leaves whole lines and honest receipts.
//!
//! The sink is the real one on real files, behind a thin wrapper that holds
//! its first write until the test has queued everything, so that the next
//! batch really is the whole queue.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, EventType, MemorySink, ShutdownSignal, Sink, SinkError,
    SinkOpen, SinkOptions, StatusSignal,
};
use agent_audit_jsonl::{FsyncPolicy, JsonlOptions, JsonlSink, files};
use common::*;

/// The JSONL sink, its first write held until `open` is called.
struct Held {
    inner: JsonlSink,
    gate: Arc<(Mutex<bool>, Condvar)>,
    largest: Arc<Mutex<usize>>,
    entered: Arc<AtomicBool>,
}

fn open(gate: &(Mutex<bool>, Condvar)) {
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

impl Sink for Held {
    fn max_level(&self) -> AckLevel {
        self.inner.max_level()
    }
    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        self.inner.open()
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        self.entered.store(true, Ordering::SeqCst);
        let mut open = self.gate.0.lock().unwrap();
        while !*open {
            open = self.gate.1.wait(open).unwrap();
        }
        drop(open);
        let mut largest = self.largest.lock().unwrap();
        *largest = (*largest).max(batch.records.len());
        drop(largest);
        self.inner.write(batch)
    }
    fn tick(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.inner.tick()
    }
    fn tick_interval(&self) -> Option<Duration> {
        self.inner.tick_interval()
    }
    fn linger(&self) -> Option<Duration> {
        self.inner.linger()
    }
    fn max_batch(&self) -> Option<usize> {
        self.inner.max_batch()
    }
    fn watch_shutdown(&mut self, signal: ShutdownSignal) {
        self.inner.watch_shutdown(signal)
    }
    fn watch_status(&mut self, status: StatusSignal) {
        self.inner.watch_status(status)
    }
    fn take_notices(&mut self) -> Vec<String> {
        self.inner.take_notices()
    }
    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.inner.close()
    }
}

type Gate = Arc<(Mutex<bool>, Condvar)>;

struct Handles {
    gate: Gate,
    largest: Arc<Mutex<usize>>,
    entered: Arc<AtomicBool>,
}

fn held(opts: JsonlOptions) -> (Held, Handles) {
    let h = Handles {
        gate: Arc::default(),
        largest: Arc::new(Mutex::new(0)),
        entered: Arc::default(),
    };
    let sink = Held {
        inner: JsonlSink::new(opts).unwrap(),
        gate: h.gate.clone(),
        largest: h.largest.clone(),
        entered: h.entered.clone(),
    };
    (sink, h)
}

/// Emits `n` big records, the first alone in the held write and the rest
/// queued behind it, so that the next batch is all of them.
async fn emit_behind_held_write(a: &Auditor, h: &Handles, n: u64) -> Vec<u64> {
    let mut seqs = vec![a.emit(EventType::ToolCall, &big(0)).await.unwrap().seq];
    while !h.entered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for i in 1..n {
        seqs.push(a.emit(EventType::ToolCall, &big(i)).await.unwrap().seq);
    }
    seqs
}

/// The peak resident set of this process so far, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn big(i: u64) -> serde_json::Value {
    serde_json::json!({"i": i, "blob": "x".repeat(8000)})
}

const RECORDS: u64 = 4000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_record_queue_taken_in_one_batch_is_written_in_chunks_not_one_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let opts = JsonlOptions::new(&path)
        .fsync(FsyncPolicy::Batch)
        .rotate_bytes(4 << 20);
    let (sink, h) = held(opts);
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(1_000_000), sink)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    // About 32 MiB of records queued behind the held first write.
    let seqs = emit_behind_held_write(&a, &h, RECORDS).await;
    let before = peak_rss_kib();
    open(&h.gate);
    for seq in &seqs {
        let r = d.wait(*seq, AckLevel::Durable).await.unwrap();
        assert_eq!(r.level, AckLevel::Durable);
    }
    let after = peak_rss_kib();
    let report = d.shutdown(SHUTDOWN).await;
    assert!(report.is_clean(), "{report}");
    let largest = *h.largest.lock().unwrap();
    assert!(
        largest as u64 >= RECORDS - 1,
        "the queue was taken in one batch: largest {largest}"
    );
    // The batch's lines (about 32 MiB) went out in 128 KiB chunks: writing
    // it raised the peak by far less than its size.
    let grew = after.saturating_sub(before);
    println!("one batch of {largest} 8 KB records: peak RSS {before} -> {after} KiB");
    assert!(
        grew < 16 << 10,
        "writing one batch raised the peak by {grew} KiB"
    );
    let lines = log_records(&path);
    assert_eq!(lines.len() as u64, RECORDS);
    assert_chain(&lines);
    for f in files::list(&path).unwrap() {
        assert!(std::fs::metadata(&f.path).unwrap().len() <= 4 << 20);
    }
}

/// A small tmpfs that fills part way through a batch.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("mount not runnable: {e}"));
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (this test runs as root, like the fault tests): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filling_mid_batch_after_rotations_leaves_whole_lines_and_honest_receipts() {
    let disk = SmallDisk::mount(1 << 20);
    let path = disk.dir.path().join("audit-log.jsonl");
    let opts = JsonlOptions::new(&path)
        .fsync(FsyncPolicy::Batch)
        .rotate_bytes(200_000);
    let (sink, h) = held(opts);
    let witness = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(1_000_000), sink)
        .sink(SinkOptions::new("witness"), witness.clone())
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    // About 3.2 MB for a 1 MiB disk.
    let seqs = emit_behind_held_write(&a, &h, 400).await;
    open(&h.gate);
    let (mut held_seqs, mut failed_seqs) = (BTreeSet::new(), BTreeSet::new());
    for seq in &seqs {
        match d.wait(*seq, AckLevel::Written).await {
            Ok(r) if r.failed.is_empty() => {
                held_seqs.insert(*seq);
            }
            _ => {
                failed_seqs.insert(*seq);
            }
        }
    }
    // Anything after the failure: the required sink is broken.
    let report = d.shutdown(SHUTDOWN).await;
    assert!(*h.largest.lock().unwrap() >= 399);
    assert!(
        !failed_seqs.is_empty(),
        "the disk should have filled: {report}"
    );
    assert!(
        !held_seqs.is_empty(),
        "lines committed at a rotation before the disk filled are held: {report}"
    );
    // Whole lines only, one chain, exactly the records receipted as held.
    let lines = log_records(&path);
    assert_chain(&lines);
    let in_file: BTreeSet<u64> = lines.iter().map(|l| l.record.seq).collect();
    assert_eq!(in_file, held_seqs, "{report}");
    // Every record not held is named in a sink_failed gap record.
    let mut named = BTreeSet::new();
    for r in witness.records() {
        let p = r.payload_value();
        if r.event_type == EventType::AuditGap && p["reason"] == "sink_failed" {
            for range in p["ranges"].as_array().unwrap() {
                named.extend(range[0].as_u64().unwrap()..=range[1].as_u64().unwrap());
            }
        }
    }
    assert!(
        failed_seqs.is_subset(&named),
        "{failed_seqs:?} vs {named:?}"
    );
    // The disk really is full, not just our files: nothing more fits.
    let probe = std::fs::File::create(disk.dir.path().join("probe"))
        .and_then(|mut f| f.write_all(&vec![0u8; 1 << 20]));
    assert!(probe.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fsync_every_a_huge_queue_is_not_one_batch_holding_every_receipt() {
    // A tmpfs, so that 5,000 syncs cost nothing on a shared disk.
    let disk = SmallDisk::mount(64 << 20);
    let path = disk.dir.path().join("audit-log.jsonl");
    let opts = JsonlOptions::new(&path).fsync(FsyncPolicy::Every);
    let (sink, h) = held(opts);
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(1_000_000), sink)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    let mut seqs = vec![
        a.emit(EventType::ToolCall, &tool_call(0))
            .await
            .unwrap()
            .seq,
    ];
    while !h.entered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for i in 1..5000 {
        seqs.push(
            a.emit(EventType::ToolCall, &tool_call(i))
                .await
                .unwrap()
                .seq,
        );
    }
    open(&h.gate);
    for seq in &seqs {
        let r = d.wait(*seq, AckLevel::Durable).await.unwrap();
        assert_eq!(r.level, AckLevel::Durable);
    }
    let report = d.shutdown(SHUTDOWN).await;
    assert!(report.is_clean(), "{report}");
    // Each line is synced alone, and a batch is acknowledged at its end:
    // the default batch (4096) bounds how long the first waits.
    let largest = *h.largest.lock().unwrap();
    assert!(
        largest <= 4096,
        "one batch of {largest} under fsync = every"
    );
    let lines = log_records(&path);
    assert_eq!(lines.len(), 5000);
    assert_chain(&lines);
}
