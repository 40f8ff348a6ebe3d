use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::{Path, PathBuf};

use agent_audit_core::StoredRecord;

use crate::error::ReadError;
use crate::files;

/// Default longest line the reader accepts: 16 MiB, well above the
/// dispatcher's default record limit of 1 MiB.
pub const DEFAULT_MAX_LINE: usize = 16 << 20;

/// One line as bytes, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// 1-based line number.
    pub number: u64,
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// The line's exact bytes without the newline (empty when too long).
    pub bytes: Vec<u8>,
    /// Whether a newline ended it; only the last line of a file can lack one.
    pub terminated: bool,
    /// Whether it exceeded the reader's limit (its bytes were not kept).
    pub too_long: bool,
    /// Its full length in bytes, without the newline.
    pub len: u64,
}

/// One record line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// 1-based line number.
    pub number: u64,
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// The exact bytes without the newline: what the chain hashes.
    pub bytes: Vec<u8>,
    /// The parsed record.
    pub record: StoredRecord,
    /// Whether a newline ended it. A whole record without one is the last
    /// line of a file whose writer stopped between the record and its
    /// newline; it is still a record.
    pub terminated: bool,
}

/// A streaming reader of JSONL audit files.
///
/// It yields every line with its number, byte offset, exact bytes (what the
/// chain hashes) and parsed [`StoredRecord`], or a typed error naming the
/// line and why it is not a record; reading continues after a bad line, so
/// one damaged line does not hide the rest of the file. A line must be a
/// whole schema v1 or v2 record to be yielded: JSON of another shape (a key
/// missing, unknown or mistyped, `v` other than 1, see [`check_schema`]) is
/// [`ReadError::NotSchemaV1`], naming the key, never accepted.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use agent_audit_jsonl::{ReadError, Reader};
///
/// let text = concat!(
///     r#"{"v":1,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"user","payload":{"text":"hi"},"prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
///     "\nnot json\n",
///     r#"{"v":1,"seq":2"#,
/// );
/// let mut reader = Reader::new("example.jsonl", text.as_bytes());
/// let first = reader.next().unwrap()?;
/// assert_eq!((first.number, first.record.seq), (1, 1));
/// assert!(matches!(reader.next(), Some(Err(ReadError::BadRecord { line: 2, .. }))));
/// assert!(matches!(reader.next(), Some(Err(ReadError::TornFinalLine { line: 3, .. }))));
/// assert!(reader.next().is_none());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reader<R = BufReader<File>> {
    path: PathBuf,
    src: R,
    number: u64,
    offset: u64,
    max_line: usize,
    done: bool,
}

