//! The one trait every backend implements.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::time::Timestamp;

/// How far a record got. Ordered: a fan-out's level is the lowest of its
/// sinks'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckLevel {
    /// In every sink's queue.
    Accepted,
    /// Handed to the operating system (or printed).
    Written,
    /// On stable storage (fsynced).
    Durable,
    /// A collector answered that it took the record.
    Exported,
}

impl fmt::Display for AckLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckLevel::Accepted => "accepted",
            AckLevel::Written => "written",
            AckLevel::Durable => "durable",
            AckLevel::Exported => "exported",
        })
    }
}

/// What a sink found when it opened its storage.
#[derive(Debug, Default, Clone)]
pub struct SinkOpen {
    /// The highest seq the sink already holds, so numbering continues.
    pub last_seq: Option<u64>,
    /// Damage found and repaired around (a torn last line, say); each becomes
    /// an `audit_gap` record so it is never silent.
    pub notices: Vec<String>,
}

/// Whether the dispatcher should try a failed write again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Trying the same batch again soon may succeed, and repeats nothing
    /// (the sink took none of it: a connection refused before any byte
    /// went out). The dispatcher writes the batch again up to 3 times,
    /// after 50, 100 and 200 ms, never past the shutdown deadline, before
    /// the failure counts (and breaks a required sink). A failure that
    /// says it holds or had refused part of the batch
    /// ([`SinkError::holding`], [`SinkError::rejected`]) is not retried.
    Transient,
    /// Counted at once: trying again will not help (disk full, permission
    /// denied, a bad request), could repeat records already written, or
    /// the sink already retried for as long as it should.
    Permanent,
}

/// A sink's failure, with its cause kept as the error source (so
/// `error.source().downcast_ref::<YourSinkError>()` works).
#[derive(Debug, Clone)]
pub struct SinkError {
    kind: FailureKind,
    /// Records of the batch the destination refused, when it said how many
    /// (an OTLP `partial_success`); `None` means the whole batch failed.
    rejected: Option<u64>,
    /// Leading records of the batch the sink holds despite the failure, per
    /// level (`Written`, `Durable`, `Exported`): a write that failed part
    /// way through, after some records were in place. Without it the
    /// dispatcher would name records the sink holds as lost.
    held: [u64; 3],
    source: Arc<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl SinkError {
    /// A failure of the given kind caused by `source`.
    pub fn new(kind: FailureKind, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SinkError {
            kind,
            rejected: None,
            held: [0; 3],
            source: Arc::new(source),
        }
    }

    /// A permanent failure.
    pub fn permanent(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SinkError::new(FailureKind::Permanent, source)
    }

    /// The destination took the batch but refused `count` of its records.
    pub fn rejected(count: u64, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SinkError {
            kind: FailureKind::Permanent,
            rejected: Some(count),
            held: [0; 3],
            source: Arc::new(source),
        }
    }

    /// Whether a retry could help.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// Says that the sink holds the first `records` of the batch at
    /// `level` (and the levels below it) although the write failed: the
    /// failure is about the records after them. Call it once per level
    /// reached, e.g. `.holding(5, AckLevel::Written).holding(3,
    /// AckLevel::Durable)` for a file whose fsync failed after two of five
    /// more lines went in. `Accepted` says nothing and is ignored.
    pub fn holding(mut self, records: u64, level: AckLevel) -> Self {
        let top = match level {
            AckLevel::Accepted => return self,
            AckLevel::Written => 0,
            AckLevel::Durable => 1,
            AckLevel::Exported => 2,
        };
        for held in &mut self.held[..=top] {
            *held = (*held).max(records);
        }
        self
    }

    /// How many leading records of a batch of `batch_len` the sink holds at
    /// `level` or above despite this error (see [`SinkError::holding`]).
    pub fn records_held(&self, batch_len: usize, level: AckLevel) -> u64 {
        let i = match level {
            AckLevel::Accepted | AckLevel::Written => 0,
            AckLevel::Durable => 1,
            AckLevel::Exported => 2,
        };
        self.held[i].min(batch_len as u64)
    }

    /// How many records of a batch of `batch_len` this error failed: those
    /// after the ones the sink holds, or as many as the destination said
    /// it refused.
    pub fn records_failed(&self, batch_len: usize) -> u64 {
        let rest = batch_len as u64 - self.records_held(batch_len, AckLevel::Written);
        self.rejected.map_or(rest, |n| n.min(rest))
    }
}

/// A batch handed to [`Sink::write`]: records in seq order, and the time by
/// which a shutting-down dispatcher needs an answer.
#[derive(Debug)]
pub struct Batch<'a> {
    /// The records, ascending seq.
    pub records: &'a [Arc<Record>],
    /// Give up retrying after this instant (set during shutdown).
    pub deadline: Option<Instant>,
}

