//! The checks of a sink that works: delivery and numbering, `tick`, and
//! `close`.

use std::time::Duration;

use crate::sink::AckLevel;
use crate::{Auditor, EventType, StoredRecord};

use super::{Check, Failure, PATIENCE, Rig, SHUTDOWN, Under, fail, request, start};

/// 200 records with awkward text, stored in order and whole, acknowledged
/// at the sink's highest level; a new sink over persistent storage
/// continues the numbering.
pub(super) async fn delivery(target: Under<'_>) -> Result<(), Failure> {
    let d = start(target, "delivery").await?;
    let max = d.health().sinks[0].max_level;
    let request = request(Check::Delivery);
    let a = Auditor::new(d.clone())
        .for_request(Some(&request))
        .with_agent("suite");
    let mut seqs = Vec::new();
    for i in 0..200u32 {
        let payload = serde_json::json!({"i": i, "text": "line\nbreak \"quoted\" \u{1F600}"});
        let r = a
            .emit(EventType::ToolCall, &payload)
            .await
            .map_err(|e| fail("delivery: emit", e.to_string()))?;
        seqs.push(r.seq);
    }
    let last = *seqs
        .last()
        .ok_or_else(|| fail("delivery: emit", "no seq"))?;
    let r = d
        .wait(last, AckLevel::Exported)
        .await
        .map_err(|e| fail("delivery: ack", e.to_string()))?;
    if r.level != max {
        return Err(fail(
            "delivery: ack",
            format!(
                "waited for the highest level, got {} (sink max {})",
                r.level, max
            ),
        ));
    }
    if seqs.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(fail("delivery: seq", "seqs are not contiguous"));
    }
    let report = d.shutdown(SHUTDOWN).await;
    if !report.is_clean() {
        return Err(fail("delivery: shutdown", report.to_string()));
    }
    if let Some(stored) = target.stored(&request) {
        let got: Vec<&StoredRecord> = stored.iter().filter(|r| seqs.contains(&r.seq)).collect();
        if got.len() != seqs.len() {
            return Err(fail(
                "delivery: read_back",
                format!("stored {} of {} records", got.len(), seqs.len()),
            ));
        }
        for (i, rec) in got.iter().enumerate() {
            if rec.payload["i"] != i as u64 || rec.event_type != EventType::ToolCall {
                return Err(fail(
                    "delivery: read_back",
                    format!("record {i} differs: {rec:?}"),
                ));
            }
            if rec.payload["text"] != "line\nbreak \"quoted\" \u{1F600}" {
                return Err(fail(
                    "delivery: read_back",
                    format!("the text of record {i} changed: {}", rec.payload["text"]),
                ));
            }
            if rec.agent.as_deref() != Some("suite") {
                return Err(fail(
                    "delivery: read_back",
                    format!("scope lost in record {i}"),
                ));
            }
        }
    }
    if target.persistent() {
        let d = start(target, "delivery: reopen").await?;
        let next = d.next_seq().await;
        if next != last + 1 {
            return Err(fail(
                "delivery: reopen",
                format!("seq continues at {next}, expected {}", last + 1),
            ));
        }
        let r = Auditor::new(d.clone())
            .for_request(Some(&request))
            .emit_wait(
                EventType::SessionStart,
                &serde_json::json!({}),
                AckLevel::Written,
            )
            .await
            .map_err(|e| fail("delivery: reopen", e.to_string()))?;
        if r.seq != last + 1 {
            return Err(fail("delivery: reopen", format!("got seq {}", r.seq)));
        }
        d.shutdown(SHUTDOWN).await;
    }
    Ok(())
}

/// Records reach the sink's highest level while the dispatcher idles:
/// what a write leaves lower (`fsync = "interval"` leaves `Written`), a
/// later [`Sink::tick`](crate::Sink::tick) raises, with no further write
/// and no shutdown. A sink whose writes reach its highest level passes at
/// once.
/// How long an answer the fault layer saw may take to be published by the
/// dispatcher's worker.
const PUBLISH_GRACE: Duration = Duration::from_secs(2);

