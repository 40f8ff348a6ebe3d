//! Reusing records: a sink's worker hands back the records it was the last
//! to hold, and the next emits fill them in again, so that a record's two
//! allocations (its `Arc` and its body) are made once, not once a record.
//!
//! Why: a record is allocated on the emitting thread and freed on a sink's
//! worker thread. With glibc's allocator every such free takes the lock of
//! the emitting thread's arena, which the emitting thread's own
//! allocations take too; at a million records a second the two threads
//! spent about 15 % of their time parking and waking each other on that
//! lock (`perf record -e cpu-clock -g` on `agent-audit bench`). Reused
//! records cross back in whole batches, under one lock a batch.
//!
//! What is reused is bounded: at most one queue's worth of records a sink
//! (at most [`MAX_KEPT`]), and a body only while its buffer is at most
//! [`MAX_BODY`] bytes, so that one huge record does not keep its memory
//! for ever.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::record::Record;

use super::lock;

/// A body buffer larger than this is freed, not kept: most records are a
/// few hundred bytes.
pub(crate) const MAX_BODY: usize = 8 * 1024;

/// Records a sink keeps for reuse at most, whatever its queue.
const MAX_KEPT: usize = 4096;

/// Body buffers an emitting thread keeps at most.
const MAX_STASHED: usize = 4;

/// A new record body's capacity: a tutorial-sized record fits.
const FIRST_CAPACITY: usize = 640;

/// The records a sink's worker handed back, for the order lock's holder to
/// take in one swap.
pub(super) struct Returned {
    records: Mutex<Vec<Arc<Record>>>,
    /// Whether `records` holds any: read on every emit without locking.
    any: AtomicBool,
    most: usize,
}

impl Returned {
    /// Keeps at most `queue_capacity` records (at most [`MAX_KEPT`]).
    pub(super) fn new(queue_capacity: usize) -> Returned {
        Returned {
            records: Mutex::new(Vec::new()),
            any: AtomicBool::new(false),
            most: queue_capacity.min(MAX_KEPT),
        }
    }

    /// Empties `batch`, a batch the sink is done with: the records
    /// nothing else holds (no other sink, no receipt, no reader) are kept
    /// for reuse while there is room; the others are let go.
    pub(super) fn give_back(&self, batch: &mut Vec<Arc<Record>>) {
        // Outside the lock, which the order lock's holder may be waiting
        // for: a record another holder keeps alive is let go (it is
        // reused, if at all, when the last one lets go), and the big
        // bodies of the others are freed. A record found alone stays
        // alone: nothing else can reach it.
        batch.retain_mut(|r| match Arc::get_mut(r) {
            Some(record) => {
                record.shrink_body(MAX_BODY);
                true
            }
            None => false,
        });
        if batch.is_empty() {
            return;
        }
        let mut kept = lock(&self.records);
        let room = self.most.saturating_sub(kept.len()).min(batch.len());
        kept.extend(batch.drain(..room));
        self.any.store(!kept.is_empty(), Ordering::Release);
        drop(kept);
        // What did not fit is freed here, outside the lock too.
        batch.clear();
    }

    /// Lets go of every kept record: the dispatcher has shut down, and a
    /// handle kept after that must not keep a queue's worth of records.
    pub(super) fn clear(&self) {
        let kept = std::mem::take(&mut *lock(&self.records));
        self.any.store(false, Ordering::Release);
        drop(kept);
    }

    /// Moves the kept records into `spare` (which must be empty) and
    /// reports whether there were any.
    pub(super) fn take_into(&self, spare: &mut Vec<Arc<Record>>) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut kept = lock(&self.records);
        // The empty vector left behind keeps `spare`'s capacity: no
        // allocation once both have grown.
        std::mem::swap(&mut *kept, spare);
        self.any.store(false, Ordering::Release);
        !spare.is_empty()
    }
}

