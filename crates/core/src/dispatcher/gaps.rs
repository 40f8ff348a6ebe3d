//! Gap records: what a sink dropped, failed or noticed is noted here as it
//! happens and written as `audit_gap` records (the next emit's, or the
//! shutdown's) to the sinks, so that no loss is silent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::record::{EventType, Record};
use crate::sink::Sink;

use super::options::Overflow;
use super::receipt::{DeliveryError, push_bad};
use super::seq::Order;
use super::slot::{Outcomes, SinkSlot};
use super::{Shared, lock};

/// Why the dispatcher wrote an `audit_gap` record: the payload's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GapReason {
    /// A sink's queue was full and records were dropped (`drop_newest`).
    QueueFull,
    /// A sink's write failed.
    SinkFailed,
    /// A sink worked around something (at start or while running).
    SinkNotice,
    /// The seq lease store worked around something at start.
    LeaseNotice,
    /// Seqs an earlier process reserved are skipped.
    SeqSkipped,
}

impl GapReason {
    /// The `reason` as written in records; records and docs depend on
    /// these exact strings.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            GapReason::QueueFull => "queue_full",
            GapReason::SinkFailed => "sink_failed",
            GapReason::SinkNotice => "sink_notice",
            GapReason::LeaseNotice => "lease_notice",
            GapReason::SeqSkipped => "seq_skipped",
        }
    }
}

/// One gap record about one sink, to be numbered and queued.
struct Gap {
    reason: GapReason,
    count: u64,
    ranges: Vec<(u64, u64)>,
    error: Option<String>,
}

impl Gap {
    /// The record's payload.
    fn payload(&self, sink: &str) -> serde_json::Value {
        if self.reason == GapReason::SinkNotice {
            serde_json::json!({
                "reason": self.reason.as_str(),
                "sink": sink,
                "detail": self.error,
            })
        } else {
            serde_json::json!({
                "reason": self.reason.as_str(),
                "sink": sink,
                // `null` for a failure that lost nothing (an
                // fsync that failed after every line was in).
                "from_seq": self.ranges.first().map(|r| r.0),
                "to_seq": self.ranges.last().map(|r| r.1),
                "lost": self.count,
                "ranges": self.ranges,
                "error": self.error,
            })
        }
    }
}

/// Failed writes not yet named in a `sink_failed` gap record.
pub(super) struct PendingFail {
    /// Exactly the seqs the sink was given and does not hold, ascending.
    pub(super) ranges: Vec<(u64, u64)>,
    /// How many records failed.
    pub(super) count: u64,
    /// The latest failure's message.
    pub(super) error: String,
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

impl SinkSlot {
    /// Notes that record `seq` was dropped (queue full or closing).
    pub(super) fn note_drop(&self, seq: u64) {
        self.counts
            .dropped_or_refused
            .fetch_add(1, Ordering::Relaxed);
        let mut o = lock(&self.outcomes);
        push_seq(&mut o.pending_drop, seq);
        self.gap_pending.store(true, Ordering::Release);
        push_bad(&mut o.bad, seq, seq, DeliveryError::Dropped);
        drop(o);
        self.progress.notify_waiters();
    }

    /// Notes a failed write, `lost` not held by the sink and `count`
    /// records failed, for a `sink_failed` gap record.
    pub(super) fn note_failure(
        &self,
        o: &mut Outcomes,
        lost: &[Arc<Record>],
        count: u64,
        msg: String,
    ) {
        let fail = o.pending_fail.get_or_insert_with(|| PendingFail {
            ranges: Vec::new(),
            count: 0,
            error: String::new(),
        });
        for r in lost {
            push_seq(&mut fail.ranges, r.seq);
        }
        fail.count += count;
        fail.error = msg;
        self.gap_pending.store(true, Ordering::Release);
    }

