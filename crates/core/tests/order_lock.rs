//! Attacks on the order lock as a plain mutex (issue 15): an emitter that
//! finds a `block` queue full lets go of the lock, waits for room and
//! tries again; gap notes go onto a full `block` queue past its capacity.
//! Real threads (a multi-threaded runtime, one worker thread per sink),
//! in-memory sinks that sleep in their writes, no timing assertions.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, EmitError, EventType, LeaseError, MemoryLease,
    MemorySink, Overflow, Record, SeqLease, Sink, SinkError, SinkOptions,
};
use serde_json::json;

fn seqs(sink: &MemorySink) -> Vec<u64> {
    sink.records().iter().map(|r| r.seq).collect()
}

fn contiguous(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[1] == w[0] + 1)
}

fn gap_ranges(records: &[Arc<Record>], reason: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.event_type == EventType::AuditGap)
    {
        let p = r.payload_value();
        if p["reason"] == reason {
            for range in p["ranges"].as_array().unwrap() {
                out.push((range[0].as_u64().unwrap(), range[1].as_u64().unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_tiny_block_queues_give_every_queue_contiguous_seqs() {
    let slow = MemorySink::new().with_delay(Duration::from_millis(1));
    let fast = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("slow").queue(2), slow.clone())
        .sink(SinkOptions::new("fast").queue(2), fast.clone())
        .start()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let aud = Auditor::new(d.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..150 {
                got.push(
                    aud.emit("burst", &json!({"t": t, "i": i}))
                        .await
                        .unwrap()
                        .seq,
                );
            }
            got
        }));
    }
    let mut receipts = BTreeSet::new();
    for t in tasks {
        let got = t.await.unwrap();
        // Each task's own records are numbered in the order it emitted them.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        receipts.extend(got);
    }
    let report = d.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_clean(), "{report}");
    let all: BTreeSet<u64> = (1..=16 * 150).collect();
    assert_eq!(receipts, all, "receipts name every seq once");
    for s in [&slow, &fast] {
        assert_eq!(seqs(s), all.iter().copied().collect::<Vec<_>>());
    }
}

/// A sink that holds every write until the test opens its gate.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<(Mutex<bool>, Condvar)>,
    records: Arc<Mutex<Vec<Arc<Record>>>>,
    entered: Arc<AtomicU64>,
}

impl Gate {
    fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }
    fn seqs(&self) -> Vec<u64> {
        self.records.lock().unwrap().iter().map(|r| r.seq).collect()
    }
}

impl Sink for Gate {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.0.lock().unwrap();
        while !*open {
            open = self.open.1.wait(open).unwrap();
        }
        drop(open);
        self.records
            .lock()
            .unwrap()
            .extend(batch.records.iter().cloned());
        Ok(AckLevel::Written)
    }
}

/// The name of the runtime threads whose CPU time a test reads.
const WAITING_RT: &str = "waitroom-rt";

/// CPU time (user + system) of this process's threads named `name` so far:
/// other tests run in the same process at the same time.
fn cpu_time(name: &str) -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        // utime and stime, fields 14 and 15; 12 and 13 after the name.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    // Linux reports USER_HZ = 100 ticks a second.
    Duration::from_millis(ticks * 10)
}

#[test]
fn emitters_waiting_for_room_sleep_and_return_closed_at_shutdown_using_no_seq() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name(WAITING_RT)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(waiting_emitters_sleep_and_return_closed());
}

