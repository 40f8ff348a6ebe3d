//! The dispatcher: one seq counter, a bounded queue and a worker thread per
//! sink, acknowledgements, gap records, health and shutdown.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::{EmitError, StartError};
use crate::ids::{SpanId, TraceId};
use crate::lease::{Leased, SeqLease};
use crate::record::{EventType, MAX_SEQ, Record, RecordMeta};
use crate::redact::PayloadFilter;
use crate::sink::{AckLevel, Batch, Retrying, ShutdownSignal, Sink, SinkError, StatusSignal};
use crate::time::Timestamp;

/// What a sink does with a record when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Wait for room: emitters slow down, nothing is lost.
    #[default]
    Block,
    /// Drop the new record, count it and write an `audit_gap` record later.
    DropNewest,
    /// Refuse the emit with [`EmitError::QueueFull`]; no seq is used.
    FailClosed,
}

/// How the dispatcher treats one sink.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Name used in errors, health and gap records.
    pub name: String,
    /// Queue capacity in records.
    pub queue: usize,
    /// Policy when the queue is full.
    pub overflow: Overflow,
    /// Whether a failure of this sink fails `emit`.
    pub required: bool,
    /// Most records handed to one [`Sink::write`].
    pub max_batch: usize,
}

impl SinkOptions {
    /// Defaults: queue 8192, `block`, required, batches of up to 4096.
    pub fn new(name: impl Into<String>) -> Self {
        SinkOptions {
            name: name.into(),
            queue: 8192,
            overflow: Overflow::Block,
            required: true,
            max_batch: 4096,
        }
    }

    /// Sets the queue capacity (at least 1).
    pub fn queue(mut self, records: usize) -> Self {
        self.queue = records.max(1);
        self
    }

    /// Sets the overflow policy.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Sets whether the sink is required.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Sets the largest batch (at least 1).
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records.max(1);
        self
    }
}

/// Builds a [`Dispatcher`].
pub struct DispatcherBuilder {
    sinks: Vec<(SinkOptions, Box<dyn Sink>)>,
    filter: Option<Arc<dyn PayloadFilter>>,
    max_record_bytes: usize,
    lease: Option<Arc<dyn SeqLease>>,
    lease_block: u64,
}

impl Default for DispatcherBuilder {
    fn default() -> Self {
        DispatcherBuilder {
            sinks: Vec::new(),
            filter: None,
            max_record_bytes: 1 << 20,
            lease: None,
            lease_block: 65_536,
        }
    }
}

impl DispatcherBuilder {
    /// Adds a sink.
    pub fn sink(mut self, options: SinkOptions, sink: impl Sink) -> Self {
        self.sinks.push((options, Box::new(sink)));
        self
    }

    /// Adds a boxed sink (as built from configuration).
    pub fn boxed_sink(mut self, options: SinkOptions, sink: Box<dyn Sink>) -> Self {
        self.sinks.push((options, sink));
        self
    }

