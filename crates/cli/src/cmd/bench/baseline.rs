//! `bench --baseline`: the same lines written the plainest way, serde_json
//! into a `BufWriter<File>` beside the audit file, so that an operator sees
//! their disk's limit for these lines next to our figure.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use agent_audit::Timestamp;
use serde::Serialize;

use super::ToolCall;
use super::measure::{Remove, cpu_seconds, path_beside};

/// What the baseline measured.
#[derive(Serialize)]
pub(super) struct Baseline {
    /// Lines written: as many as the bench's records.
    pub(super) records: u64,
    /// From creating the file to the last byte flushed (and synced).
    pub(super) seconds: f64,
    pub(super) records_per_sec: f64,
    /// Mean line length, newline included, to compare with ours.
    pub(super) bytes_per_line: f64,
    /// User + system CPU of the process over the window, per line.
    pub(super) cpu_us_per_record: f64,
    /// Whether one `fdatasync` ended the run (the sink's policy syncs).
    pub(super) fdatasync: bool,
    /// What it did, in words, for the output.
    pub(super) method: String,
}

/// The fields of a schema v2 line in its order, the chain's `prev` a fixed
/// digest: what a record costs to write without the chain, the queue and
/// redaction.
#[derive(Serialize)]
struct Line<'a> {
    v: u32,
    seq: u64,
    ts: &'a str,
    event_type: &'a str,
    request_id: &'a str,
    correlation_id: &'a str,
    trace_id: &'a str,
    span_id: &'a str,
    parent_span_id: Option<&'a str>,
    agent: &'a str,
    user_id: Option<&'a str>,
    session_id: Option<&'a str>,
    attributes: &'a serde_json::Map<String, serde_json::Value>,
    payload: ToolCall<'a>,
    prev: &'a str,
}

/// Who the bench's records are for, so the baseline's and the loaded
/// peer's lines are as long as ours.
pub(super) struct Shape {
    pub(super) user_id: Option<String>,
    pub(super) session_id: Option<String>,
    pub(super) attributes: serde_json::Map<String, serde_json::Value>,
}

/// Digest standing in for the chain's `prev`: as long as a real one.
const PREV: &str = "5fe0ecce0213ddb949ce0a55df5327608dfd2c9208aaf5a79fe4edac24bd47a5";

/// Appends one line shaped as the bench's records, stamped now, to `w`:
/// the plain writer's whole work for a record.
pub(super) fn write_line<W: Write>(
    w: &mut W,
    seq: u64,
    shape: &Shape,
    payload: ToolCall<'_>,
) -> std::io::Result<()> {
    let ts = Timestamp::now();
    let line = Line {
        v: 2,
        seq,
        ts: ts.as_str(),
        event_type: "tool_call",
        request_id: "bench",
        correlation_id: "bench",
        trace_id: "d9387a1adc2ae95227663fa3379b7460",
        span_id: "a7dbf7b0c5d0a0cd",
        parent_span_id: None,
        agent: "bench",
        user_id: shape.user_id.as_deref(),
        session_id: shape.session_id.as_deref(),
        attributes: &shape.attributes,
        payload,
        prev: PREV,
    };
    serde_json::to_writer(&mut *w, &line)?;
    w.write_all(b"\n")
}

/// Writes `records` lines shaped as the bench's records into a new file
/// beside `audit_file`, `fdatasync`s once at the end when `sync`, times it
/// and removes the file.
pub(super) fn run(
    audit_file: &Path,
    records: u64,
    shape: &Shape,
    sync: bool,
) -> std::io::Result<Baseline> {
    let path = path_beside(audit_file, "baseline");
    let guard = Remove(path.clone());
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let file = File::create_new(&path)?;
    let mut w = BufWriter::with_capacity(64 << 10, file);
    for seq in 1..=records {
        write_line(
            &mut w,
            seq,
            shape,
            ToolCall::new(format!("call_0_{seq:012}"), seq % 2 == 0),
        )?;
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    if sync {
        file.sync_data()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let bytes = file.metadata()?.len();
    drop(file);
    // Here a failure to remove is reported; the guard's second try then
    // finds nothing.
    std::fs::remove_file(&path)?;
    drop(guard);
    Ok(Baseline {
        records,
        seconds,
        records_per_sec: records as f64 / seconds,
        bytes_per_line: bytes as f64 / records as f64,
        cpu_us_per_record: cpu * 1e6 / records as f64,
        fdatasync: sync,
        method: format!(
            "serde_json + BufWriter<File> (64 KiB) in {}, one thread{}",
            path.parent()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .map_or_else(|| ".".into(), |p| p.display().to_string()),
            if sync {
                ", one fdatasync at the end"
            } else {
                ", no fsync"
            }
        ),
    })
}