async fn waiting_emitters_sleep_and_return_closed() {
    let gate = Gate::default();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("stalled").queue(1).max_batch(1),
            gate.clone(),
        )
        .start()
        .await
        .unwrap();
    let aud = Auditor::new(d.clone());
    // One record in the stalled write, one filling the queue.
    aud.emit("first", &json!({})).await.unwrap();
    while gate.entered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    aud.emit("second", &json!({})).await.unwrap();
    let mut waiting = Vec::new();
    for i in 0..8 {
        let aud = aud.clone();
        waiting.push(tokio::spawn(async move {
            aud.emit("waits", &json!({"i": i})).await
        }));
    }
    // While the queue stays full, the eight wait without burning CPU: a
    // busy loop would spend about all of the four worker threads.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = cpu_time(WAITING_RT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spent = cpu_time(WAITING_RT) - before;
    assert!(
        spent < Duration::from_millis(250),
        "emitters waiting for room spent {spent:?} of CPU in 500 ms"
    );
    assert_eq!(d.next_seq().await, 3, "no seq is used while waiting");
    let shutdown = {
        let d = d.clone();
        tokio::spawn(async move { d.shutdown(Duration::from_secs(2)).await })
    };
    for w in waiting {
        assert!(matches!(w.await.unwrap(), Err(EmitError::Closed)));
    }
    gate.open();
    let report = shutdown.await.unwrap();
    assert!(report.sinks[0].finished, "{report}");
    let got = gate.seqs();
    assert!(contiguous(&got), "{got:?}");
    assert_eq!(&got[..2], &[1, 2]);
    // Whatever follows is the dispatcher's own (none expected, none
    // numbered for the waiters).
    assert!(got.len() == 2, "{got:?}");
}

/// A sink whose every tick reports a notice: an `audit_gap` record is due
/// about it at every emit, whatever the other sinks do.
struct Chatty;

