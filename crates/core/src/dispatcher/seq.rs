//! Numbering: the one seq counter ([`Order`], behind the dispatcher's order
//! lock) that stamps every record with its seq and time, keeps the seq
//! lease ahead of it and stops at [`MAX_SEQ`].

use std::sync::Arc;

use crate::error::EmitError;
use crate::lease::{LeaseError, Leased};
use crate::record::{MAX_SEQ, Record, RecordMeta};
use crate::time::Stamper;

use super::recycle;

/// The numbering state, behind the dispatcher's order lock.
pub(super) struct Order {
    /// The seq the next record gets; `MAX_SEQ + 1` once every seq is used.
    pub(super) next_seq: u64,
    pub(super) lease: Option<Leased>,
    /// A lease store that failed while numbering a gap record, for the
    /// next emit to report.
    pub(super) lease_error: Option<LeaseError>,
    /// Gap records that could not be numbered because the seq space was
    /// used up, for the shutdown report.
    pub(super) unnumbered: u64,
    /// Records the sinks handed back, for the next stamps to fill in.
    pub(super) spare: Vec<Arc<Record>>,
    /// Stamps the time; holds the current second's text.
    clock: Stamper,
}

/// Every seq up to [`MAX_SEQ`] is used.
pub(super) struct Exhausted;

impl From<Exhausted> for EmitError {
    fn from(_: Exhausted) -> EmitError {
        EmitError::SeqExhausted { last_seq: MAX_SEQ }
    }
}

impl Order {
    /// Numbering that starts at `next_seq`, kept under `lease` if any.
    pub(super) fn new(next_seq: u64, lease: Option<Leased>) -> Order {
        Order {
            next_seq,
            lease,
            lease_error: None,
            unnumbered: 0,
            spare: Vec::new(),
            clock: Stamper::new(),
        }
    }

    /// Keeps the lease ahead of the numbering before an emit.
    pub(super) fn keep_leased(&mut self) -> Result<(), EmitError> {
        if let Some(e) = self.lease_error.take() {
            return Err(EmitError::Lease(e));
        }
        match &mut self.lease {
            Some(l) => l.ensure(self.next_seq).map_err(EmitError::Lease),
            None => Ok(()),
        }
    }

    /// Gives a draft the next seq and the current time, in one critical
    /// section so that time never runs backwards along the sequence.
    /// Past [`MAX_SEQ`] there is no seq to give: an error, never a wrap.
    pub(super) fn stamp(&mut self, draft: Draft) -> Result<Arc<Record>, Exhausted> {
        let seq = self.next_seq;
        if seq > MAX_SEQ {
            return Err(Exhausted);
        }
        // Gap records are numbered without an emit; `keep_leased` leaves
        // half a block of room for them, so this only runs if a flood of
        // them used it all up.
        if let Some(l) = &mut self.lease
            && let Err(e) = l.ensure(seq)
        {
            self.lease_error = Some(e);
        }
        // `seq <= MAX_SEQ < u64::MAX`: no overflow.
        self.next_seq = seq + 1;
        let ts = self.clock.now();
        // A record a sink handed back (see `recycle`) is filled in again.
        if let Some(mut shell) = self.spare.pop()
            && let Some(record) = Arc::get_mut(&mut shell)
        {
            let old = record.refill(seq, ts, draft.meta, draft.body, draft.payload_at);
            recycle::reuse_body(old);
            return Ok(shell);
        }
        Ok(Arc::new(Record::from_parts(
            seq,
            ts,
            draft.meta,
            draft.body,
            draft.payload_at,
        )))
    }
}

/// A record body serialised on the emitting thread.
pub(crate) struct Draft {
    pub(crate) meta: RecordMeta,
    pub(crate) body: String,
    pub(crate) payload_at: usize,
}
