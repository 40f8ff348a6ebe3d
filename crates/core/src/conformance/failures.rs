//! The checks of a sink that fails: transient and permanent failures, a
//! write that outlives the shutdown deadline, and notices.

use std::time::Duration;

use crate::error::EmitError;
use crate::sink::{AckLevel, FailureKind};
use crate::{EventType, StoredRecord};

use super::faults::Faults;
use super::{
    Check, Failure, PATIENCE, Rig, SHUTDOWN, UNDER_TEST, Under, fail, gap_payloads, names_seq,
};

/// The records of one check the storage holds, by their `i`.
fn stored_is(target: Under<'_>, check: Check) -> Option<Vec<u64>> {
    target.stored(&super::request(check)).map(|s| {
        s.iter()
            .filter_map(|r: &StoredRecord| r.payload["i"].as_u64())
            .collect()
    })
}

fn is_failed_under_test(e: &EmitError) -> bool {
    matches!(e, EmitError::SinkFailed { sink, .. } if sink == UNDER_TEST)
}

/// A transient failure is written again (three retries, as
/// [`FailureKind::Transient`] documents) and the record stored once; one
/// that lasts past the retries fails the record, a required sink's emit,
/// and is named in an `audit_gap` record.
pub(super) async fn transient(target: Under<'_>) -> Result<(), Failure> {
    const C: &str = "transient";
    let rig = Rig::start(target, true, C).await?;
    let max = rig.max_level();
    let a = rig.auditor(Check::Transient);
    rig.faults.fail(FailureKind::Transient, Some(2));
    let before = rig.faults.attempts();
    let r = a
        .emit_wait(
            EventType::ToolCall,
            &serde_json::json!({"i": 0}),
            AckLevel::Exported,
        )
        .await
        .map_err(|e| fail(C, format!("two transient failures then success, yet: {e}")))?;
    let tries = rig.faults.attempts() - before;
    if r.level != max || tries != 3 {
        return Err(fail(
            C,
            format!(
                "two transient failures then success: reached {} (max {max}) in {tries} writes, expected 3",
                r.level
            ),
        ));
    }
    if rig.d.health().sinks[0].failed != 0 {
        return Err(fail(C, "a retried write that succeeded was counted failed"));
    }
    rig.faults.fail(FailureKind::Transient, None);
    let before = rig.faults.attempts();
    let seq = a
        .emit(EventType::ToolCall, &serde_json::json!({"i": 1}))
        .await
        .map_err(|e| fail(C, e.to_string()))?
        .seq;
    match rig.d.wait(seq, AckLevel::Exported).await {
        Err(e) if is_failed_under_test(&e) => {}
        Err(e) => return Err(fail(C, format!("a lasting transient failure gave: {e}"))),
        Ok(r) => {
            return Err(fail(
                C,
                format!("a write that always fails was acknowledged at {}", r.level),
            ));
        }
    }
    let tries = rig.faults.attempts() - before;
    if tries != 4 {
        return Err(fail(
            C,
            format!("a lasting transient failure was tried {tries} times, expected 1 + 3 retries"),
        ));
    }
    rig.faults.heal();
    let report = rig.shutdown(SHUTDOWN).await;
    if report.sinks[0].health.failed != 1 {
        return Err(fail(
            C,
            format!("the report does not count the failed record: {report}"),
        ));
    }
    if !rig.gaps("sink_failed").iter().any(|g| names_seq(g, seq)) {
        return Err(fail(
            C,
            format!("no audit_gap record names seq {seq}, whose write failed"),
        ));
    }
    rig.wait_dropped(C).await?;
    if let Some(is) = stored_is(target, Check::Transient)
        && is != [0]
    {
        return Err(fail(
            C,
            format!("stored {is:?}: the retried record must be there once, the failed one not"),
        ));
    }
    Ok(())
}

