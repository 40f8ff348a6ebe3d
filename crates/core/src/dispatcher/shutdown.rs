//! Shutdown: stop accepting records, drain every queue with its sink still
//! open, write the last gap records, close the sinks, report; and the
//! bounded drain when the dispatcher is dropped without it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::report::ShutdownReport;
use super::{Dispatcher, Shared, lock};

impl Dispatcher {
    /// Stops accepting records, lets every queue drain with its sink still
    /// open, writes gap records for everything dropped or failed (during
    /// the drain too) to the surviving sinks, closes them and reports per
    /// sink what happened; all within `timeout`, of which the last tenth
    /// is kept for those final gap records when a sink is stuck.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        // Hooks still emit (a final signed checkpoint, say), so they run
        // before the dispatcher closes.
        let hooks = std::mem::take(&mut *lock(&self.shared.before_shutdown));
        for hook in hooks {
            hook().await;
        }
        let deadline = Instant::now() + timeout;
        let drain_until = deadline - timeout / 10;
        let shared = &self.shared;
        // A sink retrying a batch it took before now learns the deadline
        // at once (the queue's deadline only reaches later batches). It is
        // the end of the drain, not of the shutdown: a batch given up then
        // is named in an audit_gap record in the surviving sinks, which the
        // last tenth is kept for. A lingering worker sends what it holds now.
        for s in &shared.sinks {
            s.shutdown.set(drain_until);
            s.queue.wake_worker();
        }
        // A timer thread wakes us at the deadline even if a sink is stuck in
        // a write, so shutdown never outlives its deadline by much.
        let wake = Arc::new(Notify::new());
        let drain_wake = Arc::new(Notify::new());
        {
            let (wake, drain_wake) = (wake.clone(), drain_wake.clone());
            std::thread::spawn(move || {
                std::thread::sleep(timeout - timeout / 10);
                drain_wake.notify_one();
                std::thread::sleep(timeout / 10 + Duration::from_millis(50));
                wake.notify_one();
            });
        }
        // Set before taking the order lock: an emitter waiting for room in
        // a stalled sink's queue (`block`) is released by this and returns
        // `Closed`, so shutdown cannot deadlock on it.
        let first = !shared.closed.swap(true, Ordering::AcqRel);
        for s in &shared.sinks {
            s.queue.room.notify_waiters();
        }
        drop(lock(&shared.order));
        if first {
            // Drain while the sinks are still open, so that failures and
            // drops during the drain become audit_gap records in the
            // surviving sinks below, like any other.
            for s in &shared.sinks {
                wait_until(&s.progress, &drain_wake, drain_until, || {
                    s.marks.is_drained() || s.finished.is_set()
                })
                .await;
            }
        }
        let mut lease_error = None;
        let unnumbered_gaps;
        {
            let mut order = lock(&shared.order);
            if first {
                shared.flush_gaps(&mut order, true);
                // `next_seq` starts at 1 at least.
                let last_used = order.next_seq - 1;
                if let Some(e) = order.lease_error.take() {
                    lease_error = Some(e.to_string());
                }
                if let Some(l) = &mut order.lease
                    && let Err(e) = l.release(last_used)
                {
                    lease_error = Some(e.to_string());
                }
            }
            unnumbered_gaps = order.unnumbered;
            for s in &shared.sinks {
                s.close_queue(Some(deadline));
            }
        }
        for s in &shared.sinks {
            wait_until(&s.progress, &wake, deadline, || s.finished.is_set()).await;
        }
        shared.shut_down.store(true, Ordering::Release);
        // Nothing more is emitted: the records kept for reuse go now, not
        // when the last handle is dropped.
        let spare = std::mem::take(&mut lock(&shared.order).spare);
        drop(spare);
        for s in &shared.sinks {
            s.returned.clear();
        }
        ShutdownReport {
            lease_error,
            unnumbered_gaps,
            sinks: shared.sinks.iter().map(|s| s.report()).collect(),
        }
    }
}

/// Waits until `done()` holds or `deadline` passed. `progress` is notified
/// whenever `done()` may have changed; `alarm` is notified once, by a
/// timer, at the deadline, so that a sink stuck in a write cannot hold the
/// wait past it.
async fn wait_until(
    progress: &Notify,
    alarm: &Notify,
    deadline: Instant,
    mut done: impl FnMut() -> bool,
) {
    loop {
        let notified = progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let woke = alarm.notified();
        tokio::pin!(woke);
        woke.as_mut().enable();
        if done() || Instant::now() >= deadline {
            return;
        }
        tokio::select! {
            _ = notified => {}
            // Passed on: the timer notifies once, and the next sink's wait
            // needs it too.
            _ = woke => alarm.notify_one(),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.shut_down.load(Ordering::Acquire) {
            return;
        }
        let queued: u64 = self.sinks.iter().map(|s| s.queue.len() as u64).sum();
        eprintln!(
            "agent-audit: dispatcher dropped without shutdown(); draining {queued} queued record(s) for up to 5 s"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        for s in &self.sinks {
            s.close_queue(Some(deadline));
        }
        for s in &self.sinks {
            s.finished.wait_blocking(deadline);
        }
    }
}
