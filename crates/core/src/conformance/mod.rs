//! The conformance suite every sink runs (feature `testing`).
//!
//! A sink crate implements [`Target`] for its sink (an [`AsyncSink`]:
//! [`AsyncTarget`]) and calls [`run_all`] ([`run_all_async`]) from a
//! multi-threaded tokio test. The suite checks what the dispatcher and its
//! users rely on, one [`Check`] after another, each on a new sink over the
//! same storage (as object_store's integration checks run one backend
//! through every operation):
//!
//! | check | what must hold |
//! |---|---|
//! | [`Check::Delivery`] | 200 records stored in order, whole, acknowledged at the sink's highest level; a new sink over persistent storage continues the numbering |
//! | [`Check::Transient`] | a transient failure is retried and the record stored once; past the retry budget it fails the record and the emit |
//! | [`Check::Permanent`] | a permanent failure is not retried, fails a required sink's emit naming it, is named in an `audit_gap` record; an optional sink keeps storing the records after it |
//! | [`Check::Tick`] | a record reaches the highest level without more writes and without a shutdown ([`Sink::tick`] raises what a write left lower) |
//! | [`Check::Close`] | records queued when shutdown begins are stored and acknowledged at the highest level ([`Sink::close`] flushes) |
//! | [`Check::Deadline`] | a write that stalls past the shutdown deadline does not hold the shutdown, its records are reported, never acknowledged (an async one is cancelled and named in an `audit_gap` record) |
//! | [`Check::Notices`] | what the sink notices at open and while running becomes `audit_gap` records, in its own storage too |
//!
//! Failures are injected by wrapping the target's sink in a decorator that
//! fails or stalls writes before they reach it, or adds notices; every
//! other call reaches the real sink, so no backend needs a way of its own
//! to break its storage. Each check tells its records apart by request id
//! (`conformance-<check>`), so a target whose numbering restarts (a
//! collector, a buffer) can keep everything in one store.
//!
//! [`Sink::tick`]: crate::Sink::tick
//! [`Sink::close`]: crate::Sink::close

mod checks;
mod failures;
mod faults;

use std::time::Duration;

use crate::async_sink::AsyncSink;
use crate::record::StoredRecord;
use crate::sink::Sink;
use crate::{Dispatcher, MemorySink, SinkOptions};

pub use faults::InjectedFailure;
use faults::{Faults, FaultyAsyncSink, FaultySink};

/// A sink under test and a way to read back what it stored.
pub trait Target {
    /// A new sink over the same storage each time it is called.
    fn make(&self) -> Box<dyn Sink>;
    /// Everything the storage holds, in order, or `None` when the
    /// destination cannot be read back (the suite then checks acks only).
    fn read_back(&self) -> Option<Vec<StoredRecord>>;
    /// Whether a new sink over the same storage reports its last seq.
    fn persistent(&self) -> bool;
}

/// An async sink under test ([`run_all_async`]); as [`Target`].
pub trait AsyncTarget {
    /// A new sink over the same storage each time it is called.
    fn make(&self) -> Box<dyn AsyncSink>;
    /// Everything the storage holds, in order, or `None` when the
    /// destination cannot be read back (the suite then checks acks only).
    fn read_back(&self) -> Option<Vec<StoredRecord>>;
    /// Whether a new sink over the same storage reports its last seq.
    fn persistent(&self) -> bool;
}

/// One check of the suite; [`Check::ALL`] in the order [`run_all`] runs
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Check {
    /// Records stored in order and whole, acknowledged, numbering resumed.
    Delivery,
    /// Transient failures retried, then failed past the budget.
    Transient,
    /// Permanent failures surface at once.
    Permanent,
    /// `tick` raises records to the highest level.
    Tick,
    /// `close` flushes.
    Close,
    /// The shutdown deadline is honoured.
    Deadline,
    /// Notices become `audit_gap` records.
    Notices,
}

