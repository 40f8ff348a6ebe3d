//! The JSONL file sink.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{AckLevel, Batch, Record, Sink, SinkError, SinkOpen};

use crate::chain::Chain;
use crate::checkpoint::Origin;
use crate::error::{JsonlError, OptionsError};
use crate::files;
use crate::head::HeadHandle;

use crate::options::{FsyncPolicy, JsonlOptions};

// The sink's jobs: `open` (the file locked and scanned), `append` (records
// chained, written, committed, synced; a failed write undone), `rotate`
// (a full file renamed, a moved or deleted one followed).
mod append;
mod open;
mod rotate;

pub(crate) use open::CUT_TORN;

/// The genesis chain value as the sink holds its head.
const GENESIS_RAW: &[u8; 64] = b"0000000000000000000000000000000000000000000000000000000000000000";

/// Encoded bytes handed to the kernel at a time: small enough to still be in
/// the CPU cache when `write` copies them into the page cache (one write of
/// a whole 4096-record batch measured markedly slower).
const CHUNK: usize = 128 << 10;

/// The active file and what is known about its content.
struct Active {
    file: File,
    /// A regular file (not `/dev/null` or `/dev/full`): locked, scanned,
    /// rotated, truncated after a failed write.
    regular: bool,
    len: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// When the file's first record was stamped (Unix nanoseconds): the
    /// file's age for `rotate_every`. The file's creation time when its
    /// first record cannot be read.
    first_ts: Option<i128>,
    unsynced: bool,
}

impl Active {
    /// A file no record has been written to by this sink yet.
    fn empty(file: File, regular: bool, len: u64) -> Active {
        Active {
            file,
            regular,
            len,
            first_seq: None,
            last_seq: None,
            first_ts: None,
            unsynced: false,
        }
    }
}

/// The state after the last successful write, restored after a failed one.
#[derive(Clone)]
struct Mark {
    len: u64,
    head: [u8; 64],
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    first_ts: Option<i128>,
}

/// Seq range and first record's time of lines encoded but not yet written.
#[derive(Clone, Copy)]
struct Pending {
    first: u64,
    last: u64,
    first_ts: i128,
}

/// Unix nanoseconds of a file's creation (birth) time, else its last
/// modification.
fn created_nanos(meta: &std::fs::Metadata) -> Option<i128> {
    let t = meta.created().or_else(|_| meta.modified()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_nanos() as i128)
}

