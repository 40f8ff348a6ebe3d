//! Reusing records (the dispatcher's `recycle`) must keep memory bounded:
//! a burst of huge records leaves nothing huge behind, a thread's stash of
//! body buffers goes with the thread, and neither a dispatcher dropped nor
//! one shut down keeps the records it reused.
//!
//! Live heap bytes are counted by a global allocator wrapping the system's
//! (the only precise measure: glibc keeps freed memory mapped, so resident
//! size lags what is live); VmRSS is read and printed beside it. The tests
//! of this binary run one at a time (`SERIAL`), since the count is global.

#![allow(unsafe_code)] // the counting allocator below, and nothing else

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::{
    AckLevel, AsyncSink, Auditor, Batch, Dispatcher, PayloadFilter, Sink, SinkError, SinkOptions,
};
use serde_json::json;

/// The system allocator, counting the bytes it holds for the program.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the count is a
// side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// One test at a time: the count is the whole program's.
static SERIAL: Mutex<()> = Mutex::new(());

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set size in KiB, from /proc (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

const MIB: isize = 1 << 20;

/// Takes every record and keeps none: each is free for reuse at once.
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: &Batch<'_>) -> Result<AckLevel, SinkError> {
        Ok(AckLevel::Written)
    }

    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
}

/// Holds every write until opened: its queue fills up, so that a queue's
/// worth of records is out at once.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn close(&self) {
        *self.0.0.lock().unwrap() = false;
    }

    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
}

impl Sink for Gate {
    fn write(&mut self, _: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
        Ok(AckLevel::Written)
    }

    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
}

/// The async twin of [`Discard`].
struct AsyncDiscard;

#[async_trait::async_trait]
impl AsyncSink for AsyncDiscard {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }

    async fn write(&self, _: &Batch<'_>) -> Result<AckLevel, SinkError> {
        Ok(AckLevel::Written)
    }
}

/// A filter that fires on every payload holding `secret`: the emitter
/// serialises such a payload twice and lets go of the first body into its
/// stash (the second is the one recorded).
struct MaskSecrets;

impl PayloadFilter for MaskSecrets {
    fn apply(&self, payload: &mut serde_json::Value) -> Vec<String> {
        if let Some(m) = payload.as_object_mut() {
            m.remove("secret");
        }
        vec!["mask".into()]
    }