pub(super) async fn tick(target: Under<'_>) -> Result<(), Failure> {
    const C: &str = "tick";
    let rig = Rig::start(target, true, C).await?;
    let max = rig.max_level();
    let a = rig.auditor(Check::Tick);
    let mut last = 0;
    for i in 0..20u32 {
        last = a
            .emit(EventType::ToolCall, &serde_json::json!({"i": i}))
            .await
            .map_err(|e| fail(C, e.to_string()))?
            .seq;
    }
    // Raised, or left lower with three ticks run since the last write (or
    // no tick at all): whichever comes first, never a measured time.
    let d = rig.d.clone();
    let waited = tokio::select! {
        r = d.wait(last, AckLevel::Exported) => Some(r),
        idle = rig.faults.wait_for(PATIENCE, move |f| f.idle_after(last, 3)) => {
            // The fault layer sees a write's or tick's answer before the
            // dispatcher's worker publishes it, so a sink that did raise
            // the record is acknowledged moments later (under load, later
            // than a zero-time look: seen in a full CI run). A sink that
            // left it lower is never acknowledged, so this grace only
            // delays a failure, never excuses one.
            match tokio::time::timeout(PUBLISH_GRACE, rig.d.wait(last, AckLevel::Exported)).await {
                Ok(r) => Some(r),
                Err(_) if idle => None,
                Err(_) => {
                    rig.shutdown(SHUTDOWN).await;
                    return Err(fail(C, format!("seq {last} was neither written nor raised within {} s", PATIENCE.as_secs())));
                }
            }
        }
    };
    let writes = rig.faults.write_levels();
    let ticks = rig.faults.tick_levels();
    match waited {
        None => {
            rig.shutdown(SHUTDOWN).await;
            return Err(fail(
                C,
                format!(
                    "record seq {last} stayed below {max} (writes returned {writes:?}, ticks {ticks:?}) with the dispatcher idle; a sink whose write leaves records lower must raise them in tick, with a tick_interval"
                ),
            ));
        }
        Some(Err(e)) => return Err(fail(C, e.to_string())),
        Some(Ok(r)) if r.level != max => {
            return Err(fail(C, format!("reached {} of {max}", r.level)));
        }
        Some(Ok(_)) => {}
    }
    if let Some(l) = writes.iter().chain(&ticks).find(|l| **l > max) {
        return Err(fail(
            C,
            format!("the sink answered {l}, above its max_level {max}"),
        ));
    }
    let report = rig.shutdown(SHUTDOWN).await;
    if !report.is_clean() {
        return Err(fail(C, report.to_string()));
    }
    rig.wait_dropped(C).await
}

/// Records still queued when shutdown begins are written, flushed by
/// [`Sink::close`](crate::Sink::close) to the highest level, and a waiter
/// for the last one is told so.
pub(super) async fn close(target: Under<'_>) -> Result<(), Failure> {
    const C: &str = "close";
    let rig = Rig::start(target, true, C).await?;
    let max = rig.max_level();
    let a = rig.auditor(Check::Close);
    let mut seqs = Vec::new();
    for i in 0..50u32 {
        let r = a
            .emit(EventType::ToolCall, &serde_json::json!({"i": i}))
            .await
            .map_err(|e| fail(C, e.to_string()))?;
        seqs.push(r.seq);
    }
    let last = seqs[seqs.len() - 1];
    let d = rig.d.clone();
    let waiter = tokio::spawn(async move { d.wait(last, AckLevel::Exported).await });
    let report = rig.shutdown(SHUTDOWN).await;
    if !report.is_clean() {
        return Err(fail(C, report.to_string()));
    }
    match tokio::time::timeout(PATIENCE, waiter).await {
        Ok(Ok(Ok(r))) if r.level == max => {}
        Ok(Ok(Ok(r))) => {
            return Err(fail(
                C,
                format!(
                    "the last record queued at shutdown reached {}, not {max}: close must flush",
                    r.level
                ),
            ));
        }
        Ok(Ok(Err(e))) => return Err(fail(C, format!("the last record failed: {e}"))),
        Ok(Err(e)) => return Err(fail(C, format!("the waiter ended: {e}"))),
        Err(_) => return Err(fail(C, "a waiter was not answered after shutdown")),
    }
    if rig.faults.closes() != 1 {
        return Err(fail(
            C,
            format!("close was called {} times", rig.faults.closes()),
        ));
    }
    rig.wait_dropped(C).await?;
    if let Some(stored) = target.stored(&super::request(Check::Close)) {
        let got: Vec<u64> = stored.iter().map(|r| r.seq).collect();
        if got != seqs {
            return Err(fail(
                C,
                format!(
                    "stored {} of the {} records queued at shutdown, or out of order",
                    got.len(),
                    seqs.len()
                ),
            ));
        }
    }
    Ok(())
}
