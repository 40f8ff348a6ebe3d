//! The JSONL file sink.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{AckLevel, Batch, EventType, Record, Sink, SinkError, SinkOpen};

use crate::chain::Chain;
use crate::checkpoint::Origin;
use crate::error::JsonlError;
use crate::files;
use crate::head::{Cadence, HeadHandle, PendingMark};

/// The genesis chain value as the sink holds its head.
const GENESIS_RAW: &[u8; 64] = b"0000000000000000000000000000000000000000000000000000000000000000";
use crate::options::{FsyncPolicy, JsonlOptions};
use crate::tail::{self, ScanError};

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
        match file.try_lock() {
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

fn sync_dir(path: &Path) -> Result<(), JsonlError> {
    let dir = dir_of(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| JsonlError::Fsync { path: dir, source })
}

impl JsonlSink {
    /// A sink for `options`; nothing is opened until [`Sink::open`] (or
    /// [`JsonlSink::open_file`]). Fails only on invalid options.
    pub fn new(options: JsonlOptions) -> Result<JsonlSink, JsonlError> {
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

    /// [`Sink::open`] with the typed error: opens and locks the file, finds
    /// the last whole record (its seq and chain value) and reports damage
    /// after it.
    pub fn open_file(&mut self) -> Result<SinkOpen, JsonlError> {
        let path = self.options.path.clone();
        let (mut file, regular) = open_active(&path, false)?;
        let mut notices = Vec::new();
        let mut len = 0;
        let mut first_seq = None;
        let mut last_seq = None;
        let mut first_ts = None;
        let mut seq_floor = None;
        if regular {
            len = file
                .metadata()
                .map_err(|source| JsonlError::ReadTail {
                    path: path.clone(),
                    source,
                })?
                .len();
            let tail = match tail::scan(&file, len) {
                Ok(t) => t,
                Err(ScanError::Io(source)) => {
                    return Err(JsonlError::ReadTail { path, source });
                }
                Err(ScanError::TooManyBad) => {
                    return Err(JsonlError::NotAnAuditLog {
                        path,
                        lines: tail::MAX_BAD + 1,
                    });
                }
            };
            if tail.needs_newline {
                // The torn bytes stay as evidence; the newline makes sure the
                // next record starts on a line of its own.
                file.write_all(b"\n").map_err(|source| JsonlError::Write {
                    path: path.clone(),
                    source,
                })?;
                len += 1;
            }
            let resume = match &tail.last {
                Some(last) => {
                    self.chain.next(&last.bytes);
                    last_seq = Some(last.seq);
                    let first =
                        tail::first_record(&file).map_err(|source| JsonlError::ReadTail {
                            path: path.clone(),
                            source,
                        })?;
                    first_seq = first.map(|f| f.0);
                    // The age survives a restart: it is the first record's
                    // time, not when this process opened the file.
                    first_ts = match first.and_then(|f| f.1) {
                        Some(ts) => Some(ts),
                        None => file.metadata().ok().as_ref().and_then(created_nanos),
                    };
                    format!(
                        "the last whole record (seq {}, ending at byte {})",
                        last.seq, last.end
                    )
                }
                None => self.resume_from_rotated(&mut last_seq)?,
            };
            for bad in &tail.bad {
                let lost = bad
                    .seq_hint
                    .map(|s| format!(", it was seq {s}"))
                    .unwrap_or_default();
                seq_floor = seq_floor.max(bad.seq_hint);
                notices.push(if bad.terminated {
                    format!(
                        "line at byte offset {} of {} ({} bytes) is not a record (left by an earlier crash or edit{lost}); kept as is; the chain resumes from {resume}",
                        bad.offset,
                        path.display(),
                        bad.len
                    )
                } else {
                    format!(
                        "torn final line at byte offset {} of {} ({} bytes, no newline: a write cut short{lost}); kept as is and terminated with a newline; the chain resumes from {resume}",
                        bad.offset,
                        path.display(),
                        bad.len
                    )
                });
            }
            if self.options.fsync != FsyncPolicy::Never {
                // A newly created file must survive a power loss along with
                // the records it will hold.
                sync_dir(&path)?;
            }
        }
        self.committed = Mark {
            len,
            head: self.chain.head_raw(),
            first_seq,
            last_seq,
            first_ts,
        };
        self.active = Some(Active {
            file,
            regular,
            len,
            first_seq,
            last_seq,
            first_ts,
            unsynced: false,
        });
        self.opened = true;
        self.origin = self.find_origin(regular);
        self.published.opened(
            &path,
            self.origin.clone(),
            self.chain.is_keyed(),
            last_seq,
            self.chain.head(),
        );
        Ok(SinkOpen {
            // A damaged line's seq may have reached another sink before the
            // crash: never hand it out again.
            last_seq: last_seq.max(seq_floor),
            notices,
        })
    }

    /// With no record in the active file, the chain and seq continue from
    /// the newest rotated file. Returns where it resumed, for notices.
    fn resume_from_rotated(&mut self, last_seq: &mut Option<u64>) -> Result<String, JsonlError> {
        let path = &self.options.path;
        let list = files::list(path)?;
        for f in list.iter().rev().filter(|f| !f.active) {
            let file = File::open(&f.path).map_err(|source| JsonlError::ReadTail {
                path: f.path.clone(),
                source,
            })?;
            let len = file
                .metadata()
                .map_err(|source| JsonlError::ReadTail {
                    path: f.path.clone(),
                    source,
                })?
                .len();
            match tail::scan(&file, len) {
                Ok(tail::Tail {
                    last: Some(last), ..
                }) => {
                    self.chain.next(&last.bytes);
                    *last_seq = Some(last.seq);
                    return Ok(format!(
                        "the last record of {} (seq {})",
                        f.path.display(),
                        last.seq
                    ));
                }
                Ok(_) | Err(ScanError::TooManyBad) => continue,
                Err(ScanError::Io(source)) => {
                    return Err(JsonlError::ReadTail {
                        path: f.path.clone(),
                        source,
                    });
                }
            }
        }
        Ok("the start of the log (no earlier record)".to_string())
    }

    /// The log's first line: the first record of its oldest file, if that
    /// record starts the chain. Unknown (and checkpoints then name no
    /// origin) when the log's first files are gone, or on a read error:
    /// only checkpoints depend on it, never the records.
    fn find_origin(&self, regular: bool) -> Option<Origin> {
        // A FIFO or device as the path has no first line to read (and
        // reading one could block or never end).
        if !regular {
            return None;
        }
        let list = files::list(&self.options.path).ok()?;
        let oldest = list.first()?;
        let file = File::open(&oldest.path).ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let (seq, bytes, prev) = tail::first_record_line(&file).ok()??;
        (prev == crate::chain::GENESIS).then(|| Origin {
            seq,
            head: hex::encode(self.chain.hash(&bytes)),
        })
    }

    fn not_open(&self) -> JsonlError {
        JsonlError::NotOpen {
            path: self.options.path.clone(),
        }
    }

    /// Cuts a failed write's partial bytes off and rewinds the chain, so the
    /// file never holds half a line followed by more records.
    fn recover(&mut self) -> Result<(), JsonlError> {
        if self.active.is_none() && self.opened {
            // A rotation renamed the old file but could not create the new.
            let (file, regular) = open_active(&self.options.path, false)?;
            let len = if regular {
                file.metadata()
                    .map_err(|source| JsonlError::ReadTail {
                        path: self.options.path.clone(),
                        source,
                    })?
                    .len()
            } else {
                0
            };
            self.committed.len = len;
            self.active = Some(Active::empty(file, regular, len));
            self.dirty = true;
        }
        if !self.dirty {
            return Ok(());
        }
        let path = self.options.path.clone();
        let Some(active) = self.active.as_mut() else {
            return Err(self.not_open());
        };
        if active.regular {
            active
                .file
                .set_len(self.committed.len)
                .map_err(|source| JsonlError::Truncate {
                    path,
                    len: self.committed.len,
                    source,
                })?;
        }
        active.len = self.committed.len;
        active.first_seq = self.committed.first_seq;
        active.last_seq = self.committed.last_seq;
        active.first_ts = self.committed.first_ts;
        self.chain.set_head_raw(self.committed.head);
        if std::mem::take(&mut self.origin_unpublished) {
            // The first line was cut off with the rest of the failed write.
            self.origin = None;
        }
        self.dirty = false;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JsonlError> {
        let path = &self.options.path;
        let active = self
            .active
            .as_mut()
            .ok_or_else(|| JsonlError::NotOpen { path: path.clone() })?;
        active
            .file
            .sync_data()
            .map_err(|source| JsonlError::Fsync {
                path: path.clone(),
                source,
            })?;
        active.unsynced = false;
        // Every committed line is in the synced file.
        self.batch_held.1 = self.batch_held.0;
        Ok(())
    }

    /// Encodes, chains and appends `records`, rotating between lines when
    /// the file would exceed `rotate_bytes` or a record comes
    /// `rotate_every` after the file's first.
    fn append(&mut self, records: &[Arc<Record>]) -> Result<(), JsonlError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = self.append_with(records, &mut buf);
        // Keep the allocation, but not a huge one after a giant record.
        if buf.capacity() <= 4 * CHUNK {
            self.buf = buf;
        }
        result
    }

    fn append_with(
        &mut self,
        records: &[Arc<Record>],
        buf: &mut Vec<u8>,
    ) -> Result<(), JsonlError> {
        let limit = self.options.rotate_bytes;
        let max_age = self
            .options
            .rotate_every
            .map(|d| d.as_nanos().min(i128::MAX as u128) as i128);
        let rotating = limit.is_some() || max_age.is_some();
        // Seqs of the lines in `buf`, not yet handed to the kernel.
        let mut pending: Option<Pending> = None;
        // Lines written since the last commit.
        let mut lines = 0u64;
        // Checkpoints fall due by counted line, wherever a batch ends: the
        // lines where they do are marked here and published on commit.
        let mut cadence = self.published.cadence();
        let mut marks = Vec::new();
        for r in records {
            let line_start = buf.len();
            let prev_head = self.chain.head_raw();
            let starts_chain = self.origin.is_none() && prev_head == *GENESIS_RAW;
            r.encode_line(self.chain.head(), buf);
            self.chain.advance(&buf[line_start..]);
            buf.push(b'\n');
            if rotating {
                let active = self.active.as_ref().ok_or_else(|| self.not_open())?;
                let before = active.len + line_start as u64;
                let has_record = active.first_seq.is_some() || pending.is_some();
                let too_big =
                    limit.is_some_and(|limit| before + (buf.len() - line_start) as u64 > limit);
                // Record time, not the time of this write: the dispatcher
                // stamps records from the wall clock as they are emitted, so
                // the file's span of record times stays within the limit.
                let too_old = max_age.is_some_and(|max| {
                    active
                        .first_ts
                        .or(pending.map(|p| p.first_ts))
                        .is_some_and(|first| r.ts.unix_nanos().saturating_sub(first) >= max)
                });
                if active.regular && has_record && (too_big || too_old) {
                    self.write_chunk(&buf[..line_start], pending.take())?;
                    self.commit(prev_head, lines, &cadence, &mut marks);
                    lines = 0;
                    self.rotate()?;
                    buf.drain(..line_start);
                }
            }
            pending = Some(match pending {
                Some(p) => Pending { last: r.seq, ..p },
                None => Pending {
                    first: r.seq,
                    last: r.seq,
                    first_ts: r.ts.unix_nanos(),
                },
            });
            lines += 1;
            if starts_chain {
                self.origin = Some(Origin {
                    seq: r.seq,
                    head: String::from_utf8_lossy(&self.chain.head_raw()).into_owned(),
                });
                self.origin_unpublished = true;
            }
            if r.event_type != EventType::Checkpoint {
                cadence.counted += 1;
                if cadence.every > 0 && cadence.counted >= cadence.next_due {
                    marks.push(PendingMark {
                        seq: r.seq,
                        head: self.chain.head_raw(),
                        lines,
                        counted: cadence.counted,
                    });
                    cadence.next_due = cadence.counted.saturating_add(cadence.every);
                }
            }
            if buf.len() >= CHUNK {
                self.write_chunk(buf, pending.take())?;
                buf.clear();
            }
        }
        self.write_chunk(buf, pending.take())?;
        self.commit(self.chain.head_raw(), lines, &cadence, &mut marks);
        Ok(())
    }

    /// Appends whole lines. On failure the sink is marked dirty: before the
    /// next write, [`JsonlSink::recover`] cuts the file back to the last
    /// commit (the start of the batch, or its last rotation), so a failed
    /// batch leaves neither half a line nor its records behind.
    fn write_chunk(&mut self, bytes: &[u8], seqs: Option<Pending>) -> Result<(), JsonlError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let path = &self.options.path;
        let active = self
            .active
            .as_mut()
            .ok_or_else(|| JsonlError::NotOpen { path: path.clone() })?;
        if let Err(source) = active.file.write_all(bytes) {
            self.dirty = true;
            return Err(JsonlError::Write {
                path: path.clone(),
                source,
            });
        }
        active.len += bytes.len() as u64;
        active.unsynced = true;
        if let Some(p) = seqs {
            if active.first_seq.is_none() {
                active.first_seq = Some(p.first);
                active.first_ts = Some(p.first_ts);
            }
            active.last_seq = Some(p.last);
        }
        Ok(())
    }

    /// Records that everything written so far, ending with a line whose
    /// chain value is `head`, is in the file: the point a failed write
    /// rewinds to, and what checkpoints may name.
    fn commit(
        &mut self,
        head: [u8; 64],
        lines: u64,
        cadence: &Cadence,
        marks: &mut Vec<PendingMark>,
    ) {
        let Some(active) = self.active.as_ref() else {
            return;
        };
        self.batch_held.0 += lines;
        self.committed = Mark {
            len: active.len,
            head,
            first_seq: active.first_seq,
            last_seq: active.last_seq,
            first_ts: active.first_ts,
        };
        if let (Some(last), true) = (active.last_seq, lines > 0) {
            if std::mem::take(&mut self.origin_unpublished)
                && let Some(origin) = self.origin.clone()
            {
                self.published.set_origin(origin);
            }
            self.published
                .advanced(last, &head, lines, cadence.counted, marks, cadence.next_due);
        }
    }

    /// Renames the full file to its seq range and starts a fresh one.
    fn rotate(&mut self) -> Result<(), JsonlError> {
        let path = self.options.path.clone();
        let Some(active) = self.active.as_ref() else {
            return Err(self.not_open());
        };
        let (Some(first), Some(last)) = (active.first_seq, active.last_seq) else {
            return Ok(());
        };
        if self.options.fsync != FsyncPolicy::Never && active.unsynced {
            self.sync()?;
        }
        let to = files::rotated_name(&path, first, last);
        let rename_err = |source| JsonlError::Rename {
            from: path.clone(),
            to: to.clone(),
            source,
        };
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(rename_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file with the rotated name already exists; not overwriting it",
            )));
        }
        std::fs::rename(&path, &to).map_err(rename_err)?;
        self.published.rotated();
        // From here on the old file is complete under its new name.
        self.active = None;
        self.committed = Mark {
            len: 0,
            head: self.committed.head,
            first_seq: None,
            last_seq: None,
            first_ts: None,
        };
        let (file, regular) = open_active(&path, true).map_err(|e| match e {
            JsonlError::Open { path, source } if source.kind() == io::ErrorKind::AlreadyExists => {
                JsonlError::Open {
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "another process created the file during rotation",
                    ),
                    path,
                }
            }
            e => e,
        })?;
        self.active = Some(Active::empty(file, regular, 0));
        if self.options.fsync != FsyncPolicy::Never {
            sync_dir(&path)?;
        }
        Ok(())
    }

    /// Makes sure the next line goes to the file at the configured path.
    ///
    /// logrotate (without `copytruncate`), an operator's `mv` or `rm`, or a
    /// cleanup job can move or delete the active file while it is open;
    /// writing on through the old descriptor would send records to a file
    /// nobody reads, or to no name at all. Before each write the open
    /// file's device and inode are compared with the path's; on a mismatch
    /// the path is opened again (created 0600, `O_NOFOLLOW`, locked), the
    /// chain continues from the last line written (the new file's first
    /// `prev` is the old file's last hash) and a notice says what happened.
    /// The published [`HeadHandle`] keeps that head (it is what the new
    /// file continues from) and counts a new file, so a checkpointer signs
    /// again as after a rotation. Bytes someone left at the path without a
    /// final newline get one, so the next record is a line of its own.
    fn follow_path(&mut self) -> Result<(), JsonlError> {
        let path = self.options.path.clone();
        let Some(active) = self.active.as_ref() else {
            return Err(self.not_open());
        };
        if !active.regular {
            return Ok(());
        }
        let open_err = |source| JsonlError::Open {
            path: path.clone(),
            source,
        };
        let held = active.file.metadata().map_err(open_err)?;
        let at_path = match std::fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(open_err(source)),
        };
        if at_path
            .as_ref()
            .is_some_and(|m| m.dev() == held.dev() && m.ino() == held.ino())
        {
            return Ok(());
        }
        let what = if held.nlink() == 0 {
            "was deleted while open"
        } else if at_path.is_none() {
            "was moved away while open (nothing is at the path now)"
        } else {
            "was moved away while open and another file is at the path now"
        };
        let last = active
            .last_seq
            .map_or_else(|| "no record yet".to_string(), |s| format!("last seq {s}"));
        // Drop the old descriptor (and its lock) only once the new file is
        // open and locked, so a failure leaves the sink as it was.
        let (mut file, regular) = open_active(&path, false)?;
        let mut len = file.metadata().map_err(open_err)?.len();
        let mut ended = String::new();
        if len > 0 && regular {
            // Bytes someone else left without a final newline: end their line
            // (kept as it is) so the next record starts a line of its own
            // instead of being glued to them and lost to every reader.
            let mut last = [0u8; 1];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut last, len - 1).map_err(
                |source| JsonlError::ReadTail {
                    path: path.clone(),
                    source,
                },
            )?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|source| JsonlError::Write {
                    path: path.clone(),
                    source,
                })?;
                len += 1;
                ended = "; its last line lacked a newline, which was added".to_string();
            }
        }
        if self.options.fsync != FsyncPolicy::Never {
            sync_dir(&path)?;
        }
        self.active = Some(Active::empty(file, regular, len));
        self.committed = Mark {
            len,
            head: self.chain.head_raw(),
            first_seq: None,
            last_seq: None,
            first_ts: None,
        };
        let found = if len == 0 {
            String::new()
        } else {
            format!(
                " (it already held {len} bytes not written by this sink; they are left as they are{ended})"
            )
        };
        self.notices.push(format!(
            "audit log {} {what} ({last} in the old file); reopened {}{found} and continued the chain from its last line (prev {})",
            path.display(),
            path.display(),
            self.chain.head()
        ));
        // A new file under the log's name, as after a rotation: a
        // checkpointer signs the head again once the next lines are in.
        // The head itself does not move: the new file continues from it.
        self.published.rotated();
        Ok(())
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
