//! Opening: the active file locked, its last whole record found (seq and
//! chain value, or those of the newest rotated file), a torn tail cut off
//! and reported by length and SHA-256, the log's first line found for
//! checkpoints.

use std::fs::File;
use std::io::Write;

use agent_audit_core::SinkOpen;

use crate::checkpoint::Origin;
use crate::error::JsonlError;
use crate::files;
use crate::options::FsyncPolicy;
use crate::tail::{self, ScanError};

use super::{Active, JsonlSink, Mark, created_nanos, open_active, sync_dir};

/// How the notice of a torn line cut off on open begins; `verify` reports
/// the cut it names.
pub(crate) const CUT_TORN: &str = "cut a torn";

/// Lowercase hex SHA-256 of bytes `[from, to)` of `file`, read in chunks.
fn digest_range(file: &File, from: u64, to: u64) -> std::io::Result<String> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

fn unreadable_tail(path: &std::path::Path, end: u64, searched: u64) -> JsonlError {
    JsonlError::UnreadableTail {
        path: path.to_path_buf(),
        end,
        len: searched,
        max: crate::DEFAULT_MAX_LINE,
    }
}

impl JsonlSink {
    /// [`Sink::open`](agent_audit_core::Sink::open) with the typed error: opens and locks the file, finds
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
                Err(ScanError::Overlong { end, searched }) => {
                    return Err(unreadable_tail(&path, end, searched));
                }
            };
            // Before anything is cut: a refusal leaves the file as it is.
            if let Some(last) = &tail.last {
                self.check_last_link(&file, last)?;
            }
            // What follows the last record was never a whole record of
            // this log. The digests are taken before anything is cut.
            let read_err = |source| JsonlError::ReadTail {
                path: path.clone(),
                source,
            };
            let digests = tail
                .bad
                .iter()
                .map(|b| digest_range(&file, b.offset, b.offset + b.len))
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)?;
            // Torn writes are cut off the file: the final line without a
            // newline, and lines before it that are only the start of a
            // record (an earlier version ended a torn line with a newline
            // and kept it). Keeping them would let anyone who can append to
            // the file plant bytes the log then carries as the writer's own;
            // only their place, length and SHA-256 are reported. A whole
            // line of another shape is left in place: the writer deletes no
            // whole line, and verify reports it.
            let keep = tail.bad.len()
                - tail
                    .bad
                    .iter()
                    .rev()
                    .take_while(|b| !b.terminated || b.torn)
                    .count();
            if let Some(first_cut) = tail.bad.get(keep) {
                let to = first_cut.offset;
                file.set_len(to).map_err(|source| JsonlError::Truncate {
                    path: path.clone(),
                    len: to,
                    source,
                })?;
                file.sync_all().map_err(|source| JsonlError::Fsync {
                    path: path.clone(),
                    source,
                })?;
                len = to;
            } else if tail.needs_newline {
                // A whole last record that lacks only its newline.
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
            // No line's prefix sets the seq: those bytes may be anyone's
            // (`{"v":1,"seq":18446744073709551000,` would end the seq
            // space). Seqs a dead writer handed out are the seq lease's to
            // keep (`FileLease`).
            for (i, (bad, digest)) in tail.bad.iter().zip(&digests).enumerate() {
                let (path, n, at) = (path.display(), bad.len, bad.offset);
                notices.push(if i < keep {
                    format!(
                        "a whole line that is not a record follows the last record of {path}: {n} bytes at byte offset {at} (SHA-256 {digest}); no writer leaves one as it is (a torn write is cut off), so it was put there or damaged on disk; left in place for verify to report; the chain resumes from {resume}"
                    )
                } else if bad.terminated {
                    format!(
                        "{CUT_TORN} line off {path}: {n} bytes at byte offset {at} (SHA-256 {digest}), only the start of a record though ended with a newline (an earlier version kept a torn write so); the file ends with its last whole line again and the chain resumes from {resume}"
                    )
                } else {
                    format!(
                        "{CUT_TORN} final line off {path}: {n} bytes at byte offset {at} (SHA-256 {digest}), without a newline: a write cut short; the file ends with its last whole line again and the chain resumes from {resume}"
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
        Ok(SinkOpen { last_seq, notices })
    }

    /// Under a chain key, the last record must link to the record before
    /// it: a whole record someone appended without the key would otherwise
    /// set the chain and the seq numbering the writer resumes from. Only
    /// refused, never cut: whole lines are evidence, for an operator to
    /// look at. The first record of a file is not checked here (what it
    /// links to may be in another file, or deleted by retention); `verify`
    /// checks it. A plain chain cannot be checked this way: anyone can
    /// compute a SHA-256.
    fn check_last_link(&self, file: &File, last: &tail::LastRecord) -> Result<(), JsonlError> {
        if !self.chain.is_keyed() {
            return Ok(());
        }
        let path = &self.options.path;
        let before = match tail::record_before(file, last.start) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(()),
            Err(ScanError::Io(source)) => {
                return Err(JsonlError::ReadTail {
                    path: path.clone(),
                    source,
                });
            }
            Err(ScanError::TooManyBad) => {
                return Err(JsonlError::NotAnAuditLog {
                    path: path.clone(),
                    lines: tail::MAX_BAD + 1,
                });
            }
            Err(ScanError::Overlong { end, searched }) => {
                return Err(unreadable_tail(path, end, searched));
            }
        };
        let links = crate::reader::parse_record(&last.bytes)
            .is_some_and(|r| r.prev == hex::encode(self.chain.hash(&before)));
        if links {
            return Ok(());
        }
        let line = tail::line_number(file, last.start).map_err(|source| JsonlError::ReadTail {
            path: path.clone(),
            source,
        })?;
        Err(JsonlError::UnlinkedLastRecord {
            path: path.clone(),
            line,
            seq: last.seq,
            offset: last.start,
        })
    }

    /// With no record in the active file, the chain and seq continue from
    /// the newest rotated file. Returns where it resumed, for notices.
    pub(super) fn resume_from_rotated(
        &mut self,
        last_seq: &mut Option<u64>,
    ) -> Result<String, JsonlError> {
        let path = &self.options.path;
        let list = files::list(path)?;
        for f in list.iter().rev().filter(|f| !f.active) {
            // Non-blocking and typed from the descriptor: whatever sits
            // under a rotated name by now (a FIFO swapped in after the
            // listing) cannot hang the writer's start.
            let file = files::open_regular_for_reading(&f.path, files::Symlinks::Refuse)
                .map_err(|source| files::read_open_error(&f.path, source))?;
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
                // Resuming from an older file would continue a chain this
                // file may well extend: an operator must look.
                Err(ScanError::Overlong { end, searched }) => {
                    return Err(unreadable_tail(&f.path, end, searched));
                }
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
    pub(super) fn find_origin(&self, regular: bool) -> Option<Origin> {
        // A FIFO or device as the path has no first line to read (and
        // reading one could block or never end).
        if !regular {
            return None;
        }
        let list = files::list(&self.options.path).ok()?;
        let oldest = list.first()?;
        let file = files::open_regular_for_reading(&oldest.path, files::Symlinks::Refuse).ok()?;
        let (seq, bytes, prev) = tail::first_record_line(&file).ok()??;
        (prev == crate::chain::GENESIS).then(|| Origin {
            seq,
            head: hex::encode(self.chain.hash(&bytes)),
        })
    }
}
