//! Reading one or several logs, each with its rotated files, in chain order.
//!
//! A path names a log's active file (`audit-log.jsonl`); the rotated files
//! next to it (`audit-log.000000000001-000000004096.jsonl`, see
//! [`agent_audit_jsonl::files`]) are read first, oldest first, so records
//! come out in `seq` order. A rotated file can also be named on its own;
//! a file named twice (a shell glob plus its active file) is read once.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_review::{Source, SourceOptions};
//!
//! # let dir = tempfile::tempdir()?;
//! let path = dir.path().join("audit-log.jsonl");
//! std::fs::write(&path, concat!(
//!     r#"{"v":1,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user_proxy","payload":{"content":"hi"},"prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
//!     "\nnot a record\n",
//! ))?;
//! let mut source = Source::open(&[&path], SourceOptions::default())?;
//! let first = source.next().unwrap()?;
//! assert_eq!((first.line, first.record.seq), (1, 1));
//! // A bad line is reported with its file and line, and reading goes on.
//! let bad = source.next().unwrap().unwrap_err();
//! assert_eq!(bad.line(), Some(2));
//! assert!(source.next().is_none());
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_audit_core::StoredRecord;
use agent_audit_jsonl::store::LineStore;
use agent_audit_jsonl::{ReadError, Reader, files};

use crate::error::ReviewError;

/// How [`Source::open`] finds files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOptions {
    /// Read a log's rotated files before its active file. Default true.
    pub include_rotated: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            include_rotated: true,
        }
    }
}

/// A log to read: its JSONL files (a path, as always), or a log kept
/// elsewhere whose lines a [`LineStore`] yields (the SQL sink's table,
/// resolved from a URL by the caller).
#[derive(Clone)]
pub enum Input {
    /// A log's active file (or a rotated file on its own).
    Path(PathBuf),
    /// A log in a store: read as one "file" named by its label, whose
    /// "lines" are its rows in chain order.
    Store(Arc<dyn LineStore>),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Input::Store(s) => f.debug_tuple("Store").field(&s.label()).finish(),
        }
    }
}

/// One file a [`Source`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Its path.
    pub path: PathBuf,
    /// Index of the log (the path given) it belongs to: seq gaps are only
    /// meaningful within one log.
    pub log: usize,
    /// Its size when the source was opened.
    pub size: u64,
}

/// One record read back, with where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The file it was read from.
    pub file: Arc<Path>,
    /// 1-based line number in that file.
    pub line: u64,
    /// Byte offset of the line in that file.
    pub offset: u64,
    /// Index of the log it belongs to (see [`SourceFile::log`]).
    pub log: usize,
    /// The line's exact bytes, without the newline.
    pub bytes: Vec<u8>,
    /// The parsed record, exactly as stored (redacted values stay redacted).
    pub record: StoredRecord,
}

impl Entry {
    /// The record's time in nanoseconds since the Unix epoch, if its `ts`
    /// parses.
    pub fn unix_nanos(&self) -> Option<i128> {
        self.record.timestamp().map(|t| t.unix_nanos())
    }
}

/// A reader over a file or a store's lines.
type Lines = Reader<Box<dyn BufRead + Send>>;

/// Records of one or several logs, in order, as an iterator.
///
/// Yields `Ok(Entry)` per record and `Err(ReadError)` per line that is not
/// one (with its file and line) or per file that cannot be opened or read;
/// it goes on after either.
pub struct Source {
    files: Vec<SourceFile>,
    /// The stores among the inputs, by the index of their [`SourceFile`].
    stores: HashMap<usize, Arc<dyn LineStore>>,
    next_file: usize,
    current: Option<(Arc<Path>, usize, Lines)>,
    done_before: u64,
    pos: u64,
    total: u64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("files", &self.files)
            .field("next_file", &self.next_file)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Lists the files of every log in `paths`, in order. Fails when a path
    /// names nothing or a directory.
    pub fn open<P: AsRef<Path>>(
        paths: &[P],
        options: SourceOptions,
    ) -> Result<Source, ReviewError> {
        let inputs: Vec<Input> = paths
            .iter()
            .map(|p| Input::Path(p.as_ref().to_path_buf()))
            .collect();
        Source::open_inputs(&inputs, options)
    }

    /// [`Source::open`] over inputs that may be stores as well as paths,
    /// in the order given. A store is not opened until it is read; its
    /// size counts as 0 in [`Source::total_bytes`].
    pub fn open_inputs(inputs: &[Input], options: SourceOptions) -> Result<Source, ReviewError> {
        if inputs.is_empty() {
            return Err(ReviewError::NoFiles);
        }
        let mut out: Vec<SourceFile> = Vec::new();
        let mut stores = HashMap::new();
        let mut seen: HashSet<PathBuf> = HashSet::new();
        for (log, input) in inputs.iter().enumerate() {
            let path = match input {
                Input::Path(path) => path.as_path(),
                Input::Store(store) => {
                    stores.insert(out.len(), store.clone());
                    out.push(SourceFile {
                        path: PathBuf::from(store.label()),
                        log,
                        size: 0,
                    });
                    continue;
                }
            };
            if path.is_dir() {
                return Err(ReviewError::IsDirectory {
                    path: path.to_path_buf(),
                });
            }
            let listed: Vec<PathBuf> = if options.include_rotated {
                files::list(path)?.into_iter().map(|f| f.path).collect()
            } else if std::fs::symlink_metadata(path).is_ok() {
                vec![path.to_path_buf()]
            } else {
                Vec::new()
            };
            if listed.is_empty() {
                return Err(ReviewError::NotFound {
                    path: path.to_path_buf(),
                });
            }
            for file in listed {
                // Two spellings of one file (./a and a) are one file.
                let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
                if !seen.insert(key) {
                    continue;
                }
                // Opened as the reader will open it, so a FIFO or a device
                // is refused here, naming it, before anything reads (and
                // hangs, or never ends); then closed, so a log of many
                // rotated files does not hold a descriptor for each.
                let opened = files::open_regular_for_reading(&file, files::Symlinks::Follow)
                    .map_err(|source| ReadError::Open {
                        path: file.clone(),
                        source,
                    })?;
                let size = opened
                    .metadata()
                    .map_err(|source| ReviewError::Stat {
                        path: file.clone(),
                        source,
                    })?
                    .len();
                out.push(SourceFile {
                    path: file,
                    log,
                    size,
                });
            }
        }
        let total = out.iter().map(|f| f.size).sum();
        Ok(Source {
            files: out,
            stores,
            next_file: 0,
            current: None,
            done_before: 0,
            pos: 0,
            total,
        })
    }

