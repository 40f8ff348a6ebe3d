//! Emitting: an emit refuses early when a required sink broke, takes the
//! order lock, writes pending gap records first, checks every queue's room
//! by its sink's [`Overflow`] policy, then stamps the record
//! ([`super::seq`]) and queues it on every sink ([`super::queue`]).
//!
//! The order lock is a plain mutex held for a few hundred nanoseconds and
//! never across an await: an emitter that must wait for room (`block`)
//! lets go of it, waits, and tries again. Concurrent emitters on a
//! multi-threaded runtime then contend for a short critical section
//! instead of parking and waking each other through an async lock's queue
//! (measured with `agent-audit bench --tasks 8`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use crate::error::EmitError;
use crate::record::{EventType, MAX_SEQ, RecordMeta, Scope};

use super::options::Overflow;
use super::receipt::DeliveryError;
use super::recycle;
use super::seq::{Draft, Exhausted, Order};
use super::slot::SinkSlot;
use super::{Dispatcher, Shared, lock};

impl Dispatcher {
    /// Assigns the next seq and queues the record on every sink. Returns once
    /// every sink has it queued (or dropped it by policy).
    pub(crate) async fn submit(&self, mut draft: Draft) -> Result<u64, EmitError> {
        let shared = &self.shared;
        // Outside the order lock: a reused buffer far bigger than this
        // body would be held as long as the record is.
        recycle::fit_body(&mut draft.body);
        // An emit that finds room never waits, so a task emitting flat out
        // would never give its worker thread back: other tasks there (one
        // waiting on a Durable receipt that has already settled) would
        // wait for it to finish. Counting each emit against tokio's
        // cooperative budget makes such a task yield every 128 emits.
        // Counting every 4th emit instead saved two thirds of the context
        // switches (each yield wakes a parked worker to steal) but, with 8
        // tasks emitting flat out, raised the Durable wait's p99 from 5-6.5
        // ms to 25-31 ms (`agent-audit bench --tasks 8 --durable-probe`).
        tokio::task::consume_budget().await;
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return Err(EmitError::Closed);
            }
            shared.check_required()?;
            let full = {
                let mut order = lock(&shared.order);
                if shared.closed.load(Ordering::Acquire) {
                    return Err(EmitError::Closed);
                }
                if order.next_seq > MAX_SEQ {
                    return Err(Exhausted.into());
                }
                order.keep_leased()?;
                shared.flush_gaps(&mut order, false);
                match shared.full_blocking_queue()? {
                    Some(slot) => slot,
                    None => return shared.queue_everywhere(order, draft),
                }
            };
            // No seq is used while waiting: shutdown releases the wait and
            // the next round returns `Closed`.
            full.queue.wait_for_room(&shared.closed).await;
        }
    }

    /// Emits a record of the dispatcher's own (a gap record at start).
    pub(super) async fn emit_internal(
        &self,
        event_type: EventType,
        payload: serde_json::Value,
    ) -> Result<u64, EmitError> {
        let draft = self.shared.internal_draft(event_type, &payload);
        self.submit(draft).await
    }
}

impl Shared {
    /// Fails when a required sink broke.
    fn check_required(&self) -> Result<(), EmitError> {
        for s in &self.sinks {
            if s.options.required
                && let Some(error) = s.broken()
            {
                return Err(EmitError::SinkFailed {
                    sink: s.options.name.clone(),
                    error: DeliveryError::Failed(error),
                });
            }
        }
        Ok(())
    }

    /// Stamps the draft and queues it on every sink, then lets go of the
    /// order lock.
    fn queue_everywhere(
        &self,
        mut order: MutexGuard<'_, Order>,
        draft: Draft,
    ) -> Result<u64, EmitError> {
        if order.spare.is_empty() {
            for s in &self.sinks {
                if s.returned.take_into(&mut order.spare) {
                    break;
                }
            }
        }
        // The gap records just numbered may have taken the last seqs.
        let record = order.stamp(draft)?;
        let seq = record.seq;
        let mut dropped_required = None;
        for s in &self.sinks {
            if !s.push(record.clone(), false) && s.options.required {
                dropped_required = Some(s.options.name.clone());
            }
        }
        drop(order);
        match dropped_required {
            Some(sink) => Err(EmitError::Dropped { sink, seq }),
            None => Ok(seq),
        }
    }

    /// The first full queue whose sink waits for room (`block`), if any;
    /// a full `fail_closed` queue refuses the record (counted) before any.
    fn full_blocking_queue(&self) -> Result<Option<&Arc<SinkSlot>>, EmitError> {
        let mut blocked = None;
        for s in &self.sinks {
            match s.options.overflow {
                Overflow::Block if blocked.is_none() && s.queue.is_full() => blocked = Some(s),
                Overflow::FailClosed if s.queue.is_full() => {
                    s.counts.offered.fetch_add(1, Ordering::Relaxed);
                    s.counts.dropped_or_refused.fetch_add(1, Ordering::Relaxed);
                    return Err(EmitError::QueueFull {
                        sink: s.options.name.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(blocked)
    }

    /// A draft of the dispatcher's own record, as agent `agent-audit`.
    pub(super) fn internal_draft(
        &self,
        event_type: EventType,
        payload: &serde_json::Value,
    ) -> Draft {
        let meta = RecordMeta {
            event_type,
            scope: Arc::new(Scope {
                attributes: self.attributes.clone(),
                ..Scope::new(self.trace_id, Some(Arc::from("agent-audit")))
            }),
        };
        crate::auditor::serialize_draft(meta, payload)
            .unwrap_or_else(|_| crate::auditor::empty_draft(self.trace_id))
    }
}
