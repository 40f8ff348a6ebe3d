//! Following a log as it grows, across rotation, like `tail -F`.
//!
//! A [`Follower`] holds the file open and remembers how far it has read.
//! Each [`Follower::poll`] reads what was appended since, then looks at the
//! path again:
//!
//! - the path names another file (its inode changed: the sink rotated, or
//!   a tool moved the file away and created a new one): the old file is
//!   read to its end, then every rotated file of the log that appeared
//!   meanwhile (the sink may rotate several times between two polls; their
//!   names carry their seq range, see [`agent_audit_jsonl::files`]), oldest
//!   first, then the new file from its start;
//! - the line being read, still without its newline, is no longer in the
//!   file (the writer cuts a torn final line when it reopens the file, then
//!   appends): it is reported once as torn and reading goes on from where
//!   it started, so its bytes are never spliced onto the writer's next line
//!   and nothing is read twice;
//! - the file is shorter than the whole lines read (truncated in place, as
//!   `copytruncate` does): it is read again from its start;
//! - the path is missing (between a rename and the new file's creation):
//!   the next poll looks again.
//!
//! Only a regular file is followed: a FIFO (or a device, a socket) at the
//! path, at the start or after a rotation, is an error naming it
//! ([`agent_audit_jsonl::files::open_regular_for_reading`]). A pipe has no
//! offset to resume from, no inode to tell a rotation and no size to tell a
//! truncation, and reading one would take the records from whoever else
//! reads it; stream records with a `stdout` sink instead.
//!
//! A line is only parsed once its newline has arrived, so a record being
//! written is never reported as torn; a line left without a newline when
//! its file is rotated away is.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_review::follow::{FollowEvent, Follower, StartAt};
//! # let dir = tempfile::tempdir()?;
//! # let line = |seq: u64| format!(r#"{{"v":1,"seq":{seq},"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user_proxy","payload":{{}},"prev":""}}"#) + "\n";
//! let path = dir.path().join("audit-log.jsonl");
//! std::fs::write(&path, line(1))?;
//! let mut follower = Follower::open(&path, StartAt::Beginning)?;
//! assert_eq!(follower.poll()?.len(), 1);
//! // Rotation: the file is renamed away and a new one takes its name.
//! std::fs::OpenOptions::new().append(true).open(&path)?.write_all(line(2).as_bytes())?;
//! std::fs::rename(&path, dir.path().join("audit-log.000000000001-000000000002.jsonl"))?;
//! std::fs::write(&path, line(3))?;
//! let seqs: Vec<u64> = follower.poll()?.into_iter().filter_map(|e| match e {
//!     FollowEvent::Record(entry) => Some(entry.record.seq),
//!     _ => None,
//! }).collect();
//! assert_eq!(seqs, [2, 3]);
//! # use std::io::Write;
//! # Ok(()) }
//! ```

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_audit_core::StoredRecord;
use agent_audit_jsonl::{DEFAULT_MAX_LINE, ReadError, Reader, check_schema, files};

use crate::error::ReviewError;
use crate::source::Entry;

/// Lines that are not records one [`Follower::poll`] (or the opening
/// read) returns as [`FollowEvent::Bad`]; further ones in the same poll are
/// only counted ([`Follower::bad_lines_omitted`]), so a file of millions of
/// junk lines costs no more memory than one of a few.
pub const MAX_BAD_PER_POLL: usize = 20;

/// Where a [`Follower`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Every record of the file (not its rotated predecessors).
    Beginning,
    /// Only records appended after it opened.
    End,
    /// The last `n` records of the file, then what is appended.
    Last(usize),
}

/// What [`Follower::poll`] found.
#[derive(Debug)]
pub enum FollowEvent {
    /// A record (boxed: records are large and most polls return few).
    Record(Box<Entry>),
    /// A line that is not a record.
    Bad(ReadError),
    /// The path now names a new file; the old one was read to its end.
    Rotated {
        /// The rotated files read in between (oldest first).
        caught_up: Vec<PathBuf>,
    },
    /// The file got shorter than what had been read; reading restarts at
    /// its beginning.
    Truncated {
        /// Its new length.
        len: u64,
    },
}

