//! The source of lines: reads a log's files in order, line by line, and
//! hands the walk each one as a hashed record ([`Entry`]) or a line that is
//! not a record ([`Bad`]), counting bytes for progress.

use std::io::{self, BufRead};
use std::path::PathBuf;

use crate::chain::Chain;
use crate::error::ReadError;
use crate::reader::{Reader, is_torn_write, seq_hint};
use crate::store::LineStore;

use super::{PROGRESS_EVERY, Progress, VerifyError};

/// One record line, hashed.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) file: usize,
    pub(super) line: u64,
    pub(super) seq: u64,
    /// `prev` decoded; `None` when it is not 64 hex digits.
    pub(super) prev: Option<[u8; 32]>,
    pub(super) hash: [u8; 32],
    pub(super) bytes: Vec<u8>,
    /// The payload, for checkpoint records.
    pub(super) checkpoint: Option<serde_json::Value>,
    /// The `detail` of an `audit_gap` record of reason `sink_notice`: what
    /// a sink found on opening its file (a torn line it skipped).
    pub(super) sink_notice: Option<String>,
}

impl Entry {
    pub(super) fn links_to(&self, hash: &[u8; 32]) -> bool {
        self.prev.as_ref() == Some(hash)
    }
}

/// A line that is not a record.
#[derive(Debug)]
pub(super) struct Bad {
    pub(super) file: usize,
    pub(super) line: u64,
    /// Byte offset of its first byte in its file.
    pub(super) offset: u64,
    /// Its length, without the newline.
    pub(super) len: u64,
    pub(super) terminated: bool,
    /// JSON, but not a record: never a torn write.
    pub(super) json: bool,
    /// Its bytes could be what a write cut short leaves (see
    /// [`is_torn_write`]).
    pub(super) torn: bool,
    pub(super) message: String,
}

pub(super) enum Item {
    Record(Entry),
    Bad(Bad),
}

/// Reads items from the files in order (or from a store, named as its one
/// file by its label).
pub(super) struct Source<'a> {
    pub(super) files: &'a [PathBuf],
    pub(super) store: Option<&'a dyn LineStore>,
    pub(super) idx: usize,
    pub(super) reader: Option<Reader<Box<dyn BufRead + Send + 'a>>>,
    pub(super) chain: Chain,
    pub(super) bytes_done: u64,
    pub(super) bytes_total: u64,
    pub(super) reported_at: u64,
    pub(super) sizes: Vec<u64>,
    pub(super) lines: Vec<(u64, u64)>,
}

impl<'a> Source<'a> {
    /// The same files from their start, hashed under `chain`: a second
    /// pass, which counts neither bytes for progress nor lines for the
    /// report.
    pub(super) fn again(&self, chain: Chain) -> Source<'a> {
        Source {
            files: self.files,
            store: self.store,
            idx: 0,
            reader: None,
            chain,
            bytes_done: 0,
            bytes_total: self.bytes_total,
            reported_at: 0,
            sizes: self.sizes.clone(),
            lines: vec![(0, 0); self.files.len()],
        }
    }

    pub(super) fn next(
        &mut self,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Option<Item>, VerifyError> {
        loop {
            if self.idx >= self.files.len() {
                return Ok(None);
            }
            let path = &self.files[self.idx];
            if self.reader.is_none() {
                self.reader = Some(match self.store {
                    Some(store) => Reader::new(
                        path.clone(),
                        store.open().map_err(|e| VerifyError::open(path, e))?,
                    ),
                    None => open_file(path)?,
                });
                progress(&Progress {
                    file: path,
                    bytes_done: self.bytes_done,
                    bytes_total: self.bytes_total,
                });
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let raw = match reader.next_raw() {
                None => {
                    self.reader = None;
                    self.idx += 1;
                    continue;
                }
                Some(Err(e @ ReadError::Io { .. })) => return Err(VerifyError::Input(e)),
                Some(Err(e)) => {
                    let line = e.line().unwrap_or(0);
                    return Err(VerifyError::read(
                        path,
                        line,
                        io::Error::other(e.to_string()),
                    ));
                }
                Some(Ok(raw)) => raw,
            };
            self.bytes_done += raw.len + u64::from(raw.terminated);
            if self.bytes_done - self.reported_at >= PROGRESS_EVERY {
                self.reported_at = self.bytes_done;
                progress(&Progress {
                    file: path,
                    bytes_done: self.bytes_done,
                    bytes_total: self.bytes_total,
                });
            }
            self.lines[self.idx].0 = raw.number;
            let file = self.idx;
            let number = raw.number;
            let terminated = raw.terminated;
            let hint = seq_hint(&raw.bytes);
            return Ok(Some(match reader.parse_or_return(raw) {
                Ok(line) => {
                    self.lines[self.idx].1 += 1;
                    let mut prev = [0u8; 32];
                    let prev = hex::decode_to_slice(&line.record.prev, &mut prev)
                        .ok()
                        .filter(|()| line.record.prev.bytes().all(|b| !b.is_ascii_uppercase()))
                        .map(|()| prev);
                    let checkpoint = (line.record.event_type
                        == agent_audit_core::EventType::Checkpoint)
                        .then(|| line.record.payload.clone());
                    let sink_notice = (line.record.event_type
                        == agent_audit_core::EventType::AuditGap
                        && line.record.payload.get("reason")
                            == Some(&serde_json::Value::from("sink_notice")))
                    .then(|| {
                        line.record
                            .payload
                            .get("detail")?
                            .as_str()
                            .map(str::to_string)
                    })
                    .flatten();
                    Item::Record(Entry {
                        file,
                        line: number,
                        seq: line.record.seq,
                        prev,
                        hash: self.chain.hash(&line.bytes),
                        bytes: line.bytes,
                        checkpoint,
                        sink_notice,
                    })
                }
                Err(bad) => {
                    let (e, raw) = *bad;
                    let json = matches!(e, ReadError::NotSchemaV1 { .. });
                    let detail = match &e {
                        ReadError::NotSchemaV1 { reason, .. } => {
                            format!("JSON, but not a schema v1 or v2 record: {reason}")
                        }
                        ReadError::BadRecord { source, .. } => {
                            format!("not a valid record: {source}")
                        }
                        ReadError::NotUtf8 { column, .. } => {
                            format!("not UTF-8 (invalid byte at column {column})")
                        }
                        ReadError::TornFinalLine { len, .. } => {
                            format!("incomplete line of {len} bytes without a newline")
                        }
                        ReadError::TooLong { max, .. } => format!("longer than {max} bytes"),
                        other => other.to_string(),
                    };
                    let was = hint
                        .map(|s| format!(" (it was being written for seq {s})"))
                        .unwrap_or_default();
                    Item::Bad(Bad {
                        file,
                        line: number,
                        offset: raw.offset,
                        len: raw.len,
                        terminated,
                        json,
                        torn: !raw.too_long && is_torn_write(&raw.bytes),
                        message: format!("{detail}{was}"),
                    })
                }
            }));
        }
    }
}

/// A file's reader, boxed as a store's is.
fn open_file<'a>(
    path: &std::path::Path,
) -> Result<Reader<Box<dyn BufRead + Send + 'a>>, VerifyError> {
    let file = crate::files::open_regular_for_reading(path, crate::files::Symlinks::Follow)
        .map_err(|e| VerifyError::open(path, e))?;
    Ok(Reader::new(
        path,
        Box::new(io::BufReader::with_capacity(256 << 10, file)),
    ))
}