/// The dispatcher's shutdown deadline, handed to a sink once when it starts
/// ([`Sink::watch_shutdown`], [`AsyncSink::watch_shutdown`]).
/// [`Batch::deadline`] only reaches batches taken after shutdown began; a
/// sink that retries inside a write reads this too, so a batch it was
/// already retrying stops by the deadline and is reported failed rather
/// than outliving the shutdown.
///
/// It is a `tokio::sync::watch` underneath: a sync sink reads
/// [`ShutdownSignal::deadline`], an async one awaits
/// [`ShutdownSignal::reached`] in a `select!` beside its request, which
/// wakes it when shutdown begins rather than on a timer. Cloning shares the
/// one value.
///
/// [`AsyncSink::watch_shutdown`]: crate::AsyncSink::watch_shutdown
#[derive(Clone, Debug)]
pub struct ShutdownSignal(Arc<tokio::sync::watch::Sender<Option<Instant>>>);

impl Default for ShutdownSignal {
    fn default() -> Self {
        ShutdownSignal(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl ShutdownSignal {
    /// A signal with no deadline yet.
    pub fn new() -> Self {
        ShutdownSignal::default()
    }

    /// The deadline, once shutdown has begun.
    pub fn deadline(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    /// Sets the deadline; an earlier one already set is kept. The
    /// dispatcher calls this when shutdown begins.
    pub fn set(&self, deadline: Instant) {
        self.0.send_if_modified(|d| {
            let new = d.map_or(deadline, |old| old.min(deadline));
            let changed = *d != Some(new);
            *d = Some(new);
            changed
        });
    }

    /// A receiver that sees every change of the deadline, for a sink that
    /// waits on it in its own way.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Instant>> {
        self.0.subscribe()
    }

    /// Resolves once shutdown has begun and its deadline, less `margin`,
    /// has passed; pending until then (and forever when shutdown never
    /// begins). Made to be raced against a request in `select!`: the
    /// request's future is dropped when this wins. Needs a tokio runtime
    /// with timers (the bridge's has them).
    pub async fn reached(&self, margin: Duration) {
        let mut rx = self.0.subscribe();
        loop {
            let Some(deadline) = *rx.borrow_and_update() else {
                // The sender lives as long as `self`: this only waits.
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            };
            let at = deadline.checked_sub(margin).unwrap_or(deadline);
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => return,
                // An earlier deadline: wait for that one instead.
                changed = rx.changed() => if changed.is_err() {
                    tokio::time::sleep_until(at.into()).await;
                    return;
                },
            }
        }
    }

    /// Resolves once a deadline at or before `t` is set.
    pub(crate) async fn set_by(&self, t: Instant) {
        let mut rx = self.0.subscribe();
        if rx.wait_for(|d| d.is_some_and(|d| d <= t)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What a sink that retries inside [`Sink::write`] is doing right now,
/// published through its [`StatusSignal`] and shown in
/// [`SinkHealth::retrying`](crate::SinkHealth::retrying).
///
/// A write that retries blocks the sink's queue (and, under
/// `overflow = "block"`, the emitters) for up to its retry budget with no
/// error yet to return; this is how an application learns, while it
/// happens, that records are stuck and until when.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Retrying {
    /// When the first attempt of the write being retried failed.
    #[serde(serialize_with = "as_text")]
    pub since: Timestamp,
    /// When the sink gives up and fails the records (the retry budget's end,
    /// or the shutdown deadline when that comes first).
    #[serde(serialize_with = "as_text")]
    pub until: Timestamp,
    /// The whole retry budget, in milliseconds.
    pub budget_ms: u64,
    /// Attempts made so far.
    pub attempts: u64,
    /// What the last attempt met. The sink keeps secrets (header values,
    /// credentials) out of it; it may still quote a server, so escape it
    /// before printing it to a terminal.
    pub last_error: String,
}

fn as_text<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

/// Where a sink publishes its live state for
/// [`Dispatcher::health`](crate::Dispatcher::health), handed to it once when it starts
/// ([`Sink::watch_status`]); the opposite direction to [`ShutdownSignal`].
/// Cloning shares the one value.
#[derive(Clone, Debug, Default)]
pub struct StatusSignal(Arc<Mutex<Option<Retrying>>>);

impl StatusSignal {
    /// A signal saying nothing.
    pub fn new() -> Self {
        StatusSignal::default()
    }

    /// Says the sink is retrying (replacing what it said before).
    pub fn set_retrying(&self, retrying: Retrying) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(retrying);
    }

    /// Changes the published state in place, so that several retry loops
    /// of one sink (requests in flight together) can keep the earliest
    /// `since` while updating the last error.
    pub fn update(&self, f: impl FnOnce(&mut Option<Retrying>)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Says the sink is no longer retrying (it delivered, or gave up and
    /// reported the failure from [`Sink::write`]).
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// What the sink says now.
    pub fn retrying(&self) -> Option<Retrying> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A destination for records.
///
/// The dispatcher gives each sink its own worker thread and calls these
/// methods from it, one at a time, so an implementation may block (an fsync,
/// a retry with backoff) without holding up emitters or other sinks.
///
/// Two methods are required: [`Sink::max_level`] and [`Sink::write`]. The
/// other hooks have defaults that suit a sink without buffering.
///
/// A boxed sink (`Box<dyn Sink>`, `Box<S>`) is a sink that forwards every
/// method, hooks included, to the one it holds.
pub trait Sink: Send + 'static {
    /// The highest level a successful [`Sink::write`] or [`Sink::tick`] can
    /// reach: receipts waiting for more from this sink settle for this.
    fn max_level(&self) -> AckLevel;

    /// Opens storage and reports the last seq it holds. Called once, before
    /// the first write.
    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        Ok(SinkOpen::default())
    }

    /// Writes a batch and returns the level every record of it reached.
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError>;

    /// Called when the queue is idle at least every [`Sink::tick_interval`];
    /// a sink that makes records durable later (`fsync = "interval"`)
    /// returns the level everything written so far has now reached.
    fn tick(&mut self) -> Result<Option<AckLevel>, SinkError> {
        Ok(None)
    }

    /// How often [`Sink::tick`] runs when nothing is written.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// How long the dispatcher may wait, once records are queued, for more
    /// to fill a batch of `max_batch` before calling [`Sink::write`] with
    /// fewer: a sink with a cost per write (a network request) groups a
    /// trickle of records. Never delays shutdown; `None` (the default)
    /// writes whatever is queued at once.
    fn linger(&self) -> Option<Duration> {
        None
    }

    /// The batch size this sink works best with (a request's worth of
    /// records, say). The dispatcher uses it unless the sink's
    /// [`SinkOptions::max_batch`](crate::SinkOptions::max_batch) was set,
    /// bounded by the queue. `None` (the default): no preference, batches
    /// of up to 4096.
    fn max_batch(&self) -> Option<usize> {
        None
    }

    /// Receives, once before the first write, the signal on which the
    /// dispatcher publishes its shutdown deadline. The default ignores it.
    fn watch_shutdown(&mut self, _signal: ShutdownSignal) {}

    /// Receives, once before the first write, the signal through which the
    /// sink says it is retrying (see [`Retrying`]); the dispatcher shows it
    /// in its health snapshot. A sink that retries inside [`Sink::write`]
    /// sets it on the first failed attempt and clears it when the write
    /// returns. The default ignores it.
    fn watch_status(&mut self, _status: StatusSignal) {}

    /// Things the sink noticed and worked around while running (its file was
    /// moved away and it reopened the path, say). The dispatcher asks after
    /// every write and tick and turns each into an `audit_gap` record with
    /// reason `sink_notice`, so nothing is handled silently.
    fn take_notices(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Flushes and releases resources; the last call the sink gets.
    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        Ok(None)
    }
}

// Every method of the trait is forwarded, or a boxed sink would silently
// get the default; `tests/sink_box.rs` fails when one is not.
impl<S: Sink + ?Sized> Sink for Box<S> {
    fn max_level(&self) -> AckLevel {
        (**self).max_level()
    }
    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        (**self).open()
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        (**self).write(batch)
    }
    fn tick(&mut self) -> Result<Option<AckLevel>, SinkError> {
        (**self).tick()
    }
    fn tick_interval(&self) -> Option<std::time::Duration> {
        (**self).tick_interval()
    }
    fn linger(&self) -> Option<Duration> {
        (**self).linger()
    }
    fn max_batch(&self) -> Option<usize> {
        (**self).max_batch()
    }
    fn watch_shutdown(&mut self, signal: ShutdownSignal) {
        (**self).watch_shutdown(signal)
    }
    fn watch_status(&mut self, status: StatusSignal) {
        (**self).watch_status(status)
    }
    fn take_notices(&mut self) -> Vec<String> {
        (**self).take_notices()
    }
    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        (**self).close()
    }
}
