//! Emitting: an emit refuses early when a required sink broke, takes the
//! order lock, writes pending gap records first, waits for room (or
//! refuses) by each sink's [`Overflow`] policy, then stamps the record
//! ([`super::seq`]) and queues it on every sink ([`super::queue`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::EmitError;
use crate::record::{EventType, MAX_SEQ, RecordMeta, Scope};

use super::options::Overflow;
use super::receipt::DeliveryError;
use super::seq::{Draft, Exhausted};
use super::{Dispatcher, Shared};

impl Dispatcher {
    /// Assigns the next seq and queues the record on every sink. Returns once
    /// every sink has it queued (or dropped it by policy).
    pub(crate) async fn submit(&self, draft: Draft) -> Result<u64, EmitError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        shared.check_required()?;
        let mut order = shared.order.lock().await;
        if shared.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        if order.next_seq > MAX_SEQ {
            return Err(Exhausted.into());
        }
        order.keep_leased()?;
        shared.flush_gaps(&mut order, false).await;
        for s in &shared.sinks {
            if s.options.overflow == Overflow::Block {
                s.queue.wait_for_room(&shared.closed).await;
                if shared.closed.load(Ordering::Acquire) {
                    // Shutdown released us while we waited: no seq is used.
                    return Err(EmitError::Closed);
                }
            } else if s.options.overflow == Overflow::FailClosed && s.queue.is_full() {
                s.counts.dropped_or_refused.fetch_add(1, Ordering::Relaxed);
                return Err(EmitError::QueueFull {
                    sink: s.options.name.clone(),
                });
            }
        }
        // The gap records just numbered may have taken the last seqs.
        let record = order.stamp(draft)?;
        let seq = record.seq;
        let mut dropped_required = None;
        for s in &shared.sinks {
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

    /// A draft of the dispatcher's own record, as agent `agent-audit`.
    pub(super) fn internal_draft(
        &self,
        event_type: EventType,
        payload: &serde_json::Value,
    ) -> Draft {
        let meta = RecordMeta {
            event_type,
            scope: Scope {
                attributes: self.attributes.clone(),
                ..Scope::new(self.trace_id, Some(Arc::from("agent-audit")))
            },
        };
        crate::auditor::serialize_draft(meta, payload)
            .unwrap_or_else(|_| crate::auditor::empty_draft(self.trace_id))
    }
}
