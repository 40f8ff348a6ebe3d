//! Names of rotated files, and the ordered list of a log's files.
//!
//! The active file keeps its configured name (`audit-log.jsonl`). When it
//! would exceed `rotate_bytes`, it is renamed to
//! `<stem>.<first_seq>-<last_seq>.<ext>`, with both seqs zero-padded to 12
//! digits (`audit-log.000000000001-000000004096.jsonl`), and a fresh active
//! file is created whose first line's `prev` is the hash of the rotated
//! file's last line. Seqs never repeat, so ordering files by their first seq
//! orders the chain; the padding makes `ls` and shell globs show that order
//! too (beyond 12 digits the names grow and [`list`] still sorts by number).
//! A file is renamed once and never again, so a rotated name is stable
//! evidence.
//!
//! ```
//! use std::path::Path;
//! use agent_audit_jsonl::files;
//!
//! let rotated = files::rotated_name(Path::new("/var/log/audit-log.jsonl"), 1, 4096);
//! assert_eq!(rotated, Path::new("/var/log/audit-log.000000000001-000000004096.jsonl"));
//! assert_eq!(files::parse_rotated(Path::new("/var/log/audit-log.jsonl"), "audit-log.000000000001-000000004096.jsonl"), Some((1, 4096)));
//! ```

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::JsonlError;

// One wording for every crate that refuses a path for its type (the
// facade's configuration loader too), so it lives in core.
pub(crate) use agent_audit_core::file_kind as kind_of;

/// An error of [`open_regular_for_reading`] on one of the log's own files,
/// as the sink reports it: what is at the path when it is not a regular
/// file, else the read error.
pub(crate) fn read_open_error(path: &Path, source: io::Error) -> JsonlError {
    match NotRegularFile::of(&source) {
        Some(n) => JsonlError::NotRegular {
            path: path.to_path_buf(),
            kind: n.kind,
        },
        None => JsonlError::ReadTail {
            path: path.to_path_buf(),
            source,
        },
    }
}