/// A permanent failure is not retried. An optional sink: the emit's
/// receipt names it, the next records are stored, an `audit_gap` record
/// names the lost seq. A required sink: the emit fails naming it, and so
/// does every later one (the agent must not act).
pub(super) async fn permanent(target: Under<'_>) -> Result<(), Failure> {
    const C: &str = "permanent";
    let rig = Rig::start(target, false, C).await?;
    let max = rig.max_level();
    let a = rig.auditor(Check::Permanent);
    let wait = |i: u64| {
        let a = a.clone();
        async move {
            a.emit_wait(
                EventType::ToolCall,
                &serde_json::json!({"i": i}),
                AckLevel::Exported,
            )
            .await
        }
    };
    wait(0).await.map_err(|e| fail(C, e.to_string()))?;
    rig.faults.fail(FailureKind::Permanent, Some(1));
    let before = rig.faults.attempts();
    let r = wait(1).await.map_err(|e| fail(C, e.to_string()))?;
    if !r.failed.iter().any(|f| f.sink == UNDER_TEST) {
        return Err(fail(
            C,
            "the receipt of a record whose write failed does not name the optional sink",
        ));
    }
    let lost = r.seq;
    if rig.faults.attempts() - before != 1 {
        return Err(fail(C, "a permanent failure was retried"));
    }
    let r = wait(2).await.map_err(|e| fail(C, e.to_string()))?;
    if r.level != max || !r.failed.is_empty() {
        return Err(fail(
            C,
            format!(
                "the record after a failed write reached {} (max {max}), failed on {:?}",
                r.level, r.failed
            ),
        ));
    }
    let report = rig.shutdown(SHUTDOWN).await;
    let h = &report.sinks[0].health;
    if h.failed != 1
        || !h
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("injected"))
    {
        return Err(fail(
            C,
            format!("the report does not show the failure: {report}"),
        ));
    }
    if !rig.gaps("sink_failed").iter().any(|g| names_seq(g, lost)) {
        return Err(fail(
            C,
            format!("no audit_gap record names seq {lost}, whose write failed"),
        ));
    }
    rig.wait_dropped(C).await?;

    let rig = Rig::start(target, true, C).await?;
    let a = rig.auditor(Check::Permanent);
    rig.faults.fail(FailureKind::Permanent, Some(1));
    let lost = a
        .emit(EventType::ToolCall, &serde_json::json!({"i": 3}))
        .await
        .map_err(|e| fail(C, e.to_string()))?
        .seq;
    match rig.d.wait(lost, AckLevel::Exported).await {
        Err(e) if is_failed_under_test(&e) => {}
        other => {
            return Err(fail(
                C,
                format!("a required sink's failed write gave {other:?}, not an error naming it"),
            ));
        }
    }
    match a
        .emit(EventType::ToolCall, &serde_json::json!({"i": 4}))
        .await
    {
        Err(e) if is_failed_under_test(&e) => {}
        other => {
            return Err(fail(
                C,
                format!("an emit after a required sink failed gave {other:?}"),
            ));
        }
    }
    let report = rig.shutdown(SHUTDOWN).await;
    if report.is_clean() {
        return Err(fail(C, "a failed required sink shut down clean"));
    }
    if !rig.gaps("sink_failed").iter().any(|g| names_seq(g, lost)) {
        return Err(fail(
            C,
            format!("no audit_gap record names seq {lost}, whose write failed"),
        ));
    }
    rig.wait_dropped(C).await?;
    if let Some(is) = stored_is(target, Check::Permanent)
        && is != [0, 2]
    {
        return Err(fail(
            C,
            format!("stored {is:?}, expected the records around the failed ones, [0, 2]"),
        ));
    }
    Ok(())
}

