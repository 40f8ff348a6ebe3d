//! The timeline's tree matches the spans the runtime recorded.

mod common;

use std::collections::{BTreeSet, HashMap};

use agent_audit_review::{SourceOptions, StepKind, Timeline, load};
use common::*;

/// Checks the tree against the raw records of `request`, and returns the
/// tree in preorder as `depth agent` lines.
fn check_request(trail: &Trail, raw: &[RawRecord], request: &str) -> Vec<String> {
    let loaded = load(&[&trail.path], SourceOptions::default(), |_| true).unwrap();
    let timeline = Timeline::build(request, &loaded.entries).unwrap();
    let mine: Vec<&RawRecord> = raw
        .iter()
        .filter(|r| r.str("request_id") == Some(request))
        .collect();
    assert_eq!(timeline.records, mine.len());

    // One node per distinct span id, holding exactly that span's records.
    let spans: BTreeSet<&str> = mine.iter().map(|r| r.str("span_id").unwrap()).collect();
    assert_eq!(timeline.nodes.len(), spans.len(), "{request}");
    let mut seen = BTreeSet::new();
    for node in &timeline.nodes {
        let id = node.span_id.as_deref().unwrap();
        let want: Vec<u64> = mine
            .iter()
            .filter(|r| r.str("span_id") == Some(id))
            .map(|r| r.seq())
            .collect();
        let mut got: Vec<u64> = node.steps.iter().flat_map(|s| s.seqs.clone()).collect();
        got.sort();
        // A step's answer sits in the span of its call in this runtime.
        assert_eq!(got, want, "{request}: span {id}");
        seen.extend(got);
        // Parent link as recorded.
        let recorded_parent = mine
            .iter()
            .find(|r| r.str("span_id") == Some(id))
            .unwrap()
            .str("parent_span_id");
        match node.parent {
            Some(p) => {
                assert_eq!(
                    timeline.nodes[p].span_id.as_deref(),
                    recorded_parent,
                    "{request}"
                );
                assert!(
                    timeline.nodes[p].children.contains(
                        &timeline
                            .nodes
                            .iter()
                            .position(|n| n.span_id.as_deref() == Some(id))
                            .unwrap()
                    )
                );
                assert_eq!(node.depth, timeline.nodes[p].depth + 1);
                assert!(node.end_ns <= timeline.nodes[p].end_ns);
            }
            None => {
                // A root's parent is a span with no record in the request
                // (the request's own scope).
                assert!(
                    recorded_parent.is_none_or(|p| !spans.contains(p)),
                    "{request}: {id} should have a parent"
                );
                assert_eq!(node.depth, 0);
            }
        }
    }
    // Every record in exactly one step.
    let all: BTreeSet<u64> = mine.iter().map(|r| r.seq()).collect();
    assert_eq!(seen, all, "{request}");
    assert_eq!(timeline.roots.len(), 1, "{request}: one root");

    // Steps pair records as the runtime wrote them.
    let by_seq: HashMap<u64, &RawRecord> = mine.iter().map(|r| (r.seq(), *r)).collect();
    for node in &timeline.nodes {
        for step in &node.steps {
            let events: Vec<&str> = step.seqs.iter().map(|s| by_seq[s].event()).collect();
            match step.kind {
                StepKind::ModelCall => {
                    assert_eq!(events[0], "assistant_input", "{request}");
                    assert!(matches!(events[1], "assistant_output" | "model_error"));
                    let answer = by_seq[&step.seqs[1]].payload();
                    assert_eq!(step.duration_ms, answer["latency_ms"].as_f64());
                    assert_eq!(step.error, events[1] == "model_error");
                }
                StepKind::ToolCall => {
                    assert_eq!(events[0], "tool_call", "{request}");
                    assert!(matches!(events[1], "tool_result" | "tool_error"));
                    let (call, answer) = (
                        by_seq[&step.seqs[0]].payload(),
                        by_seq[&step.seqs[1]].payload(),
                    );
                    assert_eq!(call["call_id"], answer["call_id"]);
                    assert_eq!(step.duration_ms, answer["duration_ms"].as_f64());
                    assert_eq!(
                        step.label,
                        format!("tool {}", call["tool"].as_str().unwrap())
                    );
                }
                StepKind::Event => {
                    assert_eq!(step.seqs.len(), 1);
                    assert!(!matches!(
                        events[0],
                        "assistant_input" | "assistant_output" | "tool_call" | "tool_result"
                    ));
                }
            }
        }
    }

    // The text form draws every span and every step (whose seqs cover
    // every record, checked above).
    let text = timeline.render_text();
    for node in &timeline.nodes {
        for step in &node.steps {
            let label = format!("{} {}", step.seq_label(), step.label);
            assert!(
                text.contains(&label),
                "{request}: {label} missing from\n{text}"
            );
        }
    }
    for id in &spans {
        assert!(text.contains(id), "{request}: span {id} missing");
    }

    let mut preorder = Vec::new();
    let mut stack: Vec<usize> = timeline.roots.iter().rev().copied().collect();
    while let Some(n) = stack.pop() {
        let node = &timeline.nodes[n];
        preorder.push(format!("{} {}", node.depth, node.agent.clone().unwrap()));
        stack.extend(node.children.iter().rev().copied());
    }
    preorder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_matches_the_recorded_spans() {
    let trail = standard_trail(Some(8 * 1024)).await;
    let raw = read_independently(trail.dir.path());

    // The tutorial: the conversation's run (the user's request and the
    // end) with the model calls and the tool run under it.
    assert_eq!(
        check_request(&trail, &raw, TUTORIAL_1),
        ["0 user_proxy", "1 assistant", "1 user_proxy", "1 assistant"]
    );
    // Triage hands over in a tool step of its run; the specialist's run
    // (which holds the end) is a child of the triage's, its model calls
    // and the proxy's tool run under it.
    assert_eq!(
        check_request(&trail, &raw, MULTI),
        [
            "0 user_proxy",
            "1 triage",
            "1 triage",
            "1 user_proxy",
            "2 accounts",
            "2 user_proxy",
            "2 accounts"
        ]
    );
    // The HTTP model: a failing tool call, a good one, an answer.
    assert_eq!(
        check_request(&trail, &raw, HTTP),
        [
            "0 user_proxy",
            "1 assistant",
            "1 user_proxy",
            "1 assistant",
            "1 user_proxy",
            "1 assistant"
        ]
    );
    // The 401: the model call is an error step and the request stops there.
    assert_eq!(
        check_request(&trail, &raw, UNAUTHORIZED),
        ["0 user_proxy", "1 assistant"]
    );
    let loaded = load(&[&trail.path], SourceOptions::default(), |_| true).unwrap();
    let t = Timeline::build(UNAUTHORIZED, &loaded.entries).unwrap();
    let turn = &t.nodes[t.nodes[t.roots[0]].children[0]];
    assert!(turn.steps[0].error && turn.steps[0].kind == StepKind::ModelCall);
    assert!(t.render_text().contains("[error]"));

    // An unknown request is a clear error naming the files read.
    let err = Timeline::build("no-such-request", &loaded.entries).unwrap_err();
    assert!(
        err.to_string()
            .contains("request `no-such-request` has no records in"),
        "{err}"
    );
    assert!(err.to_string().contains("audit-log.jsonl"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_parent_cycle_still_yields_a_tree() {
    let trail = standard_trail(None).await;
    let raw = read_independently(trail.dir.path());
    // Make the root span of the tutorial request a child of its deepest
    // span: a cycle only a forged file can hold.
    let mine: Vec<&RawRecord> = raw
        .iter()
        .filter(|r| r.str("request_id") == Some(TUTORIAL_1))
        .collect();
    let root_span = mine[0].str("span_id").unwrap().to_string();
    let last_span = mine.last().unwrap().str("span_id").unwrap().to_string();
    let lines: Vec<String> = raw
        .iter()
        .map(|r| {
            if r.str("span_id") == Some(root_span.as_str()) {
                let mut v = r.value.clone();
                v["parent_span_id"] = serde_json::Value::String(last_span.clone());
                v.to_string()
            } else {
                r.text.clone()
            }
        })
        .collect();
    std::fs::write(&trail.path, lines.join("\n") + "\n").unwrap();
    let loaded = load(&[&trail.path], SourceOptions::default(), |_| true).unwrap();
    let t = Timeline::build(TUTORIAL_1, &loaded.entries).unwrap();
    assert_eq!(t.roots.len(), 1);
    assert_eq!(
        t.nodes[t.roots[0]].span_id.as_deref(),
        Some(root_span.as_str())
    );
    assert_eq!(
        t.rows().iter().filter(|r| r.step.is_none()).count(),
        t.nodes.len()
    );
}