impl Check {
    /// Every check, in the order [`run_all`] runs them.
    pub const ALL: [Check; 7] = [
        Check::Delivery,
        Check::Transient,
        Check::Permanent,
        Check::Tick,
        Check::Close,
        Check::Deadline,
        Check::Notices,
    ];

    /// The check's name in a [`Failure`] and in record request ids.
    pub fn name(self) -> &'static str {
        match self {
            Check::Delivery => "delivery",
            Check::Transient => "transient",
            Check::Permanent => "permanent",
            Check::Tick => "tick",
            Check::Close => "close",
            Check::Deadline => "deadline",
            Check::Notices => "notices",
        }
    }
}

/// A failed conformance check.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {detail}")]
pub struct Failure {
    /// Which check (and step).
    pub check: &'static str,
    /// What was seen.
    pub detail: String,
}

fn fail(check: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        check,
        detail: detail.into(),
    }
}

/// Runs every check. Call from a multi-threaded tokio test.
pub async fn run_all(target: &dyn Target) -> Result<(), Failure> {
    for check in Check::ALL {
        run_check(target, check).await?;
    }
    Ok(())
}

/// Runs every check on an async sink, through the bridge on its private
/// runtime. Call from a multi-threaded tokio test.
pub async fn run_all_async(target: &dyn AsyncTarget) -> Result<(), Failure> {
    for check in Check::ALL {
        run_check_async(target, check).await?;
    }
    Ok(())
}

/// Runs one check.
pub async fn run_check(target: &dyn Target, check: Check) -> Result<(), Failure> {
    run(Under::Sync(target), check).await
}

/// Runs one check on an async sink.
pub async fn run_check_async(target: &dyn AsyncTarget, check: Check) -> Result<(), Failure> {
    run(Under::Async(target), check).await
}

async fn run(target: Under<'_>, check: Check) -> Result<(), Failure> {
    match check {
        Check::Delivery => checks::delivery(target).await,
        Check::Transient => failures::transient(target).await,
        Check::Permanent => failures::permanent(target).await,
        Check::Tick => checks::tick(target).await,
        Check::Close => checks::close(target).await,
        Check::Deadline => failures::deadline(target).await,
        Check::Notices => failures::notices(target).await,
    }
}

/// The sink under test, either kind.
#[derive(Clone, Copy)]
enum Under<'a> {
    Sync(&'a dyn Target),
    Async(&'a dyn AsyncTarget),
}

impl Under<'_> {
    fn read_back(self) -> Option<Vec<StoredRecord>> {
        match self {
            Under::Sync(t) => t.read_back(),
            Under::Async(t) => t.read_back(),
        }
    }

    fn persistent(self) -> bool {
        match self {
            Under::Sync(t) => t.persistent(),
            Under::Async(t) => t.persistent(),
        }
    }

    fn is_async(self) -> bool {
        matches!(self, Under::Async(_))
    }

    /// The records of one check (by request id) that the storage holds,
    /// or `None` when it cannot be read back.
    fn stored(self, request: &str) -> Option<Vec<StoredRecord>> {
        self.read_back().map(|all| {
            all.into_iter()
                .filter(|r| r.request_id.as_deref() == Some(request))
                .collect()
        })
    }
}

/// The name of the sink under test in health, reports and gap records.
const UNDER_TEST: &str = "under-test";

/// Generous bounds for things that must happen: reaching one is a
/// failure, never a measurement.
const PATIENCE: Duration = Duration::from_secs(30);
const SHUTDOWN: Duration = Duration::from_secs(10);

/// A dispatcher over the target's sink alone.
async fn start(target: Under<'_>, check: &'static str) -> Result<Dispatcher, Failure> {
    let options = SinkOptions::new(UNDER_TEST).queue(64).max_batch(16);
    let builder = Dispatcher::builder();
    match target {
        Under::Sync(t) => builder.sink(options, t.make()),
        Under::Async(t) => builder.boxed_async_sink(options, t.make()),
    }
    .start()
    .await
    .map_err(|e| fail(check, format!("the dispatcher did not start: {e}")))
}