type FileId = (u64, u64);

fn id_of(meta: &std::fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// Follows one log file. See the [module docs](self).
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    name: Arc<Path>,
    file: Option<(File, FileId)>,
    offset: u64,
    line: u64,
    /// Byte offset where the line in `partial` starts.
    line_start: u64,
    partial: Vec<u8>,
    /// The line in `partial` outgrew [`DEFAULT_MAX_LINE`]; its bytes are
    /// no longer kept.
    too_long: bool,
    bad_omitted: u64,
    last_seq: Option<u64>,
    /// Rotated files already read or older than the start.
    known: HashSet<FileId>,
    pending: VecDeque<FollowEvent>,
}

impl Follower {
    /// Opens `path` (which must exist) and reads up to where `start` says.
    pub fn open(path: impl AsRef<Path>, start: StartAt) -> Result<Follower, ReviewError> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            return Err(ReviewError::IsDirectory { path });
        }
        let mut known = HashSet::new();
        for f in files::list(&path)? {
            if !f.active
                && let Ok(m) = std::fs::metadata(&f.path)
            {
                known.insert(id_of(&m));
            }
        }
        let mut follower = Follower {
            name: Arc::from(path.as_path()),
            path,
            file: None,
            offset: 0,
            line: 0,
            line_start: 0,
            partial: Vec::new(),
            too_long: false,
            bad_omitted: 0,
            last_seq: None,
            known,
            pending: VecDeque::new(),
        };
        if !follower.reopen()? {
            return Err(ReviewError::NotFound {
                path: follower.path,
            });
        }
        let mut first = match start {
            StartAt::Beginning => Collector::all(),
            // Reading to the end keeps nothing, so memory stays bounded
            // whatever the file holds.
            StartAt::End => Collector::last(0),
            StartAt::Last(n) => Collector::last(n),
        };
        follower.drain(&mut first)?;
        if start == StartAt::End {
            first.events.clear();
            first.omitted = 0;
        }
        follower.bad_omitted += first.omitted;
        follower.pending.extend(first.finish());
        Ok(follower)
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The seq of the last record read.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The line being read when it has outgrown any record without its
    /// newline arriving yet: its number and byte offset. Its bytes are not
    /// kept; once it ends it is reported as [`ReadError::TooLong`].
    pub fn overlong_line(&self) -> Option<(u64, u64)> {
        self.too_long.then_some((self.line + 1, self.line_start))
    }

    /// Lines that were not records and were counted but not returned,
    /// beyond [`MAX_BAD_PER_POLL`] in a poll, since the follower opened.
    pub fn bad_lines_omitted(&self) -> u64 {
        self.bad_omitted
    }

    /// Opens the path afresh; false if it does not exist.
    fn reopen(&mut self) -> Result<bool, ReviewError> {
        match files::open_regular_for_reading(&self.path, files::Symlinks::Follow) {
            Ok(f) => {
                let meta = f.metadata().map_err(|source| ReviewError::Stat {
                    path: self.path.clone(),
                    source,
                })?;
                self.file = Some((f, id_of(&meta)));
                self.offset = 0;
                self.line = 0;
                self.line_start = 0;
                self.partial.clear();
                self.too_long = false;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ReadError::Open {
                path: self.path.clone(),
                source,
            }
            .into()),
        }
    }

    /// Everything new since the last poll, in order.
    pub fn poll(&mut self) -> Result<Vec<FollowEvent>, ReviewError> {
        let mut out = Collector::all();
        out.events.extend(self.pending.drain(..));
        let result = self.poll_into(&mut out);
        self.bad_omitted += out.omitted;
        result.map(|()| out.finish())
    }

    fn poll_into(&mut self, out: &mut Collector) -> Result<(), ReviewError> {
        // Look at the path before draining: whatever the old file received
        // before a rename is then read in full below.
        let now = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ReviewError::Stat {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        // The size seen above predates the drain: compare it with where
        // reading stood then, or a file growing meanwhile looks truncated.
        // Only whole lines count: an unfinished line the writer cut off
        // (a torn tail, cut when it reopens the file) is the drain's to
        // drop, not a truncation that re-reads the file from its start.
        let read_before = self.line_start;
        self.drain(out)?;
        let current = self.file.as_ref().map(|(_, id)| *id);
        match (now, current) {
            (Some(m), Some(id)) if id_of(&m) != id => {
                self.finish_torn(out);
                self.known.insert(id);
                self.file = None;
                let caught_up = self.switch(out)?;
                out.push(FollowEvent::Rotated { caught_up });
            }
            (Some(m), Some(_)) if m.len() < read_before => {
                out.push(FollowEvent::Truncated { len: m.len() });
                if self.reopen()? {
                    self.drain(out)?;
                }
            }
            (Some(_), None) => {
                self.switch(out)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Moves to the file now at the path, reading first the rotated files
    /// that came between. The new file is opened *before* the rotated
    /// files are listed: every file rotated before it was created is then
    /// listed under its rotated name, so none can slip between the listing
    /// and the opening however fast the writer rotates.
    fn switch(&mut self, out: &mut Collector) -> Result<Vec<PathBuf>, ReviewError> {
        if !self.reopen()? {
            // Between a rename and the new file's creation: the rotated
            // files are read once there is a new file to bound them.
            return Ok(Vec::new());
        }
        let caught_up = self.catch_up(out)?;
        self.drain(out)?;
        Ok(caught_up)
    }

    /// Reads the rotated files of the log that came between the file left
    /// and the file now open, oldest first.
    ///
    /// A directory listing taken while files are renamed into the
    /// directory may miss the entries added during it (POSIX leaves that
    /// unspecified, and hashed directories do skip some) and still return
    /// later ones. Every file rotated before the open file was created was
    /// renamed before the listing began, so it is listed; files rotated
    /// after (the open file itself, once full, and its successors) may not
    /// be, so they are left to later polls: the bound is the open file's
    /// first seq, read after the listing.
    fn catch_up(&mut self, out: &mut Collector) -> Result<Vec<PathBuf>, ReviewError> {
        let listed = files::list(&self.path)?;
        let bound = match &self.file {
            Some((file, _)) => first_seq(file),
            None => None,
        };
        let open_id = self.file.as_ref().map(|(_, id)| *id);
        let mut read = Vec::new();
        for f in listed {
            if f.active {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&f.path) else {
                continue;
            };
            let id = id_of(&meta);
            if Some(id) == open_id || bound.zip(f.seqs).is_some_and(|(b, (first, _))| first >= b) {
                break;
            }
            let newer = match (f.seqs, self.last_seq) {
                (Some((first, _)), Some(last)) => first > last,
                _ => true,
            };
            if self.known.contains(&id) || !newer {
                continue;
            }
            self.known.insert(id);
            let name: Arc<Path> = Arc::from(f.path.as_path());
            let reader = Reader::open(&f.path)?;
            for item in reader {
                out.push(match item {
                    Ok(line) => {
                        self.last_seq = Some(line.record.seq);
                        FollowEvent::Record(Box::new(Entry {
                            file: name.clone(),
                            line: line.number,
                            offset: line.offset,
                            log: 0,
                            bytes: line.bytes,
                            record: line.record,
                        }))
                    }
                    Err(e) => FollowEvent::Bad(e),
                });
            }
            read.push(f.path);
        }
        Ok(read)
    }

    /// A line still without newline when its file is left is torn.
    fn finish_torn(&mut self, out: &mut Collector) {
        if !self.partial.is_empty() || self.too_long {
            let torn = torn_line(&self.path, self.line, self.line_start, self.offset);
            out.push(FollowEvent::Bad(torn));
            self.partial.clear();
            self.too_long = false;
        }
    }

    /// Reads the open file to its current end, emitting whole lines.
    fn drain(&mut self, out: &mut Collector) -> Result<(), ReviewError> {
        let Some((file, _)) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|source| io_at(&self.path, self.line, source))?;
        let mut buf = vec![0u8; 256 << 10];
        // An unfinished line is only continued while its bytes are still
        // in the file: the writer cuts a torn final line when it reopens
        // the file and then appends, so the bytes after it may now belong
        // to another line. Checked after the read: bytes past the old end
        // can only have been written after such a cut, so the check then
        // sees it.
        let mut check_partial = !self.partial.is_empty() || self.too_long;
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(io_at(&self.path, self.line, source).into());
                }
            };
            if std::mem::take(&mut check_partial) {
                let kept = partial_still_there(
                    file,
                    self.line_start,
                    self.offset,
                    &self.partial,
                    self.too_long,
                )
                .map_err(|source| io_at(&self.path, self.line, source))?;
                if !kept {
                    // Reported once, as when its file is rotated away;
                    // what was read after it is read again from the line's
                    // start, as the lines the file now holds there.
                    let torn = torn_line(&self.path, self.line, self.line_start, self.offset);
                    out.push(FollowEvent::Bad(torn));
                    self.partial.clear();
                    self.too_long = false;
                    self.offset = self.line_start;
                    file.seek(SeekFrom::Start(self.offset))
                        .map_err(|source| io_at(&self.path, self.line, source))?;
                    continue;
                }
            }
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            let mut pos = self.offset;
            self.offset += n as u64;
            // memchr: gigabytes without a newline (a sparse file's NULs)
            // are passed at memory speed.
            while let Some(i) = memchr::memchr(b'\n', chunk) {
                extend_partial(&mut self.partial, &mut self.too_long, &chunk[..i]);
                chunk = &chunk[i + 1..];
                pos += i as u64 + 1;
                self.line += 1;
                let start = std::mem::replace(&mut self.line_start, pos);
                let event = if std::mem::take(&mut self.too_long) {
                    // Never parse what is left of an overlong line: its end
                    // alone could look like a record.
                    FollowEvent::Bad(ReadError::TooLong {
                        path: self.path.clone(),
                        line: self.line,
                        offset: start,
                        max: DEFAULT_MAX_LINE,
                    })
                } else {
                    let bytes = std::mem::take(&mut self.partial);
                    parse_line(&self.path, &self.name, self.line, bytes, start)
                };
                if let FollowEvent::Record(e) = &event {
                    self.last_seq = Some(e.record.seq);
                }
                out.push(event);
            }
            extend_partial(&mut self.partial, &mut self.too_long, chunk);
        }
        Ok(())
    }
}

