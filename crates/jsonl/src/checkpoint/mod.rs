//! Signed checkpoints: Ed25519 signatures over the chain head, emitted as
//! ordinary `checkpoint` records so every sink (and so a host other than
//! the writer's, through the OTLP sink) keeps a copy.
//!
//! A checkpoint says "the line with seq `upto_seq` of the log that began
//! at `origin` has chain value `head`, and this writer appended `records`
//! lines after seq `from_seq` up to it", signed by a key the writer holds. Since each line's
//! `prev` pins the line before it, the head pins every line up to
//! `upto_seq`: whoever rewrites any of them (even recomputing a plain
//! chain) must also forge the signature. Kept off the host, checkpoints
//! also expose a file cut short or a tail rewritten after them.
//!
//! ## The payload
//!
//! ```json
//! {"log":"audit-log.jsonl","origin":{"seq":1,"head":"<64 hex>"},
//!  "chain":"sha256","from_seq":0,"upto_seq":1000,
//!  "records":1000,"head":"<64 hex>","reason":"count",
//!  "signed_at":"2026-11-25T23:32:22.123456789Z","alg":"ed25519",
//!  "key_id":"<16 hex>","signature":"<128 hex>"}
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `log` | the log's active file's name, a label |
//! | `origin` | the log's identity: `seq` and chain value `head` of its first line (whose `prev` is the genesis value); absent when the writer does not know it |
//! | `chain` | `sha256` (plain chain) or `hmac-sha256` (keyed chain) |
//! | `from_seq` | the previous checkpoint's `upto_seq` from the same writer, or the last seq already in the log when the writer opened it (0 for a new log) |
//! | `upto_seq` | the seq of the last line covered |
//! | `records` | lines in the log with a seq in `(from_seq, upto_seq]` |
//! | `head` | the chain value of line `upto_seq` (what the next line's `prev` holds) |
//! | `reason` | `count`, `interval`, `rotation`, `shutdown` or `manual` |
//! | `signed_at` | when it was signed (RFC 3339 UTC) |
//! | `alg` | `ed25519` |
//! | `key_id` | first 16 hex digits of SHA-256 of the raw public key |
//! | `signature` | Ed25519 signature (hex) of the canonical message |
//!
//! ## The canonical message
//!
//! The signature covers these bytes, UTF-8, each line ending in `\n`, in
//! this order and nothing else (the `log` value JSON-quoted, so no name can
//! forge a line break):
//!
//! ```text
//! agent-audit-checkpoint-v2
//! log="audit-log.jsonl"
//! origin_seq=1
//! origin_head=<64 hex>
//! chain=sha256
//! from_seq=0
//! upto_seq=1000
//! records=1000
//! head=<64 hex>
//! reason=count
//! signed_at=2026-11-25T23:32:22.123456789Z
//! alg=ed25519
//! key_id=<16 hex>
//! ```
//!
//! Without `origin`, the message has no `origin_` lines and begins
//! `agent-audit-checkpoint-v1`, as checkpoints did before origins were
//! signed, so those still verify.
//!
//! The record around the payload (its own seq, ts, ids) is not signed: the
//! chain covers it, and the next checkpoint covers that.
//!
//! ```
//! use agent_audit_jsonl::checkpoint::{ChainAlgorithm, CheckpointPayload, CheckpointReason};
//! use agent_audit_jsonl::keys::Signer;
//!
//! let signer = Signer::generate();
//! let cp = CheckpointPayload::sign_with_origin(
//!     &signer, "audit-log.jsonl", None, ChainAlgorithm::Sha256, 0, 3, 3,
//!     &"ab".repeat(32), CheckpointReason::Manual,
//! );
//! assert!(cp.verify(&signer.public_key()).is_ok());
//! let mut forged = cp.clone();
//! forged.head = "cd".repeat(32);
//! assert!(forged.verify(&signer.public_key()).is_err());
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, EmitError, EventType, Receipt};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::head::{ChainHead, HeadHandle, Mark};
use crate::keys::Signer;

mod payload;

pub use payload::{ChainAlgorithm, CheckpointPayload, CheckpointReason, Origin, SignatureError};

/// First line of the canonical message of a checkpoint without an
/// [`Origin`] (written before origins were signed, or by a writer that does
/// not know its log's first line).
pub const MESSAGE_VERSION: &str = "agent-audit-checkpoint-v1";
/// First line of the canonical message of a checkpoint with an [`Origin`].
pub const MESSAGE_VERSION_ORIGIN: &str = "agent-audit-checkpoint-v2";
/// The signature algorithm named in the `alg` key.
pub const ALGORITHM: &str = "ed25519";