/// A write that stalls does not hold a shutdown past its deadline; its
/// record is reported and never acknowledged. An async sink's write is
/// cancelled (its future dropped) and named in an `audit_gap` record; a
/// blocking one cannot be interrupted, so the report says the sink was
/// still writing and counts the record undelivered.
pub(super) async fn deadline(target: Under<'_>) -> Result<(), Failure> {
    const C: &str = "deadline";
    const DEADLINE: Duration = Duration::from_millis(500);
    let rig = Rig::start(target, true, C).await?;
    let a = rig.auditor(Check::Deadline);
    a.emit_wait(
        EventType::ToolCall,
        &serde_json::json!({"i": 0}),
        AckLevel::Exported,
    )
    .await
    .map_err(|e| fail(C, e.to_string()))?;
    rig.faults.stall_next();
    let stalled = a
        .emit(EventType::ToolCall, &serde_json::json!({"i": 1}))
        .await
        .map_err(|e| fail(C, e.to_string()))?
        .seq;
    if !rig.faults.wait_for(PATIENCE, Faults::stalled).await {
        rig.faults.release();
        return Err(fail(C, "the stalled record's write never began"));
    }
    let d = rig.d.clone();
    let waiter = tokio::spawn(async move { d.wait(stalled, AckLevel::Exported).await });
    let Ok(report) = tokio::time::timeout(PATIENCE, rig.shutdown(DEADLINE)).await else {
        rig.faults.release();
        return Err(fail(
            C,
            format!(
                "shutdown({:?}) had not returned after {} s",
                DEADLINE,
                PATIENCE.as_secs()
            ),
        ));
    };
    let s = &report.sinks[0];
    if target.is_async() {
        if !rig.faults.cancelled() {
            return Err(fail(
                C,
                "the write still under way at the deadline was not cancelled",
            ));
        }
        if s.health.failed < 1 {
            return Err(fail(
                C,
                format!("the cancelled write is not counted failed: {report}"),
            ));
        }
        if !rig
            .gaps("sink_failed")
            .iter()
            .any(|g| names_seq(g, stalled))
        {
            return Err(fail(
                C,
                format!("no audit_gap record names seq {stalled}, whose write was cancelled"),
            ));
        }
    } else if s.finished || s.undelivered < 1 {
        return Err(fail(
            C,
            format!("the report does not say the sink was still writing: {report}"),
        ));
    }
    match tokio::time::timeout(PATIENCE, waiter).await {
        Ok(Ok(Err(_))) => {}
        Ok(Ok(Ok(r))) => {
            return Err(fail(
                C,
                format!(
                    "seq {stalled}, whose write never finished, was acknowledged at {}",
                    r.level
                ),
            ));
        }
        Ok(Err(e)) => return Err(fail(C, format!("the waiter ended: {e}"))),
        Err(_) => {
            return Err(fail(
                C,
                format!("a waiter for seq {stalled} was never answered"),
            ));
        }
    }
    rig.wait_dropped(C).await?;
    if let Some(is) = stored_is(target, Check::Deadline)
        && is != [0]
    {
        return Err(fail(C, format!("stored {is:?}, expected [0]")));
    }
    Ok(())
}

/// What a sink reports at open ([`SinkOpen::notices`]) and while running
/// ([`Sink::take_notices`]) becomes `audit_gap` records with reason
/// `sink_notice`, in the sink's own storage and in the others.
///
/// [`SinkOpen::notices`]: crate::SinkOpen
/// [`Sink::take_notices`]: crate::Sink::take_notices
pub(super) async fn notices(target: Under<'_>) -> Result<(), Failure> {
    const C: &str = "notices";
    let nonce: u64 = rand::random();
    let at_open = format!("conformance notice at open {nonce:016x}");
    let running = format!("conformance notice while running {nonce:016x}");
    let faults = Faults::default();
    faults.open_notice(at_open.clone());
    let rig = Rig::start_with(target, true, faults, C).await?;
    rig.faults.notice(running.clone());
    let a = rig.auditor(Check::Notices);
    for i in 0..2u64 {
        // The second emit writes the gap record the first write's notice
        // left pending.
        a.emit_wait(
            EventType::ToolCall,
            &serde_json::json!({"i": i}),
            AckLevel::Exported,
        )
        .await
        .map_err(|e| fail(C, e.to_string()))?;
    }
    let report = rig.shutdown(SHUTDOWN).await;
    if !report.is_clean() {
        return Err(fail(C, report.to_string()));
    }
    let has = |gaps: &[serde_json::Value], text: &str| gaps.iter().any(|g| g["detail"] == text);
    let seen = rig.gaps("sink_notice");
    for text in [&at_open, &running] {
        if !has(&seen, text) {
            return Err(fail(
                C,
                format!("no audit_gap record reached the other sink for the notice `{text}`"),
            ));
        }
    }
    rig.wait_dropped(C).await?;
    if let Some(all) = target.read_back() {
        let stored = gap_payloads(all, "sink_notice");
        for text in [&at_open, &running] {
            if !has(&stored, text) {
                return Err(fail(
                    C,
                    format!("the sink did not store the audit_gap record for its notice `{text}`"),
                ));
            }
        }
    }
    Ok(())
}