/// Whether bytes `[line_start, offset)` of `file` are still `partial`, the
/// unfinished line read so far (compared in chunks, so no second copy of
/// a long line is made). Of a line too long to keep, only its length can
/// be checked.
fn partial_still_there(
    file: &File,
    line_start: u64,
    offset: u64,
    partial: &[u8],
    too_long: bool,
) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    if file.metadata()?.len() < offset {
        return Ok(false);
    }
    if too_long {
        return Ok(true);
    }
    let mut buf = vec![0u8; (64 << 10).min(partial.len())];
    let mut at = 0;
    while at < partial.len() {
        let want = &partial[at..(at + buf.len()).min(partial.len())];
        let got = &mut buf[..want.len()];
        match file.read_exact_at(got, line_start + at as u64) {
            // Cut since the length was taken.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
            r => r?,
        }
        if got != want {
            return Ok(false);
        }
        at += want.len();
    }
    Ok(true)
}

/// Adds `piece` to the line being read, unless that makes it longer than
/// any record: then its bytes are dropped and it is reported, without
/// them, once it ends.
fn extend_partial(partial: &mut Vec<u8>, too_long: &mut bool, piece: &[u8]) {
    if *too_long {
        return;
    }
    if partial.len() + piece.len() > DEFAULT_MAX_LINE {
        *too_long = true;
        *partial = Vec::new();
    } else {
        partial.extend_from_slice(piece);
    }
}

