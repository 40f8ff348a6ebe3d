//! Lines that are not records, put into real logs by someone other than
//! the writer. The writer never leaves one: it cuts its own torn writes off
//! the file when it opens it. A line the chain skips over is accepted only
//! in the form earlier versions of the writer left: a torn write kept as
//! the last line before a restart, named in those versions' exact words by
//! the `audit_gap` notice that restart wrote. Every other malformed line,
//! wherever it is, is damage.

mod integrity_support;

use std::path::{Path, PathBuf};

use agent_audit_jsonl::JsonlOptions;
use agent_audit_jsonl::verify::{ProblemKind, VerifyOptions, VerifyReport};
use integrity_support::*;

/// A real record line of the log with its seq replaced by `seq` (raw
/// JSON text, so `NaN` and the like can be written).
fn with_seq(line: &[u8], seq: &str) -> Vec<u8> {
    let text = std::str::from_utf8(line).unwrap();
    let start = text.find(r#""seq":"#).unwrap() + 6;
    let end = start + text[start..].find(',').unwrap();
    format!("{}{seq}{}", &text[..start], &text[end..]).into_bytes()
}

/// Replaces the first `from` in a line.
fn replaced(line: &[u8], from: &str, to: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(line).unwrap();
    let at = text.find(from).unwrap();
    let mut out = line[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&line[at + from.len()..]);
    out
}

/// Every kind of malformed line, built from a real record `r` of the log
/// so each looks as much like a record as it can.
fn malformed(r: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let cat = |parts: &[&[u8]]| parts.concat();
    let mut long = r.to_vec();
    long.extend(std::iter::repeat_n(
        b' ',
        agent_audit_jsonl::DEFAULT_MAX_LINE,
    ));
    vec![
        // Python's json and jq read these as records.
        ("seq NaN", with_seq(r, "NaN")),
        ("seq Infinity", with_seq(r, "Infinity")),
        ("seq -Infinity", with_seq(r, "-Infinity")),
        ("seq 1e400", with_seq(r, "1e400")),
        ("seq 2.5", with_seq(r, "2.5")),
        ("seq -1", with_seq(r, "-1")),
        ("seq 2^64", with_seq(r, "18446744073709551616")),
        (
            "duplicate key",
            replaced(
                r,
                r#""event_type":"#,
                br#""event_type":"final_result","event_type":"#,
            ),
        ),
        (
            "invalid UTF-8",
            replaced(r, "get_account_balance", b"get_\xff\xfe_balance"),
        ),
        (
            "overlong UTF-8",
            replaced(r, "get_account_balance", b"get_\xc0\xafbalance"),
        ),
        (
            "lone surrogate",
            replaced(r, "get_account_balance", br"get_\ud800_balance"),
        ),
        ("trailing garbage", cat(&[r, b" x"])),
        ("two records on a line", cat(&[r, r])),
        ("BOM", cat(&[b"\xef\xbb\xbf", r])),
        ("CR inside", replaced(r, r#","ts":"#, b"\r,\"ts\":")),
        ("CR alone", b"\r".to_vec()),
        ("NUL", cat(&[r, b"\0"])),
        ("NULs", vec![0u8; 64]),
        ("over-long line", long),
        ("empty line", Vec::new()),
        ("spaces", b"   ".to_vec()),
        // JSON, but not a record.
        (
            "JSON object, not a record",
            br#"{"event_type":"tool_call","payload":{}}"#.to_vec(),
        ),
        ("JSON array", b"[]".to_vec()),
        ("JSON number", b"1".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("record with v 3", replaced(r, r#""v":2"#, br#""v":3"#)),
        // Lenient readers (JSON5, some JavaScript and Python tools) take these.
        (
            "single quotes",
            String::from_utf8_lossy(r).replace('"', "'").into_bytes(),
        ),
        ("trailing comma", replaced(r, r#","prev":"#, b",,\"prev\":")),
        ("comment", cat(&[b"// ", r])),
        ("unquoted key", replaced(r, r#""v":2"#, b"v:2")),
        // Shaped like a torn write, but no restart recorded skipping it.
        ("torn-shaped", r[..r.len() / 2].to_vec()),
        (
            "torn-shaped at a UTF-8 cut",
            cat(&[&r[..r.len() / 2], b"\xc3"]),
        ),
    ]
}

/// `lines` with `extra` put before line index `at` (`lines.len()` = after
/// the last).
fn inserted(lines: &[Vec<u8>], at: usize, extra: &[u8]) -> Vec<Vec<u8>> {
    let mut out = lines.to_vec();
    out.insert(at, extra.to_vec());
    out
}

#[track_caller]
fn expect_damage(report: &VerifyReport, what: &str) {
    let Some(p) = &report.problem else {
        panic!("{what}: verified as intact:\n{report}");
    };
    assert!(!report.intact, "{what}");
    assert!(
        // A line that is still a record to this reader (a CR is JSON
        // whitespace) is a copy that does not fit the chain where it is.
        matches!(
            p.kind,
            ProblemKind::BadJson
                | ProblemKind::BadRecord
                | ProblemKind::Inserted
                | ProblemKind::Reordered
                | ProblemKind::Edited
                | ProblemKind::TornTail
        ),
        "{what}: {p}"
    );
}

/// Puts every malformed line at every kind of place into a copy of the
/// log at `original` and verifies each with `options`.
fn every_line_everywhere(original: &Path, options: &VerifyOptions, chain: &str) -> usize {
    let base = lines(original);
    let sample = base[base.len() / 2..]
        .iter()
        .find(|l| l.windows(11).any(|w| w == b"\"tool_call\""))
        .unwrap()
        .clone();
    let dir = original.parent().unwrap().join(format!("{chain}-cases"));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("audit-log.jsonl");
    let mut cases = 0;
    for (what, bad) in malformed(&sample) {
        // Before the first line, after the first, in the middle, before
        // the last, after the last.
        for at in [0, 1, base.len() / 2, base.len() - 1, base.len()] {
            write_lines(&path, &inserted(&base, at, &bad));
            let report = verify_with(&[&path], options);
            expect_damage(&report, &format!("{chain}: {what} before line index {at}"));
            cases += 1;
        }
        // Unterminated, at the end: a torn tail nobody recovered from.
        if bad.is_empty() {
            // Appending nothing leaves the log as it was.
            continue;
        }
        let mut data = std::fs::read(original).unwrap();
        data.extend_from_slice(&bad);
        std::fs::write(&path, &data).unwrap();
        expect_damage(
            &verify_with(&[&path], options),
            &format!("{chain}: {what} as an unterminated last line"),
        );
        cases += 1;
    }
    cases
}

#[tokio::test]
async fn every_malformed_line_inserted_anywhere_in_a_plain_chain_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path), 12).await;
    expect_intact(&plain(&[&path]));
    let cases = every_line_everywhere(&path, &VerifyOptions::default(), "plain");
    assert!(cases > 150, "{cases}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_line_inserted_anywhere_in_a_keyed_signed_chain_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 30, 4, Some(KEY), None).await;
    let options = VerifyOptions {
        public_keys: vec![s.signer.public_key()],
        ..keyed()
    };
    let report = verify_with(&[&s.log], &options);
    expect_intact(&report);
    assert!(report.checkpoints.signatures_verified >= 5, "{report}");
    every_line_everywhere(&s.log, &options, "keyed");
}

/// The bytes an earlier writer's crash left while it wrote seq 11.
const TORN: &[u8] = br#"{"v":1,"seq":11,"ts":"2026-11-25T23:3"#;

/// The detail of an earlier writer's restart notice (up to this version a
/// writer kept a torn line, ended it with a newline and named it so).
fn legacy_detail(offset: usize, len: usize) -> String {
    format!(
        "torn final line at byte offset {offset} of audit-log.jsonl ({len} bytes, no newline: a write cut short, it was seq 11); kept as is and terminated with a newline; the chain resumes from the last whole record (seq 10, ending at byte {offset})"
    )
}

/// A real record line made into that restart's `sink_notice` audit_gap
/// with `detail`.
fn notice_line(template: &[u8], seq: u64, detail: &str) -> Vec<u8> {
    let text = std::str::from_utf8(template).unwrap();
    let p = text.find(r#","payload":"#).unwrap();
    let q = text.rfind(r#","prev":""#).unwrap();
    let payload = serde_json::json!({"reason": "sink_notice", "sink": "jsonl", "detail": detail});
    let line = format!("{},\"payload\":{payload}{}", &text[..p], &text[q..]).replacen(
        r#""event_type":"tool_call""#,
        r#""event_type":"audit_gap""#,
        1,
    );
    set_seq(line.as_bytes(), seq)
}

/// A log as an earlier version of the writer left it after a crash while
/// writing seq 11 and a restart that wrote 3 more records: ten records,
/// the torn line kept and ended, the restart's notice naming it (seq 12)
/// and three records, chained from line 10 on over the torn line.
async fn legacy_recovered(dir: &Path) -> PathBuf {
    let path = dir.join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path), 13).await;
    let written = lines(&path);
    let offset: usize = written[..10].iter().map(|l| l.len() + 1).sum();
    let mut l = written[..10].to_vec();
    l.push(notice_line(
        &written[9],
        12,
        &legacy_detail(offset, TORN.len()),
    ));
    for (i, r) in written[10..].iter().enumerate() {
        l.push(set_seq(r, 13 + i as u64));
    }
    rechain_plain(&mut l, 10);
    l.insert(10, TORN.to_vec());
    write_lines(&path, &l);
    path
}

#[tokio::test]
async fn a_torn_line_an_earlier_writer_kept_passes_in_its_exact_form_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = legacy_recovered(dir.path()).await;
    let report = plain(&[&path]);
    expect_intact(&report);
    assert!(
        report
            .notices
            .iter()
            .any(|n| n.line == 11 && n.message.contains("earlier version")),
        "{report}"
    );
    let base = lines(&path);
    assert_eq!(base[10], TORN);
    // The fuzz corpus' recovered log is of this form too.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz-corpus/jsonl/torn-recovered.jsonl");
    let copy = dir.path().join("corpus").join("audit-log.jsonl");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&corpus, &copy).unwrap();
    expect_intact(&plain(&[&copy]));

    // The torn bytes replaced by a line of the same length that lenient
    // readers take for a record: same offset, same length, still damage.
    let torn_len = base[10].len();
    let mut forged = with_seq(&base[3], "NaN");
    forged.truncate(torn_len - 1);
    forged.push(b'}');
    assert_eq!(forged.len(), torn_len);
    let mut l = base.clone();
    l[10] = forged;
    write_lines(&path, &l);
    expect_damage(
        &plain(&[&path]),
        "the torn line replaced by a forged record",
    );

    // Bytes no write could leave (not the start of a record), at the named
    // place and length.
    let mut l = base.clone();
    l[10] = vec![b'x'; torn_len];
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::BadJson, 11);

    // A second torn-shaped line elsewhere, which no notice names.
    let l = inserted(&base, 5, &base[10]);
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::BadJson, 6);

    // The torn line and its notice in place, and one more torn-shaped line
    // right before it: the notice names one line, not two.
    let l = inserted(&base, 10, &base[10][..20]);
    write_lines(&path, &l);
    expect_problem(&plain(&[&path]), ProblemKind::BadJson, 11);

    // The notice in other words than an earlier writer's: its place and
    // length named, but not "kept as is" (as this version's writer reports
    // a whole line it found and left), or a notice that only mentions
    // them. A writer of this version never keeps a torn line, so these
    // are damage.
    let offset: usize = base[..10].iter().map(|l| l.len() + 1).sum();
    let len = TORN.len();
    for detail in [
        format!(
            "a whole line that is not a record follows the last record of audit-log.jsonl: {len} bytes at byte offset {offset} (SHA-256 {}); left in place for verify to report",
            sha256_hex(TORN)
        ),
        format!("cut a torn final line off audit-log.jsonl: {len} bytes at byte offset {offset}"),
        format!("something at byte offset {offset} of audit-log.jsonl ({len} bytes); kept as is"),
        legacy_detail(offset, len).replace("; kept as is", "; kept"),
        legacy_detail(offset + 1, len),
        legacy_detail(offset, len + 1),
    ] {
        let mut l = base.clone();
        l[11] = notice_line(&base[11], 12, &detail);
        rechain_plain(&mut l, 12);
        write_lines(&path, &l);
        let p = expect_problem(&plain(&[&path]), ProblemKind::BadJson, 11);
        assert!(p.message.contains("put there"), "{detail}: {p}");
    }
}

/// Every malformed line planted at the end of a keyed, signed log, with or
/// without a newline, then the writer restarts: an unterminated one, or a
/// terminated one that is only the start of a record, is cut off (nothing
/// of it is left in the log, which verifies); any other terminated one is
/// left where it is and `verify` calls it damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_line_planted_at_the_end_before_a_restart_is_cut_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_signed_log(dir.path(), 12, 5, Some(KEY), None).await;
    let options = VerifyOptions {
        public_keys: vec![s.signer.public_key()],
        ..keyed()
    };
    let base = std::fs::read(&s.log).unwrap();
    let sample = lines(&s.log)[3].clone();
    let path = dir.path().join("cases").join("audit-log.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut cases = 0;
    let mut torn_shaped = malformed(&sample);
    torn_shaped.push(("a torn write's prefix", sample[..sample.len() / 3].to_vec()));
    torn_shaped.push((
        "a record's prefix with a seq at the top of the space",
        br#"{"v":1,"seq":18446744073709551614,"ts":"2026-"#.to_vec(),
    ));
    for (what, bad) in torn_shaped {
        if bad.is_empty() || bad.contains(&b'\n') || bad.len() > 1 << 20 {
            continue;
        }
        // A line this reader takes for a whole record (a CR is JSON
        // whitespace) is a record the writer resumes from; verify names it
        // as not fitting the chain.
        let is_record = agent_audit_jsonl::Reader::new("", &bad[..]).all(|l| l.is_ok());
        for terminated in [false, true] {
            let mut data = base.clone();
            data.extend_from_slice(&bad);
            if terminated {
                data.push(b'\n');
            }
            std::fs::write(&path, &data).unwrap();
            if is_record {
                // A whole record that does not link under the key to the
                // one before it: the writer refuses to resume from it and
                // leaves the file for an operator (keyed_tail.rs).
                let opened =
                    agent_audit_jsonl::JsonlSink::new(JsonlOptions::new(&path).chain_key(KEY))
                        .unwrap()
                        .open_file();
                assert!(
                    matches!(
                        opened,
                        Err(agent_audit_jsonl::JsonlError::UnlinkedLastRecord { .. })
                    ),
                    "{what} (terminated: {terminated}): {opened:?}"
                );
                assert_eq!(std::fs::read(&path).unwrap(), data, "{what}: file changed");
                expect_damage(
                    &verify_with(&[&path], &options),
                    &format!("{what} (terminated: {terminated})"),
                );
                cases += 1;
                continue;
            }
            write_log(JsonlOptions::new(&path).chain_key(KEY), 2).await;
            let after = std::fs::read(&path).unwrap();
            let report = verify_with(&[&path], &options);
            cases += 1;
            // Only the start of a record (what a torn write leaves) is cut
            // even with a newline; a whole line of another shape is left
            // where it is, and is damage.
            let starts_a_record = what.starts_with("torn-shaped")
                || what == "a torn write's prefix"
                || what.starts_with("a record's prefix");
            if is_record || (terminated && !starts_a_record) {
                expect_damage(
                    &report,
                    &format!("{what} (terminated: {terminated}), after a restart"),
                );
                continue;
            }
            // Cut: the log goes on from its last record with whole records.
            assert!(after.starts_with(&base), "{what}");
            assert!(
                agent_audit_jsonl::Reader::new("", &after[base.len()..]).all(|l| l.is_ok()),
                "{what}: planted bytes kept"
            );
            expect_intact(&report);
            // The seq continues after the last record, not from the
            // planted bytes: the notice and two records.
            assert_eq!(report.last_seq, Some(s_last(&base) + 3), "{what}");
        }
    }
    assert!(cases > 40, "{cases}");
}

/// The seq of the last record line of a log's bytes.
fn s_last(bytes: &[u8]) -> u64 {
    bytes
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok()?["seq"].as_u64())
        .unwrap()
}

#[tokio::test]
async fn a_run_of_bad_lines_longer_than_any_recovery_is_damage_at_its_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(JsonlOptions::new(&path), 4).await;
    let base = lines(&path);
    let mut l = base[..2].to_vec();
    l.extend(std::iter::repeat_n(b"x".to_vec(), 100_000));
    l.extend_from_slice(&base[2..]);
    write_lines(&path, &l);
    let p = expect_problem(&plain(&[&path]), ProblemKind::BadJson, 3);
    assert!(p.message.contains("not a valid record"), "{p}");
}
