//! `bench --durable-probe`: the wait of "audit before act", a `tool_call`
//! emitted with `emit_wait(.., Durable)` while the bench's tasks emit flat
//! out, against a bare `fdatasync` on the same disk (the goal) and
//! against a plain writer's own durable appends under a flat-out load of
//! its own (the loaded peer, see `peer`).

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
use super::peer::LoadedPeer;

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
    /// The loaded peer's probes: one line each, appended, flushed and
    /// synced through the lock of a plain writer appending flat out to
    /// the same scratch file.
    pub(super) loaded_peer_samples: u64,
    pub(super) loaded_peer_p50_us: f64,
    pub(super) loaded_peer_p99_us: f64,
    /// Our p99 over the loaded peer's p99.
    pub(super) p99_ratio_loaded: f64,
    /// The load beside the peer's probes: the plain writer's lines a
    /// second and MB a second (the probes' syncs, which hold it, included).
    pub(super) loaded_peer_records_per_sec: f64,
    pub(super) loaded_peer_mb_per_sec: f64,
    /// How long the peer's writer ran (about as long as our run).
    pub(super) loaded_peer_seconds: f64,
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

/// The figures of `waits`, of the bare `fdatasync`s and of the loaded
/// peer.
pub(super) fn figures(
    mut waits: Waits,
    mut fdatasync: Vec<u64>,
    mut peer: LoadedPeer,
) -> DurableProbe {
    waits.nanos.sort_unstable();
    fdatasync.sort_unstable();
    peer.nanos.sort_unstable();
    let p99 = quantile_us(&waits.nanos, 0.99);
    let sync_p99 = quantile_us(&fdatasync, 0.99);
    let peer_p99 = quantile_us(&peer.nanos, 0.99);
    let per_sec = |n: u64| {
        if peer.seconds > 0.0 {
            n as f64 / peer.seconds
        } else {
            0.0
        }
    };
    DurableProbe {
        samples: waits.nanos.len() as u64,
        p50_us: quantile_us(&waits.nanos, 0.50),
        p99_us: p99,
        below_durable: waits.below_durable,
        fdatasync_samples: fdatasync.len() as u64,
        fdatasync_p50_us: quantile_us(&fdatasync, 0.50),
        fdatasync_p99_us: sync_p99,
        p99_ratio: if sync_p99 > 0.0 { p99 / sync_p99 } else { 0.0 },
        loaded_peer_samples: peer.nanos.len() as u64,
        loaded_peer_p50_us: quantile_us(&peer.nanos, 0.50),
        loaded_peer_p99_us: peer_p99,
        p99_ratio_loaded: if peer_p99 > 0.0 { p99 / peer_p99 } else { 0.0 },
        loaded_peer_records_per_sec: per_sec(peer.records),
        loaded_peer_mb_per_sec: per_sec(peer.bytes) / 1e6,
        loaded_peer_seconds: peer.seconds,
        every_ms: EVERY.as_millis() as u64,
    }
}
