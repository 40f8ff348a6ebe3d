//! The dispatcher: one seq counter, a bounded queue and a worker thread per
//! sink, acknowledgements, gap records, health and shutdown.
//!
//! A record goes, file by file:
//!
//! - [`emit`]: an emit checks the required sinks and takes the order lock;
//! - [`seq`]: the record gets its seq and time ([`seq::Order`]);
//! - [`queue`]: it is queued on every sink (or dropped, or refused, by its
//!   [`Overflow`] policy);
//! - [`worker`]: each sink's own thread hands batches to [`Sink::write`]
//!   (or [`bridge`]: an [`AsyncSink`](crate::AsyncSink)'s thread keeps up
//!   to N writes under way on its runtime, acknowledged in seq order);
//! - [`watermarks`]: the levels the sink reached move up per seq;
//! - [`receipt`]: a waiting emitter reads them into its [`Receipt`].
//!
//! Around that flow: [`builder`] and [`options`] set it up, [`slot`] holds
//! one sink's part, [`gaps`] turns drops, failures and notices into
//! `audit_gap` records, [`report`] holds the health and shutdown reports,
//! [`shutdown`] drains and stops it, and [`recycle`] hands written records
//! back to be filled in again.
//!
//! [`Sink::write`]: crate::Sink::write

mod bridge;
mod builder;
mod emit;
mod gaps;
mod options;
mod queue;
mod receipt;
mod recycle;
mod report;
mod seq;
mod shutdown;
mod slot;
mod watermarks;
mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ids::TraceId;
use crate::redact::PayloadFilter;

pub use builder::DispatcherBuilder;
pub use options::{DEFAULT_QUEUE, Overflow, SinkOptions};
pub use receipt::{DeliveryError, Receipt, SinkFailure};
pub(crate) use recycle::{body_buffer, reuse_body};
pub use report::{Health, ShutdownReport, SinkHealth, SinkReport};
pub(crate) use seq::Draft;

use seq::Order;
use slot::SinkSlot;

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

/// What every handle of one dispatcher shares.
struct Shared {
    /// The numbering; held while a record is stamped and queued, so that
    /// every queue holds records in seq order. Never held across an await
    /// (see [`emit`]).
    order: Mutex<Order>,
    sinks: Vec<Arc<SinkSlot>>,
    filter: Option<Arc<dyn PayloadFilter>>,
    /// Attributes stamped on every record (`[attributes]`), redacted.
    attributes: crate::Attributes,
    max_record_bytes: usize,
    /// Set when shutdown begins: no more records.
    closed: AtomicBool,
    /// Set when shutdown ended, so that dropping does not drain again.
    shut_down: AtomicBool,
    /// The trace id of the dispatcher's own records (gap records).
    trace_id: TraceId,
    before_shutdown: Mutex<Vec<ShutdownHook>>,
}

type ShutdownHook =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

impl Dispatcher {
    /// A builder.
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }

    pub(crate) fn filter(&self) -> Option<&Arc<dyn PayloadFilter>> {
        self.shared.filter.as_ref()
    }

    /// The attributes every record carries (the builder's
    /// [`DispatcherBuilder::attributes`], after redaction); every
    /// [`Auditor`](crate::Auditor) starts from them.
    pub fn attributes(&self) -> &crate::Attributes {
        &self.shared.attributes
    }

    pub(crate) fn max_record_bytes(&self) -> usize {
        self.shared.max_record_bytes
    }

    /// The seq the next record will get; `u64::MAX` (beyond [`MAX_SEQ`])
    /// once every seq is used.
    ///
    /// [`MAX_SEQ`]: crate::MAX_SEQ
    pub async fn next_seq(&self) -> u64 {
        lock(&self.shared.order).next_seq
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
}

/// A dispatcher handle that does not keep it alive: metric callbacks hold
/// one, so that a dispatcher the application dropped without shutdown
/// still reaches its drop-time drain.
#[cfg(feature = "otel")]
#[derive(Clone)]
pub(crate) struct WeakDispatcher(std::sync::Weak<Shared>);

#[cfg(feature = "otel")]
impl WeakDispatcher {
    pub(crate) fn upgrade(&self) -> Option<Dispatcher> {
        self.0.upgrade().map(|shared| Dispatcher { shared })
    }
}

#[cfg(feature = "otel")]
impl Dispatcher {
    pub(crate) fn downgrade(&self) -> WeakDispatcher {
        WeakDispatcher(Arc::downgrade(&self.shared))
    }
}

/// Locks `m`, taking over a lock poisoned by a panicking sink: the state it
/// guards is kept consistent by each critical section.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