/// Where read events go: every event, or (for [`StartAt::Last`]) only the
/// last records; in both, at most [`MAX_BAD_PER_POLL`] bad lines, the rest
/// counted.
struct Collector {
    events: Vec<FollowEvent>,
    /// With `Some(n)`, records go to `last`, which keeps the newest `n`.
    keep: Option<usize>,
    last: VecDeque<FollowEvent>,
    bad: usize,
    omitted: u64,
}

impl Collector {
    fn all() -> Collector {
        Collector {
            events: Vec::new(),
            keep: None,
            last: VecDeque::new(),
            bad: 0,
            omitted: 0,
        }
    }

    fn last(n: usize) -> Collector {
        Collector {
            keep: Some(n),
            ..Collector::all()
        }
    }

    fn push(&mut self, event: FollowEvent) {
        match (&event, self.keep) {
            (FollowEvent::Bad(_), _) if self.bad >= MAX_BAD_PER_POLL => self.omitted += 1,
            (FollowEvent::Bad(_), _) => {
                self.bad += 1;
                self.events.push(event);
            }
            (FollowEvent::Record(_), Some(n)) => {
                if n == 0 {
                    return;
                }
                if self.last.len() == n {
                    self.last.pop_front();
                }
                self.last.push_back(event);
            }
            _ => self.events.push(event),
        }
    }

