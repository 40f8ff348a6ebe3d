//! `bench --durable-probe`'s loaded peer: audit before act done by hand,
//! on the same disk and under the same kind of load, with no agent-audit.
//!
//! The bare `fdatasync` of 400 bytes on a quiet file is what no writer
//! under load can reach: a line waited on to be durable in one ordered file
//! waits for everything appended ahead of it to be written and synced with
//! it. Here one plain writer (the baseline's lines, serde_json +
//! `BufWriter<File>`) appends flat out while a probe, every [`EVERY`],
//! appends one line through the same writer's lock, flushes and
//! `fdatasync`s, and times it: what audit before act costs a hand-written
//! writer of one ordered file on this disk under this load.
//!
//! Not a floor: nothing but the probe syncs here, so each sync carries the
//! lines of the pause before it (about [`EVERY`] of them at full speed); a
//! writer that syncs more often, in smaller batches, can wait less (ours
//! with a `queue` of 1024 did, at the same throughput, when measured).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ToolCall;
use super::baseline::{Shape, write_line};
use super::measure::{Remove, path_beside};
use super::probe::EVERY;

/// Lines the writer serialises into its own buffer before it takes the
/// lock to append them. std's `Mutex` is not fair: a writer that locked
/// for every line would take the lock straight back each time it let go,
/// and the probe would measure the mutex rather than the disk. About
/// 8 KiB a time keeps the lock held for a copy (and, every few times, the
/// `BufWriter`'s write) only.
const LINES_PER_LOCK: u64 = 16;

/// What the loaded peer measured.
pub(super) struct LoadedPeer {
    /// Each probe's append, flush and `fdatasync`, lock wait included.
    pub(super) nanos: Vec<u64>,
    /// Lines the flat-out writer appended.
    pub(super) records: u64,
    /// From the writer's first line to its stop.
    pub(super) seconds: f64,
    /// Bytes the file held at the end, the probes' lines included.
    pub(super) bytes: u64,
}

/// Runs the writer and the probe for about `duration` in a scratch file
/// beside `audit_file`, which is removed.
pub(super) fn run(
    audit_file: &Path,
    duration: Duration,
    shape: &Shape,
) -> std::io::Result<LoadedPeer> {
    let path = path_beside(audit_file, "loaded-peer");
    let guard = Remove(path.clone());
    let writer = Mutex::new(BufWriter::with_capacity(64 << 10, File::create_new(&path)?));
    let stop = AtomicBool::new(false);
    // One clock for both, so the writer's time covers the probe's.
    let started = Instant::now();
    let (written, nanos) = std::thread::scope(|s| {
        let flat_out = s.spawn(|| write_flat_out(&writer, shape, &stop, started));
        let probed = probe(&writer, shape, duration, started);
        // Also when the probe failed: the writer must not run on.
        stop.store(true, Ordering::Relaxed);
        let written = flat_out
            .join()
            .map_err(|_| std::io::Error::other("the loaded peer's writer panicked"))?;
        Ok::<_, std::io::Error>((written?, probed?))
    })?;
    let file = writer
        .into_inner()
        .map_err(|_| poisoned())?
        .into_inner()
        .map_err(|e| e.into_error())?;
    let bytes = file.metadata()?.len();
    drop(file);
    // A failure to remove is reported here; the guard's second try then
    // finds nothing.
    std::fs::remove_file(&path)?;
    drop(guard);
    let (records, seconds) = written;
    Ok(LoadedPeer {
        nanos,
        records,
        seconds,
        bytes,
    })
}

/// Appends the baseline's lines until `stop`; the lines written and the
/// seconds since `started`.
fn write_flat_out(
    writer: &Mutex<BufWriter<File>>,
    shape: &Shape,
    stop: &AtomicBool,
    started: Instant,
) -> std::io::Result<(u64, f64)> {
    let mut lines = Vec::with_capacity(16 << 10);
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        lines.clear();
        for _ in 0..LINES_PER_LOCK {
            seq += 1;
            let call = ToolCall::new(format!("call_0_{seq:012}"), seq % 2 == 0);
            write_line(&mut lines, seq, shape, call)?;
        }
        writer.lock().map_err(|_| poisoned())?.write_all(&lines)?;
    }
    Ok((seq, started.elapsed().as_secs_f64()))
}

/// Every [`EVERY`] until `duration` has passed since `started` (at least
/// once), one line appended through the writer's lock, flushed and synced;
/// the times from asking for the lock to `fdatasync`'s return. The writer
/// is held for the sync, as the JSONL sink's worker writes nothing while
/// it syncs a batch.
fn probe(
    writer: &Mutex<BufWriter<File>>,
    shape: &Shape,
    duration: Duration,
    started: Instant,
) -> std::io::Result<Vec<u64>> {
    let mut nanos = Vec::new();
    for i in 0u64.. {
        // A pause before the first probe too (a thread starts in well
        // under that), so the writer is appending when it comes.
        std::thread::sleep(EVERY);
        if i > 0 && started.elapsed() >= duration {
            break;
        }
        let call = ToolCall::new(format!("probe_{i:012}"), false);
        let t0 = Instant::now();
        let mut w = writer.lock().map_err(|_| poisoned())?;
        write_line(&mut *w, i, shape, call)?;
        w.flush()?;
        w.get_ref().sync_data()?;
        drop(w);
        nanos.push(t0.elapsed().as_nanos() as u64);
    }
    Ok(nanos)
}

fn poisoned() -> std::io::Error {
    std::io::Error::other("the loaded peer's writer panicked holding the file")
}