    /// Runs `filter` over every payload before fan-out (redaction).
    pub fn filter(mut self, filter: Arc<dyn PayloadFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Largest serialised record accepted; bigger ones fail
    /// [`EmitError::TooLarge`] rather than being truncated. Default 1 MiB.
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Keeps a durable [`SeqLease`] ahead of the numbering, so that a seq
    /// handed to any sink (or on a receipt) is never reused after a crash.
    /// See [`crate::lease`].
    pub fn seq_lease(mut self, lease: Arc<dyn SeqLease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How many seqs one lease store reserves (default 65,536; at least 2):
    /// a larger block means fewer durable writes, and a larger gap of
    /// skipped seqs after a crash.
    pub fn lease_block(mut self, seqs: u64) -> Self {
        self.lease_block = seqs;
        self
    }

    /// Opens every sink, continues the seq after the highest one they hold,
    /// starts the workers and writes a gap record for any damage reported.
    pub async fn start(self) -> Result<Dispatcher, StartError> {
        if self.sinks.is_empty() {
            return Err(StartError::NoSinks);
        }
        let mut last_seq = 0u64;
        let mut held_by = String::new();
        let mut opened = Vec::new();
        let mut notices = Vec::new();
        for (options, mut sink) in self.sinks {
            if opened
                .iter()
                .any(|(o, _): &(SinkOptions, _)| o.name == options.name)
            {
                return Err(StartError::DuplicateName { sink: options.name });
            }
            let open = sink.open().map_err(|source| StartError::Open {
                sink: options.name.clone(),
                source,
            })?;
            if let Some(seq) = open.last_seq
                && seq > last_seq
            {
                last_seq = seq;
                held_by = format!("sink `{}`", options.name);
            }
            for n in open.notices {
                notices.push((options.name.clone(), n));
            }
            opened.push((options, sink));
        }
        let lease_error = |source| StartError::Lease { source };
        let (lease, skipped, lease_notice) = match self.lease {
            Some(store) => {
                let (leased, skipped) =
                    Leased::open(store, self.lease_block, last_seq).map_err(lease_error)?;
                if skipped.is_some() {
                    last_seq = leased.last_reserved();
                    held_by = format!("the seq lease `{}`", leased.location());
                }
                let notice = leased.take_notice().map(|n| (leased.location(), n));
                (Some(leased), skipped, notice)
            }
            None => (None, None, None),
        };
        // The start numbers its own notices, then at least one record must
        // fit: refused up front rather than half started. Before anything
        // is written or reserved, so the sinks and the lease stay as found.
        let needed = notices.len() as u64
            + u64::from(skipped.is_some())
            + u64::from(lease_notice.is_some())
            + 1;
        if MAX_SEQ.saturating_sub(last_seq) < needed {
            return Err(StartError::SeqExhausted { last_seq, held_by });
        }
        let lease = match lease {
            Some(mut leased) => {
                leased.ensure(last_seq + 1).map_err(lease_error)?;
                Some(leased)
            }
            None => None,
        };
        let slots: Vec<Arc<SinkSlot>> = opened
            .into_iter()
            .map(|(options, sink)| SinkSlot::spawn(options, sink))
            .collect::<Result<_, _>>()?;
        let shared = Arc::new(Shared {
            order: tokio::sync::Mutex::new(Order {
                next_seq: last_seq + 1,
                lease,
                lease_error: None,
                unnumbered: 0,
            }),
            sinks: slots,
            filter: self.filter,
            max_record_bytes: self.max_record_bytes,
            closed: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            trace_id: TraceId::random(),
            before_shutdown: Mutex::new(Vec::new()),
        });
        let d = Dispatcher { shared };
        // What the lease store worked around comes first: it decided
        // where the numbering starts.
        if let Some((lease, detail)) = lease_notice {
            let payload =
                serde_json::json!({"reason": "lease_notice", "lease": lease, "detail": detail});
            d.emit_internal(EventType::AuditGap, payload).await?;
        }
        for (sink, notice) in notices {
            let payload =
                serde_json::json!({"reason": "sink_notice", "sink": sink, "detail": notice});
            d.emit_internal(EventType::AuditGap, payload).await?;
        }
        // After the sinks' own notices (a torn tail is about the file as
        // it was found), the seqs an earlier process reserved and no sink
        // here holds.
        if let Some((from, to)) = skipped {
            let payload = serde_json::json!({
                "reason": "seq_skipped",
                "from_seq": from,
                "to_seq": to,
                "detail": format!(
                    "seqs {from}..={to} were reserved by an earlier process but no sink here holds them (it stopped without a clean shutdown, or failed to write them); they may be in other sinks, and are never reused"
                ),
            });
            d.emit_internal(EventType::AuditGap, payload).await?;
        }
        Ok(d)
    }
}

/// Fans records out to sinks. Cheap to clone; every clone is the same
/// dispatcher. Call [`Dispatcher::shutdown`] before exit: dropping the last
/// handle only drains for a few seconds and warns on stderr.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("sinks", &self.shared.sinks.len())
            .finish()
    }
}

struct Shared {
    order: tokio::sync::Mutex<Order>,
    sinks: Vec<Arc<SinkSlot>>,
    filter: Option<Arc<dyn PayloadFilter>>,
    max_record_bytes: usize,
    closed: AtomicBool,
    shut_down: AtomicBool,
    trace_id: TraceId,
    before_shutdown: Mutex<Vec<ShutdownHook>>,
}

type ShutdownHook =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

struct Order {
    /// The seq the next record gets; `MAX_SEQ + 1` once every seq is used.
    next_seq: u64,
    lease: Option<Leased>,
    /// A lease store that failed while numbering a gap record, for the
    /// next emit to report.
    lease_error: Option<crate::lease::LeaseError>,
    /// Gap records that could not be numbered because the seq space was
    /// used up, for the shutdown report.
    unnumbered: u64,
}

/// Every seq up to [`MAX_SEQ`] is used.
struct Exhausted;

impl From<Exhausted> for EmitError {
    fn from(_: Exhausted) -> EmitError {
        EmitError::SeqExhausted { last_seq: MAX_SEQ }
    }
}

impl Order {
    /// Keeps the lease ahead of the numbering before an emit.
    fn keep_leased(&mut self) -> Result<(), EmitError> {
        if let Some(e) = self.lease_error.take() {
            return Err(EmitError::Lease(e));
        }
        match &mut self.lease {
            Some(l) => l.ensure(self.next_seq).map_err(EmitError::Lease),
            None => Ok(()),
        }
    }

    /// Gives a draft the next seq and the current time, in one critical
    /// section so that time never runs backwards along the sequence.
    /// Past [`MAX_SEQ`] there is no seq to give: an error, never a wrap.
    fn stamp(&mut self, draft: Draft) -> Result<Arc<Record>, Exhausted> {
        let seq = self.next_seq;
        if seq > MAX_SEQ {
            return Err(Exhausted);
        }
        // Gap records are numbered without an emit; `keep_leased` leaves
        // half a block of room for them, so this only runs if a flood of
        // them used it all up.
        if let Some(l) = &mut self.lease
            && let Err(e) = l.ensure(seq)
        {
            self.lease_error = Some(e);
        }
        // `seq <= MAX_SEQ < u64::MAX`: no overflow.
        self.next_seq = seq + 1;
        Ok(Arc::new(Record::from_parts(
            seq,
            Timestamp::now(),
            draft.meta,
            draft.body,
            draft.payload_at,
        )))
    }
}