    fn finish(mut self) -> Vec<FollowEvent> {
        self.events.extend(self.last);
        self.events
    }
}

/// The seq of a file's first line, from its prefix `{"v":2,"seq":N,` (or v1's)
/// (the comma proves the digits are whole); `None` while the line is not
/// written that far, or when the file does not start with a record.
fn first_seq(file: &File) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 40];
    let n = file.read_at(&mut buf, 0).ok()?;
    let rest = buf[..n]
        .strip_prefix(br#"{"v":2,"seq":"#)
        .or_else(|| buf[..n].strip_prefix(br#"{"v":1,"seq":"#))?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || rest[end] != b',' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn parse_line(
    path: &Path,
    name: &Arc<Path>,
    line: u64,
    bytes: Vec<u8>,
    offset: u64,
) -> FollowEvent {
    match serde_json::from_slice::<StoredRecord>(&bytes) {
        // The same schema check as every other reader: a line of another
        // shape is reported, never shown as a record.
        Ok(record) if let Err(v) = check_schema(&record) => {
            FollowEvent::Bad(ReadError::NotSchemaV1 {
                path: path.to_path_buf(),
                line,
                offset,
                key: v.key,
                reason: v.reason,
            })
        }
        Ok(record) => FollowEvent::Record(Box::new(Entry {
            file: name.clone(),
            line,
            offset,
            log: 0,
            bytes,
            record,
        })),
        Err(source) => FollowEvent::Bad(ReadError::BadRecord {
            path: path.to_path_buf(),
            line,
            offset,
            source,
        }),
    }
}

/// The torn line after line `line` of `path`, from byte `start` to `end`:
/// reported when its file is left, and when the writer cut it.
fn torn_line(path: &std::path::Path, line: u64, start: u64, end: u64) -> ReadError {
    ReadError::TornFinalLine {
        path: path.to_path_buf(),
        line: line + 1,
        offset: start,
        len: end - start,
    }
}

/// A read error while reading the line after line `line` of `path`.
fn io_at(path: &std::path::Path, line: u64, source: std::io::Error) -> ReadError {
    ReadError::Io {
        path: path.to_path_buf(),
        line: line + 1,
        source,
    }
}
