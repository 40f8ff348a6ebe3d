//! How the dispatcher treats one sink: [`SinkOptions`] and its
//! [`Overflow`] policy.

/// What a sink does with a record when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
pub const DEFAULT_QUEUE: usize = 8192;

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
    /// [`SinkOptions::batch_limit`]).
    max_batch: usize,
}

impl SinkOptions {
    /// Defaults: queue [`DEFAULT_QUEUE`] (8192), `block`, required, batches
    /// of up to 4096.
    pub fn new(name: impl Into<String>) -> Self {
        SinkOptions {
            name: name.into(),
            queue: DEFAULT_QUEUE,
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

    /// The queue capacity in records (at least 1), as set by
    /// [`SinkOptions::queue`].
    pub fn queue_capacity(&self) -> usize {
        self.queue
    }

    /// The most records handed to one [`Sink::write`](crate::Sink::write)
    /// (at least 1), as set by [`SinkOptions::max_batch`].
    pub fn batch_limit(&self) -> usize {
        self.max_batch
    }
}

#[cfg(test)]
mod tests {
    use super::SinkOptions;

    #[test]
    fn a_zero_queue_or_batch_is_raised_to_one() {
        let o = SinkOptions::new("s").queue(0).max_batch(0);
        assert_eq!((o.queue_capacity(), o.batch_limit()), (1, 1));
        let o = SinkOptions::new("s");
        assert_eq!((o.queue_capacity(), o.batch_limit()), (8192, 4096));
    }
}
