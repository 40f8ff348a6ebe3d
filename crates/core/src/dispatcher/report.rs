//! Reports: [`Health`] (counters per sink, at any time) and
//! [`ShutdownReport`] (what shutdown found, per sink).

use std::sync::atomic::Ordering;

use crate::sink::{AckLevel, Retrying};

use super::slot::SinkSlot;
use super::{Dispatcher, lock};

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
    /// Records handed to the sink's write that it has not answered for
    /// yet: with nothing acknowledged for a while, a stuck write (a
    /// collector that accepts the connection and never replies).
    pub in_flight: u64,
    /// Highest level the sink can reach.
    pub max_level: AckLevel,
    /// The most recent failure.
    pub last_error: Option<String>,
    /// Notices the sink raised while running (see [`Sink::take_notices`](crate::Sink::take_notices)).
    pub notices: u64,
    /// The most recent notice.
    pub last_notice: Option<String>,
    /// Set while the sink retries a write it has not given up on (see
    /// [`Sink::watch_status`](crate::Sink::watch_status)): records are stuck, not yet failed.
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
    /// space was used up ([`MAX_SEQ`](crate::MAX_SEQ)); what they would have named is still
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
    /// Records with no outcome when the report was taken: still queued,
    /// in a write still under way at the deadline, or given up then.
    pub undelivered: u64,
    /// Whether the worker finished before the deadline.
    pub finished: bool,
}

impl Dispatcher {
    /// Counters per sink, right now.
    pub fn health(&self) -> Health {
        Health {
            sinks: self.shared.sinks.iter().map(|s| s.health()).collect(),
        }
    }
}

impl SinkSlot {
    pub(super) fn health(&self) -> SinkHealth {
        let o = lock(&self.outcomes);
        SinkHealth {
            name: self.options.name.clone(),
            required: self.options.required,
            delivered: self.counts.delivered.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
            dropped: self.counts.dropped_or_refused.load(Ordering::Relaxed),
            queued: self.queue.len() as u64,
            in_flight: self.counts.in_flight.load(Ordering::Acquire),
            max_level: self.max_level,
            last_error: o.last_error.clone(),
            notices: o.notices,
            last_notice: o.last_notice.clone(),
            retrying: self.status.retrying(),
        }
    }

    /// This sink's part of the shutdown report.
    pub(super) fn report(&self) -> SinkReport {
        let h = self.health();
        SinkReport {
            finished: self.finished.is_set(),
            // What has no outcome: still queued, in a write under way, or
            // given up at the deadline. Counted as the rest of what was
            // offered rather than as the sum of those three, which a
            // write landing between two reads counted twice (its records
            // already failed, not yet out of flight).
            undelivered: self
                .counts
                .offered
                .load(Ordering::Acquire)
                .saturating_sub(h.delivered + h.failed + h.dropped),
            health: h,
        }
    }
}
