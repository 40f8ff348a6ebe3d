//! The bridge: runs an [`AsyncSink`] on its own worker thread, on a private
//! current-thread runtime or on the application's runtime, with the same
//! queue, watermarks, retries, gap records and shutdown as the sync worker
//! ([`super::worker`]), and up to [`AsyncSink::max_in_flight`] writes under
//! way at once, acknowledged in seq order.
//!
//! The sync worker is left exactly as it was: a sync sink pays nothing for
//! this module.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::async_sink::{AsyncSink, WriteCancelled};
use crate::error::StartError;
use crate::record::Record;
use crate::sink::{AckLevel, Batch, FailureKind, ShutdownSignal, SinkError, SinkOpen};

use super::lock;
use super::options::SinkOptions;
use super::receipt::{DeliveryError, push_bad};
use super::slot::SinkSlot;
use super::worker::{FIRST_BACKOFF, Panicked, TRANSIENT_RETRIES};

/// How long before the shutdown deadline the bridge cancels the writes
/// still under way: their failure must be noted before the dispatcher
/// writes its last gap records at the deadline. Shorter than the margin a
/// sink that watches the deadline itself keeps (the OTLP sink's 20 ms), so
/// that such a sink gives up with its own, more telling, error first.
const CANCEL_MARGIN: Duration = Duration::from_millis(10);

/// A sink added to the builder, not yet opened.
pub(super) enum Driver {
    Sync(Box<dyn crate::sink::Sink>),
    Async(Box<dyn AsyncSink>),
}

/// Where an async sink's futures run.
enum Rt {
    /// The sink's own current-thread runtime, driven by its worker thread.
    Own(Runtime),
    /// The application's multi-thread runtime: the worker thread polls the
    /// sink's futures, the runtime's threads drive I/O and timers.
    Shared(Handle),
}

impl Rt {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        match self {
            Rt::Own(rt) => rt.block_on(f),
            Rt::Shared(h) => h.block_on(f),
        }
    }

    /// Drops `sink` inside the runtime's context: a client may need it to
    /// release its connections.
    fn drop_sink(&self, sink: Box<dyn AsyncSink>) {
        let _guard = match self {
            Rt::Own(rt) => rt.enter(),
            Rt::Shared(h) => h.enter(),
        };
        drop(sink);
    }
}

/// What the worker thread reports once the sink opened.
struct Opened {
    open: SinkOpen,
    max_level: AckLevel,
    max_batch: Option<usize>,
}

/// An async sink open on its worker thread, waiting for its slot.
pub(super) struct OpenedAsync {
    max_level: AckLevel,
    max_batch: Option<usize>,
    go: std::sync::mpsc::Sender<Arc<SinkSlot>>,
}

impl OpenedAsync {
    /// Builds the sink's slot and hands it to the waiting worker thread.
    pub(super) fn start(self, options: SinkOptions) -> Result<Arc<SinkSlot>, StartError> {
        let options = options.preferring(self.max_batch);
        let slot = SinkSlot::new(options, self.max_level, true);
        self.go.send(slot.clone()).map_err(|_| StartError::Thread {
            sink: slot.options.name.clone(),
            source: std::io::Error::other("the sink's worker thread ended before it started"),
        })?;
        Ok(slot)
    }
}