/// Default of `checkpoint_every`: a checkpoint after this many records.
pub const DEFAULT_EVERY: u64 = 1000;
/// Default of `checkpoint_interval_secs`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How often a [`Checkpointer`] signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// A checkpoint once this many records were written since the last one
    /// (at least 1).
    pub every: u64,
    /// A checkpoint once this long has passed since the last one while
    /// records were written since.
    pub interval: Duration,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            every: DEFAULT_EVERY,
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// Why checkpointing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Emitting a checkpoint record failed.
    #[error("cannot emit a checkpoint record covering seq {upto_seq}: {source}")]
    Emit {
        /// The seq it would have covered.
        upto_seq: u64,
        /// Cause.
        #[source]
        source: EmitError,
    },
    /// The background task ended abnormally (it panicked).
    #[error("the checkpoint task ended abnormally: {0}")]
    Task(String),
    /// [`Checkpointer::start`] was called outside a Tokio runtime.
    #[error(
        "the checkpointer must be started inside a Tokio runtime (with its time driver enabled): {0}"
    )]
    NoRuntime(String),
}

/// What a [`Checkpointer`] did.
#[derive(Debug, Default)]
pub struct CheckpointSummary {
    /// Checkpoints emitted (including the final one).
    pub emitted: u64,
    /// Emits that failed (the first error is returned by
    /// [`Checkpointer::finish`]).
    pub failed: u64,
    /// The last checkpoint emitted.
    pub last: Option<CheckpointPayload>,
    /// The receipt of the final (shutdown) checkpoint, once written.
    pub final_receipt: Option<Receipt>,
    /// Checkpoints that fell due while the checkpointer was so far behind
    /// (tens of thousands of them) that the sink stopped keeping their
    /// lines: the next checkpoint then covers more than `every` records.
    pub marks_dropped: u64,
}

struct State {
    /// `written` of the sink's head at the line the last checkpoint covers.
    written_at_last: u64,
    /// `counted` there: application lines, what `every` counts.
    counted_at_last: u64,
    /// The last checkpoint's `upto_seq` (the next one's `from_seq`).
    upto_last: Option<u64>,
    rotations: u64,
    last_at: Instant,
    summary: CheckpointSummary,
    first_error: Option<CheckpointError>,
}

struct Shared {
    auditor: Auditor,
    head: HeadHandle,
    signer: Signer,
    options: CheckpointOptions,
    state: Mutex<State>,
    stop: Notify,
}

