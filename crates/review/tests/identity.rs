//! Schema v2 in the review commands' library: a file mixing v1 and v2
//! records reads whole, the filters find a user, a session and an
//! attribute, and stats counts records by user.

use agent_audit_review::{Filter, Source, SourceOptions, StatsBuilder};

fn line(v: u32, seq: u64, who: &str) -> String {
    format!(
        r#"{{"v":{v},"seq":{seq},"ts":"2026-11-25T23:32:2{seq}.000000000Z","event_type":"{}","request_id":"r{seq}","correlation_id":"c","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"a",{who}"payload":{{}},"prev":"x"}}"#,
        if seq == 5 {
            "tool_error"
        } else {
            "user_request"
        }
    )
}

#[test]
fn a_mixed_file_reads_whole_and_filters_by_user_session_and_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let u42 = r#""user_id":"u-42","session_id":"s-7","attributes":{"purpose":"support","tier":3},"#;
    let u7 = r#""user_id":"u-7","session_id":"s-1","attributes":{"purpose":"billing"},"#;
    let text = [
        line(1, 1, ""),
        line(1, 2, ""),
        line(2, 3, u42),
        line(2, 4, u7),
        line(2, 5, u42),
    ]
    .join("\n")
        + "\n";
    std::fs::write(&path, text).unwrap();
    let entries: Vec<_> = Source::open(&[&path], SourceOptions::default())
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(entries.len(), 5, "every line of the mixed file is a record");
    let seqs = |f: &Filter| -> Vec<u64> {
        entries
            .iter()
            .filter(|e| f.matches(&e.record))
            .map(|e| e.record.seq)
            .collect()
    };
    assert_eq!(seqs(&Filter::new().user_id("u-42")), [3, 5]);
    assert_eq!(seqs(&Filter::new().session_id("s-1")), [4]);
    assert_eq!(seqs(&Filter::new().attribute("purpose", "support")), [3, 5]);
    assert_eq!(seqs(&Filter::new().attribute("tier", "3")), [3, 5]);
    assert_eq!(
        seqs(
            &Filter::new()
                .attribute("purpose", "support")
                .attribute("tier", "4")
        ),
        [] as [u64; 0]
    );

    let mut stats = StatsBuilder::new();
    for e in &entries {
        stats.add(e);
    }
    let stats = stats.finish();
    let u = &stats.by_user["u-42"];
    assert_eq!((u.records, u.requests, u.sessions, u.errors), (2, 2, 1, 1));
    assert_eq!(stats.by_user["-"].records, 2);
    let text = stats.render_text();
    assert!(text.contains("Records by user"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("u-42")),
        "{text}"
    );
}

/// A log naming many users: the figures stay exact for each, and the
/// text table lists the `MAX_LISTED` users with the most records and says
/// how many more there are, instead of one line per user (a million
/// users made a million-line table).
#[test]
fn stats_by_user_lists_the_busiest_users_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let max = agent_audit_review::stats::MAX_LISTED;
    let users = max + 50;
    let mut text = String::new();
    let mut seq = 0;
    for u in 0..users {
        // The first user has three records in two requests, the others one.
        let n = if u == 0 { 3 } else { 1 };
        for i in 0..n {
            seq += 1;
            text.push_str(&format!(
                r#"{{"v":2,"seq":{seq},"ts":"2026-11-25T23:32:22.000000000Z","event_type":"user_request","request_id":"r{u}-{}","correlation_id":"c","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"a","user_id":"user-{u:04}","session_id":"s{u}","attributes":{{}},"payload":{{}},"prev":"x"}}"#,
                i.min(1)
            ));
            text.push('\n');
        }
    }
    std::fs::write(&path, text).unwrap();
    let mut stats = StatsBuilder::new();
    for e in Source::open(&[&path], SourceOptions::default()).unwrap() {
        stats.add(&e.unwrap());
    }
    let stats = stats.finish();
    assert_eq!(stats.by_user.len(), users, "every user is counted");
    let first = &stats.by_user["user-0000"];
    assert_eq!((first.records, first.requests, first.sessions), (3, 2, 1));
    let text = stats.render_text();
    let rows = text
        .lines()
        .filter(|l| l.trim_start().starts_with("user-"))
        .count();
    assert_eq!(rows, max, "{text}");
    assert!(
        text.lines()
            .skip_while(|l| !l.starts_with("Records by user"))
            .nth(2)
            .is_some_and(|l| l.trim_start().starts_with("user-0000")),
        "the busiest user first: {text}"
    );
    assert!(text.contains("… and 50 more users"), "{text}");
}