/// Starts `sink`'s worker thread and opens the sink there, on its runtime.
/// The thread then waits for [`OpenedAsync::start`]; dropping the
/// [`OpenedAsync`] (the dispatcher did not start) drops the sink there.
pub(super) async fn open(
    name: &str,
    mut sink: Box<dyn AsyncSink>,
    runtime: Option<Handle>,
) -> Result<(SinkOpen, OpenedAsync), StartError> {
    if let Some(h) = &runtime {
        check_handle(name, h)?;
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let (go, wait) = std::sync::mpsc::channel::<Arc<SinkSlot>>();
    let thread_name = format!("audit-sink-{name}");
    let sink_name = name.to_string();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let rt = match runtime {
                Some(h) => Rt::Shared(h),
                None => match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => Rt::Own(rt),
                    Err(source) => {
                        let _ = reply.send(Err(StartError::Runtime {
                            sink: sink_name,
                            source,
                        }));
                        return;
                    }
                },
            };
            let opened = catch_unwind(AssertUnwindSafe(|| rt.block_on(sink.open())))
                .unwrap_or_else(|_| Err(SinkError::permanent(Panicked("open"))))
                .map(|open| Opened {
                    open,
                    max_level: sink.max_level(),
                    max_batch: sink.max_batch(),
                })
                .map_err(|source| StartError::Open {
                    sink: sink_name,
                    source,
                });
            let ok = opened.is_ok();
            // The builder is gone only if its `start` was dropped midway.
            if reply.send(opened).is_err() || !ok {
                rt.drop_sink(sink);
                return;
            }
            match wait.recv() {
                Ok(slot) => {
                    sink.watch_shutdown(slot.shutdown.clone());
                    sink.watch_status(slot.status.clone());
                    let run = slot.clone().run_async(&mut sink);
                    rt.block_on(run);
                    rt.drop_sink(sink);
                    // Only now: the sink is dropped, its connections are
                    // released, before shutdown returns.
                    slot.finish();
                }
                Err(_) => rt.drop_sink(sink),
            }
        })
        .map_err(|source| StartError::Thread {
            sink: name.to_string(),
            source,
        })?;
    let opened = answer.await.map_err(|_| StartError::Open {
        sink: name.to_string(),
        source: SinkError::permanent(Panicked("open")),
    })??;
    Ok((
        opened.open,
        OpenedAsync {
            max_level: opened.max_level,
            max_batch: opened.max_batch,
            go,
        },
    ))
}

/// Refuses a handle the bridge cannot run a sink on: a current-thread
/// runtime is driven only by its own `block_on`, so the sink's I/O would
/// never progress; without timers, linger, retries and the deadline
/// cannot be waited for.
fn check_handle(name: &str, h: &Handle) -> Result<(), StartError> {
    let refuse = |reason: &'static str| StartError::RuntimeHandle {
        sink: name.to_string(),
        reason,
    };
    if h.runtime_flavor() == RuntimeFlavor::CurrentThread {
        return Err(refuse(
            "a current-thread runtime cannot run a sink from another thread; give a multi-thread runtime's handle, or none for a private runtime",
        ));
    }
    // Tokio has no query for it: building a timer is what panics without.
    let _guard = h.enter();
    catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).map_err(|_| {
        refuse("the runtime has no timers; build it with `enable_time` (or `enable_all`)")
    })
}

type WriteFuture<'s> = Pin<Box<dyn Future<Output = Result<AckLevel, SinkError>> + 's>>;

/// One write under way: its batch, and the future answering it until it
/// answered (or was cancelled).
struct Flight<'s> {
    began: Instant,
    records: Arc<Vec<Arc<Record>>>,
    future: Option<WriteFuture<'s>>,
    result: Option<Result<AckLevel, SinkError>>,
}

impl SinkSlot {
    /// The worker thread's body for an async sink, run on its runtime.
    async fn run_async(self: Arc<Self>, sink: &mut Box<dyn AsyncSink>) {
        let tick_every = sink.tick_interval();
        let mut last_tick = Instant::now();
        loop {
            let ended = self.write_phase(&**sink, tick_every, last_tick).await;
            if let Some(every) = tick_every
                && last_tick.elapsed() >= every
            {
                last_tick = Instant::now();
                let result = CatchPanic(sink.tick())
                    .await
                    .unwrap_or_else(|| Err(SinkError::permanent(Panicked("tick/close"))));
                self.hook_done(result);
                self.note_notices(take_notices(&**sink));
            }
            if ended {
                break;
            }
        }
        let result = CatchPanic(sink.close())
            .await
            .unwrap_or_else(|| Err(SinkError::permanent(Panicked("tick/close"))));
        self.hook_done(result);
    }

