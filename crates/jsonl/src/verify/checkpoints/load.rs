//! Reading checkpoints kept elsewhere (`verify --checkpoints COPY`).

use std::io::BufReader;
use std::path::Path;

use crate::checkpoint::CheckpointPayload;
use crate::reader::Reader;

use super::super::VerifyError;
use super::OffHostCheckpoint;

/// The most checkpoints read from one copy. Only they are kept (a full copy
/// of the records is read line by line, keeping none of the others), so
/// this bounds the memory a copy can take, as `MAX_DEFERRED` does for the
/// checkpoints in the files: 65,536 checkpoints cover 65 million records
/// at the default `checkpoint_every`.
pub(crate) const MAX_OFF_HOST: usize = if cfg!(test) { 4 } else { 1 << 16 };

/// `checkpoint` records (as in an audit log), objects with the checkpoint
/// payload under `payload` or `body` (an OTLP log record exported as JSON,
/// its seq in `attributes."audit.seq"`), or bare payloads. Lines of other
/// event types are skipped, so a full copy of the log's records will do.
///
/// The copy is read line by line, no line buffered beyond the reader's
/// limit (16 MiB; a longer line is an error naming it), and at most
/// 65,536 checkpoints are kept: more is an error rather than unbounded
/// memory.
pub fn load_checkpoints(path: impl AsRef<Path>) -> Result<Vec<OffHostCheckpoint>, VerifyError> {
    let path = path.as_ref();
    let file = crate::files::open_regular_for_reading(path, crate::files::Symlinks::Follow)
        .map_err(|source| VerifyError::open(path, source))?;
    let mut reader = Reader::new(path, BufReader::with_capacity(256 << 10, file));
    let mut out = Vec::new();
    while let Some(raw) = reader.next_raw() {
        let raw = raw.map_err(VerifyError::Input)?;
        let number = raw.number;
        let bad = |reason: String| VerifyError::BadCheckpointFile {
            path: path.to_path_buf(),
            line: number,
            reason,
        };
        if raw.too_long {
            return Err(bad(format!(
                "a line longer than {} bytes, longer than any record",
                crate::DEFAULT_MAX_LINE
            )));
        }
        if raw.bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(cp) = parse_line(path, number, &raw.bytes).map_err(bad)? {
            if out.len() == MAX_OFF_HOST {
                return Err(bad(format!(
                    "more than {MAX_OFF_HOST} checkpoints in one copy; give the part of the copy that covers the files verified"
                )));
            }
            out.push(cp);
        }
    }
    Ok(out)
}

/// One line of a copy: its checkpoint, `None` for a line of another event
/// type, or why it is neither.
fn parse_line(path: &Path, number: u64, line: &[u8]) -> Result<Option<OffHostCheckpoint>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("not a JSON object".into());
    };
    let is_payload = |v: &serde_json::Value| {
        v.get("signature").is_some() && v.get("upto_seq").is_some() && v.get("head").is_some()
    };
    let event_type = obj
        .get("event_type")
        .or_else(|| obj.get("event_name"))
        .and_then(|v| v.as_str());
    if let Some(t) = event_type
        && t != "checkpoint"
        && t != "agent_audit.checkpoint"
    {
        return Ok(None);
    }
    let payload = if is_payload(&value) {
        &value
    } else if let Some(p) = obj.get("payload").filter(|p| is_payload(p)) {
        p
    } else if let Some(p) = obj.get("body").filter(|p| is_payload(p)) {
        p
    } else if event_type.is_some() {
        return Err("a checkpoint record without a checkpoint payload".into());
    } else {
        return Ok(None);
    };
    let payload = CheckpointPayload::from_value(payload)?;
    let seq_of = |v: &serde_json::Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let seq = obj
        .get("seq")
        .and_then(seq_of)
        .or_else(|| obj.get("attributes")?.get("audit.seq").and_then(seq_of));
    Ok(Some(OffHostCheckpoint {
        source: path.to_path_buf(),
        line: number,
        seq,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(upto: u64) -> String {
        serde_json::json!({
            "log": "audit-log.jsonl", "chain": "sha256", "from_seq": 0,
            "upto_seq": upto, "records": upto, "head": "0".repeat(64),
            "reason": "count", "signed_at": "2026-11-25T23:32:22.000000000Z",
            "alg": "ed25519", "key_id": "0".repeat(16), "signature": "0".repeat(128),
        })
        .to_string()
    }

    #[test]
    fn only_checkpoints_are_kept_and_their_number_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.jsonl");
        let other = r#"{"event_type":"tool_call","payload":{"note":"x"}}"#;
        let mut text = String::new();
        for i in 1..=MAX_OFF_HOST as u64 {
            text += &format!("{other}\n\n{}\r\n", payload(i));
        }
        std::fs::write(&copy, &text).unwrap();
        let loaded = load_checkpoints(&copy).unwrap();
        assert_eq!(loaded.len(), MAX_OFF_HOST);
        assert_eq!(loaded[1].line, 6, "lines are counted as in the file");
        // One more is an error naming its line, not more memory.
        std::fs::write(&copy, text + &payload(99) + "\n").unwrap();
        match load_checkpoints(&copy) {
            Err(VerifyError::BadCheckpointFile { line, reason, .. }) => {
                assert_eq!(line, 3 * MAX_OFF_HOST as u64 + 1);
                assert!(reason.contains("more than"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
