//! How the dispatcher treats one sink: [`SinkOptions`] and its
//! [`Overflow`] policy.

/// What a sink does with a record when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Overflow {
    /// Wait for room: emitters slow down, nothing is lost.
    #[default]
    Block,
    /// Drop the new record, count it and write an `audit_gap` record later.
    DropNewest,
    /// Refuse the emit with [`EmitError::QueueFull`](crate::EmitError::QueueFull);
    /// no seq is used.
    FailClosed,
}

/// A sink's queue capacity in records unless configured otherwise: the one
/// place this default is stated (the facade's `queue` key uses it too).
///
/// A record waited on to Durable has at most a queue's worth of records
/// ahead of it, all written and synced before it is, so the queue bounds
/// the wait of audit before act under load. Measured with `agent-audit
/// bench --durable-probe` (1,000,000 records, `fsync = "batch"`, 1 and 8
/// tasks, on a 2-vCPU guest): 1024 waited 4.5-5.2 ms at p99 against 11-15
/// ms for 4096, at the same records/s, with less peak RSS (15 MiB
/// against 17-24). It was 8192 before stop 21 and 4096 until stop 22.
pub const DEFAULT_QUEUE: usize = 1024;

/// How the dispatcher treats one sink.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Name used in errors, health and gap records.
    pub name: String,
    /// Queue capacity in records, at least 1 (private, so that only the
    /// clamping setter sets it: see [`SinkOptions::queue_capacity`]).
    queue: usize,
    /// Policy when the queue is full.
    pub overflow: Overflow,
    /// Whether a failure of this sink fails `emit`.
    pub required: bool,
    /// Most records handed to one [`Sink::write`](crate::Sink::write), at
    /// least 1 (0 would make the worker spin; see
    /// [`SinkOptions::batch_limit`]); `None` until set, so that the sink's
    /// own preference ([`Sink::max_batch`](crate::Sink::max_batch)) can
    /// apply.
    max_batch: Option<usize>,
}

/// The batch limit when neither the options nor the sink set one.
const DEFAULT_MAX_BATCH: usize = 4096;

impl SinkOptions {
    /// Defaults: queue [`DEFAULT_QUEUE`] (4096), `block`, required, batches
    /// of up to 4096.
    pub fn new(name: impl Into<String>) -> Self {
        SinkOptions {
            name: name.into(),
            queue: DEFAULT_QUEUE,
            overflow: Overflow::Block,
            required: true,
            max_batch: None,
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

    /// Sets the largest batch (at least 1). Set, it wins over the sink's
    /// own [`Sink::max_batch`](crate::Sink::max_batch).
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = Some(records.max(1));
        self
    }

    /// Takes the sink's preferred batch size unless one was set here.
    pub(super) fn preferring(mut self, sink: Option<usize>) -> Self {
        if self.max_batch.is_none() {
            self.max_batch = sink.map(|n| n.max(1));
        }
        self
    }

    /// The queue capacity in records (at least 1), as set by
    /// [`SinkOptions::queue`].
    pub fn queue_capacity(&self) -> usize {
        self.queue
    }

    /// The most records handed to one [`Sink::write`](crate::Sink::write)
    /// (at least 1), as set by [`SinkOptions::max_batch`] (or, once the
    /// dispatcher started, by the sink's preference), 4096 otherwise.
    pub fn batch_limit(&self) -> usize {
        self.max_batch.unwrap_or(DEFAULT_MAX_BATCH)
    }
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_QUEUE, SinkOptions};

    #[test]
    fn a_zero_queue_or_batch_is_raised_to_one() {
        let o = SinkOptions::new("s").queue(0).max_batch(0);
        assert_eq!((o.queue_capacity(), o.batch_limit()), (1, 1));
        let o = SinkOptions::new("s");
        assert_eq!((o.queue_capacity(), o.batch_limit()), (DEFAULT_QUEUE, 4096));
    }

    #[test]
    fn a_sinks_preferred_batch_applies_unless_the_options_set_one() {
        let o = SinkOptions::new("s").preferring(Some(512));
        assert_eq!(o.batch_limit(), 512);
        let o = SinkOptions::new("s").max_batch(64).preferring(Some(512));
        assert_eq!(o.batch_limit(), 64);
        let o = SinkOptions::new("s").preferring(Some(0));
        assert_eq!(o.batch_limit(), 1);
        assert_eq!(SinkOptions::new("s").preferring(None).batch_limit(), 4096);
    }
}