impl Reader<BufReader<File>> {
    /// Opens `path` for reading. Only a regular file (or a link to one)
    /// opens: a FIFO, device, socket or directory is [`ReadError::Open`]
    /// saying what it is, at once (see [`files::open_regular_for_reading`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let file =
            files::open_regular_for_reading(path, files::Symlinks::Follow).map_err(|source| {
                ReadError::Open {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Ok(Reader::new(path, BufReader::with_capacity(256 << 10, file)))
    }

    /// The same reader over a boxed source, for callers that keep readers
    /// of several kinds (a file's, a store's) side by side.
    pub fn boxed(self) -> Reader<Box<dyn BufRead + Send>> {
        Reader {
            path: self.path,
            src: Box::new(self.src),
            number: self.number,
            offset: self.offset,
            max_line: self.max_line,
            done: self.done,
        }
    }
}

impl<R: BufRead> Reader<R> {
    /// Reads from `src`; `path` names the source in errors.
    pub fn new(path: impl Into<PathBuf>, src: R) -> Self {
        Reader {
            path: path.into(),
            src,
            number: 0,
            offset: 0,
            max_line: DEFAULT_MAX_LINE,
            done: false,
        }
    }

    /// Sets the longest line accepted; longer lines are skipped and
    /// reported as [`ReadError::TooLong`].
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// The path given when the reader was made.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next line's bytes, unparsed; `None` at the end. An `Err` is an
    /// I/O failure, after which the reader stops.
    pub fn next_raw(&mut self) -> Option<Result<RawLine, ReadError>> {
        if self.done {
            return None;
        }
        let offset = self.offset;
        let mut bytes = Vec::new();
        let mut len = 0u64;
        let mut too_long = false;
        let mut terminated = false;
        let mut any = false;
        loop {
            let buf = match self.src.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.done = true;
                    return Some(Err(ReadError::Io {
                        path: self.path.clone(),
                        line: self.number + 1,
                        source,
                    }));
                }
            };
            if buf.is_empty() {
                break;
            }
            any = true;
            // memchr: a line of gigabytes (a sparse file's NULs) is
            // searched at memory speed, not a byte at a time.
            let (content, take) = match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    terminated = true;
                    (&buf[..i], i + 1)
                }
                None => (buf, buf.len()),
            };
            len += content.len() as u64;
            if !too_long {
                if bytes.len() + content.len() > self.max_line {
                    too_long = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(content);
                }
            }
            self.src.consume(take);
            self.offset += take as u64;
            if terminated {
                break;
            }
        }
        if !any {
            self.done = true;
            return None;
        }
        self.number += 1;
        Some(Ok(RawLine {
            number: self.number,
            offset,
            bytes,
            terminated,
            too_long,
            len,
        }))
    }

    /// Parses a raw line into a record, or says why it is not one.
    pub fn parse(&self, raw: RawLine) -> Result<Line, ReadError> {
        self.parse_or_return(raw).map_err(|b| b.0)
    }

    /// [`Reader::parse`], giving a line that is not a record back with the
    /// error, for callers that judge its bytes further (the verifier asks
    /// whether a write cut short could have left them).
    #[inline]
    pub(crate) fn parse_or_return(&self, raw: RawLine) -> Result<Line, Box<(ReadError, RawLine)>> {
        match self.check(&raw) {
            Ok(record) => Ok(Line {
                number: raw.number,
                offset: raw.offset,
                bytes: raw.bytes,
                record,
                terminated: raw.terminated,
            }),
            Err(e) => Err(Box::new((e, raw))),
        }
    }

    #[inline]
    fn check(&self, raw: &RawLine) -> Result<StoredRecord, ReadError> {
        let torn = || ReadError::TornFinalLine {
            path: self.path.clone(),
            line: raw.number,
            offset: raw.offset,
            len: raw.len,
        };
        if raw.too_long {
            return Err(ReadError::TooLong {
                path: self.path.clone(),
                line: raw.number,
                offset: raw.offset,
                max: self.max_line,
            });
        }
        let text = match std::str::from_utf8(&raw.bytes) {
            Ok(t) => t,
            Err(_) if !raw.terminated => return Err(torn()),
            Err(e) => {
                return Err(ReadError::NotUtf8 {
                    path: self.path.clone(),
                    line: raw.number,
                    offset: raw.offset,
                    column: e.valid_up_to() + 1,
                });
            }
        };
        let not_v1 = |v: SchemaViolation| ReadError::NotSchemaV1 {
            path: self.path.clone(),
            line: raw.number,
            offset: raw.offset,
            key: v.key,
            reason: v.reason,
        };
        match serde_json::from_str::<StoredRecord>(text) {
            Ok(record) => match check_schema(&record) {
                Ok(()) => Ok(record),
                Err(v) => Err(not_v1(v)),
            },
            // Off the hot path: only a line that is not a record pays for
            // telling JSON of the wrong shape from text that is not JSON.
            Err(source) => match shape_error(text, &source) {
                Some(v) => Err(not_v1(v)),
                None if !raw.terminated => Err(torn()),
                None => Err(ReadError::BadRecord {
                    path: self.path.clone(),
                    line: raw.number,
                    offset: raw.offset,
                    source,
                }),
            },
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Line, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.next_raw()? {
            Ok(raw) => self.parse(raw),
            Err(e) => Err(e),
        })
    }
}

/// `bytes` as a record, if it is a whole schema v1 or v2 record.
pub(crate) fn parse_record(bytes: &[u8]) -> Option<StoredRecord> {
    serde_json::from_slice::<StoredRecord>(bytes)
        .ok()
        .filter(|r| check_schema(r).is_ok())
}