/// A dispatcher over the target's sink in the failure decorator, with a
/// memory sink beside it (optional) that receives the `audit_gap` records
/// the dispatcher writes about the sink under test.
struct Rig {
    d: Dispatcher,
    faults: Faults,
    witness: MemorySink,
}

impl Rig {
    async fn start(target: Under<'_>, required: bool, check: &'static str) -> Result<Rig, Failure> {
        let faults = Faults::default();
        Rig::start_with(target, required, faults, check).await
    }

    async fn start_with(
        target: Under<'_>,
        required: bool,
        faults: Faults,
        check: &'static str,
    ) -> Result<Rig, Failure> {
        // At the top level, so that a receipt's level (the lowest over the
        // sinks) is the sink under test's.
        let witness = MemorySink::new().with_level(crate::AckLevel::Exported);
        let options = SinkOptions::new(UNDER_TEST)
            .queue(64)
            .max_batch(16)
            .required(required);
        let builder = Dispatcher::builder();
        let builder = match target {
            Under::Sync(t) => builder.sink(options, FaultySink::new(t.make(), &faults)),
            Under::Async(t) => builder.async_sink(options, FaultyAsyncSink::new(t.make(), &faults)),
        };
        let d = builder
            .sink(SinkOptions::new("witness").required(false), witness.clone())
            .start()
            .await
            .map_err(|e| fail(check, format!("the dispatcher did not start: {e}")))?;
        Ok(Rig { d, faults, witness })
    }

    fn auditor(&self, check: Check) -> crate::Auditor {
        crate::Auditor::new(self.d.clone())
            .for_request(Some(&request(check)))
            .with_agent("suite")
    }

    /// The sink's highest level, as the dispatcher took it.
    fn max_level(&self) -> crate::AckLevel {
        self.d.health().sinks[0].max_level
    }

    /// The `audit_gap` payloads about the sink under test the witness
    /// received, with this reason.
    fn gaps(&self, reason: &str) -> Vec<serde_json::Value> {
        gap_payloads(
            self.witness.records().iter().map(|r| r.to_stored("")),
            reason,
        )
    }

    /// Shuts down, then ends any stalled write.
    async fn shutdown(&self, timeout: Duration) -> crate::ShutdownReport {
        let report = self.d.shutdown(timeout).await;
        // A write still stalled (the deadline check) may now end.
        self.faults.release();
        report
    }

    /// Waits until the decorated sink (and the real one in it) was
    /// dropped, so that the next check can open the storage.
    async fn wait_dropped(&self, check: &'static str) -> Result<(), Failure> {
        if self.faults.wait_for(PATIENCE, Faults::dropped).await {
            Ok(())
        } else {
            Err(fail(
                check,
                format!(
                    "the sink was not dropped within {} s of the shutdown",
                    PATIENCE.as_secs()
                ),
            ))
        }
    }
}

/// The request id of a check's records.
fn request(check: Check) -> String {
    format!("conformance-{}", check.name())
}

/// The payloads of `audit_gap` records about the sink under test with this
/// `reason`.
fn gap_payloads(
    records: impl IntoIterator<Item = StoredRecord>,
    reason: &str,
) -> Vec<serde_json::Value> {
    records
        .into_iter()
        .filter(|r| r.event_type == crate::EventType::AuditGap)
        .map(|r| r.payload)
        .filter(|p| p["reason"] == reason && p["sink"] == UNDER_TEST)
        .collect()
}

/// Whether a `sink_failed` gap payload names `seq`.
fn names_seq(gap: &serde_json::Value, seq: u64) -> bool {
    gap["ranges"].as_array().is_some_and(|ranges| {
        ranges.iter().any(|r| {
            let (Some(from), Some(to)) = (r[0].as_u64(), r[1].as_u64()) else {
                return false;
            };
            (from..=to).contains(&seq)
        })
    })
}