/// A record body serialised on the emitting thread.
pub(crate) struct Draft {
    pub(crate) meta: RecordMeta,
    pub(crate) body: String,
    pub(crate) payload_at: usize,
}

impl Dispatcher {
    /// A builder.
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }

    pub(crate) fn filter(&self) -> Option<&Arc<dyn PayloadFilter>> {
        self.shared.filter.as_ref()
    }

    pub(crate) fn max_record_bytes(&self) -> usize {
        self.shared.max_record_bytes
    }

    /// The seq the next record will get; `u64::MAX` (beyond [`MAX_SEQ`])
    /// once every seq is used.
    pub async fn next_seq(&self) -> u64 {
        self.shared.order.lock().await.next_seq
    }

    /// Assigns the next seq and queues the record on every sink. Returns once
    /// every sink has it queued (or dropped it by policy).
    pub(crate) async fn submit(&self, draft: Draft) -> Result<u64, EmitError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        shared.check_required()?;
        let mut order = shared.order.lock().await;
        if shared.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        if order.next_seq > MAX_SEQ {
            return Err(Exhausted.into());
        }
        order.keep_leased()?;
        shared.flush_gaps(&mut order, false).await;
        for s in &shared.sinks {
            if s.options.overflow == Overflow::Block {
                s.wait_for_room(&shared.closed).await;
                if shared.closed.load(Ordering::Acquire) {
                    // Shutdown released us while we waited: no seq is used.
                    return Err(EmitError::Closed);
                }
            } else if s.options.overflow == Overflow::FailClosed && s.is_full() {
                s.dropped_or_refused.fetch_add(1, Ordering::Relaxed);
                return Err(EmitError::QueueFull {
                    sink: s.options.name.clone(),
                });
            }
        }
        // The gap records just numbered may have taken the last seqs.
        let record = order.stamp(draft)?;
        let seq = record.seq;
        let mut dropped_required = None;
        for s in &shared.sinks {
            if !s.push(record.clone(), false) && s.options.required {
                dropped_required = Some(s.options.name.clone());
            }
        }
        drop(order);
        match dropped_required {
            Some(sink) => Err(EmitError::Dropped { sink, seq }),
            None => Ok(seq),
        }
    }

    async fn emit_internal(
        &self,
        event_type: EventType,
        payload: serde_json::Value,
    ) -> Result<u64, EmitError> {
        let draft = self.shared.internal_draft(event_type, &payload);
        self.submit(draft).await
    }

    /// Waits until record `seq` reached `level` on every sink that can reach
    /// it (a sink that cannot settles for its highest level), or failed.
    /// A failure of a required sink is an error; others are listed in the
    /// receipt.
    pub async fn wait(&self, seq: u64, level: AckLevel) -> Result<Receipt, EmitError> {
        let mut reached = AckLevel::Exported;
        let mut failed = Vec::new();
        for s in &self.shared.sinks {
            match s.wait(seq, level).await {
                Ok(l) => reached = reached.min(l),
                Err(error) => {
                    if s.options.required {
                        return Err(EmitError::SinkFailed {
                            sink: s.options.name.clone(),
                            error,
                        });
                    }
                    failed.push(SinkFailure {
                        sink: s.options.name.clone(),
                        error,
                    });
                }
            }
        }
        Ok(Receipt {
            seq,
            level: reached,
            failed,
        })
    }

    /// Runs `hook` at the start of [`Dispatcher::shutdown`], while records
    /// can still be emitted: a component that writes a last record (a
    /// signed checkpoint) registers here. Hooks run once, in order.
    pub fn before_shutdown<F, Fut>(&self, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        lock(&self.shared.before_shutdown).push(Box::new(move || Box::pin(hook())));
    }

    /// Counters per sink, right now.
    pub fn health(&self) -> Health {
        Health {
            sinks: self.shared.sinks.iter().map(|s| s.health()).collect(),
        }
    }

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
            let _q = lock(&s.queue);
            s.not_empty.notify_one();
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
        // Set before taking the order lock: an emitter holding it while it
        // waits for room in a stalled sink's queue (`block`) is released by
        // this and returns `Closed`, so shutdown cannot deadlock on it.
        let first = !shared.closed.swap(true, Ordering::AcqRel);
        for s in &shared.sinks {
            s.room.notify_waiters();
        }
        drop(shared.order.lock().await);
        if first {
            // Drain while the sinks are still open, so that failures and
            // drops during the drain become audit_gap records in the
            // surviving sinks below, like any other.
            for s in &shared.sinks {
                loop {
                    let notified = s.progress.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let woke = drain_wake.notified();
                    tokio::pin!(woke);
                    woke.as_mut().enable();
                    if s.is_drained()
                        || s.finished.load(Ordering::Acquire)
                        || Instant::now() >= drain_until
                    {
                        break;
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = woke => { drain_wake.notify_one(); }
                    }
                }
            }
        }
        let mut lease_error = None;
        let unnumbered_gaps;
        {
            let mut order = shared.order.lock().await;
            if first {
                shared.flush_gaps(&mut order, true).await;
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
            loop {
                let notified = s.finished_notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let woke = wake.notified();
                tokio::pin!(woke);
                woke.as_mut().enable();
                if s.finished.load(Ordering::Acquire) || Instant::now() >= deadline {
                    break;
                }
                tokio::select! {
                    _ = notified => {}
                    _ = woke => { wake.notify_one(); }
                }
            }
        }
        shared.shut_down.store(true, Ordering::Release);
        ShutdownReport {
            lease_error,
            unnumbered_gaps,
            sinks: shared
                .sinks
                .iter()
                .map(|s| {
                    let h = s.health();
                    SinkReport {
                        finished: s.finished.load(Ordering::Acquire),
                        undelivered: h.queued
                            + s.abandoned.load(Ordering::Relaxed)
                            + s.in_flight.load(Ordering::Acquire),
                        health: h,
                    }
                })
                .collect(),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.shut_down.load(Ordering::Acquire) {
            return;
        }
        let queued: u64 = self.sinks.iter().map(|s| s.len() as u64).sum();
        eprintln!(
            "agent-audit: dispatcher dropped without shutdown(); draining {queued} queued record(s) for up to 5 s"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        for s in &self.sinks {
            s.close_queue(Some(deadline));
        }
        for s in &self.sinks {
            s.wait_finished_blocking(deadline);
        }
    }
}

impl Shared {
    fn check_required(&self) -> Result<(), EmitError> {
        for s in &self.sinks {
            // The flag spares every emit a lock per sink.
            if s.options.required
                && s.is_broken.load(Ordering::Acquire)
                && let Some(error) = s.broken()
            {
                return Err(EmitError::SinkFailed {
                    sink: s.options.name.clone(),
                    error: DeliveryError::Failed(error),
                });
            }
        }
        Ok(())
    }

    fn internal_draft(&self, event_type: EventType, payload: &serde_json::Value) -> Draft {
        let meta = RecordMeta {
            event_type,
            request_id: None,
            correlation_id: None,
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_span_id: None,
            agent: Some(Arc::from("agent-audit")),
        };
        crate::auditor::serialize_draft(meta, payload)
            .unwrap_or_else(|_| crate::auditor::empty_draft(self.trace_id))
    }

    /// Turns pending drops, failures and sink notices into `audit_gap`
    /// records.
    async fn flush_gaps(&self, order: &mut Order, force: bool) {
        for (i, s) in self.sinks.iter().enumerate() {
            let gaps = s.take_gaps(force);
            for gap in gaps {
                let payload = if gap.reason == "sink_notice" {
                    serde_json::json!({
                        "reason": gap.reason,
                        "sink": s.options.name,
                        "detail": gap.error,
                    })
                } else {
                    serde_json::json!({
                        "reason": gap.reason,
                        "sink": s.options.name,
                        // `null` for a failure that lost nothing (an
                        // fsync that failed after every line was in).
                        "from_seq": gap.ranges.first().map(|r| r.0),
                        "to_seq": gap.ranges.last().map(|r| r.1),
                        "lost": gap.count,
                        "ranges": gap.ranges,
                        "error": gap.error,
                    })
                };
                let draft = self.internal_draft(EventType::AuditGap, &payload);
                let Ok(record) = order.stamp(draft) else {
                    // No seq is left for the note; the loss it describes
                    // is still counted in health and the shutdown report,
                    // which also counts the notes that could not be
                    // written.
                    order.unnumbered += 1;
                    continue;
                };
                for (j, other) in self.sinks.iter().enumerate() {
                    if j == i {
                        // The sink that lost records gets the note even when
                        // it is full; a sink that failed to write is not
                        // asked to write a note about its own failure.
                        if gap.reason != "sink_failed" {
                            other.push(record.clone(), true);
                        }
                    } else {
                        if other.options.overflow == Overflow::Block && !force {
                            other.wait_for_room(&self.closed).await;
                        }
                        other.push(record.clone(), force);
                    }
                }
            }
        }
    }
}

/// The outcome of waiting for a record: the level it reached on every sink
/// that took it, and the non-required sinks that failed it.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The record's seq.
    pub seq: u64,
    /// Lowest level reached over the sinks that did not fail.
    pub level: AckLevel,
    /// Non-required sinks that dropped or failed the record.
    pub failed: Vec<SinkFailure>,
}