pub(crate) fn open_error(path: &Path, source: io::Error) -> JsonlError {
    match source.raw_os_error() {
        Some(libc::ELOOP) => JsonlError::Symlink {
            path: path.to_path_buf(),
        },
        Some(libc::EISDIR) => JsonlError::IsDirectory {
            path: path.to_path_buf(),
        },
        // open(2) of a UNIX socket, or of a FIFO/device with nothing
        // behind it: say what the path is rather than "No such device".
        Some(libc::ENXIO | libc::ENODEV) => match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.is_file() => JsonlError::NotRegular {
                path: path.to_path_buf(),
                kind: kind_of(meta.file_type()),
            },
            _ => JsonlError::Open {
                path: path.to_path_buf(),
                source,
            },
        },
        _ => JsonlError::Open {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Opens (or with `create_new`, creates) the active file of a log for
/// appending: mode 0600 when created, never through a symlink
/// (`O_NOFOLLOW`), and only if it is a regular file.
///
/// The type is taken from the opened descriptor (`fstat`), not from the
/// path beforehand, so nothing can be swapped in between; and the open
/// itself is non-blocking, so a FIFO at the path is refused at once
/// instead of hanging the writer (or, opened read-write, silently taking
/// records nobody reads). `O_NONBLOCK` stays set on the regular file it
/// returns, where Linux ignores it: reads and writes of regular files
/// block as usual.
pub(crate) fn open_log_file(path: &Path, create_new: bool) -> Result<File, JsonlError> {
    let mut opts = OpenOptions::new();
    opts.read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true);
    }
    let file = opts.open(path).map_err(|e| open_error(path, e))?;
    let meta = file.metadata().map_err(|e| open_error(path, e))?;
    if meta.is_dir() {
        return Err(JsonlError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(JsonlError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(file)
}

/// Whether [`open_regular_for_reading`] follows a symbolic link at the
/// path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Follow it and check what it points to (an operator's path, a key
    /// mounted through a link).
    Follow,
    /// Refuse it (`O_NOFOLLOW`), as the writer does for its own files.
    Refuse,
}

/// What [`open_regular_for_reading`] found at a path that is not a regular
/// file: the [`io::Error`] it returns (kind `InvalidInput`) carries one, so
/// the caller's error names the path and this says what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("it is {kind}, not a regular file (reading it could block forever or never end)")]
pub struct NotRegularFile {
    /// What it is: `a FIFO (named pipe)`, `a character device`,
    /// `a directory`, `a socket`, `a symbolic link`...
    pub kind: &'static str,
}

impl NotRegularFile {
    /// The [`NotRegularFile`] inside an error of
    /// [`open_regular_for_reading`], if that is why it failed.
    pub fn of(e: &io::Error) -> Option<&NotRegularFile> {
        e.get_ref()?.downcast_ref()
    }
}

/// Opens `path` for reading, only if it is a regular file: the one way the
/// tools open what they read (log files, key files, public keys, checkpoint
/// copies, any path an operator passes).
///
/// The open is non-blocking (`O_NONBLOCK`), so a FIFO at the path cannot
/// hang it waiting for a writer, and the type is taken from the opened
/// descriptor (`fstat`), so nothing can be swapped in between a check and
/// the open. A FIFO, a device, a socket or a directory is an error of kind
/// [`io::ErrorKind::InvalidInput`] carrying a [`NotRegularFile`] (`it is a
/// FIFO (named pipe), not a regular file`); with [`Symlinks::Refuse`] a
/// symbolic link is one too (`O_NOFOLLOW`). `O_NONBLOCK` stays set on the
/// file returned, where Linux ignores it: reads of a regular file block as
/// usual.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::io::Read;
/// use agent_audit_jsonl::files::{self, NotRegularFile, Symlinks};
///
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("k.pem");
/// std::fs::write(&path, "text")?;
/// let mut s = String::new();
/// files::open_regular_for_reading(&path, Symlinks::Follow)?.read_to_string(&mut s)?;
/// assert_eq!(s, "text");
/// let err = files::open_regular_for_reading(dir.path(), Symlinks::Follow).unwrap_err();
/// assert_eq!(NotRegularFile::of(&err).map(|n| n.kind), Some("a directory"));
/// # Ok(()) }
/// ```
pub fn open_regular_for_reading(path: &Path, symlinks: Symlinks) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let not_regular = |kind| io::Error::new(io::ErrorKind::InvalidInput, NotRegularFile { kind });
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && symlinks == Symlinks::Refuse => {
            return Err(not_regular(
                "a symbolic link (refused: opened with O_NOFOLLOW)",
            ));
        }
        // open(2) of a UNIX socket, or of a device with nothing behind it.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) => {
            return Err(match std::fs::symlink_metadata(path) {
                Ok(meta) if !meta.is_file() => not_regular(kind_of(meta.file_type())),
                _ => e,
            });
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(kind_of(meta.file_type())));
    }
    Ok(file)
}

/// One file of a log, as [`list`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Its path.
    pub path: PathBuf,
    /// The seq range from a rotated file's name; `None` for the active file.
    pub seqs: Option<(u64, u64)>,
    /// Whether it is the active file (the configured path).
    pub active: bool,
}

fn split(path: &Path) -> (PathBuf, String, Option<String>) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .unwrap_or_else(|| OsStr::new(""))
        .to_string_lossy()
        .into_owned();
    match name.rfind('.') {
        Some(i) if i > 0 => (dir, name[..i].to_string(), Some(name[i + 1..].to_string())),
        _ => (dir, name, None),
    }
}

/// The name the active file `path` is renamed to when it holds seqs
/// `first..=last`.
pub fn rotated_name(path: &Path, first: u64, last: u64) -> PathBuf {
    let (_, stem, ext) = split(path);
    let name = match ext {
        Some(ext) => format!("{stem}.{first:012}-{last:012}.{ext}"),
        None => format!("{stem}.{first:012}-{last:012}"),
    };
    match path.parent() {
        Some(p) => p.join(name),
        None => PathBuf::from(name),
    }
}