/// Why a JSON line is not a schema v1 or v2 record. See [`check_schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// The key at fault, when one is.
    pub key: Option<String>,
    /// What is wrong, naming the key.
    pub reason: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Checks what the [`StoredRecord`] type cannot: `v` is 1 or 2 (a v1
/// record holds none of v2's `user_id`, `session_id` and `attributes`),
/// `ts` is RFC 3339, `payload` is an object, every attribute value is a
/// string, number or boolean, and `trace_id` (32), `span_id` and
/// `parent_span_id` (16) are lowercase hex of their length when present.
/// [`Reader`] applies it to every line; readers of other sources (a line
/// from a follow loop, a collector's copy) can apply it too.
///
/// `prev` is not checked here: its value is chain evidence, which
/// [`verify`](crate::verify) judges.
///
/// ```
/// use agent_audit_jsonl::check_schema;
///
/// let line = r#"{"v":3,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","payload":{},"prev":""}"#;
/// let record = serde_json::from_str(line).unwrap();
/// let err = check_schema(&record).unwrap_err();
/// assert_eq!(err.key.as_deref(), Some("v"));
/// ```
pub fn check_schema(r: &StoredRecord) -> Result<(), SchemaViolation> {
    let bad = |key: &str, reason: String| {
        Err(SchemaViolation {
            key: Some(key.to_string()),
            reason: format!("key `{key}` {reason}"),
        })
    };
    let (min, max) = (
        agent_audit_core::MIN_SCHEMA_VERSION,
        agent_audit_core::SCHEMA_VERSION,
    );
    if !(min..=max).contains(&r.v) {
        return bad(
            "v",
            format!(
                "is {}, but this reader knows schema versions {min} to {max} only",
                r.v
            ),
        );
    }
    if r.v == 1 {
        for (key, set) in [
            ("user_id", r.user_id.is_some()),
            ("session_id", r.session_id.is_some()),
            ("attributes", !r.attributes.is_empty()),
        ] {
            if set {
                return bad(key, "is a schema v2 key, in a record of `v` 1".into());
            }
        }
    }
    for (name, value) in &r.attributes {
        if !matches!(
            value,
            serde_json::Value::String(_)
                | serde_json::Value::Number(_)
                | serde_json::Value::Bool(_)
        ) {
            return bad(
                "attributes",
                format!("holds `{name}` = {value}, not a string, number or boolean"),
            );
        }
    }
    if !is_writer_ts(r.ts.as_bytes()) && agent_audit_core::Timestamp::parse(&r.ts).is_none() {
        return bad("ts", format!("is {:?}, not an RFC 3339 time", r.ts));
    }
    if !r.payload.is_object() {
        let found = match &r.payload {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
        };
        return bad("payload", format!("is {found}, not an object"));
    }
    for (key, id, len) in [
        ("trace_id", &r.trace_id, 32),
        ("span_id", &r.span_id, 16),
        ("parent_span_id", &r.parent_span_id, 16),
    ] {
        if let Some(id) = id
            && !(id.len() == len && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return bad(key, format!("is {id:?}, not {len} lowercase hex digits"));
        }
    }
    Ok(())
}

/// Whether `ts` has exactly the writer's form, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`,
/// with every field in range: the common case, checked without the
/// general RFC 3339 parser.
fn is_writer_ts(ts: &[u8]) -> bool {
    let Ok(t) = <&[u8; 30]>::try_from(ts) else {
        return false;
    };
    const DIGITS: [usize; 23] = [
        0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28,
    ];
    if t[4] != b'-'
        || t[7] != b'-'
        || t[10] != b'T'
        || t[13] != b':'
        || t[16] != b':'
        || t[19] != b'.'
        || t[29] != b'Z'
        || !DIGITS.iter().all(|&i| t[i].is_ascii_digit())
    {
        return false;
    }
    let n = |i: usize| u32::from(t[i] - b'0') * 10 + u32::from(t[i + 1] - b'0');
    let year = n(0) * 100 + n(2);
    let (month, day, hour, minute, second) = (n(5), n(8), n(11), n(14), n(17));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day) && hour < 24 && minute < 60 && second < 60
}

/// When `text` is JSON that `StoredRecord` refused (a missing, unknown or
/// mistyped key), why, naming the key; `None` when it is not JSON at all.
fn shape_error(text: &str, first: &serde_json::Error) -> Option<SchemaViolation> {
    if first.classify() != serde_json::error::Category::Data
        || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
    {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let e = serde_path_to_error::deserialize::<_, StoredRecord>(&mut de).err()?;
    let (path, inner) = (e.path().to_string(), e.into_inner());
    let message = inner.to_string();
    let key = if path == "." {
        // "missing field `ts`" / "unknown field `x`, expected ..."
        message
            .split_once('`')
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(k, _)| k.to_string())
    } else {
        Some(path)
    };
    let reason = match &key {
        Some(k) if !message.contains(&format!("`{k}`")) => format!("key `{k}`: {message}"),
        _ => message,
    };
    Some(SchemaViolation { key, reason })
}

/// Whether `bytes` is a whole schema v1 or v2 record; its seq if so.
pub(crate) fn record_seq(bytes: &[u8]) -> Option<u64> {
    parse_record(bytes).map(|r| r.seq)
}

