//! The asynchronous sink trait, for destinations reached through async
//! clients (sqlx, reqwest, tonic, the AWS SDK, object_store).
//!
//! The dispatcher runs an [`AsyncSink`] through a bridge on the sink's own
//! worker thread (see [`DispatcherBuilder::async_sink`]): on a private
//! current-thread tokio runtime by default, or on the application's
//! multi-thread runtime ([`DispatcherBuilder::async_runtime`]). Everything
//! the dispatcher promises for a [`Sink`](crate::Sink) holds: batches in seq
//! order, acknowledgement watermarks, a transient failure retried, failures
//! and notices turned into `audit_gap` records, a bounded shutdown.
//!
//! [`DispatcherBuilder::async_sink`]: crate::DispatcherBuilder::async_sink
//! [`DispatcherBuilder::async_runtime`]: crate::DispatcherBuilder::async_runtime

use std::time::Duration;

use crate::sink::{AckLevel, Batch, ShutdownSignal, SinkError, SinkOpen, StatusSignal};

/// A destination for records, written to through async code.
///
/// The hooks are those of [`Sink`](crate::Sink), with these differences,
/// each for a reason:
///
/// - [`AsyncSink::open`], [`AsyncSink::write`], [`AsyncSink::tick`] and
///   [`AsyncSink::close`] are `async`. The trait is dyn-compatible through
///   [`async_trait`](https://docs.rs/async-trait): implement it with
///   `#[async_trait::async_trait]` on the `impl` block.
/// - [`AsyncSink::write`], [`AsyncSink::tick`] and
///   [`AsyncSink::take_notices`] take `&self`, so that up to
///   [`AsyncSink::max_in_flight`] writes can run at once; async clients
///   (a connection pool, an HTTP client) are shared this way anyway. State
///   that must advance in seq order (a hash chain) is taken before the
///   write's first `.await`, or behind a FIFO lock (`tokio::sync::Mutex`)
///   taken first: the bridge polls each write for the first time in seq
///   order. [`AsyncSink::open`] and [`AsyncSink::close`] take `&mut self`:
///   nothing else runs then.
/// - [`AsyncSink::max_in_flight`] is new: how many writes may be under way
///   at once (default 1).
///
/// Two methods are required: [`AsyncSink::max_level`] and
/// [`AsyncSink::write`]. Every other hook has a default that suits a sink
/// without buffering, as on [`Sink`](crate::Sink).
///
/// What the bridge does around the hooks:
///
/// - Writes complete in seq order as far as acknowledgements go: a later
///   batch that finishes first waits for the earlier ones before its
///   records are acknowledged, so a receipt never sees a level a record
///   has not reached.
/// - A failure of kind [`FailureKind::Transient`](crate::FailureKind) of a
///   whole batch is written again as the sync worker does (3 times, after
///   50, 100 and 200 ms, never past the shutdown deadline).
/// - [`AsyncSink::tick`] runs with no write under way.
/// - The shutdown deadline reaches the sink through
///   [`AsyncSink::watch_shutdown`]: a write that retries can `select!` on
///   [`ShutdownSignal::reached`] and give up with its own error. A write
///   still running at the deadline is cancelled by dropping its future
///   (its `Drop` code runs; nothing after its last `.await` does) and its
///   records are reported failed with [`WriteCancelled`], named in an
///   `audit_gap` record like any failed write.
/// - A panic in a hook fails the write (or the hook), as on the sync path.
///
/// A boxed sink (`Box<dyn AsyncSink>`, `Box<S>`) forwards every method,
/// hooks included, to the one it holds.
#[async_trait::async_trait]
pub trait AsyncSink: Send + Sync + 'static {
    /// The highest level a successful [`AsyncSink::write`] or
    /// [`AsyncSink::tick`] can reach: receipts waiting for more from this
    /// sink settle for this. Asked once, after [`AsyncSink::open`].
    fn max_level(&self) -> AckLevel;

    /// Opens storage (connects, creates a table) and reports the last seq
    /// it holds. Called once, on the sink's runtime, before any other
    /// hook: a client that must be built inside a runtime is built here.
    async fn open(&mut self) -> Result<SinkOpen, SinkError> {
        Ok(SinkOpen::default())
    }

    /// Writes a batch and returns the level every record of it reached.
    /// Up to [`AsyncSink::max_in_flight`] calls run at once, started in seq
    /// order.
    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError>;

    /// Called with no write under way at least every
    /// [`AsyncSink::tick_interval`]; returns the level everything written
    /// so far has now reached.
    async fn tick(&self) -> Result<Option<AckLevel>, SinkError> {
        Ok(None)
    }

    /// How often [`AsyncSink::tick`] runs.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// How long the dispatcher may wait, once records are queued, for more
    /// to fill a batch before calling [`AsyncSink::write`] with fewer.
    /// Never delays shutdown; `None` writes whatever is queued at once.
    fn linger(&self) -> Option<Duration> {
        None
    }

    /// The batch size this sink works best with (a request's worth of
    /// records). The dispatcher uses it unless the sink's
    /// [`SinkOptions::max_batch`](crate::SinkOptions::max_batch) was set,
    /// bounded by the queue. `None` (the default): no preference.
    fn max_batch(&self) -> Option<usize> {
        None
    }

    /// How many writes may be under way at once; at least 1 (the default,
    /// one batch after another). Acknowledgements stay in seq order.
    fn max_in_flight(&self) -> usize {
        1
    }

    /// Receives, once before the first write, the dispatcher's shutdown
    /// deadline; await [`ShutdownSignal::reached`] on it to stop retrying
    /// in time. The default ignores it.
    fn watch_shutdown(&mut self, _signal: ShutdownSignal) {}

    /// Receives, once before the first write, the signal through which the
    /// sink says it is retrying (see [`Retrying`](crate::Retrying)). The
    /// bridge clears it whenever no write is under way. The default ignores
    /// it.
    fn watch_status(&mut self, _status: StatusSignal) {}

    /// Things the sink noticed and worked around; asked after every write
    /// and tick, each becomes an `audit_gap` record with reason
    /// `sink_notice`.
    fn take_notices(&self) -> Vec<String> {
        Vec::new()
    }

    /// Flushes and releases resources; the last call the sink gets, with
    /// no write under way. The sink is dropped on its worker thread, inside
    /// its runtime's context, after this.
    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        Ok(None)
    }
}