thread_local! {
    /// Body buffers of reused records, for this thread's next emits.
    static BODIES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer for a record body: a reused one when this thread has
/// one.
pub(crate) fn body_buffer() -> Vec<u8> {
    let reused = BODIES
        .try_with(|b| b.try_borrow_mut().ok().and_then(|mut b| b.pop()))
        .ok()
        .flatten();
    match reused {
        Some(body) => {
            let mut bytes = body.into_bytes();
            bytes.clear();
            bytes
        }
        None => Vec::with_capacity(FIRST_CAPACITY),
    }
}

/// Shrinks a body's buffer to what the body needs (at least
/// [`FIRST_CAPACITY`]) when it holds more than 4 times that. A reused
/// buffer keeps the size of the biggest record it held: without
/// this, a queue of small records filled in right after big ones held
/// the big ones' buffers (4096 records of 0.4 KiB after records of
/// 3.7 KiB: 33 MiB, against 3.8 MiB without reuse). Records of one size,
/// or sizes within a factor of 4, never pay for it.
pub(super) fn fit_body(body: &mut String) {
    let need = body.len().max(FIRST_CAPACITY);
    if body.capacity() > 4 * need {
        body.shrink_to(need);
    }
}

/// Keeps `body`'s buffer for this thread's next emit, if it is small and
/// the thread does not hold enough already.
pub(crate) fn reuse_body(body: String) {
    if body.capacity() == 0 || body.capacity() > MAX_BODY {
        return;
    }
    // During thread teardown, or re-entered: the buffer is just freed.
    let _ = BODIES.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut()
            && b.len() < MAX_STASHED
        {
            b.push(body);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TraceId;
    use crate::record::{EventType, RecordMeta, Scope};
    use crate::time::Timestamp;

    fn record(seq: u64, body: &str) -> Arc<Record> {
        let meta = RecordMeta {
            event_type: EventType::ToolCall,
            scope: Arc::new(Scope::new(TraceId::random(), None)),
        };
        let at = body.len();
        Arc::new(Record::from_parts(
            seq,
            Timestamp::now(),
            meta,
            body.to_string(),
            at,
        ))
    }

    #[test]
    fn only_records_nothing_else_holds_are_kept() {
        let returned = Returned::new(16);
        let shared = record(2, "b");
        let mut batch = vec![record(1, "a"), shared.clone(), record(3, "c")];
        returned.give_back(&mut batch);
        assert!(batch.is_empty());
        let mut spare = Vec::new();
        assert!(returned.take_into(&mut spare));
        let seqs: Vec<u64> = spare.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            [1, 3],
            "the record a reader still holds is not reused"
        );
        assert_eq!(shared.body(), "b", "and is left as it was");
        assert!(!returned.take_into(&mut Vec::new()), "taken once");
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let returned = Returned::new(2);
        let mut batch: Vec<_> = (1..=5).map(|s| record(s, "x")).collect();
        returned.give_back(&mut batch);
        let mut spare = Vec::new();
        returned.take_into(&mut spare);
        assert_eq!(spare.len(), 2);
        // A huge body is not kept with its record.
        let huge = "y".repeat(MAX_BODY * 4);
        let returned = Returned::new(2);
        returned.give_back(&mut vec![record(9, &huge)]);
        let mut spare = Vec::new();
        returned.take_into(&mut spare);
        let r = spare.pop().expect("the record is kept");
        assert!(r.body().is_empty(), "its body buffer was let go");
    }

    #[test]
    fn a_body_far_smaller_than_its_buffer_is_fitted() {
        let mut body = String::with_capacity(MAX_BODY);
        body.push_str("small");
        fit_body(&mut body);
        assert!(body.capacity() < MAX_BODY && body.capacity() >= FIRST_CAPACITY);
        assert_eq!(body, "small");
        let mut near = String::with_capacity(4 * FIRST_CAPACITY);
        near.push_str("near");
        fit_body(&mut near);
        assert_eq!(near.capacity(), 4 * FIRST_CAPACITY, "within 4 times: kept");
    }

    #[test]
    fn a_thread_reuses_small_bodies_only() {
        let mut small = String::with_capacity(700);
        small.push_str("old bytes");
        let ptr = small.as_ptr();
        reuse_body(small);
        let b = body_buffer();
        assert!(b.is_empty(), "a reused buffer starts empty");
        assert_eq!(b.as_ptr(), ptr, "the same buffer");
        reuse_body("z".repeat(MAX_BODY + 1));
        assert_eq!(body_buffer().capacity(), FIRST_CAPACITY, "not the huge one");
    }
}