    /// The files it reads, in order.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The files' total size in bytes when opened: the denominator of a
    /// progress bar.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes consumed so far, over all files.
    pub fn bytes_read(&self) -> u64 {
        self.done_before + self.pos
    }
}

impl Iterator for Source {
    type Item = Result<Entry, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let file = self.files.get(self.next_file)?;
                self.next_file += 1;
                self.done_before += self.pos;
                self.pos = 0;
                let path: Arc<Path> = Arc::from(file.path.as_path());
                let log = file.log;
                let opened = match self.stores.get(&(self.next_file - 1)) {
                    Some(store) => store
                        .open()
                        .map(|lines| Reader::new(file.path.clone(), lines))
                        .map_err(|source| ReadError::Open {
                            path: file.path.clone(),
                            source,
                        }),
                    None => open_file(&file.path),
                };
                match opened {
                    Ok(reader) => self.current = Some((path, log, reader)),
                    Err(e) => {
                        self.done_before += file.size;
                        return Some(Err(e));
                    }
                }
            }
            let (path, log, reader) = self.current.as_mut()?;
            let raw = match reader.next_raw() {
                None => {
                    self.current = None;
                    continue;
                }
                Some(Err(e)) => {
                    self.current = None;
                    return Some(Err(e));
                }
                Some(Ok(raw)) => raw,
            };
            self.pos = raw.offset + raw.len + u64::from(raw.terminated);
            let (path, log) = (path.clone(), *log);
            return Some(reader.parse(raw).map(|line| Entry {
                file: path,
                line: line.number,
                offset: line.offset,
                log,
                bytes: line.bytes,
                record: line.record,
            }));
        }
    }
}

/// How many unreadable lines [`load`] keeps in full; the rest are counted
/// in [`Loaded::bad_line_count`], so a file of junk costs no memory.
pub const MAX_BAD_KEPT: usize = 100;

/// Every record of `paths` that `keep` accepts, and the lines that could
/// not be read (the first [`MAX_BAD_KEPT`] in full, all counted).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use agent_audit_review::{Filter, SourceOptions, load};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("audit-log.jsonl");
/// # std::fs::write(&path, concat!(
/// #   r#"{"v":1,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user_proxy","payload":{"content":"hi"},"prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#, "\n",
/// #   r#"{"v":1,"seq":2,"ts":"2026-11-25T23:32:23.000000000Z","event_type":"user_request","request_id":"r2","correlation_id":"r2","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user_proxy","payload":{"content":"hi"},"prev":"x"}"#, "\n"))?;
/// let filter = Filter::new().request_id("r2");
/// let loaded = load(&[&path], SourceOptions::default(), |r| filter.matches(r))?;
/// assert_eq!(loaded.entries.len(), 1);
/// assert_eq!(loaded.entries[0].record.seq, 2);
/// assert!(loaded.bad_lines.is_empty());
/// # Ok(()) }
/// ```
pub fn load<P: AsRef<Path>>(
    paths: &[P],
    options: SourceOptions,
    keep: impl FnMut(&StoredRecord) -> bool,
) -> Result<Loaded, ReviewError> {
    load_source(Source::open(paths, options)?, keep)
}

/// [`load`] over inputs that may be stores as well as paths.
pub fn load_inputs(
    inputs: &[Input],
    options: SourceOptions,
    keep: impl FnMut(&StoredRecord) -> bool,
) -> Result<Loaded, ReviewError> {
    load_source(Source::open_inputs(inputs, options)?, keep)
}

fn load_source(
    source: Source,
    mut keep: impl FnMut(&StoredRecord) -> bool,
) -> Result<Loaded, ReviewError> {
    let files = source.files().to_vec();
    let mut entries = Vec::new();
    let mut bad_lines = Vec::new();
    let mut bad_line_count = 0;
    for item in source {
        match item {
            Ok(entry) if keep(&entry.record) => entries.push(entry),
            Ok(_) => {}
            Err(e) => {
                bad_line_count += 1;
                if bad_lines.len() < MAX_BAD_KEPT {
                    bad_lines.push(e);
                }
            }
        }
    }
    Ok(Loaded {
        files,
        entries,
        bad_lines,
        bad_line_count,
    })
}

/// What [`load`] read.
#[derive(Debug)]
pub struct Loaded {
    /// The files read, in order.
    pub files: Vec<SourceFile>,
    /// The records kept, in file order.
    pub entries: Vec<Entry>,
    /// Lines that are not records, and files that could not be read: the
    /// first [`MAX_BAD_KEPT`].
    pub bad_lines: Vec<ReadError>,
    /// How many there were in all.
    pub bad_line_count: u64,
}

/// A file's reader, boxed as a store's is.
fn open_file(path: &Path) -> Result<Lines, ReadError> {
    Reader::open(path).map(Reader::boxed)
}
