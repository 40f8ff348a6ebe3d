//! `bench --durable-probe`: the wait of "audit before act", a `tool_call`
//! emitted with `emit_wait(.., Durable)` while the bench's tasks emit flat
//! out, against a bare `fdatasync` on the same disk.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent_audit::{AckLevel, Auditor, EmitError, EventType};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::ToolCall;
use super::measure::{Remove, path_beside, quantile_us};

/// Pause between two probes: often enough for a few hundred samples a
/// second, seldom enough that the probe's own records do not change the
/// throughput it runs beside.
pub(super) const EVERY: Duration = Duration::from_millis(5);

/// Bare `fdatasync`s measured after the run.
pub(super) const FDATASYNC_SAMPLES: usize = 200;

/// The probe's and the bare `fdatasync`'s figures.
#[derive(Serialize)]
pub(super) struct DurableProbe {
    /// Durable waits measured.
    pub(super) samples: u64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    /// Receipts that came back below `Durable` (a sink that cannot
    /// reach it); 0 with a JSONL sink that syncs.
    pub(super) below_durable: u64,
    pub(super) fdatasync_samples: u64,
    pub(super) fdatasync_p50_us: f64,
    pub(super) fdatasync_p99_us: f64,
    /// Our p99 over the bare fdatasync's p99 (goal: at most 2).
    pub(super) p99_ratio: f64,
    /// Pause between probes, in milliseconds.
    pub(super) every_ms: u64,
}

/// The waits one probe task measured.
pub(super) struct Waits {
    nanos: Vec<u64>,
    below_durable: u64,
}

/// A probe task running beside the bench's.
pub(super) struct Probe {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<Waits, EmitError>>,
}

impl Probe {
    /// Starts probing at once and every [`EVERY`] after.
    pub(super) fn start(auditor: Auditor) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut waits = Waits {
                nanos: Vec::new(),
                below_durable: 0,
            };
            for i in 0u64.. {
                // The first probe at once, so even a short run has a
                // sample; none started once the tasks are done, so every
                // sample was taken under their load.
                if i > 0 {
                    tokio::time::sleep(EVERY).await;
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                }
                let call = ToolCall::new(format!("probe_{i:012}"), false);
                let t0 = Instant::now();
                let receipt = auditor
                    .emit_wait(EventType::ToolCall, &call, AckLevel::Durable)
                    .await?;
                waits.nanos.push(t0.elapsed().as_nanos() as u64);
                if matches!(receipt.level, AckLevel::Accepted | AckLevel::Written) {
                    waits.below_durable += 1;
                }
            }
            Ok(waits)
        });
        Probe { stop, task }
    }

    /// Lets the probe in flight finish, starts no other, and returns the
    /// waits.
    pub(super) async fn stop(self) -> Result<Waits, crate::error::CliError> {
        self.stop.store(true, Ordering::Relaxed);
        let waits = self
            .task
            .await
            .map_err(|e| crate::error::CliError::Runtime(format!("durable probe failed: {e}")))??;
        Ok(waits)
    }
}

/// Times `FDATASYNC_SAMPLES` appends of a line-sized buffer each followed by
/// `fdatasync`, in a scratch file beside `audit_file`, which is removed.
pub(super) fn bare_fdatasync(audit_file: &Path) -> std::io::Result<Vec<u64>> {
    let path = path_beside(audit_file, "fdatasync");
    let guard = Remove(path.clone());
    let mut file = File::create_new(&path)?;
    let line = [b'x'; 400];
    let mut nanos = Vec::with_capacity(FDATASYNC_SAMPLES);
    for _ in 0..FDATASYNC_SAMPLES {
        let t0 = Instant::now();
        file.write_all(&line)?;
        file.sync_data()?;
        nanos.push(t0.elapsed().as_nanos() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    drop(guard);
    Ok(nanos)
}

/// The figures of `waits` and of the bare `fdatasync`s.
pub(super) fn figures(mut waits: Waits, mut fdatasync: Vec<u64>) -> DurableProbe {
    waits.nanos.sort_unstable();
    fdatasync.sort_unstable();
    let p99 = quantile_us(&waits.nanos, 0.99);
    let sync_p99 = quantile_us(&fdatasync, 0.99);
    DurableProbe {
        samples: waits.nanos.len() as u64,
        p50_us: quantile_us(&waits.nanos, 0.50),
        p99_us: p99,
        below_durable: waits.below_durable,
        fdatasync_samples: fdatasync.len() as u64,
        fdatasync_p50_us: quantile_us(&fdatasync, 0.50),
        fdatasync_p99_us: sync_p99,
        p99_ratio: if sync_p99 > 0.0 { p99 / sync_p99 } else { 0.0 },
        every_ms: EVERY.as_millis() as u64,
    }
}