    /// Takes batches and keeps up to `max_in_flight` writes under way,
    /// until the queue closed and drained (true) or a tick is due (false,
    /// with nothing under way: a tick never overlaps a write).
    async fn write_phase(
        &self,
        sink: &dyn AsyncSink,
        tick_every: Option<Duration>,
        last_tick: Instant,
    ) -> bool {
        let linger = sink.linger().filter(|l| !l.is_zero());
        let most = sink.max_in_flight().max(1);
        let limit = self.options.batch_limit();
        // A batch larger than the queue can never fill: lingering for it
        // would only hold blocked emitters back.
        let fill = limit.min(self.options.queue_capacity());
        let tick_at = tick_every.map(|t| last_tick + t);
        let mut flying: VecDeque<Flight<'_>> = VecDeque::new();
        let mut linger_until: Option<Instant> = None;
        loop {
            self.land(&mut flying, sink);
            let tick_due = tick_at.is_some_and(|t| Instant::now() >= t);
            let mut taken = None;
            let (closing, deadline, queued) = {
                let mut q = self.queue.lock();
                let queued = !q.items.is_empty();
                if queued && flying.len() < most && !tick_due {
                    let now = Instant::now();
                    let hurry = q.closing || self.shutdown.deadline().is_some();
                    let until = linger.map(|l| *linger_until.get_or_insert(now + l));
                    if hurry || q.items.len() >= fill || until.is_none_or(|u| now >= u) {
                        let n = q.items.len().min(limit);
                        taken = Some(q.items.drain(..n).collect::<Vec<_>>());
                        linger_until = None;
                    }
                }
                // A push wakes the bridge only when it could take the
                // record; with every write slot taken, an answer wakes it.
                if taken.is_none() && flying.len() < most && !tick_due {
                    q.worker_waits();
                }
                (q.closing, q.deadline, queued)
            };
            if let Some(batch) = taken {
                self.queue.room.notify_waiters();
                if let Some(d) = deadline
                    && Instant::now() >= d
                {
                    self.cancel_due(&mut flying, deadline);
                    self.land(&mut flying, sink);
                    self.abandon(batch);
                    return true;
                }
                self.counts
                    .in_flight
                    .fetch_add(batch.len() as u64, Ordering::AcqRel);
                let records = Arc::new(batch);
                let future = self.start_write(sink, records.clone(), deadline);
                flying.push_back(Flight {
                    began: Instant::now(),
                    records,
                    future: Some(future),
                    result: None,
                });
                continue;
            }
            if flying.is_empty() {
                if closing && !queued {
                    return true;
                }
                if tick_due {
                    return false;
                }
            }
            let cancel_at = flying
                .iter()
                .filter(|f| f.result.is_none())
                .filter_map(|f| self.cancel_time(f.began, deadline))
                .min();
            if cancel_at.is_some_and(|c| Instant::now() >= c) {
                self.cancel_due(&mut flying, deadline);
                continue;
            }
            let wake_at = [
                cancel_at,
                linger_until.filter(|_| queued),
                tick_at.filter(|_| flying.is_empty()),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                () = poll_flights(&mut flying) => {}
                () = self.queue.woken() => {}
                () = sleep_until(wake_at) => {}
            }
        }
    }