impl Sink for Chatty {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
    fn write(&mut self, _batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        Ok(AckLevel::Written)
    }
    fn tick(&mut self) -> Result<Option<AckLevel>, SinkError> {
        Ok(None)
    }
    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(1))
    }
    fn take_notices(&mut self) -> Vec<String> {
        vec![String::from("worked around something")]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gap_notes_cannot_grow_a_full_block_queue_without_bound() {
    let slow = MemorySink::new().with_delay(Duration::from_millis(20));
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("slow").queue(4).max_batch(1), slow.clone())
        .sink(SinkOptions::new("chatty").required(false), Chatty)
        .start()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let aud = Auditor::new(d.clone());
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if aud.emit("burst", &json!({})).await.is_err() {
                    break;
                }
            }
        }));
    }
    let mut most = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        most = most.max(d.health().sinks[0].queued);
    }
    stop.store(true, Ordering::Relaxed);
    let report = d.shutdown(Duration::from_secs(5)).await;
    for t in tasks {
        t.await.unwrap();
    }
    println!("slow block queue (capacity 4): at most {most} queued");
    // Gap notes take room like records: never past the capacity.
    assert!(most <= 4, "a block queue of 4 held {most}: {report}");
    // And every notice is still written, in seq order, at the latest at
    // shutdown.
    let got = seqs(&slow);
    assert!(contiguous(&got) && got.first() == Some(&1), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_policies_number_every_gap_record_in_order_and_name_every_loss() {
    let block = MemorySink::new().with_delay(Duration::from_millis(1));
    let drop = MemorySink::new().with_delay(Duration::from_millis(3));
    let closed = MemorySink::new().with_delay(Duration::from_millis(2));
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("block").queue(2), block.clone())
        .sink(
            SinkOptions::new("drop")
                .queue(2)
                .overflow(Overflow::DropNewest)
                .required(false),
            drop.clone(),
        )
        .sink(
            SinkOptions::new("closed")
                .queue(2)
                .overflow(Overflow::FailClosed)
                .required(false),
            closed.clone(),
        )
        .start()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let aud = Auditor::new(d.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (Vec::new(), 0u64);
            for i in 0..200 {
                match aud.emit("burst", &json!({"t": t, "i": i})).await {
                    Ok(r) => ok.push(r.seq),
                    Err(EmitError::QueueFull { .. }) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (ok, refused)
        }));
    }
    let mut accepted = BTreeSet::new();
    let mut refused = 0;
    for t in tasks {
        let (ok, r) = t.await.unwrap();
        accepted.extend(ok);
        refused += r;
    }
    let report = d.shutdown(Duration::from_secs(30)).await;
    // The block sink holds every seq ever given, gap records included,
    // in order and without a hole.
    let all = seqs(&block);
    assert!(contiguous(&all), "block sink: {all:?}");
    assert_eq!(all.first(), Some(&1));
    let user: BTreeSet<u64> = block
        .records()
        .iter()
        .filter(|r| r.event_type.as_str() == "burst")
        .map(|r| r.seq)
        .collect();
    assert_eq!(user, accepted, "refused emits use no seq");
    assert_eq!(accepted.len() as u64 + refused, 8 * 200);
    // Every seq the other two lack is named in a queue_full gap record
    // (written to the block sink, which gets all of them).
    let named = gap_ranges(&block.records(), "queue_full");
    for (name, sink) in [("drop", &drop), ("closed", &closed)] {
        let got = seqs(sink);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{name}: {got:?}");
        let have: BTreeSet<u64> = got.into_iter().collect();
        for s in &all {
            if !have.contains(s) {
                assert!(
                    named.iter().any(|(a, b)| a <= s && s <= b),
                    "{name} lacks seq {s}, named in no gap record; {report}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emitter_waiting_for_room_is_not_starved_by_others() {
    let slow = MemorySink::new().with_delay(Duration::from_millis(2));
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("slow").queue(2).max_batch(1), slow.clone())
        .start()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut hogs = Vec::new();
    for _ in 0..8 {
        let aud = Auditor::new(d.clone());
        let stop = stop.clone();
        hogs.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                aud.emit("hog", &json!({})).await.unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let aud = Auditor::new(d.clone());
    let mut overtaken = Vec::new();
    for _ in 0..20 {
        let before = d.next_seq().await;
        let seq = aud.emit("victim", &json!({})).await.unwrap().seq;
        overtaken.push(seq - before);
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.await.unwrap();
    }
    let report = d.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_clean(), "{report}");
    assert!(contiguous(&seqs(&slow)));
    overtaken.sort_unstable();
    println!(
        "records numbered ahead of a waiting emitter (8 others): median {}, max {}",
        overtaken[overtaken.len() / 2],
        overtaken[overtaken.len() - 1]
    );
}

/// A lease store that panics once, on its `panic_at`-th store.
struct PanickingLease {
    inner: MemoryLease,
    stores: AtomicU64,
    panic_at: u64,
}

impl SeqLease for PanickingLease {
    fn load(&self) -> Result<Option<u64>, LeaseError> {
        self.inner.load()
    }
    fn store(&self, upto: u64) -> Result<(), LeaseError> {
        if self.stores.fetch_add(1, Ordering::SeqCst) + 1 == self.panic_at {
            panic!("lease store panicked");
        }
        self.inner.store(upto)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_under_the_order_lock_leaves_numbering_whole() {
    let sink = MemorySink::new();
    let lease = Arc::new(PanickingLease {
        inner: MemoryLease::new(),
        stores: AtomicU64::new(0),
        panic_at: 3,
    });
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory").queue(4), sink.clone())
        .seq_lease(lease.clone())
        .lease_block(4)
        .start()
        .await
        .unwrap();
    let mut panicked = 0;
    let mut ok = BTreeSet::new();
    for i in 0..40 {
        let aud = Auditor::new(d.clone());
        // Each emit in a task of its own, so that the panic ends only it.
        match tokio::spawn(async move { aud.emit("n", &json!({"i": i})).await }).await {
            Ok(r) => {
                ok.insert(r.unwrap().seq);
            }
            Err(e) if e.is_panic() => panicked += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(panicked, 1, "the lease store panics once");
    let report = d.shutdown(Duration::from_secs(10)).await;
    let got = seqs(&sink);
    assert!(contiguous(&got), "{got:?}");
    assert_eq!(got.first(), Some(&1));
    let all: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(all, ok, "every record held was receipted: {report}");
    assert_eq!(ok.len(), 39);
    // The lease is still ahead of or at every seq used.
    assert!(lease.inner.load().unwrap().unwrap() >= *got.last().unwrap());
}
