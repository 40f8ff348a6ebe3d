//! Follow mode sees every record appended after rotation, including files
//! rotated several times between two looks, and survives truncation.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use agent_audit::Auditor;
use agent_audit::agents::{OfflineModel, tutorial};
use agent_audit_review::{FollowEvent, Follower, StartAt};
use common::*;

#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    rotations: usize,
    caught_up: usize,
    bad: usize,
    truncations: usize,
}

impl Seen {
    fn take(&mut self, events: Vec<FollowEvent>) {
        for e in events {
            match e {
                FollowEvent::Record(entry) => self.seqs.push(entry.record.seq),
                FollowEvent::Rotated { caught_up } => {
                    self.rotations += 1;
                    self.caught_up += caught_up.len();
                }
                FollowEvent::Bad(e) => {
                    eprintln!("{e}");
                    self.bad += 1;
                }
                FollowEvent::Truncated { .. } => self.truncations += 1,
            }
        }
    }
}

async fn tutorial_request(auditor: &Auditor, n: usize) {
    tutorial::run(
        &auditor.for_request(Some(&format!("req-follow-{n}"))),
        Arc::new(OfflineModel),
        &format!("What is the balance of account {}?", 10_000 + n),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_sees_records_appended_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    // About four records per file: every request rotates at least once.
    let dispatcher = start(&path, Some(3 * 1024)).await;
    let auditor = Auditor::new(dispatcher.clone());
    tutorial_request(&auditor, 0).await;
    dispatcher
        .wait(8, agent_audit::AckLevel::Written)
        .await
        .unwrap();

    let mut follower = Follower::open(&path, StartAt::Beginning).unwrap();
    let before: Vec<u64> = read_independently(dir.path())
        .iter()
        .filter(|r| r.file == path)
        .map(RawRecord::seq)
        .collect();
    let mut seen = Seen::default();
    seen.take(follower.poll().unwrap());
    assert_eq!(seen.seqs, before, "the active file's records first");

    // One request between looks, then three (several rotations in between).
    let mut n = 1;
    for batch in [1, 1, 3, 1, 3] {
        for _ in 0..batch {
            tutorial_request(&auditor, n).await;
            n += 1;
        }
        let last = dispatcher.next_seq().await - 1;
        dispatcher
            .wait(last, agent_audit::AckLevel::Written)
            .await
            .unwrap();
        seen.take(follower.poll().unwrap());
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    seen.take(follower.poll().unwrap());

    let all = read_independently(dir.path());
    let first = before[0];
    let want: Vec<u64> = all
        .iter()
        .map(RawRecord::seq)
        .filter(|s| *s >= first)
        .collect();
    assert_eq!(
        seen.seqs, want,
        "every record after the start, once, in order"
    );
    assert_eq!(*seen.seqs.last().unwrap(), all.len() as u64);
    assert_eq!(seen.bad, 0);
    assert!(seen.rotations >= 5, "rotations seen: {}", seen.rotations);
    assert!(
        seen.caught_up >= 2,
        "files rotated away between two looks were read: {}",
        seen.caught_up
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_waits_for_whole_lines_and_restarts_after_truncation() {
    // A shipper's copy of a real trail, appended by hand line by line.
    let trail = standard_trail(None).await;
    let raw = read_independently(trail.dir.path());
    let copy = trail.dir.path().join("copy.jsonl");
    std::fs::write(&copy, "").unwrap();
    let mut follower = Follower::open(&copy, StartAt::End).unwrap();
    let mut seen = Seen::default();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap();

    // Half a line: nothing yet. The rest: one record.
    let line = &raw[0].text;
    file.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
    seen.take(follower.poll().unwrap());
    assert!(seen.seqs.is_empty() && seen.bad == 0);
    file.write_all(&line.as_bytes()[line.len() / 2..]).unwrap();
    file.write_all(b"\n").unwrap();
    for r in &raw[1..5] {
        writeln!(file, "{}", r.text).unwrap();
    }
    seen.take(follower.poll().unwrap());
    assert_eq!(seen.seqs, [1, 2, 3, 4, 5]);

    // copytruncate: the file is emptied in place, then written again.
    file.set_len(0).unwrap();
    for r in &raw[5..7] {
        writeln!(file, "{}", r.text).unwrap();
    }
    seen.take(follower.poll().unwrap());
    assert_eq!(seen.truncations, 1);
    assert_eq!(seen.seqs, [1, 2, 3, 4, 5, 6, 7]);

    // Last(n) starts with the last n records of the file.
    let mut tail = Follower::open(&trail.path, StartAt::Last(3)).unwrap();
    let mut last = Seen::default();
    last.take(tail.poll().unwrap());
    let n = raw.len() as u64;
    assert_eq!(last.seqs, [n - 2, n - 1, n]);
}

#[test]
fn follow_reports_a_line_of_another_schema_instead_of_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let ok = r#"{"v":1,"seq":1,"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r","correlation_id":null,"trace_id":"0824dc110e1f73b5d618224f010fb405","span_id":"af91c80b1cc54460","parent_span_id":null,"agent":"a","payload":{},"prev":""}"#;
    // v2 is a version this reader knows; v3 is not.
    let v3 = ok.replace(r#""v":1,"seq":1"#, r#""v":3,"seq":2"#);
    std::fs::write(&path, format!("{ok}\n{v3}\n")).unwrap();
    let mut follower = Follower::open(&path, StartAt::Beginning).unwrap();
    let events = follower.poll().unwrap();
    let shown: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            FollowEvent::Record(entry) => Some(entry.record.seq),
            _ => None,
        })
        .collect();
    assert_eq!(shown, vec![1]);
    let bad: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            FollowEvent::Bad(e) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains(":2:") && bad[0].contains("`v`"),
        "{}",
        bad[0]
    );
}

/// The start of a record cut short, `len` bytes long, as a killed writer
/// leaves it: strict JSON up to where it stops.
fn torn_prefix(seq: u64, len: usize) -> Vec<u8> {
    let mut bytes = format!(
        r#"{{"v":1,"seq":{seq},"ts":"2026-11-25T23:32:22.000000000Z","event_type":"tool_call","request_id":"r","correlation_id":"r","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"a","payload":{{"note":""#
    )
    .into_bytes();
    bytes.resize(len.max(bytes.len()), b'x');
    bytes
}

/// `tail -f` on a log whose last line is torn, while a writer opens it
/// (cutting the torn line off, `sink/open.rs`) and appends. The torn bytes
/// are reported once, never spliced onto the writer's next line, and
/// nothing is read twice. Both shapes of the race: the writer's new lines
/// shorter than the torn bytes (the file looks truncated) and longer (the
/// follower's offset lands inside them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_drops_a_torn_tail_the_writer_cut_without_duplicates_or_splices() {
    for torn_len in [40, 8000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-log.jsonl");
        let dispatcher = start(&path, None).await;
        tutorial_request(&Auditor::new(dispatcher.clone()), 0).await;
        let report = dispatcher.shutdown(Duration::from_secs(10)).await;
        assert!(report.is_clean(), "{report}");
        let last = read_independently(dir.path()).len() as u64;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn_prefix(last + 1, torn_len))
            .unwrap();

        let mut follower = Follower::open(&path, StartAt::Beginning).unwrap();
        let mut seen = Seen::default();
        seen.take(follower.poll().unwrap());
        assert_eq!(seen.seqs.len() as u64, last);
        assert_eq!(seen.bad, 0, "a line without its newline is not judged yet");

        // The writer opens the log: cuts the torn line, writes its notice.
        let dispatcher = start(&path, None).await;
        let notice = dispatcher.next_seq().await - 1;
        dispatcher
            .wait(notice, agent_audit::AckLevel::Written)
            .await
            .unwrap();
        seen.take(follower.poll().unwrap());
        tutorial_request(&Auditor::new(dispatcher.clone()), 1).await;
        let report = dispatcher.shutdown(Duration::from_secs(10)).await;
        assert!(report.is_clean(), "{report}");
        seen.take(follower.poll().unwrap());

        let want: Vec<u64> = read_independently(dir.path())
            .iter()
            .map(RawRecord::seq)
            .collect();
        assert!(want.len() as u64 > last + 1, "the writer appended");
        assert_eq!(
            seen.seqs, want,
            "torn {torn_len} bytes: every record of the file once, in order"
        );
        assert_eq!(seen.truncations, 0, "torn {torn_len} bytes: no truncation");
        assert_eq!(seen.bad, 1, "torn {torn_len} bytes: the cut line, once");
    }
}
