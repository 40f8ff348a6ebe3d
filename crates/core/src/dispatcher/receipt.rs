//! Receipts: an emitter that waits for its record reads every sink's
//! watermarks, and the ranges of seqs a sink dropped or failed, into a
//! [`Receipt`].

use std::collections::VecDeque;

use crate::error::EmitError;
use crate::sink::{AckLevel, SinkError};

use super::slot::SinkSlot;
use super::{Dispatcher, lock};

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
#[non_exhaustive]
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

impl Dispatcher {
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
}

/// Bad ranges kept per sink for waiters; the oldest go first.
const BAD_RANGES_KEPT: usize = 4096;

/// Seq ranges a sink dropped, failed or abandoned, oldest first.
pub(super) type BadRanges = VecDeque<(u64, u64, DeliveryError)>;

/// Notes that seqs `from..=to` went bad, merging adjacent drops.
pub(super) fn push_bad(bad: &mut BadRanges, from: u64, to: u64, e: DeliveryError) {
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

impl SinkSlot {
    /// Waits until record `seq` reached `level` on this sink (or its
    /// highest level), failed, or the sink finished without it.
    async fn wait(&self, seq: u64, level: AckLevel) -> Result<AckLevel, DeliveryError> {
        let target = level.min(self.max_level);
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.bad_outcome(seq) {
                return Err(e);
            }
            let reached = self.marks.reached(seq);
            if reached >= target {
                return Ok(reached);
            }
            if self.finished.is_set() {
                return if reached > AckLevel::Accepted {
                    Ok(reached)
                } else {
                    Err(DeliveryError::Abandoned)
                };
            }
            notified.await;
        }
    }

    fn bad_outcome(&self, seq: u64) -> Option<DeliveryError> {
        let o = lock(&self.outcomes);
        o.bad
            .iter()
            .rev()
            .find(|(from, to, _)| (*from..=*to).contains(&seq))
            .map(|(_, _, e)| e.clone())
    }
}
