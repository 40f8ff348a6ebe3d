//! One sink's part of the dispatcher ([`SinkSlot`]): its options, queue,
//! watermarks, outcomes and counters, shared by the emitters and the
//! sink's worker thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::error::StartError;
use crate::sink::{AckLevel, ShutdownSignal, Sink, SinkError, StatusSignal};

use super::gaps::PendingFail;
use super::lock;
use super::options::SinkOptions;
use super::queue::SinkQueue;
use super::receipt::BadRanges;
use super::recycle::Returned;
use super::watermarks::Watermarks;

pub(super) struct SinkSlot {
    pub(super) options: SinkOptions,
    pub(super) max_level: AckLevel,
    pub(super) queue: SinkQueue,
    pub(super) marks: Watermarks,
    /// Notified whenever a watermark moves, an outcome is noted or the
    /// worker finished: receipts and shutdown wait on it.
    pub(super) progress: Notify,
    pub(super) outcomes: Mutex<Outcomes>,
    pub(super) counts: Counters,
    /// Whether `outcomes` holds drops, failures or notices not yet written
    /// as gap records; read on every emit without locking.
    pub(super) gap_pending: AtomicBool,
    /// Whether `outcomes.broken` is set; read on every emit without
    /// locking.
    pub(super) is_broken: AtomicBool,
    /// Set once the worker closed the sink and ended.
    pub(super) finished: Finished,
    /// The shutdown deadline, shared with the sink (`Sink::watch_shutdown`).
    pub(super) shutdown: ShutdownSignal,
    /// What the sink says it is doing (`Sink::watch_status`).
    pub(super) status: StatusSignal,
    /// Records the worker was the last to hold, for reuse.
    pub(super) returned: Returned,
}

/// What happened to records, under the slot's `outcomes` lock.
#[derive(Default)]
pub(super) struct Outcomes {
    /// Seq ranges that failed or were dropped, oldest first, bounded.
    pub(super) bad: BadRanges,
    /// Dropped seqs not yet named in a `queue_full` gap record.
    pub(super) pending_drop: Vec<(u64, u64)>,
    pub(super) pending_fail: Option<PendingFail>,
    pub(super) last_fail_note: Option<Instant>,
    pub(super) pending_notices: Vec<String>,
    pub(super) notices: u64,
    pub(super) last_notice: Option<String>,
    /// The failure that broke a required sink.
    pub(super) broken: Option<SinkError>,
    pub(super) last_error: Option<String>,
}

/// Records counted by outcome, for health and the shutdown report.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dropped_or_refused: AtomicU64,
    /// In the write under way.
    pub(super) in_flight: AtomicU64,
    /// Records offered to this sink: queued, dropped or refused. The
    /// shutdown report's `undelivered` is what of them has no outcome, so
    /// that the report adds up even when taken while a write is landing.
    pub(super) offered: AtomicU64,
}

/// Whether the worker finished: read at once, or waited for from a thread
/// outside any runtime (dropping the dispatcher). Async waiters wait on
/// the slot's `progress`, which the worker notifies after setting this.
#[derive(Default)]
pub(super) struct Finished {
    done: Mutex<bool>,
    changed: Condvar,
}

impl Finished {
    pub(super) fn is_set(&self) -> bool {
        *lock(&self.done)
    }

    pub(super) fn set(&self) {
        *lock(&self.done) = true;
        self.changed.notify_all();
    }

    /// Blocks until set or until `deadline`.
    pub(super) fn wait_blocking(&self, deadline: Instant) {
        let mut done = lock(&self.done);
        while !*done {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            done = self
                .changed
                .wait_timeout(done, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl SinkSlot {
    /// A slot for a sink reaching `max_level`, run by the sync worker or,
    /// `asynchronous`, by the bridge.
    pub(super) fn new(options: SinkOptions, max_level: AckLevel, asynchronous: bool) -> Arc<Self> {
        Arc::new(SinkSlot {
            max_level,
            queue: SinkQueue::new(options.queue_capacity(), asynchronous),
            returned: Returned::new(options.queue_capacity()),
            options,
            marks: Watermarks::new(),
            progress: Notify::new(),
            outcomes: Mutex::new(Outcomes::default()),
            counts: Counters::default(),
            gap_pending: AtomicBool::new(false),
            is_broken: AtomicBool::new(false),
            finished: Finished::default(),
            shutdown: ShutdownSignal::new(),
            status: StatusSignal::new(),
        })
    }

    /// Hands the sink its signals and starts its worker thread.
    pub(super) fn spawn(
        options: SinkOptions,
        mut sink: Box<dyn Sink>,
    ) -> Result<Arc<SinkSlot>, StartError> {
        let options = options.preferring(sink.max_batch());
        let slot = SinkSlot::new(options, sink.max_level(), false);
        sink.watch_shutdown(slot.shutdown.clone());
        sink.watch_status(slot.status.clone());
        let worker = slot.clone();
        std::thread::Builder::new()
            .name(format!("audit-sink-{}", slot.options.name))
            .spawn(move || worker.run(sink))
            .map_err(|source| StartError::Thread {
                sink: slot.options.name.clone(),
                source,
            })?;
        Ok(slot)
    }

    /// The worker closed the sink and ends: shutdown stops waiting for it.
    pub(super) fn finish(&self) {
        self.finished.set();
        self.progress.notify_waiters();
    }

    /// The failure that broke this (required) sink, if any.
    pub(super) fn broken(&self) -> Option<SinkError> {
        // The flag spares every emit a lock per sink.
        if !self.is_broken.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.outcomes).broken.clone()
    }

    /// Notes the failure that breaks a required sink: emits fail from now.
    pub(super) fn break_with(&self, o: &mut Outcomes, e: SinkError) {
        o.broken = Some(e);
        self.is_broken.store(true, Ordering::Release);
    }
}
