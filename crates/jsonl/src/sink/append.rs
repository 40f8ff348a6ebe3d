//! Appending: records encoded, chained and written in chunks, committed
//! (the head published for checkpoints), synced by policy; a failed write
//! cut off and the chain rewound before the next one.

use std::io::Write;
use std::sync::Arc;

use agent_audit_core::{EventType, Record};

use crate::checkpoint::Origin;
use crate::error::JsonlError;
use crate::head::{Cadence, PendingMark};

use super::{Active, CHUNK, GENESIS_RAW, JsonlSink, Mark, Pending, open_active};

impl JsonlSink {
    /// Cuts a failed write's partial bytes off and rewinds the chain, so the
    /// file never holds half a line followed by more records.
    pub(super) fn recover(&mut self) -> Result<(), JsonlError> {
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

    pub(super) fn sync(&mut self) -> Result<(), JsonlError> {
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
    pub(super) fn append(&mut self, records: &[Arc<Record>]) -> Result<(), JsonlError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = self.append_with(records, &mut buf);
        // Keep the allocation, but not a huge one after a giant record.
        if buf.capacity() <= 4 * CHUNK {
            self.buf = buf;
        }
        result
    }

    pub(super) fn append_with(
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
    pub(super) fn write_chunk(
        &mut self,
        bytes: &[u8],
        seqs: Option<Pending>,
    ) -> Result<(), JsonlError> {
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
    pub(super) fn commit(
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
}