    fn may_apply(&self, payload_json: &str) -> bool {
        payload_json.contains("secret")
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `test` on a runtime of its own, one such test at a time.
fn alone(test: impl std::future::Future<Output = ()>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    runtime(2).block_on(test);
}

/// Emits `n` records of `payload` from a task of their own while `gate`
/// holds the first sink's writes, until its queue is full, then opens the
/// gate and waits for the emits: a queue's worth of records is out at once.
/// Returns the live bytes with the queue full.
async fn through_a_full_queue(
    d: &Dispatcher,
    gate: &Gate,
    queue: usize,
    n: usize,
    payload: serde_json::Value,
) -> isize {
    gate.close();
    let a = Auditor::new(d.clone()).for_request(Some("burst"));
    let emits = tokio::spawn(async move {
        for _ in 0..n {
            a.emit("burst", &payload).await.unwrap();
        }
    });
    while (d.health().sinks[0].queued as usize) < queue && !emits.is_finished() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let full = live();
    gate.open();
    emits.await.unwrap();
    full
}

#[test]
fn a_burst_of_huge_records_leaves_nothing_huge_behind() {
    alone(async {
        let queue = 64;
        let gate = Gate::default();
        let d = Dispatcher::builder()
            .max_record_bytes(4 << 20)
            .filter(Arc::new(MaskSecrets))
            .sink(SinkOptions::new("gated").queue(queue), gate.clone())
            .async_sink(SinkOptions::new("async").queue(queue), AsyncDiscard)
            .start()
            .await
            .unwrap();
        let a = Auditor::new(d.clone()).for_request(Some("r"));
        let small = json!({"tool": "get_account_balance", "n": 1});
        // Plain, then redacted: the unredacted body of a redacted record
        // is let go into the emitting thread's stash.
        for (kind, secret) in [("plain", false), ("redacted", true)] {
            let (live0, rss0) = (live(), rss_kib());
            let mut huge = json!({"blob": "x".repeat(1 << 20)});
            if secret {
                huge["secret"] = json!("s");
            }
            through_a_full_queue(&d, &gate, queue, 3 * queue, huge).await;
            let rss_peak = rss_kib();
            // Written everywhere: every huge record is back with a sink's
            // worker or in the emitter's spares.
            a.emit_wait("drained", &small, AckLevel::Written)
                .await
                .unwrap();
            let live_drained = live();
            for i in 0..20_000u64 {
                a.emit("small", &json!({"n": i})).await.unwrap();
            }
            a.emit_wait("last", &small, AckLevel::Written)
                .await
                .unwrap();
            let (live1, rss1) = (live(), rss_kib());
            eprintln!(
                "huge burst, {kind} (queue {queue}, 1 MiB records): live {:+} KiB once drained, {:+} KiB after 20,000 small; VmRSS {rss0} -> {rss_peak} -> {rss1} KiB",
                (live_drained - live0) / 1024,
                (live1 - live0) / 1024,
            );
            for (when, l) in [("drained", live_drained), ("after the small ones", live1)] {
                assert!(
                    l - live0 < 4 * MIB,
                    "{kind}: {} KiB still live {when} (a queue of huge records is {} KiB)",
                    (l - live0) / 1024,
                    queue * 1024
                );
            }
            // Resident size follows the plain burst: glibc unmaps the
            // first chunks this large. After the redacted burst it keeps
            // freed heap resident (so it did without reuse: 101 MiB, where
            // reuse left 74), which says nothing of what is live.
            if !secret {
                assert!(
                    rss1.saturating_sub(rss0) < (queue as u64 / 2) * 1024,
                    "VmRSS {rss0} -> {rss1} KiB"
                );
            }
        }
        assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
    });
}

/// A reused body buffer keeps the size of the record it was grown for: a
/// queue of small records filled in right after a queue of 3.7 KiB ones
/// must not be held in 3.7 KiB buffers (it was: 33 MiB for a queue of
/// 4096 records of 0.4 KiB, against 3.8 MiB without reuse).
#[test]
fn small_records_after_big_ones_are_held_in_small_buffers() {
    alone(async {
        let live0 = live();
        let queue = 4096;
        let gate = Gate::default();
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("gated").queue(queue), gate.clone())
            .start()
            .await
            .unwrap();
        let big = json!({"big": "b".repeat(3700)});
        let small = json!({"small": "s".repeat(300)});
        let full_of_big = through_a_full_queue(&d, &gate, queue, 2 * queue, big).await;
        // Every big record written and handed back before the small ones
        // come: the worker hands back just after it answers.
        Auditor::new(d.clone())
            .emit_wait("settle", &json!({}), AckLevel::Written)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let full_of_small = through_a_full_queue(&d, &gate, queue, 2 * queue, small).await;
        eprintln!(
            "a full queue ({queue}) of 3.7 KiB records: live {:+} KiB; then of 0.4 KiB records: {:+} KiB",
            (full_of_big - live0) / 1024,
            (full_of_small - live0) / 1024
        );
        // 3 KiB a small record, buffer and queue slot included, where a
        // big one's buffer alone is 4 to 8 KiB.
        assert!(
            full_of_small - live0 < queue as isize * 3 * 1024,
            "{} KiB for a queue of small records",
            (full_of_small - live0) / 1024
        );
        assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
    });
}

#[test]
fn many_dispatchers_leave_nothing_behind() {
    alone(async {
        let payload = json!({"pad": "p".repeat(3000)});
        let mut after = Vec::new();
        for _ in 0..30 {
            let d = Dispatcher::builder()
                .sink(SinkOptions::new("sync").queue(512), Discard)
                .async_sink(SinkOptions::new("async").queue(256), AsyncDiscard)
                .start()
                .await
                .unwrap();
            let a = Auditor::new(d.clone()).with_user("u");
            for _ in 0..2_000 {
                a.emit("r", &payload).await.unwrap();
            }
            assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
            drop((a, d));
            // The worker threads end after shutdown returned: give them
            // a moment to let go of their slots.
            tokio::time::sleep(Duration::from_millis(20)).await;
            after.push(live());
        }
        eprintln!(
            "many dispatchers: live after 5: {} KiB, after 30: {} KiB",
            after[4] / 1024,
            after[29] / 1024
        );
        assert!(after[29] - after[4] < MIB / 2, "{after:?}");
    });
}

#[test]
fn what_a_dispatcher_reuses_goes_with_it() {
    alone(async {
        let live0 = live();
        let queue = 4096;
        let gate = Gate::default();
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("gated").queue(queue), gate.clone())
            .async_sink(SinkOptions::new("async").queue(queue), AsyncDiscard)
            .start()
            .await
            .unwrap();
        let payload = json!({"pad": "p".repeat(3000)});
        through_a_full_queue(&d, &gate, queue, 3 * queue, payload).await;
        let a = Auditor::new(d.clone());
        a.emit_wait("last", &json!({}), AckLevel::Written)
            .await
            .unwrap();
        let live1 = live();
        assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let live2 = live();
        drop((a, d));
        // The workers and their slots are gone once the threads ended.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let live3 = live();
        eprintln!(
            "a queue's worth out at once (queue {queue}): live {:+} KiB before shutdown, {:+} KiB after with a handle kept, {:+} KiB once dropped",
            (live1 - live0) / 1024,
            (live2 - live0) / 1024,
            (live3 - live0) / 1024
        );
        assert!(live3 - live0 < MIB / 4, "{} KiB", (live3 - live0) / 1024);
        // A handle kept after shutdown keeps no queue's worth of records
        // (3 KB each: 12 MiB a sink).
        assert!(
            live2 - live0 < 2 * MIB,
            "{} KiB held by a shut-down dispatcher",
            (live2 - live0) / 1024
        );
    });
}

#[test]
fn a_threads_stash_goes_with_the_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime(2);
    let d = rt.block_on(async {
        Dispatcher::builder()
            .sink(SinkOptions::new("sync").queue(64), Discard)
            .start()
            .await
            .unwrap()
    });
    let payload = Arc::new(json!({"pad": "p".repeat(3000)}));
    let live0 = live();
    let threads = 32;
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (d, payload, barrier) = (d.clone(), payload.clone(), barrier.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let a = Auditor::new(d);
                    for _ in 0..500 {
                        a.emit("r", &*payload).await.unwrap();
                    }
                });
                drop(rt);
                barrier.wait();
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let live_alive = live();
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
    // Without the dispatcher (which keeps records for reuse), only what
    // the threads left behind is still live.
    rt.block_on(async {
        assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
    });
    drop(d);
    std::thread::sleep(Duration::from_millis(50));
    let live_gone = live();
    eprintln!(
        "stashes: {threads} emitting threads alive {:+} KiB, gone (and the dispatcher) {:+} KiB",
        (live_alive - live0) / 1024,
        (live_gone - live0) / 1024
    );
    assert!(
        live_gone - live0 < MIB / 4,
        "{} KiB",
        (live_gone - live0) / 1024
    );
}