/// Emits signed `checkpoint` records for one [`JsonlSink`](crate::JsonlSink)'s
/// chain: every `every` records, every `interval` while records flow, after
/// each rotation and, through [`Checkpointer::finish`], at shutdown.
///
/// The sink marks the line where each `every`-th record falls as it writes
/// it, so a checkpoint covers exactly `every` records even when the sink
/// writes thousands in one batch; the checkpoint record itself follows
/// within the writer's queue.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use agent_audit_core::{Auditor, Dispatcher, EventType, SinkOptions};
/// use agent_audit_jsonl::checkpoint::{CheckpointOptions, Checkpointer};
/// use agent_audit_jsonl::keys::Signer;
/// use agent_audit_jsonl::{JsonlOptions, JsonlSink, verify};
///
/// # let dir = std::env::temp_dir().join(format!("agent-audit-cp-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("audit-log.jsonl");
/// let sink = JsonlSink::new(JsonlOptions::new(&path))?;
/// let head = sink.head_handle(); // before the sink moves into the dispatcher
/// let dispatcher = Dispatcher::builder().sink(SinkOptions::new("jsonl"), sink).start().await?;
/// let signer = Signer::generate();
/// let public = signer.public_key();
/// let checkpointer = Checkpointer::start(
///     Auditor::new(dispatcher.clone()).with_agent("agent-audit"),
///     head,
///     signer,
///     CheckpointOptions { every: 2, interval: Duration::from_secs(60) },
/// )?;
/// let audit = Auditor::new(dispatcher.clone()).for_request(None);
/// for i in 0..5 {
///     audit.emit(EventType::ToolCall, &serde_json::json!({"i": i})).await?;
/// }
/// let summary = checkpointer.finish().await?; // before shutdown
/// assert!(summary.emitted >= 1);
/// dispatcher.shutdown(Duration::from_secs(5)).await;
///
/// let options = verify::VerifyOptions { public_keys: vec![public], ..Default::default() };
/// let report = verify::verify(&[&path], &options, &mut |_| {})?;
/// assert!(report.intact, "{report}");
/// assert!(report.checkpoints.signatures_verified >= 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Checkpointer {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpointer")
            .field("key_id", &self.shared.signer.key_id())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Starts checkpointing the chain behind `head` (from
    /// [`JsonlSink::head_handle`](crate::JsonlSink::head_handle)), emitting
    /// through `auditor`. Spawns a task on the current Tokio runtime, which
    /// needs its time driver (`enable_all` or `enable_time`); call it after
    /// the dispatcher has started.
    pub fn start(
        auditor: Auditor,
        head: HeadHandle,
        signer: Signer,
        options: CheckpointOptions,
    ) -> Result<Checkpointer, CheckpointError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| CheckpointError::NoRuntime(e.to_string()))?;
        let options = CheckpointOptions {
            every: options.every.max(1),
            interval: options.interval.max(Duration::from_millis(1)),
        };
        head.set_every(options.every);
        let now = head.get();
        let shared = Arc::new(Shared {
            auditor,
            head,
            signer,
            options,
            state: Mutex::new(State {
                written_at_last: 0,
                // Lines written before the checkpointer started count
                // toward its first checkpoint by time, not by number.
                counted_at_last: 0,
                upto_last: None,
                rotations: now.rotations,
                last_at: Instant::now(),
                summary: CheckpointSummary::default(),
                first_error: None,
            }),
            stop: Notify::new(),
        });
        let task = runtime.spawn(run(shared.clone()));
        Ok(Checkpointer {
            shared,
            task: Some(task),
        })
    }

    /// Emits the checkpoints that fell due, then one now if lines were
    /// written since; returns the last one emitted.
    pub async fn checkpoint_now(&self) -> Result<Option<CheckpointPayload>, CheckpointError> {
        let mut state = self.shared.state.lock().await;
        let emitted = state.summary.emitted;
        let head = self.shared.sign_due(&mut state).await?;
        if pending_lines(&state, &head) == 0 {
            let last = state.summary.last.clone();
            return Ok(last.filter(|_| state.summary.emitted > emitted));
        }
        let (cp, result) = self
            .shared
            .emit_head(&mut state, &head, CheckpointReason::Manual, false)
            .await;
        result.map(|_| Some(cp))
    }

    /// Stops the periodic checkpoints, waits until every record emitted so
    /// far is in the file, and emits the checkpoints due and a final one
    /// covering it all (unless the last checkpoint already does), waiting
    /// until it is written. Call it when the application has stopped
    /// emitting and before
    /// [`Dispatcher::shutdown`](agent_audit_core::Dispatcher::shutdown).
    ///
    /// Returns what was emitted, or the first error any checkpoint met.
    pub async fn finish(mut self) -> Result<CheckpointSummary, CheckpointError> {
        self.shared.stop.notify_one();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            return Err(CheckpointError::Task(e.to_string()));
        }
        let shared = &self.shared;
        let dispatcher = shared.auditor.dispatcher();
        let last = dispatcher.next_seq().await.saturating_sub(1);
        if last > 0 {
            // Either the sink publishes that it wrote `last` (or later), or
            // every sink has settled on it (written, or failed and dropped).
            let wait = dispatcher.wait(last, AckLevel::Written);
            tokio::pin!(wait);
            loop {
                let changed = shared.head.changed();
                if shared.head.get().seq >= last {
                    break;
                }
                tokio::select! {
                    _ = changed => {}
                    _ = &mut wait => break,
                }
            }
        }
        let mut state = shared.state.lock().await;
        let head = shared.sign_due_or_note(&mut state).await;
        if head.opened && pending_lines(&state, &head) > 0 {
            let (_, result) = shared
                .emit_head(&mut state, &head, CheckpointReason::Shutdown, true)
                .await;
            if let Err(e) = result {
                state.first_error.get_or_insert(e);
            }
        }
        // Nothing signs marks from now on.
        shared.head.set_every(0);
        match state.first_error.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut state.summary)),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            self.shared.head.set_every(0);
        }
    }
}

/// Application lines written after the last checkpoint's line.
fn pending_lines(state: &State, head: &ChainHead) -> u64 {
    head.counted.saturating_sub(state.counted_at_last)
}

/// The line a checkpoint covers: a mark the sink left, or its head.
struct Covered {
    seq: u64,
    head: String,
    written: u64,
    counted: u64,
}

impl Covered {
    fn head(h: &ChainHead) -> Covered {
        Covered {
            seq: h.seq,
            head: h.head.clone(),
            written: h.written,
            counted: h.counted,
        }
    }

    fn mark(m: Mark) -> Covered {
        Covered {
            seq: m.seq,
            head: m.head,
            written: m.written,
            counted: m.counted,
        }
    }
}