/// If `file_name` is a rotated file of the log whose active file is `path`,
/// its seq range.
pub fn parse_rotated(path: &Path, file_name: &str) -> Option<(u64, u64)> {
    let (_, stem, ext) = split(path);
    let rest = file_name.strip_prefix(stem.as_str())?.strip_prefix('.')?;
    let middle = match &ext {
        Some(ext) => rest.strip_suffix(ext.as_str())?.strip_suffix('.')?,
        None => rest,
    };
    let (a, b) = middle.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

/// Every file of the log whose active file is `path`, in chain order: the
/// rotated files by ascending first seq, then the active file if it exists.
pub fn list(path: &Path) -> Result<Vec<LogFile>, JsonlError> {
    let (dir, _, _) = split(path);
    let list_err = |source| JsonlError::List {
        path: path.to_path_buf(),
        dir: dir.clone(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seqs) = parse_rotated(path, name) {
            // A FIFO or device under a rotated file's name would hang or
            // never end whoever reads the log (the sink resuming its
            // chain, `verify`): it is not part of any log. Nor is a
            // symbolic link: the writer only ever renames its own regular
            // file to a rotated name, and a link would let whoever can
            // write the directory put any file (or a FIFO swapped in
            // behind the link after this check) into the chain.
            // `d_type` describes the entry itself, never a link's target.
            let file_type = entry.file_type().map_err(list_err)?;
            if !file_type.is_file() {
                return Err(JsonlError::NotRegular {
                    path: entry.path(),
                    kind: kind_of(file_type),
                });
            }
            out.push(LogFile {
                path: match path.parent() {
                    Some(p) => p.join(name),
                    None => PathBuf::from(name),
                },
                seqs: Some(seqs),
                active: false,
            });
        }
    }
    out.sort_by_key(|f| f.seqs);
    if std::fs::symlink_metadata(path).is_ok() {
        out.push(LogFile {
            path: path.to_path_buf(),
            seqs: None,
            active: true,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.unwrap().success(), "mkfifo");
    }

    #[test]
    fn reading_opens_only_regular_files_and_never_blocks_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        mkfifo(&fifo);
        // Without O_NONBLOCK this open would wait for a writer forever.
        let err = open_regular_for_reading(&fifo, Symlinks::Follow).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            NotRegularFile::of(&err).map(|n| n.kind),
            Some("a FIFO (named pipe)")
        );
        assert!(
            err.to_string()
                .contains("a FIFO (named pipe), not a regular file")
        );
        let dev = open_regular_for_reading(Path::new("/dev/zero"), Symlinks::Follow).unwrap_err();
        assert_eq!(
            NotRegularFile::of(&dev).map(|n| n.kind),
            Some("a character device")
        );
        let d = open_regular_for_reading(dir.path(), Symlinks::Follow).unwrap_err();
        assert_eq!(NotRegularFile::of(&d).map(|n| n.kind), Some("a directory"));
        // A link to the FIFO is judged by what it points to.
        let to_fifo = dir.path().join("to-pipe");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let e = open_regular_for_reading(&to_fifo, Symlinks::Follow).unwrap_err();
        assert_eq!(
            NotRegularFile::of(&e).map(|n| n.kind),
            Some("a FIFO (named pipe)")
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_regular_for_reading(&link, Symlinks::Follow).is_ok());
        let e = open_regular_for_reading(&link, Symlinks::Refuse).unwrap_err();
        assert!(
            NotRegularFile::of(&e)
                .unwrap()
                .kind
                .starts_with("a symbolic link")
        );
        let missing = open_regular_for_reading(&dir.path().join("none"), Symlinks::Follow);
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn names_round_trip_and_foreign_names_are_ignored() {
        let p = Path::new("logs/audit-log.jsonl");
        let r = rotated_name(p, 7, 1_000_000_000_000_123);
        assert_eq!(
            r,
            Path::new("logs/audit-log.000000000007-1000000000000123.jsonl")
        );
        let name = r.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_rotated(p, name), Some((7, 1_000_000_000_000_123)));
        for foreign in [
            "audit-log.jsonl",
            "audit-log.1-2.json",
            "audit-log.x-2.jsonl",
            "other.1-2.jsonl",
            "audit-log.3-2.jsonl",
            "audit-log.-2.jsonl",
        ] {
            assert_eq!(parse_rotated(p, foreign), None, "{foreign}");
        }
        let bare = Path::new("audit");
        assert_eq!(
            rotated_name(bare, 1, 2),
            Path::new("audit.000000000001-000000000002")
        );
        assert_eq!(
            parse_rotated(bare, "audit.000000000001-000000000002"),
            Some((1, 2))
        );
    }
}
