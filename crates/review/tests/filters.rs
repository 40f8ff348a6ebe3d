//! Filters return exactly the records that match, over a rotated trail
//! written by the real runtime, and every record keeps its file and line.

mod common;

use agent_audit_core::Timestamp;
use agent_audit_review::{Filter, Source, SourceOptions, load};
use common::*;

fn seqs_of(filter: &Filter, trail: &Trail) -> Vec<u64> {
    let loaded = load(&[&trail.path], SourceOptions::default(), |r| {
        filter.matches(r)
    })
    .unwrap();
    assert!(loaded.bad_lines.is_empty(), "{:?}", loaded.bad_lines);
    loaded.entries.iter().map(|e| e.record.seq).collect()
}

fn expected(raw: &[RawRecord], keep: impl Fn(&RawRecord) -> bool) -> Vec<u64> {
    raw.iter().filter(|r| keep(r)).map(RawRecord::seq).collect()
}

fn nanos(r: &RawRecord) -> i128 {
    Timestamp::parse(r.str("ts").unwrap()).unwrap().unix_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_combine_and_return_exactly_the_matching_records() {
    // Small files, so the trail spans several rotated files.
    let trail = standard_trail(Some(6 * 1024)).await;
    let raw = read_independently(trail.dir.path());
    let files: std::collections::BTreeSet<_> = raw.iter().map(|r| r.file.clone()).collect();
    assert!(files.len() >= 3, "expected rotation, got {files:?}");

    // Everything, in seq order across the rotated files.
    let all = seqs_of(&Filter::new(), &trail);
    assert_eq!(all, (1..=raw.len() as u64).collect::<Vec<_>>());

    let mut checked = 0;
    let mut check = |name: &str, filter: Filter, keep: &dyn Fn(&RawRecord) -> bool| {
        let want = expected(&raw, keep);
        assert!(
            !want.is_empty(),
            "{name}: the trail must hold matching records"
        );
        assert!(
            want.len() < raw.len(),
            "{name}: the filter must exclude something"
        );
        assert_eq!(seqs_of(&filter, &trail), want, "{name}");
        checked += 1;
    };

    for id in [TUTORIAL_1, TUTORIAL_2, MULTI, HTTP, UNAUTHORIZED] {
        check(id, Filter::new().request_id(id), &|r: &RawRecord| {
            r.str("request_id") == Some(id)
        });
    }
    check(
        "correlation",
        Filter::new().correlation_id(CONVERSATION),
        &|r| r.str("correlation_id") == Some(CONVERSATION),
    );
    check("event type", Filter::new().event_type("tool_call"), &|r| {
        r.event() == "tool_call"
    });
    check(
        "two event types and an agent",
        Filter::new()
            .event_type("tool_call")
            .event_type("tool_result")
            .agent("user_proxy"),
        &|r| {
            matches!(r.event(), "tool_call" | "tool_result") && r.str("agent") == Some("user_proxy")
        },
    );
    check(
        "two agents",
        Filter::new().agent("triage").agent("accounts"),
        &|r| matches!(r.str("agent"), Some("triage" | "accounts")),
    );
    check(
        "errors",
        Filter::new()
            .event_type("tool_error")
            .event_type("model_error"),
        &|r| r.event().ends_with("_error"),
    );

    // Time window: inclusive bounds taken from two records' own times, and
    // written with an offset to show it is converted to UTC.
    let lo = &raw[raw.len() / 4];
    let hi = &raw[raw.len() * 3 / 4];
    let (lo_ns, hi_ns) = (nanos(lo), nanos(hi));
    let hi_offset = {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(hi_ns)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert!(hi_offset.ends_with("+02:00"), "{hi_offset}");
    check(
        "since and until",
        Filter::new()
            .since(lo.str("ts").unwrap())
            .unwrap()
            .until(&hi_offset)
            .unwrap(),
        &|r| (lo_ns..=hi_ns).contains(&nanos(r)),
    );
    check(
        "request, type and since together",
        Filter::new()
            .request_id(HTTP)
            .event_type("assistant_output")
            .since(lo.str("ts").unwrap())
            .unwrap(),
        &|r| {
            r.str("request_id") == Some(HTTP)
                && r.event() == "assistant_output"
                && nanos(r) >= lo_ns
        },
    );
    check(
        "a conjunction that excludes everything but one",
        Filter::new()
            .request_id(TUTORIAL_1)
            .event_type("final_result"),
        &|r| r.str("request_id") == Some(TUTORIAL_1) && r.event() == "final_result",
    );
    assert_eq!(checked, 13);

    // Conditions that nothing satisfies return nothing.
    assert!(
        seqs_of(
            &Filter::new().request_id(TUTORIAL_1).agent("triage"),
            &trail
        )
        .is_empty()
    );
    assert!(seqs_of(&Filter::new().request_id("no-such-request"), &trail).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_names_its_file_and_line_and_keeps_its_exact_bytes() {
    let trail = standard_trail(Some(6 * 1024)).await;
    let raw = read_independently(trail.dir.path());
    let entries: Vec<_> = Source::open(&[&trail.path], SourceOptions::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(entries.len(), raw.len());
    for (e, r) in entries.iter().zip(&raw) {
        assert_eq!(&*e.file, r.file.as_path());
        assert_eq!(e.line, r.line);
        assert_eq!(
            e.bytes,
            r.text.as_bytes(),
            "exact line at {}:{}",
            r.file.display(),
            r.line
        );
        assert_eq!(serde_json::to_value(&e.record).unwrap(), r.value);
    }

    // A rotated file named on its own, plus the active file (as a shell
    // glob gives them): each file is read once, in chain order.
    let rotated = raw[0].file.clone();
    let twice = load(&[&rotated, &trail.path], SourceOptions::default(), |_| true).unwrap();
    let seqs: Vec<u64> = twice.entries.iter().map(|e| e.record.seq).collect();
    let first_file: Vec<u64> = raw
        .iter()
        .filter(|r| r.file == rotated)
        .map(RawRecord::seq)
        .collect();
    let mut want = first_file.clone();
    want.extend(raw.iter().filter(|r| r.file != rotated).map(RawRecord::seq));
    assert_eq!(seqs, want);

    // Without rotated files, only the active file.
    let active = load(
        &[&trail.path],
        SourceOptions {
            include_rotated: false,
        },
        |_| true,
    )
    .unwrap();
    let want: Vec<u64> = raw
        .iter()
        .filter(|r| r.file == trail.path)
        .map(RawRecord::seq)
        .collect();
    assert_eq!(
        active
            .entries
            .iter()
            .map(|e| e.record.seq)
            .collect::<Vec<_>>(),
        want
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_line_is_reported_with_its_place_and_reading_goes_on() {
    let trail = standard_trail(None).await;
    let raw = read_independently(trail.dir.path());
    // Damage line 3 in place, keep the rest.
    let mut lines: Vec<String> = raw.iter().map(|r| r.text.clone()).collect();
    lines[2] = "{\"v\":1,\"seq\":3, this is not JSON".into();
    std::fs::write(&trail.path, lines.join("\n") + "\n").unwrap();
    let loaded = load(&[&trail.path], SourceOptions::default(), |_| true).unwrap();
    assert_eq!(loaded.entries.len(), raw.len() - 1);
    assert_eq!(loaded.bad_lines.len(), 1);
    let msg = loaded.bad_lines[0].to_string();
    assert!(
        msg.starts_with(&format!("{}:3: not a valid record", trail.path.display())),
        "{msg}"
    );

    // Bad inputs are typed errors naming what is wrong.
    let err = Filter::new().since("last tuesday").unwrap_err();
    assert!(
        err.to_string()
            .contains("--since `last tuesday` is not an RFC 3339 time"),
        "{err}"
    );
    let err = Filter::new()
        .since("2026-11-26T00:00:00Z")
        .unwrap()
        .until("2026-11-25T00:00:00Z")
        .unwrap_err();
    assert!(err.to_string().contains("is after --until"), "{err}");
    let missing = trail.dir.path().join("nope.jsonl");
    let err = Source::open(&[&missing], SourceOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("nope.jsonl: no such audit log"),
        "{err}"
    );
    let err = Source::open(&[trail.dir.path()], SourceOptions::default()).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}