/// A sink that did not deliver a record.
#[derive(Debug, Clone)]
pub struct SinkFailure {
    /// Sink name.
    pub sink: String,
    /// Why.
    pub error: DeliveryError,
}

/// Why one sink did not deliver one record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// The queue was full under `drop_newest`.
    #[error("dropped: queue full")]
    Dropped,
    /// The sink's write failed.
    #[error(transparent)]
    Failed(#[from] SinkError),
    /// The dispatcher shut down before the sink wrote the record.
    #[error("not written before shutdown")]
    Abandoned,
}

/// Counters for every sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// One entry per sink, in configuration order.
    pub sinks: Vec<SinkHealth>,
}

impl Health {
    /// Whether nothing was dropped or failed anywhere.
    pub fn is_clean(&self) -> bool {
        self.sinks
            .iter()
            .all(|s| s.dropped == 0 && s.failed == 0 && s.last_error.is_none())
    }
}

/// Counters for one sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkHealth {
    /// Sink name.
    pub name: String,
    /// Whether its failure fails `emit`.
    pub required: bool,
    /// Records the sink acknowledged.
    pub delivered: u64,
    /// Records whose write failed.
    pub failed: u64,
    /// Records dropped (`drop_newest`) or refused (`fail_closed`) because
    /// the queue was full.
    pub dropped: u64,
    /// Records waiting in the queue.
    pub queued: u64,
    /// Highest level the sink can reach.
    pub max_level: AckLevel,
    /// The most recent failure.
    pub last_error: Option<String>,
    /// Notices the sink raised while running (see [`Sink::take_notices`]).
    pub notices: u64,
    /// The most recent notice.
    pub last_notice: Option<String>,
    /// Set while the sink retries a write it has not given up on (see
    /// [`Sink::watch_status`]): records are stuck, not yet failed.
    pub retrying: Option<Retrying>,
}

