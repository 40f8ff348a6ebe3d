//! What the writer does with bytes after the last whole record when it
//! opens a log, and what `verify` then accepts.
//!
//! A torn final line (no newline) is cut off the file on open: the file is
//! truncated back to the end of its last whole line and synced, and the
//! `sink_notice` audit_gap names the cut by byte offset, length and
//! SHA-256, never by its bytes; so are lines before it that are only the
//! start of a record ended with a newline (as earlier versions kept their
//! torn writes). No prefix sets the seq. So bytes someone plants at the end
//! of a log never become part of it, and cannot push the writer's seq to
//! the end of the seq space. Other whole lines after the last record are
//! never a writer's: kept as they are (the writer deletes no whole line),
//! reported by length and SHA-256, and `verify` calls them damage. A torn write of a killed writer is still found (`torn_tail`
//! until the next open), reported by the open, and the chain resumes from
//! the last whole record with no record lost.
//!
//! (Attack review, findings 2 and 3: a planted unterminated line was kept
//! behind a sink_notice and accepted by `verify` as the writer's torn
//! write, and `{"v":1,"seq":18446744073709551000,` set the writer's seq.)

mod integrity_support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use agent_audit_core::EventType;
use agent_audit_jsonl::verify::{ProblemKind, VerifyReport};
use agent_audit_jsonl::{JsonlOptions, JsonlSink, Reader};
use integrity_support::*;

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn keyed_opts(path: &Path) -> JsonlOptions {
    JsonlOptions::new(path).chain_key(KEY)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The `detail` of every sink_notice audit_gap record of `path`.
fn sink_notices(path: &Path) -> Vec<(u64, String)> {
    Reader::open(path)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|l| {
            l.record.event_type == EventType::AuditGap
                && l.record.payload["reason"] == "sink_notice"
        })
        .map(|l| {
            (
                l.number,
                l.record.payload["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn seqs(path: &Path) -> Vec<u64> {
    Reader::open(path)
        .unwrap()
        .map(|l| l.unwrap().record.seq)
        .collect()
}

fn keyed_report(path: &Path) -> VerifyReport {
    verify_with(&[path], &keyed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_line_planted_at_the_end_of_a_keyed_log_is_cut_on_open_and_never_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(keyed_opts(&path), 10).await;
    let whole = std::fs::read(&path).unwrap();
    // Shaped exactly like a torn write (a proper prefix of a record, strict
    // JSON up to where it stops), carrying what the attacker wants kept.
    let planted = br#"{"v":1,"seq":11,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"tool_call","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"assistant","payload":{"tool":"wire_transfer","amount":"1000000 to attacker-account-666"#;
    append(&path, planted);
    // Until the writer opens the log again, verify calls it a torn tail.
    expect_problem(&keyed_report(&path), ProblemKind::TornTail, 11);

    write_log(keyed_opts(&path), 3).await;
    let after = std::fs::read(&path).unwrap();
    assert!(
        !contains(&after, b"attacker-account-666"),
        "the planted bytes are still in the log:\n{}",
        String::from_utf8_lossy(&after)
    );
    assert_eq!(&after[..whole.len()], &whole[..], "earlier lines untouched");
    // Every line is a record: nothing for verify to take on trust.
    assert!(Reader::open(&path).unwrap().all(|l| l.is_ok()));
    assert_eq!(seqs(&path), (1..=14).collect::<Vec<_>>());
    // Named by offset, length and SHA-256, never by its bytes.
    let notices = sink_notices(&path);
    assert_eq!(notices.len(), 1, "{notices:?}");
    let (line, detail) = &notices[0];
    assert_eq!(*line, 11);
    for part in [
        format!("byte offset {}", whole.len()),
        format!("{} bytes", planted.len()),
        format!("SHA-256 {}", sha256_hex(planted)),
        "cut".to_string(),
    ] {
        assert!(detail.contains(&part), "notice lacks `{part}`: {detail}");
    }
    assert!(!detail.contains("wire_transfer"), "{detail}");

    let report = keyed_report(&path);
    expect_intact(&report);
    assert!(
        report
            .notices
            .iter()
            .any(|n| n.line == 11 && n.message.contains(&sha256_hex(planted))),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_planted_after_the_last_record_with_a_newline_are_cut_when_torn_shaped_else_damage() {
    let dir = tempfile::tempdir().unwrap();

    // The start of a record ended with a newline (as an earlier version
    // kept its torn writes, and as anyone can plant one): cut like a torn
    // final line, named by length and SHA-256.
    let path = dir.path().join("torn-shaped.jsonl");
    write_log(keyed_opts(&path), 10).await;
    let whole = std::fs::read(&path).unwrap();
    let planted = br#"{"v":1,"seq":11,"ts":"2026-11-25T23:32:22.0","event_type":"tool_ca"#;
    let mut line = planted.to_vec();
    line.push(b'\n');
    append(&path, &line);
    write_log(keyed_opts(&path), 3).await;
    let after = std::fs::read(&path).unwrap();
    assert!(after.starts_with(&whole) && !contains(&after, planted));
    let notices = sink_notices(&path);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0]
            .1
            .contains(&format!("SHA-256 {}", sha256_hex(planted)))
            && notices[0].1.contains(&format!(
                "{} bytes at byte offset {}",
                planted.len(),
                whole.len()
            )),
        "{notices:?}"
    );
    expect_intact(&keyed_report(&path));
    assert_eq!(seqs(&path), (1..=14).collect::<Vec<_>>());

    // A whole line of another shape (no write of a record leaves it): the
    // writer deletes no whole line, so it stays, reported by length and
    // SHA-256, and verify calls it damage rather than a torn write.
    for (name, planted) in [
        ("junk", &b"not a record at all"[..]),
        (
            "JSON of a later version",
            &br#"{"v":2,"seq":11,"prev":"x"}"#[..],
        ),
        (
            "NaN seq",
            &br#"{"v":1,"seq":NaN,"ts":"2026-11-25T23:32:22.0"}"#[..],
        ),
    ] {
        let path = dir.path().join(format!("{}.jsonl", name.replace(' ', "-")));
        write_log(keyed_opts(&path), 10).await;
        let mut line = planted.to_vec();
        line.push(b'\n');
        append(&path, &line);
        write_log(keyed_opts(&path), 3).await;
        let notices = sink_notices(&path);
        assert_eq!(notices.len(), 1, "{name}: {notices:?}");
        assert!(
            notices[0].1.contains(&sha256_hex(planted))
                && notices[0].1.contains("left in place")
                && !notices[0].1.contains(std::str::from_utf8(planted).unwrap()),
            "{name}: {notices:?}"
        );
        let report = keyed_report(&path);
        let p = report
            .problem
            .clone()
            .unwrap_or_else(|| panic!("{name}: verified:\n{report}"));
        assert_eq!(p.line, 11, "{name}: {p}");
        assert!(
            matches!(p.kind, ProblemKind::BadJson | ProblemKind::BadRecord),
            "{name}: {p}"
        );
        assert_eq!(
            seqs_of_records(&path),
            (1..=14).collect::<Vec<_>>(),
            "{name}: the seq continues after the last record"
        );
    }
}

fn seqs_of_records(path: &Path) -> Vec<u64> {
    Reader::open(path)
        .unwrap()
        .filter_map(Result::ok)
        .map(|l| l.record.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_seq_never_sets_the_writers_seq() {
    let dir = tempfile::tempdir().unwrap();
    for (name, planted) in [
        (
            "unterminated",
            &br#"{"v":1,"seq":18446744073709551000,"#[..],
        ),
        (
            "terminated",
            &b"{\"v\":1,\"seq\":18446744073709551000,\"ts\":\"2\n"[..],
        ),
        (
            "unterminated near the top",
            &br#"{"v":1,"seq":18446744073709551614,"t"#[..],
        ),
    ] {
        let path = dir.path().join(format!("{}.jsonl", name.replace(' ', "-")));
        write_log(keyed_opts(&path), 5).await;
        append(&path, planted);
        // What the open tells the dispatcher to continue after, on a copy.
        let copy = dir.path().join("copy.jsonl");
        std::fs::copy(&path, &copy).unwrap();
        let mut sink = JsonlSink::new(keyed_opts(&copy)).unwrap();
        let open = sink.open_file().unwrap();
        assert_eq!(open.last_seq, Some(5), "{name}: {:?}", open.notices);
        sink.close_file().unwrap();
        std::fs::remove_file(&copy).unwrap();
        write_log(keyed_opts(&path), 2).await;
        assert_eq!(
            seqs_of_records(&path),
            (1..=8).collect::<Vec<_>>(),
            "{name}: the notice and the two records follow seq 5"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_torn_write_is_found_cut_on_open_reported_and_the_chain_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    write_log(keyed_opts(&path), 11).await;
    let whole = std::fs::read(&path).unwrap();
    // A crash in the middle of writing seq 11: the file ends inside it.
    let l = lines(&path);
    let kept = whole.len() - l[10].len() - 1;
    let torn_len = l[10].len() / 2;
    std::fs::write(&path, &whole[..kept + torn_len]).unwrap();
    let torn = whole[kept..kept + torn_len].to_vec();
    let p = expect_problem(&keyed_report(&path), ProblemKind::TornTail, 11);
    assert!(p.message.contains("incomplete"), "{p}");

    // The next open cuts it and says so; the chain resumes from seq 10.
    // (On a copy: a bare open writes no notice, the dispatcher does.)
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&path, &copy).unwrap();
    let mut sink = JsonlSink::new(keyed_opts(&copy)).unwrap();
    let open = sink.open_file().unwrap();
    assert_eq!(open.last_seq, Some(10));
    assert_eq!(open.notices.len(), 1, "{:?}", open.notices);
    for part in [
        format!("byte offset {kept}"),
        format!("{torn_len} bytes"),
        format!("SHA-256 {}", sha256_hex(&torn)),
        copy.display().to_string(),
    ] {
        assert!(
            open.notices[0].contains(&part),
            "notice lacks `{part}`: {}",
            open.notices[0]
        );
    }
    assert_eq!(
        std::fs::metadata(&copy).unwrap().len(),
        kept as u64,
        "cut back to the end of the last whole line on open"
    );
    sink.close_file().unwrap();
    write_log(keyed_opts(&path), 3).await;
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[..kept], &whole[..kept], "no whole record lost");
    let report = keyed_report(&path);
    expect_intact(&report);
    assert_eq!(report.records, 14);
    assert!(
        report
            .notices
            .iter()
            .any(|n| n.line == 11 && n.message.contains("cut")),
        "{report}"
    );
}