impl Shared {
    /// Emits a `count` checkpoint for every mark the sink left since the
    /// last call, oldest first; returns the head published with them.
    async fn sign_due(&self, state: &mut State) -> Result<ChainHead, CheckpointError> {
        let (head, marks, dropped) = self.head.take();
        state.summary.marks_dropped += dropped;
        for mark in marks {
            // A checkpoint of another reason may already cover it.
            if mark.counted <= state.counted_at_last || !head.opened {
                continue;
            }
            let (_, result) = self
                .emit(
                    state,
                    &head,
                    &Covered::mark(mark),
                    CheckpointReason::Count,
                    false,
                )
                .await;
            result?;
        }
        Ok(head)
    }

    /// Signs `covered` (a line of the log behind `head`) and emits it.
    /// Returns the payload and the outcome; on failure the state is left so
    /// the next attempt covers the same lines.
    /// [`Shared::sign_due`], keeping its error as the first one met and
    /// going on from the published head: one failed checkpoint must not
    /// stop the ones after it.
    async fn sign_due_or_note(&self, state: &mut State) -> ChainHead {
        match self.sign_due(state).await {
            Ok(head) => head,
            Err(e) => {
                state.first_error.get_or_insert(e);
                self.head.get()
            }
        }
    }

    /// [`Shared::emit`] of a checkpoint covering the chain up to `head`.
    async fn emit_head(
        &self,
        state: &mut State,
        head: &ChainHead,
        reason: CheckpointReason,
        wait: bool,
    ) -> (CheckpointPayload, Result<u64, CheckpointError>) {
        self.emit(state, head, &Covered::head(head), reason, wait)
            .await
    }

    async fn emit(
        &self,
        state: &mut State,
        head: &ChainHead,
        covered: &Covered,
        reason: CheckpointReason,
        wait: bool,
    ) -> (CheckpointPayload, Result<u64, CheckpointError>) {
        let from_seq = state.upto_last.unwrap_or(head.opened_after_seq);
        let cp = CheckpointPayload::sign_with_origin(
            &self.signer,
            &head.log,
            head.origin.clone(),
            ChainAlgorithm::of(head.keyed),
            from_seq,
            covered.seq,
            covered.written.saturating_sub(state.written_at_last),
            &covered.head,
            reason,
        );
        let result = if wait {
            self.auditor
                .emit_wait(EventType::Checkpoint, &cp, AckLevel::Written)
                .await
        } else {
            self.auditor.emit(EventType::Checkpoint, &cp).await
        };
        state.last_at = Instant::now();
        match result {
            Ok(receipt) => {
                let seq = receipt.seq;
                state.written_at_last = covered.written;
                state.counted_at_last = covered.counted;
                state.upto_last = Some(covered.seq);
                self.head.covered(covered.counted);
                if covered.written == head.written {
                    state.rotations = head.rotations;
                }
                state.summary.emitted += 1;
                state.summary.last = Some(cp.clone());
                if wait {
                    state.summary.final_receipt = Some(receipt);
                }
                (cp, Ok(seq))
            }
            Err(source) => {
                state.summary.failed += 1;
                let upto_seq = covered.seq;
                (cp, Err(CheckpointError::Emit { upto_seq, source }))
            }
        }
    }
}

async fn run(shared: Arc<Shared>) {
    loop {
        let changed = shared.head.changed();
        let stop = shared.stop.notified();
        let deadline = {
            let mut state = shared.state.lock().await;
            let head = shared.sign_due_or_note(&mut state).await;
            let pending = if head.opened {
                pending_lines(&state, &head)
            } else {
                0
            };
            if pending == 0 {
                // Everything is covered, the end of a rotated file too.
                state.rotations = head.rotations;
            }
            let reason = if pending == 0 {
                None
            } else if head.rotations != state.rotations {
                Some(CheckpointReason::Rotation)
            } else if pending >= shared.options.every {
                // Only when marks were dropped (see `marks_dropped`).
                Some(CheckpointReason::Count)
            } else if state.last_at.elapsed() >= shared.options.interval {
                Some(CheckpointReason::Interval)
            } else {
                None
            };
            match reason {
                Some(reason) => {
                    let (_, result) = shared.emit_head(&mut state, &head, reason, false).await;
                    if let Err(e) = result {
                        state.first_error.get_or_insert(e);
                    }
                    // Our own record is the only line since: nothing to
                    // wait for until more are written.
                    None
                }
                // With nothing uncovered there is no reason to wake by time:
                // the next line wakes us.
                None if pending == 0 => None,
                None => Some(state.last_at + shared.options.interval),
            }
        };
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop => return,
            _ = changed => {}
            _ = timer => {}
        }
    }
}