/// The seq a damaged line was written for, when its prefix shows it whole:
/// `{"v":1,"seq":<digits>,` or `{"v":2,…` (the comma proves the digits
/// are complete).
pub(crate) fn seq_hint(bytes: &[u8]) -> Option<u64> {
    let rest = bytes
        .strip_prefix(br#"{"v":2,"seq":"#)
        .or_else(|| bytes.strip_prefix(br#"{"v":1,"seq":"#))?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || rest[end] != b',' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The openings every line a writer writes starts with: v2 now, v1 before
/// an upgrade (a file may hold both).
const RECORD_OPENINGS: [&[u8]; 2] = [br#"{"v":2,"seq":"#, br#"{"v":1,"seq":"#];

/// Whether `bytes` could be what a write cut short leaves of one of the
/// writer's lines: a proper prefix of a record, so a start of
/// `{"v":2,"seq":` (or v1's), strict JSON up to where it stops (a UTF-8 character
/// may be cut at the very end) and incomplete there. No JSON reader,
/// however lenient, takes such bytes for a record. Bytes that parse as
/// anything, or stop being strict JSON before they end (`NaN`, a NUL, a
/// BOM, a lone surrogate, trailing text), were not left by a torn write.
pub(crate) fn is_torn_write(bytes: &[u8]) -> bool {
    let opens = |o: &[u8]| {
        let n = bytes.len().min(o.len());
        bytes[..n] == o[..n]
    };
    if bytes.is_empty() || !RECORD_OPENINGS.iter().any(|o| opens(o)) {
        return false;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        // `error_len() == None`: the input ends inside a character.
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&bytes[..e.valid_up_to()]) {
            Ok(t) => t,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    // Into a Value, not IgnoredAny: only decoding strings rejects a lone
    // surrogate escape.
    let incomplete = |t: &str| match serde_json::from_str::<serde_json::Value>(t) {
        Ok(_) => false,
        Err(e) => e.classify() == serde_json::error::Category::Eof,
    };
    // serde_json calls a number cut after its `.`, `e` or sign invalid
    // rather than incomplete; one more digit tells the two apart.
    incomplete(text)
        || matches!(
            text.as_bytes().last(),
            Some(b'.' | b'e' | b'E' | b'+' | b'-')
        ) && incomplete(&format!("{text}0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_open_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit-log.jsonl");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        match Reader::open(&fifo) {
            Err(ReadError::Open { path, source }) => {
                assert_eq!(path, fifo);
                assert_eq!(
                    files::NotRegularFile::of(&source).map(|n| n.kind),
                    Some("a FIFO (named pipe)")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_a_proper_prefix_of_a_record_is_a_torn_write() {
        let line = "{\"v\":1,\"seq\":7,\"ts\":\"2026-11-25T23:32:22.000000000Z\",\"payload\":{\"t\":\"\\u00e9 é\",\"n\":[1.5e3,true,null]},\"prev\":\"00\"}".as_bytes();
        for cut in 1..line.len() {
            let torn = &line[..cut];
            assert!(is_torn_write(torn), "{:?}", String::from_utf8_lossy(torn));
        }
        let not_torn: [&[u8]; 11] = [
            line,
            b"",
            b"x",
            b" {\"v\":1",
            b"{\"v\":1,\"seq\":NaN",
            b"\xef\xbb\xbf{\"v\":1",
            b"{\"v\":1,\"seq\":7,\"a\":\"\x00",
            b"{\"v\":1,\"seq\":7} x",
            b"{\"v\":1,\"seq\":7,\"a\":\"\xff",
            b"{\"v\":1,\"seq\":7,\"a\":\"\\ud800\"",
            b"{\"v\":1,\"seq\":7,,",
        ];
        for bytes in not_torn {
            assert!(
                !is_torn_write(bytes),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn seq_hint_needs_complete_digits() {
        assert_eq!(seq_hint(br#"{"v":1,"seq":123,"ts":"#), Some(123));
        assert_eq!(seq_hint(br#"{"v":1,"seq":123"#), None);
        assert_eq!(seq_hint(br#"{"v":1,"se"#), None);
        assert_eq!(seq_hint(b"garbage"), None);
    }

    #[test]
    fn not_utf8_and_too_long_lines_are_reported_and_reading_continues() {
        let mut data = b"\xff\xfe\n".to_vec();
        data.extend_from_slice(&[b'x'; 100]);
        data.extend_from_slice(b"\n\n");
        let mut r = Reader::new("t.jsonl", &data[..]).max_line(10);
        assert!(matches!(
            r.next(),
            Some(Err(ReadError::NotUtf8 {
                line: 1,
                column: 1,
                ..
            }))
        ));
        assert!(matches!(
            r.next(),
            Some(Err(ReadError::TooLong {
                line: 2,
                offset: 3,
                ..
            }))
        ));
        // An empty line is not a record either.
        let e = r.next().unwrap().unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(
            e.to_string().starts_with("t.jsonl:3: not a valid record"),
            "{e}"
        );
        assert!(r.next().is_none());
    }
}
