//! An independent checker of a JSONL audit log: the `prev` chain, the seq
//! order, the key order of each line, and that every damaged line is
//! explained by an `audit_gap` record.
//!
//! It shares no code with `agent-audit-jsonl` (only `sha2` and
//! `serde_json`), so a bug in the sink's chain cannot also hide in the check.
//! It can be fed a growing file again and again (the crash loop does),
//! checking only what was added since the last call.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev` of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 of a line's bytes (without its newline), as lowercase hex.
pub fn line_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One record line that passed the checks.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Byte offset of the line in the file.
    pub offset: u64,
    /// Its seq.
    pub seq: u64,
    /// The exact bytes, without the newline.
    pub bytes: Vec<u8>,
    /// The parsed line.
    pub value: Value,
}

impl Checked {
    /// `event_type`.
    pub fn event_type(&self) -> &str {
        self.value["event_type"].as_str().unwrap_or("")
    }

    /// `payload`.
    pub fn payload(&self) -> &Value {
        &self.value["payload"]
    }
}

/// Keys of a schema v1 line, in the order the schema fixes.
pub const KEYS_V1: [&str; 12] = [
    "v",
    "seq",
    "ts",
    "event_type",
    "request_id",
    "correlation_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "agent",
    "payload",
    "prev",
];

/// Keys of a schema v2 line, in the order the schema fixes (docs/schema.md:
/// v1's, with who asked and the deployment's attributes before the
/// payload).
pub const KEYS: [&str; 15] = [
    "v",
    "seq",
    "ts",
    "event_type",
    "request_id",
    "correlation_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "agent",
    "user_id",
    "session_id",
    "attributes",
    "payload",
    "prev",
];

/// Checks a log incrementally. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ChainChecker {
    head: String,
    last_seq: Option<u64>,
    consumed: u64,
    /// Damaged lines not yet explained by an `audit_gap` notice: offsets.
    unexplained: Vec<u64>,
    /// Record lines checked so far.
    pub records: u64,
    /// Damaged (non-record) lines seen so far, each explained by a notice.
    pub damaged: u64,
}

impl Default for ChainChecker {
    fn default() -> Self {
        ChainChecker::new()
    }
}

impl ChainChecker {
    /// A checker for a log that starts at the genesis value.
    pub fn new() -> ChainChecker {
        ChainChecker::continuing(GENESIS, None)
    }

    /// A checker for a file whose first `prev` is `head` (a later file of
    /// a rotated or reopened log) and whose seqs follow `last_seq`.
    pub fn continuing(head: &str, last_seq: Option<u64>) -> ChainChecker {
        ChainChecker {
            head: head.to_string(),
            last_seq,
            consumed: 0,
            unexplained: Vec::new(),
            records: 0,
            damaged: 0,
        }
    }

    /// The `prev` the next record must carry.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The highest seq checked.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Bytes of the file checked so far (through the last newline).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Checks the newline-terminated lines of `file` after the part already
    /// checked, and returns the records among them. `file` is the whole
    /// file as it is now; the part checked before must not have changed
    /// (the caller compares it). The unterminated end, if any, is left for
    /// the next call or [`ChainChecker::torn_tail`].
    pub fn feed(&mut self, file: &[u8]) -> Result<Vec<Checked>, String> {
        let mut out = Vec::new();
        let start = usize::try_from(self.consumed).map_err(|e| e.to_string())?;
        if start > file.len() {
            return Err(format!(
                "the file shrank: {} bytes were checked, it has {}",
                start,
                file.len()
            ));
        }
        let mut pos = start;
        while let Some(nl) = file[pos..].iter().position(|&b| b == b'\n') {
            let line = &file[pos..pos + nl];
            self.line(pos as u64, line, &mut out)?;
            pos += nl + 1;
        }
        self.consumed = pos as u64;
        Ok(out)
    }

    /// The unterminated end of `file` after the checked part: `(offset,
    /// length)` of a torn final line, or `None` when the file ends with a
    /// newline.
    pub fn torn_tail(&self, file: &[u8]) -> Option<(u64, u64)> {
        let rest = file.len() as u64 - self.consumed.min(file.len() as u64);
        (rest > 0).then_some((self.consumed, rest))
    }

