//! Opening: the active file locked, its last whole record found (seq and
//! chain value, or those of the newest rotated file), a torn tail kept and
//! reported, the log's first line found for checkpoints.

use std::fs::File;
use std::io::Write;

use agent_audit_core::SinkOpen;

use crate::checkpoint::Origin;
use crate::error::JsonlError;
use crate::files;
use crate::options::FsyncPolicy;
use crate::tail::{self, ScanError};

use super::{Active, JsonlSink, Mark, created_nanos, open_active, sync_dir};

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
    pub(super) fn resume_from_rotated(
        &mut self,
        last_seq: &mut Option<u64>,
    ) -> Result<String, JsonlError> {
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
    pub(super) fn find_origin(&self, regular: bool) -> Option<Origin> {
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
}