/// What [`Dispatcher::shutdown`] found, per sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShutdownReport {
    /// One entry per sink.
    pub sinks: Vec<SinkReport>,
    /// Why the seq lease could not be lowered to the last seq used (the
    /// next start then skips the seqs still reserved, and says so).
    pub lease_error: Option<String>,
    /// `audit_gap` records that could not be written because the seq
    /// space was used up ([`MAX_SEQ`]); what they would have named is still
    /// in the sinks' counts.
    pub unnumbered_gaps: u64,
}

impl ShutdownReport {
    /// Whether every sink finished and nothing was lost.
    pub fn is_clean(&self) -> bool {
        self.lease_error.is_none()
            && self.unnumbered_gaps == 0
            && self.sinks.iter().all(|s| {
                s.finished && s.undelivered == 0 && s.health.failed == 0 && s.health.dropped == 0
            })
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.sinks {
            let h = &s.health;
            write!(
                f,
                "sink {}: delivered {}, failed {}, dropped {}, undelivered {}",
                h.name, h.delivered, h.failed, h.dropped, s.undelivered
            )?;
            if !s.finished {
                write!(f, " (still writing at the deadline)")?;
            }
            if let Some(e) = &h.last_error {
                write!(f, "; last error: {e}")?;
            }
            writeln!(f)?;
        }
        if let Some(e) = &self.lease_error {
            writeln!(f, "seq lease not released: {e}")?;
        }
        if self.unnumbered_gaps > 0 {
            writeln!(
                f,
                "{} audit_gap record(s) not written: the seq space is used up",
                self.unnumbered_gaps
            )?;
        }
        Ok(())
    }
}

/// One sink's part of a [`ShutdownReport`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkReport {
    /// Final counters.
    #[serde(flatten)]
    pub health: SinkHealth,
    /// Records still queued when the deadline passed.
    pub undelivered: u64,
    /// Whether the worker finished before the deadline.
    pub finished: bool,
}

// ---------------------------------------------------------------- per sink

struct Queue {
    items: VecDeque<Arc<Record>>,
    closing: bool,
    deadline: Option<Instant>,
    worker_sleeping: bool,
}

struct Gap {
    reason: &'static str,
    count: u64,
    ranges: Vec<(u64, u64)>,
    error: Option<String>,
}

#[derive(Default)]
struct Outcomes {
    /// Seq ranges that failed or were dropped, oldest first, bounded.
    bad: VecDeque<(u64, u64, DeliveryError)>,
    pending_drop: Vec<(u64, u64)>,
    pending_fail: Option<PendingFail>,
    last_fail_note: Option<Instant>,
    pending_notices: Vec<String>,
    notices: u64,
    last_notice: Option<String>,
    broken: Option<SinkError>,
    last_error: Option<String>,
}

const BAD_RANGES_KEPT: usize = 4096;

/// Failed writes not yet named in a `sink_failed` gap record.
struct PendingFail {
    /// Exactly the seqs the sink was given and does not hold, ascending.
    ranges: Vec<(u64, u64)>,
    /// How many records failed.
    count: u64,
    /// The latest failure's message.
    error: String,
}

/// A `sink_failed` gap record is written as soon as it holds this many
/// ranges, even within its second: failures alternating with successes
/// (a disk that fills, frees a little, fills) give a range each, and the
/// record must stay small.
const FAIL_RANGES_PER_GAP: usize = 256;