// Every method of the trait is forwarded, or a boxed sink would silently
// get the default; `tests/sink_box.rs` fails when one is not.
#[async_trait::async_trait]
impl<S: AsyncSink + ?Sized> AsyncSink for Box<S> {
    fn max_level(&self) -> AckLevel {
        (**self).max_level()
    }
    async fn open(&mut self) -> Result<SinkOpen, SinkError> {
        (**self).open().await
    }
    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        (**self).write(batch).await
    }
    async fn tick(&self) -> Result<Option<AckLevel>, SinkError> {
        (**self).tick().await
    }
    fn tick_interval(&self) -> Option<Duration> {
        (**self).tick_interval()
    }
    fn linger(&self) -> Option<Duration> {
        (**self).linger()
    }
    fn max_batch(&self) -> Option<usize> {
        (**self).max_batch()
    }
    fn max_in_flight(&self) -> usize {
        (**self).max_in_flight()
    }
    fn watch_shutdown(&mut self, signal: ShutdownSignal) {
        (**self).watch_shutdown(signal)
    }
    fn watch_status(&mut self, status: StatusSignal) {
        (**self).watch_status(status)
    }
    fn take_notices(&self) -> Vec<String> {
        (**self).take_notices()
    }
    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        (**self).close().await
    }
}

/// The error of a write that was still under way at the shutdown deadline
/// and was cancelled by the bridge (its future dropped): the sink did not
/// answer, so none of its records count as delivered. Reach it with
/// `SinkError::source().downcast_ref::<WriteCancelled>()`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the write was still under way at the shutdown deadline and was cancelled; its records count as failed"
)]
pub struct WriteCancelled;