    /// Asks the sink for its notices ([`Sink::take_notices`]).
    pub(super) fn collect_notices(&self, sink: &mut Box<dyn Sink>) {
        let notices =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.take_notices()))
                .unwrap_or_default();
        self.note_notices(notices);
    }

    /// Notes a sink's notices for `sink_notice` gap records.
    pub(super) fn note_notices(&self, notices: Vec<String>) {
        if notices.is_empty() {
            return;
        }
        let mut o = lock(&self.outcomes);
        o.notices += notices.len() as u64;
        o.last_notice = notices.last().cloned();
        o.pending_notices.extend(notices);
        self.gap_pending.store(true, Ordering::Release);
    }

    /// The gap records due now, at most `most()` of them (the rest stay
    /// pending); `force` (at shutdown) takes all of them. `most` is asked
    /// only when something is pending: every emit comes here, few with
    /// anything to note.
    fn take_gaps(&self, force: bool, most: impl FnOnce() -> usize) -> Vec<Gap> {
        if !self.gap_pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let most = most();
        if most == 0 {
            return Vec::new();
        }
        let mut o = lock(&self.outcomes);
        let mut out = Vec::new();
        if !o.pending_drop.is_empty() && (force || !self.queue.is_full()) {
            let ranges = std::mem::take(&mut o.pending_drop);
            out.push(Gap {
                reason: GapReason::QueueFull,
                // Disjoint ranges of seqs <= MAX_SEQ: the sum fits.
                count: ranges.iter().map(|(a, b)| b - a + 1).sum(),
                ranges,
                error: None,
            });
        }
        let n = o.pending_notices.len().min(most - out.len());
        for notice in o.pending_notices.drain(..n) {
            out.push(Gap {
                reason: GapReason::SinkNotice,
                count: 0,
                ranges: Vec::new(),
                error: Some(notice),
            });
        }
        let due = out.len() < most
            && (force
                || o.last_fail_note
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                || o.pending_fail
                    .as_ref()
                    .is_some_and(|f| f.ranges.len() >= FAIL_RANGES_PER_GAP));
        if due && let Some(fail) = o.pending_fail.take() {
            o.last_fail_note = Some(Instant::now());
            out.push(Gap {
                reason: GapReason::SinkFailed,
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
}

impl Shared {
    /// Turns pending drops, failures and sink notices into `audit_gap`
    /// records.
    ///
    /// Outside shutdown (`force`), a note is numbered only while every
    /// `block` queue has room for it: the rest stay pending, the emit finds
    /// the full queue, waits for room and comes back to them first. A sink
    /// noting something faster than a `block` sink drains (a notice at
    /// every tick) then cannot grow that queue past its capacity, as it
    /// could when every note went onto it regardless.
    pub(super) fn flush_gaps(&self, order: &mut Order, force: bool) {
        for (i, s) in self.sinks.iter().enumerate() {
            let gaps = s.take_gaps(force, || {
                if force {
                    usize::MAX
                } else {
                    self.room_for_notes()
                }
            });
            for gap in gaps {
                let payload = gap.payload(&s.options.name);
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
                        if gap.reason != GapReason::SinkFailed {
                            other.push(record.clone(), true);
                        }
                    } else {
                        // A `block` queue had room for the note (see
                        // above; only holders of the order lock push), and
                        // the note must not be dropped from a sink that
                        // drops nothing.
                        let block = other.options.overflow == Overflow::Block;
                        other.push(record.clone(), force || block);
                    }
                }
            }
        }
    }

    /// The fewest free places over the `block` queues: how many notes may
    /// be numbered now without pushing one past its capacity.
    fn room_for_notes(&self) -> usize {
        self.sinks
            .iter()
            .filter(|s| s.options.overflow == Overflow::Block)
            .map(|s| s.options.queue_capacity().saturating_sub(s.queue.len()))
            .min()
            .unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::GapReason;

    #[test]
    fn gap_reasons_are_written_exactly_as_records_and_docs_name_them() {
        let names = [
            (GapReason::QueueFull, "queue_full"),
            (GapReason::SinkFailed, "sink_failed"),
            (GapReason::SinkNotice, "sink_notice"),
            (GapReason::LeaseNotice, "lease_notice"),
            (GapReason::SeqSkipped, "seq_skipped"),
        ];
        for (reason, name) in names {
            assert_eq!(reason.as_str(), name);
        }
    }
}