    /// A write of `records`, retried as the sync worker retries: a
    /// transient failure of the whole batch, 3 times with backoff, never
    /// past the shutdown deadline.
    fn start_write<'s>(
        &self,
        sink: &'s dyn AsyncSink,
        records: Arc<Vec<Arc<Record>>>,
        deadline: Option<Instant>,
    ) -> WriteFuture<'s> {
        let shutdown = self.shutdown.clone();
        Box::pin(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut retries = 0;
            loop {
                let batch = Batch {
                    records: &records,
                    deadline,
                };
                match sink.write(&batch).await {
                    // Only a batch the sink holds none of is written again,
                    // so that a retry never repeats a record.
                    Err(e)
                        if retries < TRANSIENT_RETRIES
                            && e.kind() == FailureKind::Transient
                            && e.records_failed(records.len()) == records.len() as u64 =>
                    {
                        if !back_off(&shutdown, deadline, Instant::now() + backoff).await {
                            return Err(e);
                        }
                        retries += 1;
                        backoff *= 2;
                    }
                    result => return result,
                }
            }
        })
    }

    /// Completes the writes that answered, in seq order: one that answered
    /// before an earlier one waits for it.
    fn land(&self, flying: &mut VecDeque<Flight<'_>>, sink: &dyn AsyncSink) {
        while flying.front().is_some_and(|f| f.result.is_some()) {
            let Some(Flight {
                records,
                result: Some(result),
                ..
            }) = flying.pop_front()
            else {
                break;
            };
            if flying.is_empty() {
                // Nothing is under way, so nothing retries, whatever the
                // sink forgot to say; cleared before the answer is
                // published, so that a receipt's waiter sees it cleared.
                self.status.clear();
            }
            // Noted before the answer is published, as by the sync worker.
            self.note_notices(take_notices(sink));
            self.complete(&records, result);
            self.counts
                .in_flight
                .fetch_sub(records.len() as u64, Ordering::AcqRel);
            // The sink may still hold the batch (a write it keeps going);
            // then its records are let go with it.
            if let Ok(mut records) = Arc::try_unwrap(records) {
                self.returned.give_back(&mut records);
            }
        }
    }

    /// When a write begun at `began` is cancelled: just before the
    /// shutdown deadline the sink was told (the end of the drain) if it
    /// began before then, so that its failure is in the gap records written
    /// at that deadline; a write begun later (those gap records themselves,
    /// records queued behind a write that hung) gets until just before the
    /// queue's own deadline, the end of the shutdown.
    fn cancel_time(&self, began: Instant, queue_deadline: Option<Instant>) -> Option<Instant> {
        let margin = |d: Instant| d.checked_sub(CANCEL_MARGIN).unwrap_or(d);
        let drain = self.shutdown.deadline().map(margin).filter(|d| began < *d);
        drain.into_iter().chain(queue_deadline.map(margin)).min()
    }

    /// Cancels the writes whose time is up (see [`SinkSlot::cancel_time`])
    /// by dropping their futures; their records count as failed.
    fn cancel_due(&self, flying: &mut VecDeque<Flight<'_>>, queue_deadline: Option<Instant>) {
        let now = Instant::now();
        for f in flying.iter_mut().filter(|f| f.result.is_none()) {
            if self
                .cancel_time(f.began, queue_deadline)
                .is_some_and(|c| now >= c)
            {
                f.future = None;
                f.result = Some(Err(SinkError::permanent(WriteCancelled)));
            }
        }
    }

    /// Gives up on `batch` and whatever is still queued: the shutdown
    /// deadline passed (as the sync worker does).
    fn abandon(&self, batch: Vec<Arc<Record>>) {
        let left = batch.len() as u64 + self.queue.lock().items.drain(..).count() as u64;
        if let (Some(first), true) = (batch.first(), left > 0) {
            let mut o = lock(&self.outcomes);
            push_bad(&mut o.bad, first.seq, u64::MAX, DeliveryError::Abandoned);
        }
    }
}

fn take_notices(sink: &dyn AsyncSink) -> Vec<String> {
    catch_unwind(AssertUnwindSafe(|| sink.take_notices())).unwrap_or_default()
}

/// Resolves as soon as one write answered (or panicked); polls every write
/// under way, in seq order, so that each is first polled in seq order.
fn poll_flights<'a, 's>(flying: &'a mut VecDeque<Flight<'s>>) -> impl Future<Output = ()> + 'a
where
    's: 'a,
{
    std::future::poll_fn(move |cx| {
        let mut answered = false;
        for f in flying.iter_mut() {
            let Some(future) = f.future.as_mut() else {
                continue;
            };
            let result = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(Poll::Pending) => continue,
                Ok(Poll::Ready(result)) => result,
                Err(_) => Err(SinkError::permanent(Panicked("write"))),
            };
            f.future = None;
            f.result = Some(result);
            answered = true;
        }
        if answered {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// Waits until `until` for a retry. Returns false, the failure standing, as
/// soon as a deadline (the batch's, or the shutdown's, which may be set
/// meanwhile) falls at or before it.
async fn back_off(shutdown: &ShutdownSignal, deadline: Option<Instant>, until: Instant) -> bool {
    if deadline.is_some_and(|d| until >= d) {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep_until(until.into()) => true,
        () = shutdown.set_by(until) => false,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A future whose panic becomes `None`, as the sync worker's
/// `catch_unwind` makes a panicking hook a failure.
struct CatchPanic<F>(F);

impl<F: Future + Unpin> Future for CatchPanic<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}
