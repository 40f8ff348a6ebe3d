//! How far one sink got, per seq: a watermark per level, below which every
//! seq reached that level (or is listed as bad, see [`super::receipt`]),
//! and the marks of what was queued and what was processed.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sink::AckLevel;

pub(super) struct Watermarks {
    /// Per level (Written, Durable, Exported): every seq below it reached
    /// that level or is listed in the slot's bad ranges.
    through: [AtomicU64; 3],
    /// Every seq below it was processed, whatever the outcome.
    done: AtomicU64,
    /// One past the highest seq queued.
    pushed: AtomicU64,
}

impl Watermarks {
    pub(super) fn new() -> Watermarks {
        Watermarks {
            through: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            done: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
        }
    }

    /// Record `seq` was queued.
    pub(super) fn note_pushed(&self, seq: u64) {
        // Seqs end at MAX_SEQ, so one past a seq is always a u64.
        self.pushed.fetch_max(seq + 1, Ordering::AcqRel);
    }

    /// Every seq below `upto` was processed.
    pub(super) fn note_done(&self, upto: u64) {
        self.done.fetch_max(upto, Ordering::AcqRel);
    }

    /// One past the highest seq processed.
    pub(super) fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Whether every record queued so far was processed (written or failed).
    pub(super) fn is_drained(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.pushed.load(Ordering::Acquire)
    }

    /// Every seq below `upto` reached `level` (and the levels below it).
    pub(super) fn advance(&self, upto: u64, level: AckLevel) {
        if let Some(i) = level_index(level) {
            for t in &self.through[..=i] {
                t.fetch_max(upto, Ordering::AcqRel);
            }
        }
    }

    /// The highest level `seq` reached.
    pub(super) fn reached(&self, seq: u64) -> AckLevel {
        for level in [AckLevel::Exported, AckLevel::Durable, AckLevel::Written] {
            if let Some(i) = level_index(level)
                && self.through[i].load(Ordering::Acquire) > seq
            {
                return level;
            }
        }
        AckLevel::Accepted
    }
}

fn level_index(level: AckLevel) -> Option<usize> {
    match level {
        AckLevel::Accepted => None,
        AckLevel::Written => Some(0),
        AckLevel::Durable => Some(1),
        AckLevel::Exported => Some(2),
    }
}
