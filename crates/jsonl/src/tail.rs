//! Finding where an existing file's chain ends, reading from its end.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;

use agent_audit_core::Timestamp;

use crate::reader::{Reader, is_torn_write, parse_record, record_seq};

const CHUNK: u64 = 64 << 10;
/// A line longer than this is not a record: the reader's limit, which the
/// dispatcher's record limit may not exceed. The scan looks no further
/// back than this for a line's start, so a file of gigabytes without a
/// newline (a sparse file) costs one such read, not a read of the file.
const MAX_LINE: u64 = crate::DEFAULT_MAX_LINE as u64;
/// How many non-record lines may follow the last record before the file is
/// judged not to be an audit log.
pub(crate) const MAX_BAD: usize = 64;

/// The last whole record of a file.
#[derive(Debug)]
pub(crate) struct LastRecord {
    pub seq: u64,
    /// Exact bytes, without the newline.
    pub bytes: Vec<u8>,
    /// Byte offset just past it (and its newline, if any).
    pub end: u64,
    /// Byte offset of its first byte.
    pub start: u64,
}

/// A line after the last record that is not a record.
#[derive(Debug)]
pub(crate) struct BadLine {
    pub offset: u64,
    pub len: u64,
    pub terminated: bool,
    /// Its bytes could be what a write cut short leaves of a record
    /// ([`is_torn_write`]): never a whole line of any writer.
    pub torn: bool,
}

#[derive(Debug)]
pub(crate) struct Tail {
    pub last: Option<LastRecord>,
    /// Lines after `last`, in file order.
    pub bad: Vec<BadLine>,
    /// The file does not end with a newline.
    pub needs_newline: bool,
}

pub(crate) enum ScanError {
    Io(io::Error),
    TooManyBad,
    /// No newline in the `MAX_LINE + 1` bytes before `end`: the line
    /// ending there is longer than any record and its start is unknown.
    Overlong {
        end: u64,
        searched: u64,
    },
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

/// Offset of the last `\n` in `[0, before)`, looked for only as far back
/// as a record's line can reach.
fn prev_newline(file: &File, before: u64) -> Result<Option<u64>, ScanError> {
    let floor = before.saturating_sub(MAX_LINE + 1);
    let mut end = before;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > floor {
        let start = end.saturating_sub(CHUNK).max(floor);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    if floor > 0 {
        return Err(ScanError::Overlong {
            end: before,
            searched: before - floor,
        });
    }
    Ok(None)
}

fn read_line(file: &File, start: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
    if end - start > MAX_LINE {
        return Ok(None);
    }
    let mut bytes = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut bytes, start)?;
    Ok(Some(bytes))
}

/// Scans `file` (of length `len`) backwards to its last whole record.
pub(crate) fn scan(file: &File, len: u64) -> Result<Tail, ScanError> {
    let mut tail = Tail {
        last: None,
        bad: Vec::new(),
        needs_newline: false,
    };
    if len == 0 {
        return Ok(tail);
    }
    let mut last_byte = [0u8; 1];
    file.read_exact_at(&mut last_byte, len - 1)?;
    // `end` is where the line under examination stops (exclusive, without
    // its newline); `next` is the offset just past it.
    let (mut end, mut terminated) = if last_byte[0] == b'\n' {
        (len - 1, true)
    } else {
        tail.needs_newline = true;
        (len, false)
    };
    loop {
        let start = prev_newline(file, end)?.map_or(0, |i| i + 1);
        let bytes = read_line(file, start, end)?;
        match bytes.as_deref().and_then(record_seq) {
            Some(seq) => {
                tail.last = Some(LastRecord {
                    seq,
                    bytes: bytes.unwrap_or_default(),
                    end: if terminated { end + 1 } else { end },
                    start,
                });
                break;
            }
            None => {
                tail.bad.push(BadLine {
                    offset: start,
                    len: end - start,
                    terminated,
                    torn: bytes
                        .as_deref()
                        .is_some_and(|b| b.len() <= crate::DEFAULT_MAX_LINE && is_torn_write(b)),
                });
                if tail.bad.len() > MAX_BAD {
                    return Err(ScanError::TooManyBad);
                }
            }
        }
        if start == 0 {
            break;
        }
        end = start - 1;
        terminated = true;
    }
    tail.bad.reverse();
    Ok(tail)
}

/// The exact bytes of the nearest record before byte `start` (the start
/// of a line), past at most `MAX_BAD` lines that are not records (a
/// restart leaves a whole line of another shape in place and chains over
/// it); `None` when the file holds no record before it.
pub(crate) fn record_before(file: &File, start: u64) -> Result<Option<Vec<u8>>, ScanError> {
    let mut end = start;
    for _ in 0..=MAX_BAD {
        if end == 0 {
            return Ok(None);
        }
        // `end - 1` is the newline ending the line before.
        let line_end = end - 1;
        let from = prev_newline(file, line_end)?.map_or(0, |i| i + 1);
        if let Some(bytes) = read_line(file, from, line_end)?
            && record_seq(&bytes).is_some()
        {
            return Ok(Some(bytes));
        }
        end = from;
    }
    Err(ScanError::TooManyBad)
}

/// The 1-based number of the line starting at byte `offset`, for an error
/// message: counts the newlines before it.
pub(crate) fn line_number(file: &File, offset: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let (mut at, mut lines) = (0u64, 1u64);
    while at < offset {
        let n = (offset - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        at += n as u64;
    }
    Ok(lines)
}

/// Reads a file through `pread`, leaving the file position alone.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The seq and time (Unix nanoseconds, when its `ts` parses) of the first
/// record among the first lines of `file`.
pub(crate) fn first_record(file: &File) -> io::Result<Option<(u64, Option<i128>)>> {
    // Bounded like `first_record_line`: gigabytes of NULs before the
    // records (a sparse start) are not read through.
    first_of(At { file, pos: 0 }.take(MAX_LINE), |_, r| {
        let ts = Timestamp::parse(&r.ts).map(|t| t.unix_nanos());
        (r.seq, ts)
    })
}

/// The seq, exact bytes and `prev` of the first record among the first
/// lines of `file`.
pub(crate) fn first_record_line(file: &File) -> io::Result<Option<(u64, Vec<u8>, String)>> {
    // Bounded: whatever the file holds, this reads no more than a few
    // lines' worth.
    first_of(At { file, pos: 0 }.take(MAX_LINE), |bytes, r| {
        (r.seq, bytes, r.prev)
    })
}

/// The first record among the first `MAX_BAD` lines of `src`, with its exact
/// bytes, through `f`; `None` when none of them is a record.
fn first_of<R: Read, T>(
    src: R,
    f: impl FnOnce(Vec<u8>, agent_audit_core::StoredRecord) -> T,
) -> io::Result<Option<T>> {
    let mut reader = Reader::new("", BufReader::new(src));
    for _ in 0..MAX_BAD {
        match reader.next_raw() {
            None => return Ok(None),
            Some(Err(crate::ReadError::Io { source, .. })) => return Err(source),
            Some(Err(_)) => return Ok(None),
            Some(Ok(raw)) => {
                if let Some(r) = parse_record(&raw.bytes) {
                    return Ok(Some(f(raw.bytes, r)));
                }
            }
        }
    }
    Ok(None)
}