/// Appends records to a JSONL file with a hash chain. See the
/// [crate docs](crate) for the file format, locking, torn lines and rotation.
pub struct JsonlSink {
    options: JsonlOptions,
    chain: Chain,
    active: Option<Active>,
    opened: bool,
    /// What the sink worked around while running (its file moved away or
    /// deleted), for [`Sink::take_notices`].
    notices: Vec<String>,
    buf: Vec<u8>,
    committed: Mark,
    /// A write failed after `committed`: its partial bytes are cut off and
    /// the chain rewound before anything else is written.
    dirty: bool,
    /// Where the committed head is published for checkpoints.
    published: HeadHandle,
    /// Records of the batch being written that are committed to the file,
    /// and how many of those are synced: what a write that fails part way
    /// still holds, reported with its error so that the dispatcher does
    /// not name them lost.
    batch_held: (u64, u64),
    /// The log's first line, for checkpoints to name the log by; `None`
    /// until known (see [`ChainHead::origin`](crate::ChainHead::origin)).
    origin: Option<Origin>,
    /// `origin` was found in the batch being written: published with it.
    origin_unpublished: bool,
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("path", &self.options.path)
            .field("fsync", &self.options.fsync)
            .field("chain", &self.chain)
            .field("open", &self.active.is_some())
            .finish()
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Opens (or with `create_new`, creates) the active file: append-only,
/// mode 0600 when created, never through a symlink, a regular file only
/// (see [`files::open_log_file`]); then locks it.
fn open_active(path: &Path, create_new: bool) -> Result<(File, bool), JsonlError> {
    let file = files::open_log_file(path, create_new)?;
    let meta = file
        .metadata()
        .map_err(|e| crate::files::open_error(path, e))?;
    let regular = meta.is_file();
    if regular {
        match lock_soon(&file) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JsonlError::InUse {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(JsonlError::Lock {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    Ok((file, regular))
}

/// How long a lock held by someone else is waited for before the file
/// counts as in use: a child process this process spawns holds every open
/// file (and so its lock) from its fork until its exec closes them, which
/// under load can take milliseconds. A dispatcher started again right
/// after a shutdown would otherwise find its own log "in use".
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Takes the file's lock, trying again for up to [`LOCK_PATIENCE`].
fn lock_soon(file: &File) -> Result<(), std::fs::TryLockError> {
    let until = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn sync_dir(path: &Path) -> Result<(), JsonlError> {
    let dir = dir_of(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| JsonlError::Fsync { path: dir, source })
}

impl JsonlSink {
    /// A sink for `options`; nothing is opened until [`Sink::open`] (or
    /// [`JsonlSink::open_file`]). Fails only on invalid options.
    pub fn new(options: JsonlOptions) -> Result<JsonlSink, OptionsError> {
        options.validate()?;
        let chain = match options.key() {
            Some(key) => Chain::keyed(key.bytes()),
            None => Chain::plain(),
        };
        Ok(JsonlSink {
            committed: Mark {
                len: 0,
                head: chain.head_raw(),
                first_seq: None,
                last_seq: None,
                first_ts: None,
            },
            options,
            chain,
            active: None,
            opened: false,
            notices: Vec::new(),
            buf: Vec::with_capacity(2 * CHUNK),
            dirty: false,
            published: HeadHandle::new(),
            batch_held: (0, 0),
            origin: None,
            origin_unpublished: false,
        })
    }

    /// The active file's path.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// The options the sink was made with.
    pub fn options(&self) -> &JsonlOptions {
        &self.options
    }

    /// The chain head: the `prev` the next line will carry.
    pub fn chain_head(&self) -> &str {
        self.chain.head()
    }

    /// A live view of the committed chain head (seq and hash of the last
    /// line in the file), for [`crate::checkpoint::Checkpointer`]. Take it
    /// before the sink moves into the dispatcher.
    pub fn head_handle(&self) -> HeadHandle {
        self.published.clone()
    }

    fn not_open(&self) -> JsonlError {
        JsonlError::NotOpen {
            path: self.options.path.clone(),
        }
    }

    /// [`Sink::write`] with the typed error.
    pub fn write_records(&mut self, records: &[Arc<Record>]) -> Result<AckLevel, JsonlError> {
        self.batch_held = (0, 0);
        if !self.opened {
            return Err(self.not_open());
        }
        self.recover()?;
        self.follow_path()?;
        match self.options.fsync {
            FsyncPolicy::Every => {
                for r in records {
                    self.append(std::slice::from_ref(r))?;
                    self.sync()?;
                }
                Ok(AckLevel::Durable)
            }
            FsyncPolicy::Batch => {
                self.append(records)?;
                self.sync()?;
                Ok(AckLevel::Durable)
            }
            FsyncPolicy::Never | FsyncPolicy::Interval => {
                self.append(records)?;
                Ok(AckLevel::Written)
            }
        }
    }

    /// Cuts off a failed write, syncs what is unsynced (unless
    /// `fsync = "never"`) and releases the file and its lock.
    pub fn close_file(&mut self) -> Result<Option<AckLevel>, JsonlError> {
        if self.active.is_none() {
            return Ok(None);
        }
        let result = self.recover().and_then(|()| {
            let unsynced = self.active.as_ref().is_some_and(|a| a.unsynced);
            match self.options.fsync {
                FsyncPolicy::Never => Ok(None),
                _ if unsynced => self.sync().map(|()| Some(AckLevel::Durable)),
                _ => Ok(Some(AckLevel::Durable)),
            }
        });
        self.active = None;
        self.opened = false;
        result
    }

    /// The mode bits of the active file (for tests and diagnostics).
    pub fn file_mode(&self) -> Option<u32> {
        let active = self.active.as_ref()?;
        active
            .file
            .metadata()
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
}

impl Sink for JsonlSink {
    fn max_level(&self) -> AckLevel {
        match self.options.fsync {
            FsyncPolicy::Never => AckLevel::Written,
            _ => AckLevel::Durable,
        }
    }

    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        self.open_file().map_err(SinkError::permanent)
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        // The lines committed before the failure (fsync = "every", a
        // rotation mid-batch) stay in the file: they are not lost.
        self.write_records(batch.records).map_err(|e| {
            SinkError::permanent(e)
                .holding(self.batch_held.0, AckLevel::Written)
                .holding(self.batch_held.1, AckLevel::Durable)
        })
    }

    fn tick(&mut self) -> Result<Option<AckLevel>, SinkError> {
        if self.options.fsync != FsyncPolicy::Interval || self.active.is_none() || self.dirty {
            return Ok(None);
        }
        if self.active.as_ref().is_some_and(|a| a.unsynced) {
            self.sync().map_err(SinkError::permanent)?;
        }
        Ok(Some(AckLevel::Durable))
    }

    /// Everything queued, in one batch: with `fsync = "batch"` a batch is
    /// one `fdatasync`, so a record waited on to Durable behind a full
    /// queue waits for at most the sync under way and its own, not one per
    /// 4096 records ahead of it. (The dispatcher bounds a batch by the
    /// queue's capacity.) Not under `fsync = "every"`: each line is synced
    /// on its own there, but the batch is acknowledged when its last line
    /// is, so one batch of a queue of a million would hold the first
    /// record's Durable receipt until a million syncs later; the
    /// dispatcher's default batch bounds that wait as before.
    fn max_batch(&self) -> Option<usize> {
        (self.options.fsync != FsyncPolicy::Every).then_some(usize::MAX)
    }

    fn tick_interval(&self) -> Option<Duration> {
        (self.options.fsync == FsyncPolicy::Interval)
            .then(|| Duration::from_millis(self.options.fsync_interval_ms))
    }

    fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.close_file().map_err(SinkError::permanent)
    }
}
