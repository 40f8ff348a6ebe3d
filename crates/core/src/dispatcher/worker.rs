//! The worker: one thread per sink takes batches from its queue, hands
//! them to [`Sink::write`], moves the watermarks by the answer, ticks an
//! idle sink, and closes it at the end.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::sink::{AckLevel, Batch, FailureKind, Sink, SinkError};

use super::lock;
use super::receipt::{DeliveryError, push_bad};
use super::slot::SinkSlot;

/// A write that fails with [`FailureKind::Transient`], the sink holding
/// none of its batch, is tried again up to this many times, waiting
/// [`FIRST_BACKOFF`] and then twice as long each time (50, 100, 200 ms),
/// never past the shutdown deadline; only then does the failure count (and
/// break a required sink).
pub(super) const TRANSIENT_RETRIES: u32 = 3;

/// The wait before the first retry of a transient failure.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(50);

impl SinkSlot {
    /// The worker thread's body.
    pub(super) fn run(self: Arc<Self>, mut sink: Box<dyn Sink>) {
        let tick_every = sink.tick_interval();
        let linger = sink.linger().filter(|l| !l.is_zero());
        // A batch larger than the queue can never fill: lingering for it
        // would only hold blocked emitters back.
        let fill = self
            .options
            .batch_limit()
            .min(self.options.queue_capacity());
        let mut last_tick = Instant::now();
        // A batch never holds more than the queue did, so its capacity is
        // `fill`: a huge `max_batch` from a sink must not become one huge
        // allocation up front.
        let mut batch: Vec<Arc<Record>> = Vec::with_capacity(fill);
        loop {
            let deadline;
            {
                let mut q = self.queue.lock();
                loop {
                    if !q.items.is_empty() || q.closing {
                        break;
                    }
                    let wait = tick_every
                        .map(|t| t.saturating_sub(last_tick.elapsed()))
                        .unwrap_or(Duration::from_secs(3600));
                    if wait.is_zero() {
                        break;
                    }
                    q = self.queue.sleep(q, wait);
                }
                if let Some(linger) = linger {
                    let until = Instant::now() + linger;
                    while !q.closing
                        && !q.items.is_empty()
                        && q.items.len() < fill
                        && self.shutdown.deadline().is_none()
                    {
                        let now = Instant::now();
                        if now >= until {
                            break;
                        }
                        q = self.queue.sleep(q, until - now);
                    }
                }
                let n = q.items.len().min(self.options.batch_limit());
                batch.extend(q.items.drain(..n));
                deadline = q.deadline;
                if batch.is_empty() && q.closing {
                    break;
                }
            }
            self.queue.room.notify_waiters();
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                let left = batch.len() as u64 + self.queue.lock().items.drain(..).count() as u64;
                let mut o = lock(&self.outcomes);
                if let (Some(first), true) = (batch.first(), left > 0) {
                    push_bad(&mut o.bad, first.seq, u64::MAX, DeliveryError::Abandoned);
                }
                drop(o);
                batch.clear();
                break;
            }
            if !batch.is_empty() {
                self.counts
                    .in_flight
                    .store(batch.len() as u64, Ordering::Release);
                let result = self.write(&mut sink, &batch, deadline);
                // A write that returned retries no more, whatever the sink
                // forgot to say (or said just before it panicked).
                self.status.clear();
                // Noted before the answer is published: a receipt's waiter
                // then sees what the sink said about the write (a file
                // moved away and reopened) in health and in the next emit's
                // gap records.
                self.collect_notices(&mut sink);
                self.complete(&batch, result);
                self.counts.in_flight.store(0, Ordering::Release);
                self.returned.give_back(&mut batch);
            }
            if let Some(every) = tick_every
                && last_tick.elapsed() >= every
            {
                last_tick = Instant::now();
                self.run_hook(&mut sink, |s| s.tick());
                self.collect_notices(&mut sink);
            }
        }
        self.run_hook(&mut sink, |s| s.close());
        self.finish();
    }

    /// Hands `batch` to the sink; a [`FailureKind::Transient`] failure of
    /// the whole batch is tried again (see [`TRANSIENT_RETRIES`]).
    fn write(
        &self,
        sink: &mut Box<dyn Sink>,
        batch: &[Arc<Record>],
        deadline: Option<Instant>,
    ) -> Result<AckLevel, SinkError> {
        let mut backoff = FIRST_BACKOFF;
        let mut retries = 0;
        loop {
            let result = catch_unwind(AssertUnwindSafe(|| {
                sink.write(&Batch {
                    records: batch,
                    deadline,
                })
            }))
            .unwrap_or_else(|_| Err(SinkError::permanent(Panicked("write"))));
            match result {
                // Only a batch the sink holds none of is written again, so
                // that a retry never repeats a record.
                Err(e)
                    if retries < TRANSIENT_RETRIES
                        && e.kind() == FailureKind::Transient
                        && e.records_failed(batch.len()) == batch.len() as u64
                        && self.back_off(backoff, deadline) =>
                {
                    retries += 1;
                    backoff *= 2;
                }
                result => return result,
            }
        }
    }

    /// Waits `backoff` before a retry. Returns false at once when the wait
    /// would reach the shutdown deadline (the drain's end, or the batch's
    /// deadline): the failure then stands.
    fn back_off(&self, backoff: Duration, deadline: Option<Instant>) -> bool {
        let until = Instant::now() + backoff;
        let mut q = self.queue.lock();
        loop {
            // Read under the queue lock: shutdown sets the deadline, then
            // wakes the worker under it, so the wait below cannot miss it.
            let stop = self.shutdown.deadline().into_iter().chain(deadline).min();
            if stop.is_some_and(|d| until >= d) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            q = self.queue.sleep(q, until - now);
        }
    }

    /// Moves the watermarks and notes the outcome of one write.
    pub(super) fn complete(&self, batch: &[Arc<Record>], result: Result<AckLevel, SinkError>) {
        let Some(last) = batch.last().map(|r| r.seq) else {
            return;
        };
        match result {
            Ok(level) => {
                self.counts
                    .delivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.marks.advance(last + 1, level);
            }
            Err(e) => {
                let failed = e.records_failed(batch.len());
                self.counts.failed.fetch_add(failed, Ordering::Relaxed);
                self.counts
                    .delivered
                    .fetch_add(batch.len() as u64 - failed, Ordering::Relaxed);
                // A write that failed part way: the records the sink says
                // it holds reached their levels like any others, and only
                // the rest are named lost.
                let held = e.records_held(batch.len(), AckLevel::Written) as usize;
                for level in [AckLevel::Written, AckLevel::Durable, AckLevel::Exported] {
                    let n = e.records_held(batch.len(), level) as usize;
                    if level <= self.max_level && n > 0 {
                        self.marks.advance(batch[n - 1].seq + 1, level);
                    }
                }
                let mut o = lock(&self.outcomes);
                let msg = e.to_string();
                o.last_error = Some(msg.clone());
                self.note_failure(&mut o, &batch[held..], failed, msg);
                if self.options.required {
                    self.break_with(&mut o, e.clone());
                }
                // A waiter for any record not at the sink's highest level
                // learns of the failure (one whose fsync failed is in the
                // file, but not known durable).
                let at_max = e.records_held(batch.len(), self.max_level) as usize;
                if let Some(r) = batch.get(at_max) {
                    push_bad(&mut o.bad, r.seq, last, DeliveryError::Failed(e));
                }
            }
        }
        self.marks.note_done(last + 1);
        self.progress.notify_waiters();
    }

    /// Runs [`Sink::tick`] or [`Sink::close`]: the level it returns covers
    /// everything processed so far.
    fn run_hook(
        &self,
        sink: &mut Box<dyn Sink>,
        hook: impl FnOnce(&mut Box<dyn Sink>) -> Result<Option<AckLevel>, SinkError>,
    ) {
        let result = catch_unwind(AssertUnwindSafe(|| hook(sink)))
            .unwrap_or_else(|_| Err(SinkError::permanent(Panicked("tick/close"))));
        self.hook_done(result);
    }

    /// Takes the answer of a tick or close: the level it returns covers
    /// everything processed so far.
    pub(super) fn hook_done(&self, result: Result<Option<AckLevel>, SinkError>) {
        let upto = self.marks.done();
        match result {
            Ok(Some(level)) => {
                self.marks.advance(upto, level);
                self.progress.notify_waiters();
            }
            Ok(None) => {}
            Err(e) => {
                let mut o = lock(&self.outcomes);
                o.last_error = Some(e.to_string());
                if self.options.required {
                    self.break_with(&mut o, e);
                }
                drop(o);
                self.progress.notify_waiters();
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the sink panicked in {0}")]
pub(super) struct Panicked(pub(super) &'static str);
