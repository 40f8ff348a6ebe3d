//! The conformance suite every sink runs (feature `testing`).
//!
//! A sink crate implements [`Target`] for its sink and calls [`run_all`]
//! from a test (an [`AsyncSink`]: [`AsyncTarget`] and [`run_all_async`],
//! the same checks through the bridge); the suite checks what the
//! dispatcher relies on.

use std::time::Duration;

use crate::async_sink::AsyncSink;
use crate::record::StoredRecord;
use crate::sink::{AckLevel, Sink};
use crate::{Auditor, Dispatcher, EventType, SinkOptions};

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
}

/// A failed conformance check.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {detail}")]
pub struct Failure {
    /// Which check.
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

async fn start(target: Under<'_>) -> Result<Dispatcher, Failure> {
    let options = SinkOptions::new("under-test").queue(64).max_batch(16);
    let builder = Dispatcher::builder();
    match target {
        Under::Sync(t) => builder.sink(options, t.make()),
        Under::Async(t) => builder.boxed_async_sink(options, t.make()),
    }
    .start()
    .await
    .map_err(|e| fail("open", e.to_string()))
}

/// Runs every check. Call from a multi-threaded tokio test.
pub async fn run_all(target: &dyn Target) -> Result<(), Failure> {
    run(Under::Sync(target)).await
}

/// Runs every check on an async sink, through the bridge on its private
/// runtime. Call from a multi-threaded tokio test.
pub async fn run_all_async(target: &dyn AsyncTarget) -> Result<(), Failure> {
    run(Under::Async(target)).await
}

async fn run(target: Under<'_>) -> Result<(), Failure> {
    let d = start(target).await?;
    let max = d.health().sinks[0].max_level;
    let a = Auditor::new(d.clone())
        .for_request(Some("conformance"))
        .with_agent("suite");
    let mut seqs = Vec::new();
    for i in 0..200u32 {
        let payload = serde_json::json!({"i": i, "text": "line\nbreak \"quoted\" \u{1F600}"});
        let r = a
            .emit(EventType::ToolCall, &payload)
            .await
            .map_err(|e| fail("emit", e.to_string()))?;
        seqs.push(r.seq);
    }
    let last = *seqs.last().ok_or_else(|| fail("emit", "no seq"))?;
    let r = d
        .wait(last, AckLevel::Exported)
        .await
        .map_err(|e| fail("ack", e.to_string()))?;
    if r.level != max {
        return Err(fail(
            "ack",
            format!(
                "waited for the highest level, got {} (sink max {})",
                r.level, max
            ),
        ));
    }
    if seqs.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(fail("seq", "seqs are not contiguous"));
    }
    let report = d.shutdown(Duration::from_secs(10)).await;
    if !report.is_clean() {
        return Err(fail("shutdown", report.to_string()));
    }
    if let Some(stored) = target.read_back() {
        let got: Vec<&StoredRecord> = stored.iter().filter(|r| seqs.contains(&r.seq)).collect();
        if got.len() != seqs.len() {
            return Err(fail(
                "read_back",
                format!("stored {} of {} records", got.len(), seqs.len()),
            ));
        }
        for (i, rec) in got.iter().enumerate() {
            if rec.payload["i"] != i as u64 || rec.event_type != EventType::ToolCall {
                return Err(fail("read_back", format!("record {i} differs: {rec:?}")));
            }
            if rec.request_id.as_deref() != Some("conformance")
                || rec.agent.as_deref() != Some("suite")
            {
                return Err(fail("read_back", format!("scope lost in record {i}")));
            }
        }
    }
    if target.persistent() {
        let d = start(target).await?;
        let next = d.next_seq().await;
        if next != last + 1 {
            return Err(fail(
                "reopen",
                format!("seq continues at {next}, expected {}", last + 1),
            ));
        }
        let r = Auditor::new(d.clone())
            .emit_wait(
                EventType::SessionStart,
                &serde_json::json!({}),
                AckLevel::Written,
            )
            .await
            .map_err(|e| fail("reopen", e.to_string()))?;
        if r.seq != last + 1 {
            return Err(fail("reopen", format!("got seq {}", r.seq)));
        }
        d.shutdown(Duration::from_secs(10)).await;
    }
    Ok(())
}