/// Appends `seq` to ascending `ranges`, extending the last when adjacent.
fn push_seq(ranges: &mut Vec<(u64, u64)>, seq: u64) {
    match ranges.last_mut() {
        Some((_, to)) if to.checked_add(1) == Some(seq) => *to = seq,
        _ => ranges.push((seq, seq)),
    }
}

struct SinkSlot {
    options: SinkOptions,
    max_level: AckLevel,
    queue: Mutex<Queue>,
    not_empty: Condvar,
    room: Notify,
    /// Per level (Written, Durable, Exported): every seq below it reached
    /// that level or is listed in `outcomes.bad`.
    through: [AtomicU64; 3],
    /// Every seq below it was processed, whatever the outcome.
    done: AtomicU64,
    /// One past the highest seq queued.
    pushed: AtomicU64,
    progress: Notify,
    outcomes: Mutex<Outcomes>,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped_or_refused: AtomicU64,
    abandoned: AtomicU64,
    in_flight: AtomicU64,
    /// Whether `outcomes` holds drops, failures or notices not yet written
    /// as gap records; read on every emit without locking.
    gap_pending: AtomicBool,
    /// Whether `outcomes.broken` is set.
    is_broken: AtomicBool,
    finished: AtomicBool,
    finished_notify: Notify,
    finished_cv: (Mutex<bool>, Condvar),
    /// The shutdown deadline, shared with the sink (`Sink::watch_shutdown`).
    shutdown: ShutdownSignal,
    /// What the sink says it is doing (`Sink::watch_status`).
    status: StatusSignal,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn level_index(level: AckLevel) -> Option<usize> {
    match level {
        AckLevel::Accepted => None,
        AckLevel::Written => Some(0),
        AckLevel::Durable => Some(1),
        AckLevel::Exported => Some(2),
    }
}

impl SinkSlot {
    fn spawn(options: SinkOptions, mut sink: Box<dyn Sink>) -> Result<Arc<SinkSlot>, StartError> {
        let shutdown = ShutdownSignal::new();
        sink.watch_shutdown(shutdown.clone());
        let status = StatusSignal::new();
        sink.watch_status(status.clone());
        let slot = Arc::new(SinkSlot {
            max_level: sink.max_level(),
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(options.queue.min(1 << 16)),
                closing: false,
                deadline: None,
                worker_sleeping: false,
            }),
            options,
            not_empty: Condvar::new(),
            room: Notify::new(),
            through: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            done: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            progress: Notify::new(),
            outcomes: Mutex::new(Outcomes::default()),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped_or_refused: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            gap_pending: AtomicBool::new(false),
            is_broken: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            finished_notify: Notify::new(),
            finished_cv: (Mutex::new(false), Condvar::new()),
            shutdown,
            status,
        });
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

    fn len(&self) -> usize {
        lock(&self.queue).items.len()
    }

    /// Whether every record queued so far was processed (written or failed).
    fn is_drained(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.pushed.load(Ordering::Acquire)
    }

    fn is_full(&self) -> bool {
        self.len() >= self.options.queue
    }

    fn broken(&self) -> Option<SinkError> {
        lock(&self.outcomes).broken.clone()
    }

