//! The review crate's error. Each variant names the file, flag or request
//! it is about.

use std::io;
use std::path::PathBuf;

use agent_audit_jsonl::{JsonlError, ReadError};

/// Why a trail could not be read, filtered or reported on.
///
/// A bad line inside a file is not a `ReviewError`: readers yield it as a
/// [`ReadError`] naming the file and line and go on with the next line, so
/// one damaged line never hides the rest of a trail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewError {
    /// No file was given.
    #[error("no audit file given")]
    NoFiles,
    /// A given path names no file, and no rotated file of that log exists.
    #[error("{path}: no such audit log (neither the file nor rotated files of it exist)")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A given path is a directory.
    #[error("{path}: is a directory; give the log file, such as {path}/audit-log.jsonl")]
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Listing a log's rotated files failed.
    #[error(transparent)]
    List(#[from] JsonlError),
    /// A file could not be opened or read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A file's metadata could not be read.
    #[error("cannot stat {path}: {source}")]
    Stat {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A time filter is not RFC 3339.
    #[error(
        "--{flag} `{value}` is not an RFC 3339 time; write it like 2026-11-25T23:32:22Z or 2026-11-25T23:32:22.5+01:00"
    )]
    BadTime {
        /// The flag (`since` or `until`).
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// `--since` is after `--until`.
    #[error("--since {since} is after --until {until}: no record can match")]
    EmptyRange {
        /// The lower bound.
        since: String,
        /// The upper bound.
        until: String,
    },
    /// The request has no records in the files read.
    #[error("request `{request_id}` has no records in {files}")]
    NoSuchRequest {
        /// The request id asked for.
        request_id: String,
        /// The files read, comma-separated.
        files: String,
    },
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}