    /// Fails if a damaged line is still waiting for its explanation.
    pub fn all_explained(&self) -> Result<(), String> {
        match self.unexplained.first() {
            Some(off) => Err(format!(
                "the damaged line at byte offset {off} is not explained by any audit_gap notice"
            )),
            None => Ok(()),
        }
    }

    fn line(&mut self, offset: u64, bytes: &[u8], out: &mut Vec<Checked>) -> Result<(), String> {
        let Some(value) = parse_record(bytes) else {
            // Not a record: a torn write an earlier version of the writer
            // ended with a newline on reopen (this version cuts them off).
            // It must be followed by the notice that names it.
            self.damaged += 1;
            self.unexplained.push(offset);
            return Ok(());
        };
        let at = || format!("line at byte offset {offset}");
        check_key_order(bytes).map_err(|e| format!("{}: {e}", at()))?;
        let seq = value["seq"]
            .as_u64()
            .ok_or_else(|| format!("{}: seq is not a u64", at()))?;
        let prev = value["prev"]
            .as_str()
            .ok_or_else(|| format!("{}: prev is not a string", at()))?;
        if prev != self.head {
            return Err(format!(
                "{} (seq {seq}): prev {prev} is not the hash of the previous record line ({})",
                at(),
                self.head
            ));
        }
        if let Some(last) = self.last_seq
            && seq <= last
        {
            return Err(format!(
                "{}: seq {seq} does not follow seq {last} (duplicate or reordered)",
                at()
            ));
        }
        if !self.unexplained.is_empty() {
            if value["event_type"] == "audit_gap" && value["payload"]["reason"] == "sink_notice" {
                let detail = value["payload"]["detail"].as_str().unwrap_or("");
                self.unexplained
                    .retain(|off| !detail.contains(&format!("byte offset {off} ")));
            } else {
                return Err(format!(
                    "{} (seq {seq}): damaged line(s) at byte offset(s) {:?} are not explained by an audit_gap notice before the next record",
                    at(),
                    self.unexplained
                ));
            }
        }
        self.head = line_hash(bytes);
        self.last_seq = Some(seq);
        self.records += 1;
        out.push(Checked {
            offset,
            seq,
            bytes: bytes.to_vec(),
            value,
        });
        Ok(())
    }
}

/// The line as a record, if it is one (a JSON object with `v` = 1 or 2, a
/// seq and a prev).
fn parse_record(bytes: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let obj = value.as_object()?;
    let v = obj.get("v")?;
    ((v == 1 || v == 2) && obj.get("seq")?.is_u64() && obj.get("prev")?.is_string())
        .then_some(value)
}

/// The keys of a line must appear in schema order and be the only ones.
/// Checked on the bytes, since a JSON map does not keep order.
fn check_key_order(bytes: &[u8]) -> Result<(), String> {
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    struct Keys<'a>(&'a mut Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                self.0.push(k);
            }
            Ok(())
        }
    }
    serde::Deserializer::deserialize_map(&mut de, Keys(&mut keys)).map_err(|e| e.to_string())?;
    let expected: &[&str] = if keys.len() == KEYS_V1.len() {
        &KEYS_V1
    } else {
        &KEYS
    };
    if keys != expected {
        return Err(format!("keys {keys:?} are not the schema's {expected:?}"));
    }
    Ok(())
}

/// What [`check_file`] found.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Every record line, in file order.
    pub records: Vec<Checked>,
    /// Damaged lines (each explained by a notice).
    pub damaged: u64,
    /// An unterminated last line: `(offset, length)`.
    pub torn_tail: Option<(u64, u64)>,
    /// The chain head after the last record.
    pub head: String,
}

/// Checks a whole file whose first record starts the chain (or continues
/// `from`: head and last seq of the file before it).
pub fn check_file(path: &Path, from: Option<(&str, Option<u64>)>) -> Result<Summary, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_bytes(&bytes, from).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`check_file`] on bytes in memory.
pub fn check_bytes(bytes: &[u8], from: Option<(&str, Option<u64>)>) -> Result<Summary, String> {
    let mut c = match from {
        Some((head, last)) => ChainChecker::continuing(head, last),
        None => ChainChecker::new(),
    };
    let records = c.feed(bytes)?;
    let torn_tail = c.torn_tail(bytes);
    if torn_tail.is_none() {
        c.all_explained()?;
    }
    Ok(Summary {
        records,
        damaged: c.damaged,
        torn_tail,
        head: c.head().to_string(),
    })
}
