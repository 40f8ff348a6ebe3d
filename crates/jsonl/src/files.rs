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
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::JsonlError;

/// What a file that is not a regular file is, for errors.
pub(crate) fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
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
            // chain, `verify`): it is not part of any log.
            let file_type = entry.file_type().map_err(list_err)?;
            if !file_type.is_file() && !file_type.is_symlink() {
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
