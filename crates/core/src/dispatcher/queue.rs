//! One sink's bounded queue: emitters push stamped records in seq order
//! (waiting for room under `block`), its worker takes them in batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::record::Record;

use super::lock;
use super::slot::SinkSlot;
use super::watermarks::Watermarks;

/// The queue and the two ways of waiting on it.
pub(super) struct SinkQueue {
    /// Capacity in records.
    capacity: usize,
    state: Mutex<QueueState>,
    /// Wakes the worker, which sleeps on it when the queue is empty or
    /// while it lingers for a fuller batch.
    not_empty: Condvar,
    /// Wakes emitters waiting for room (`block`).
    pub(super) room: Notify,
    /// Whether the worker is the async bridge, which waits on `wake`
    /// rather than on `not_empty` (it must go on polling the writes under
    /// way meanwhile).
    asynchronous: bool,
    wake: Notify,
}

pub(super) struct QueueState {
    pub(super) items: VecDeque<Arc<Record>>,
    /// Set by shutdown: nothing more is queued, the worker drains and ends.
    pub(super) closing: bool,
    /// When the worker gives up on what is left.
    pub(super) deadline: Option<Instant>,
    /// Whether the worker waits on `not_empty`, so that a push wakes it
    /// only then.
    worker_sleeping: bool,
}

impl QueueState {
    /// The async worker is about to wait on [`SinkQueue::woken`]: the next
    /// push wakes it.
    pub(super) fn worker_waits(&mut self) {
        self.worker_sleeping = true;
    }
}

impl SinkQueue {
    pub(super) fn new(capacity: usize, asynchronous: bool) -> SinkQueue {
        SinkQueue {
            capacity,
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity.min(1 << 16)),
                closing: false,
                deadline: None,
                worker_sleeping: false,
            }),
            not_empty: Condvar::new(),
            room: Notify::new(),
            asynchronous,
            wake: Notify::new(),
        }
    }

    /// Wakes the worker, whichever way it waits.
    fn notify_worker(&self) {
        if self.asynchronous {
            self.wake.notify_one();
        } else {
            self.not_empty.notify_one();
        }
    }

    /// Resolves when a push, shutdown or close wakes the async worker
    /// (at once if one did since it last waited: the wake is stored).
    pub(super) async fn woken(&self) {
        self.wake.notified().await
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, QueueState> {
        lock(&self.state)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub(super) fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Queues `record`; `force` ignores capacity. Gives the record back
    /// when the queue is closing or full.
    fn push(
        &self,
        record: Arc<Record>,
        force: bool,
        marks: &Watermarks,
    ) -> Result<(), Arc<Record>> {
        let mut q = self.lock();
        if q.closing || (!force && q.items.len() >= self.capacity) {
            return Err(record);
        }
        // Under the lock: the worker cannot take (and finish) the record
        // before it counts as pushed.
        marks.note_pushed(record.seq);
        q.items.push_back(record);
        let wake = std::mem::replace(&mut q.worker_sleeping, false);
        // Waking after unlocking spares the worker blocking on the lock it
        // was just woken to take.
        drop(q);
        if wake {
            self.notify_worker();
        }
        Ok(())
    }

    /// The worker sleeps on the queue for up to `wait`, or until woken.
    pub(super) fn sleep<'a>(
        &self,
        mut q: MutexGuard<'a, QueueState>,
        wait: Duration,
    ) -> MutexGuard<'a, QueueState> {
        q.worker_sleeping = true;
        let mut q = self
            .not_empty
            .wait_timeout(q, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
        q.worker_sleeping = false;
        q
    }

    /// Wakes the worker, so that it looks again at what changed (the
    /// shutdown deadline).
    pub(super) fn wake_worker(&self) {
        let _q = self.lock();
        self.notify_worker();
    }

    /// Closes the queue: the worker drains it (until `deadline`) and ends;
    /// emitters waiting for room are released.
    fn close(&self, deadline: Option<Instant>) {
        let mut q = self.lock();
        q.closing = true;
        q.deadline = deadline;
        self.notify_worker();
        drop(q);
        self.room.notify_waiters();
    }

    /// Waits until the queue has room, it closes, or `closed` (the
    /// dispatcher is shutting down) is set.
    pub(super) async fn wait_for_room(&self, closed: &AtomicBool) {
        // Registering with `room` costs a lock of its own; a queue with room
        // needs none of it.
        if !self.is_full() {
            return;
        }
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let q = self.lock();
                if q.items.len() < self.capacity || q.closing || closed.load(Ordering::Acquire) {
                    return;
                }
            }
            notified.await;
        }
    }
}

impl SinkSlot {
    /// Queues a record; `force` ignores capacity. Returns false when the
    /// record was dropped (and noted for a gap record).
    pub(super) fn push(&self, record: Arc<Record>, force: bool) -> bool {
        self.counts.offered.fetch_add(1, Ordering::Relaxed);
        let seq = record.seq;
        match self.queue.push(record, force, &self.marks) {
            Ok(()) => true,
            Err(_) => {
                self.note_drop(seq);
                false
            }
        }
    }

    /// Closes the queue, telling the sink the deadline first.
    pub(super) fn close_queue(&self, deadline: Option<Instant>) {
        if let Some(d) = deadline {
            self.shutdown.set(d);
        }
        self.queue.close(deadline);
    }
}