    /// Waits until the queue has room, it closes, or `closed` (the
    /// dispatcher is shutting down) is set.
    async fn wait_for_room(&self, closed: &AtomicBool) {
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
                let q = lock(&self.queue);
                if q.items.len() < self.options.queue || q.closing || closed.load(Ordering::Acquire)
                {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Queues a record; `force` ignores capacity. Returns false when the
    /// record was dropped.
    fn push(&self, record: Arc<Record>, force: bool) -> bool {
        let mut q = lock(&self.queue);
        if q.closing || (!force && q.items.len() >= self.options.queue) {
            drop(q);
            self.note_drop(record.seq);
            return false;
        }
        // Seqs end at MAX_SEQ, so one past a seq is always a u64.
        self.pushed.fetch_max(record.seq + 1, Ordering::AcqRel);
        q.items.push_back(record);
        let wake = std::mem::replace(&mut q.worker_sleeping, false);
        // Waking after unlocking spares the worker blocking on the lock it
        // was just woken to take.
        drop(q);
        if wake {
            self.not_empty.notify_one();
        }
        true
    }

    fn note_drop(&self, seq: u64) {
        self.dropped_or_refused.fetch_add(1, Ordering::Relaxed);
        let mut o = lock(&self.outcomes);
        match o.pending_drop.last_mut() {
            Some((_, to)) if to.checked_add(1) == Some(seq) => *to = seq,
            _ => o.pending_drop.push((seq, seq)),
        }
        self.gap_pending.store(true, Ordering::Release);
        push_bad(&mut o.bad, seq, seq, DeliveryError::Dropped);
        drop(o);
        self.progress.notify_waiters();
    }

    fn take_gaps(&self, force: bool) -> Vec<Gap> {
        if !self.gap_pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut o = lock(&self.outcomes);
        let mut out = Vec::new();
        if !o.pending_drop.is_empty() && (force || !self.is_full()) {
            let ranges = std::mem::take(&mut o.pending_drop);
            out.push(Gap {
                reason: "queue_full",
                // Disjoint ranges of seqs <= MAX_SEQ: the sum fits.
                count: ranges.iter().map(|(a, b)| b - a + 1).sum(),
                ranges,
                error: None,
            });
        }
        for notice in o.pending_notices.drain(..) {
            out.push(Gap {
                reason: "sink_notice",
                count: 0,
                ranges: Vec::new(),
                error: Some(notice),
            });
        }
        let due = force
            || o.last_fail_note
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            || o.pending_fail
                .as_ref()
                .is_some_and(|f| f.ranges.len() >= FAIL_RANGES_PER_GAP);
        if due && let Some(fail) = o.pending_fail.take() {
            o.last_fail_note = Some(Instant::now());
            out.push(Gap {
                reason: "sink_failed",
                count: fail.count,
                ranges: fail.ranges,
                error: Some(fail.error),
            });
        }
        let left =
            !o.pending_drop.is_empty() || o.pending_fail.is_some() || !o.pending_notices.is_empty();
        self.gap_pending.store(left, Ordering::Release);
        out
    }

    fn close_queue(&self, deadline: Option<Instant>) {
        if let Some(d) = deadline {
            self.shutdown.set(d);
        }
        let mut q = lock(&self.queue);
        q.closing = true;
        q.deadline = deadline;
        self.not_empty.notify_one();
        drop(q);
        self.room.notify_waiters();
    }

    fn wait_finished_blocking(&self, deadline: Instant) {
        let (m, cv) = &self.finished_cv;
        let mut done = lock(m);
        while !*done {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            done = cv
                .wait_timeout(done, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    async fn wait(&self, seq: u64, level: AckLevel) -> Result<AckLevel, DeliveryError> {
        let target = level.min(self.max_level);
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.bad_outcome(seq) {
                return Err(e);
            }
            let reached = self.reached(seq);
            if reached >= target {
                return Ok(reached);
            }
            if self.finished.load(Ordering::Acquire) {
                return if reached > AckLevel::Accepted {
                    Ok(reached)
                } else {
                    Err(DeliveryError::Abandoned)
                };
            }
            notified.await;
        }
    }

    fn reached(&self, seq: u64) -> AckLevel {
        for level in [AckLevel::Exported, AckLevel::Durable, AckLevel::Written] {
            if let Some(i) = level_index(level)
                && self.through[i].load(Ordering::Acquire) > seq
            {
                return level;
            }
        }
        AckLevel::Accepted
    }

    fn bad_outcome(&self, seq: u64) -> Option<DeliveryError> {
        let o = lock(&self.outcomes);
        o.bad
            .iter()
            .rev()
            .find(|(from, to, _)| (*from..=*to).contains(&seq))
            .map(|(_, _, e)| e.clone())
    }

    fn health(&self) -> SinkHealth {
        let o = lock(&self.outcomes);
        SinkHealth {
            name: self.options.name.clone(),
            required: self.options.required,
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped_or_refused.load(Ordering::Relaxed),
            queued: self.len() as u64,
            max_level: self.max_level,
            last_error: o.last_error.clone(),
            notices: o.notices,
            last_notice: o.last_notice.clone(),
            retrying: self.status.retrying(),
        }
    }

    fn advance(&self, upto: u64, level: AckLevel) {
        if let Some(i) = level_index(level) {
            for t in &self.through[..=i] {
                t.fetch_max(upto, Ordering::AcqRel);
            }
        }
    }

    fn complete(&self, batch: &[Arc<Record>], result: Result<AckLevel, SinkError>) {
        let Some(last) = batch.last().map(|r| r.seq) else {
            return;
        };
        match result {
            Ok(level) => {
                self.delivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.advance(last + 1, level);
            }
            Err(e) => {
                let failed = e.records_failed(batch.len());
                self.failed.fetch_add(failed, Ordering::Relaxed);
                self.delivered
                    .fetch_add(batch.len() as u64 - failed, Ordering::Relaxed);
                // A write that failed part way: the records the sink says
                // it holds reached their levels like any others, and only
                // the rest are named lost.
                let held = e.records_held(batch.len(), AckLevel::Written) as usize;
                for level in [AckLevel::Written, AckLevel::Durable, AckLevel::Exported] {
                    let n = e.records_held(batch.len(), level) as usize;
                    if level <= self.max_level && n > 0 {
                        self.advance(batch[n - 1].seq + 1, level);
                    }
                }
                let mut o = lock(&self.outcomes);
                let msg = e.to_string();
                o.last_error = Some(msg.clone());
                let fail = o.pending_fail.get_or_insert_with(|| PendingFail {
                    ranges: Vec::new(),
                    count: 0,
                    error: String::new(),
                });
                for r in &batch[held..] {
                    push_seq(&mut fail.ranges, r.seq);
                }
                fail.count += failed;
                fail.error = msg;
                self.gap_pending.store(true, Ordering::Release);
                if self.options.required {
                    o.broken = Some(e.clone());
                    self.is_broken.store(true, Ordering::Release);
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
        self.done.fetch_max(last + 1, Ordering::AcqRel);
        self.progress.notify_waiters();
    }

    fn run(self: Arc<Self>, mut sink: Box<dyn Sink>) {
        let tick_every = sink.tick_interval();
        let linger = sink.linger().filter(|l| !l.is_zero());
        // A batch larger than the queue can never fill: lingering for it
        // would only hold blocked emitters back.
        let fill = self.options.max_batch.min(self.options.queue);
        let mut last_tick = Instant::now();
        // A batch never holds more than the queue did, so its capacity is
        // `fill`: a huge `max_batch` from a sink must not become one huge
        // allocation up front.
        let mut batch: Vec<Arc<Record>> = Vec::with_capacity(fill);
        loop {
            let deadline;
            {
                let mut q = lock(&self.queue);
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
                    q.worker_sleeping = true;
                    q = self
                        .not_empty
                        .wait_timeout(q, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                    q.worker_sleeping = false;
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
                        q.worker_sleeping = true;
                        q = self
                            .not_empty
                            .wait_timeout(q, until - now)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                        q.worker_sleeping = false;
                    }
                }
                let n = q.items.len().min(self.options.max_batch);
                batch.extend(q.items.drain(..n));
                deadline = q.deadline;
                if batch.is_empty() && q.closing {
                    break;
                }
            }
            self.room.notify_waiters();
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                let left = batch.len() as u64 + lock(&self.queue).items.drain(..).count() as u64;
                self.abandoned.fetch_add(left, Ordering::Relaxed);
                let mut o = lock(&self.outcomes);
                if let (Some(first), true) = (batch.first(), left > 0) {
                    push_bad(&mut o.bad, first.seq, u64::MAX, DeliveryError::Abandoned);
                }
                drop(o);
                batch.clear();
                break;
            }
            if !batch.is_empty() {
                self.in_flight.store(batch.len() as u64, Ordering::Release);
                let result = catch_unwind(AssertUnwindSafe(|| {
                    sink.write(&Batch {
                        records: &batch,
                        deadline,
                    })
                }))
                .unwrap_or_else(|_| Err(SinkError::permanent(Panicked("write"))));
                // A write that returned retries no more, whatever the sink
                // forgot to say (or said just before it panicked).
                self.status.clear();
                self.complete(&batch, result);
                self.in_flight.store(0, Ordering::Release);
                batch.clear();
                self.collect_notices(&mut sink);
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
        self.finished.store(true, Ordering::Release);
        let (m, cv) = &self.finished_cv;
        *lock(m) = true;
        cv.notify_all();
        self.finished_notify.notify_waiters();
        self.progress.notify_waiters();
    }

    fn collect_notices(&self, sink: &mut Box<dyn Sink>) {
        let notices = catch_unwind(AssertUnwindSafe(|| sink.take_notices())).unwrap_or_default();
        if notices.is_empty() {
            return;
        }
        let mut o = lock(&self.outcomes);
        o.notices += notices.len() as u64;
        o.last_notice = notices.last().cloned();
        o.pending_notices.extend(notices);
        self.gap_pending.store(true, Ordering::Release);
    }

    fn run_hook(
        &self,
        sink: &mut Box<dyn Sink>,
        hook: impl FnOnce(&mut Box<dyn Sink>) -> Result<Option<AckLevel>, SinkError>,
    ) {
        let result = catch_unwind(AssertUnwindSafe(|| hook(sink)))
            .unwrap_or_else(|_| Err(SinkError::permanent(Panicked("tick/close"))));
        let upto = self.done.load(Ordering::Acquire);
        match result {
            Ok(Some(level)) => {
                self.advance(upto, level);
                self.progress.notify_waiters();
            }
            Ok(None) => {}
            Err(e) => {
                let mut o = lock(&self.outcomes);
                o.last_error = Some(e.to_string());
                if self.options.required {
                    o.broken = Some(e);
                    self.is_broken.store(true, Ordering::Release);
                }
                drop(o);
                self.progress.notify_waiters();
            }
        }
    }
}

fn push_bad(bad: &mut VecDeque<(u64, u64, DeliveryError)>, from: u64, to: u64, e: DeliveryError) {
    if let Some((_, last_to, DeliveryError::Dropped)) = bad.back_mut()
        && matches!(e, DeliveryError::Dropped)
        && last_to.checked_add(1) == Some(from)
    {
        *last_to = to;
        return;
    }
    if bad.len() >= BAD_RANGES_KEPT {
        bad.pop_front();
    }
    bad.push_back((from, to, e));
}

#[derive(Debug, thiserror::Error)]
#[error("the sink panicked in {0}")]
struct Panicked(&'static str);
