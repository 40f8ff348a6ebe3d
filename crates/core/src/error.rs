//! Errors. Each operation's error type lists only what that operation can
//! return.

use crate::dispatcher::DeliveryError;
use crate::sink::SinkError;

/// Why [`crate::DispatcherBuilder::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// No sink was added: records would go nowhere, a trail with none is
    /// no trail.
    #[error("a dispatcher needs at least one sink: with none, records would go nowhere")]
    NoSinks,
    /// The sinks or the seq lease already reach the top of the seq space
    /// ([`crate::MAX_SEQ`]), leaving no seq for the start's own notices and
    /// a first record. Numbering never wraps; nothing was written.
    #[error(
        "no seq is left to number records with: {held_by} already reaches seq {last_seq} (seqs end at {max} and never wrap); if that file was altered, restore it, otherwise start a new log"
        , max = crate::MAX_SEQ
    )]
    SeqExhausted {
        /// The highest seq found.
        last_seq: u64,
        /// Where it was found: ``sink `name` `` or the seq lease.
        held_by: String,
    },
    /// A sink could not open its storage.
    #[error("sink `{sink}` failed to open: {source}")]
    Open {
        /// Sink name.
        sink: String,
        /// Cause.
        #[source]
        source: SinkError,
    },
    /// Two sinks share a name, so health and errors could not tell them apart.
    #[error("two sinks are named `{sink}`; names must be unique")]
    DuplicateName {
        /// The repeated name.
        sink: String,
    },
    /// The worker thread could not be started.
    #[error("could not start the worker thread of sink `{sink}`: {source}")]
    Thread {
        /// Sink name.
        sink: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The private runtime of an async sink could not be built.
    #[error("could not start the runtime of async sink `{sink}`: {source}")]
    Runtime {
        /// Sink name.
        sink: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime handle given with
    /// [`DispatcherBuilder::async_runtime`](crate::DispatcherBuilder::async_runtime)
    /// cannot run an async sink.
    #[error("async sink `{sink}` cannot run on the given runtime: {reason}")]
    RuntimeHandle {
        /// Sink name.
        sink: String,
        /// Why.
        reason: &'static str,
    },
    /// The seq lease could not be read or extended.
    #[error("could not start numbering records: {source}")]
    Lease {
        /// Cause.
        #[source]
        source: crate::lease::LeaseError,
    },
    /// Writing the start-up notice records failed.
    #[error("could not record a sink's start-up notice: {0}")]
    Notice(#[from] EmitError),
}

/// Why an emit failed. Nothing was lost silently: the record either has a
/// seq and the error says which sink did not take it, or it was refused
/// before a seq was assigned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// A required sink failed (now or earlier); the agent must not act.
    #[error("required sink `{sink}` failed: {error}")]
    SinkFailed {
        /// Sink name.
        sink: String,
        /// Cause.
        #[source]
        error: DeliveryError,
    },
    /// A `fail_closed` sink's queue is full; no seq was assigned.
    #[error("sink `{sink}` refused the record: queue full (overflow = \"fail_closed\")")]
    QueueFull {
        /// Sink name.
        sink: String,
    },
    /// A required sink's queue was full under `drop_newest`.
    #[error("required sink `{sink}` dropped record seq {seq}: queue full")]
    Dropped {
        /// Sink name.
        sink: String,
        /// The dropped record's seq.
        seq: u64,
    },
    /// The payload could not be serialised.
    #[error("payload could not be serialised: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The payload is not a JSON object.
    #[error("payload must be a JSON object, got {found}")]
    PayloadNotObject {
        /// What it was instead.
        found: &'static str,
    },
    /// The serialised record exceeds `max_record_bytes`.
    #[error(
        "record of {size} bytes exceeds max_record_bytes = {max}; it was not written (nor truncated)"
    )]
    TooLarge {
        /// Serialised size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payload nests objects and arrays deeper than
    /// [`crate::MAX_PAYLOAD_DEPTH`]; nothing was written.
    #[error(
        "payload nests objects and arrays deeper than {max} levels; it was not written (readers of the log could not parse it)"
    )]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The seq lease could not be extended; no seq was assigned, since a
    /// seq beyond the lease could be reused after a crash.
    #[error("record refused: {0}")]
    Lease(#[source] crate::lease::LeaseError),
    /// Every seq up to [`crate::MAX_SEQ`] is used: the record was refused,
    /// since numbering never wraps. No later record can be numbered by
    /// this log.
    #[error(
        "record refused: the seq space is used up (the last seq, {last_seq}, is taken; numbering never wraps)"
    )]
    SeqExhausted {
        /// The last seq there is.
        last_seq: u64,
    },
    /// The handle was given an id longer than [`crate::MAX_ID_BYTES`]
    /// through [`Auditor::with_user`](crate::Auditor::with_user),
    /// [`Auditor::with_session`](crate::Auditor::with_session),
    /// [`Auditor::for_request`](crate::Auditor::for_request) or
    /// [`Auditor::with_correlation_id`](crate::Auditor::with_correlation_id): no
    /// record of it is written (no seq was assigned) until it is given an
    /// id within the limit. The error names the field, never the id.
    #[error(
        "record refused: the handle's `{field}` is {len} bytes, over the limit of {max} (bound ids from outside before giving them; try_with_user / try_with_session refuse such an id where it is given)"
    )]
    IdTooLong {
        /// `request_id`, `correlation_id`, `user_id` or `session_id`.
        field: &'static str,
        /// The id's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The dispatcher was shut down.
    #[error("the dispatcher is shut down")]
    Closed,
}
