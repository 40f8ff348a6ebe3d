//! Stats over a trail written by the real runtime equal the figures this
//! test computes itself from the raw lines.

mod common;

use std::collections::BTreeMap;

use agent_audit_review::{Source, SourceOptions, Stats, StatsBuilder};
use common::*;
use serde_json::Value;

fn stats_of(paths: &[&std::path::Path]) -> Stats {
    let mut builder = StatsBuilder::new();
    for item in Source::open(paths, SourceOptions::default()).unwrap() {
        match item {
            Ok(e) => builder.add(&e),
            Err(e) => builder.add_unreadable(&e),
        }
    }
    builder.finish()
}

fn count_by(
    raw: &[RawRecord],
    key: impl Fn(&RawRecord) -> Option<String>,
) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in raw {
        if let Some(k) = key(r) {
            *m.entry(k).or_insert(0) += 1;
        }
    }
    m
}

/// A model's figures as this test computes them.
#[derive(Default)]
struct Model {
    calls: u64,
    errors: u64,
    latencies: Vec<f64>,
    prompt: u64,
    completion: u64,
    total: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_equal_figures_computed_independently() {
    let trail = standard_trail(Some(8 * 1024)).await;
    let raw = read_independently(trail.dir.path());
    let stats = stats_of(&[&trail.path]);

    assert_eq!(stats.records, raw.len() as u64);
    let requests: std::collections::BTreeSet<_> =
        raw.iter().filter_map(|r| r.str("request_id")).collect();
    assert_eq!(stats.requests, requests.len() as u64);
    assert_eq!(stats.requests, 5);
    assert_eq!(stats.first_ts.as_deref(), raw.first().unwrap().str("ts"));
    assert_eq!(stats.last_ts.as_deref(), raw.last().unwrap().str("ts"));

    assert_eq!(
        stats.by_event_type,
        count_by(&raw, |r| Some(r.event().to_string()))
    );
    assert_eq!(
        stats.by_agent,
        count_by(&raw, |r| Some(r.str("agent").unwrap_or("-").to_string()))
    );
    let by_tool = count_by(&raw, |r| {
        (r.event() == "tool_call").then(|| r.payload()["tool"].as_str().unwrap().to_string())
    });
    assert_eq!(stats.by_tool, by_tool);
    assert_eq!(by_tool["get_account_balance"], 5);
    assert_eq!(by_tool["transfer_to_accounts"], 1);

    // Models: answered calls, errors, latency percentiles, token totals.
    let mut models: BTreeMap<String, Model> = BTreeMap::new();
    for r in &raw {
        let p = r.payload();
        match r.event() {
            "assistant_output" => {
                let m = models
                    .entry(p["model"].as_str().unwrap().into())
                    .or_default();
                m.calls += 1;
                m.latencies.push(p["latency_ms"].as_f64().unwrap());
                if let Some(u) = p.get("usage").filter(|u| !u.is_null()) {
                    m.prompt += u["prompt_tokens"].as_u64().unwrap();
                    m.completion += u["completion_tokens"].as_u64().unwrap();
                    m.total += u["total_tokens"].as_u64().unwrap();
                }
            }
            "model_error" => {
                models
                    .entry(p["model"].as_str().unwrap().into())
                    .or_default()
                    .errors += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        stats.models.keys().collect::<Vec<_>>(),
        models.keys().collect::<Vec<_>>()
    );
    assert!(models.contains_key("offline") && models.contains_key("loopback-gpt"));
    for (name, m) in &models {
        let Model {
            calls,
            errors,
            latencies,
            prompt,
            completion,
            total,
        } = m;
        let s = &stats.models[name];
        assert_eq!(s.calls, *calls, "{name}");
        assert_eq!(s.errors, *errors, "{name}");
        assert_eq!(s.latency_ms.count, latencies.len() as u64, "{name}");
        assert_eq!(s.latency_ms.p50, nearest_rank(latencies, 50.0), "{name}");
        assert_eq!(s.latency_ms.p95, nearest_rank(latencies, 95.0), "{name}");
        assert_eq!(s.latency_ms.p99, nearest_rank(latencies, 99.0), "{name}");
        assert_eq!(
            s.latency_ms.max,
            latencies.iter().copied().reduce(f64::max),
            "{name}"
        );
        assert_eq!(
            (s.prompt_tokens, s.completion_tokens, s.total_tokens),
            (*prompt, *completion, *total),
            "{name}"
        );
    }
    // What the loopback server sent: usage (120,18), (160,21), (210,12).
    let http = &stats.models["loopback-gpt"];
    assert_eq!((http.calls, http.errors), (3, 1));
    assert_eq!(
        (
            http.prompt_tokens,
            http.completion_tokens,
            http.total_tokens
        ),
        (490, 51, 541)
    );
    assert_eq!(http.error_rate, 0.25);

    // Tools: calls, results, errors, error rate, durations.
    let mut tools: BTreeMap<String, (u64, u64, u64, Vec<f64>)> = BTreeMap::new();
    for r in &raw {
        let p = r.payload();
        let name = || p["tool"].as_str().unwrap().to_string();
        match r.event() {
            "tool_call" => tools.entry(name()).or_default().0 += 1,
            "tool_result" | "tool_error" => {
                let t = tools.entry(name()).or_default();
                if r.event() == "tool_result" {
                    t.1 += 1;
                } else {
                    t.2 += 1;
                }
                t.3.push(p["duration_ms"].as_f64().unwrap());
            }
            _ => {}
        }
    }
    assert_eq!(stats.tools.len(), tools.len());
    for (name, (calls, results, errors, durations)) in &tools {
        let s = &stats.tools[name];
        assert_eq!(
            (s.calls, s.results, s.errors, s.unfinished),
            (*calls, *results, *errors, 0),
            "{name}"
        );
        assert_eq!(
            s.error_rate,
            *errors as f64 / (*results + *errors) as f64,
            "{name}"
        );
        assert_eq!(s.duration_ms.p50, nearest_rank(durations, 50.0), "{name}");
        assert_eq!(s.duration_ms.p95, nearest_rank(durations, 95.0), "{name}");
        assert_eq!(s.duration_ms.p99, nearest_rank(durations, 99.0), "{name}");
        let total: f64 = durations.iter().sum();
        assert!((s.duration_ms.total - total).abs() < 1e-9, "{name}");
    }
    assert_eq!(stats.tools["get_account_balance"].errors, 1);
    assert_eq!(stats.tools["get_account_balance"].error_rate, 0.2);

    // Errors found, and nothing lost.
    let errors = count_by(&raw, |r| {
        r.event().ends_with("_error").then(|| r.event().to_string())
    });
    assert_eq!(stats.errors_by_type, errors);
    assert_eq!(errors.get("tool_error"), Some(&1));
    assert_eq!(errors.get("model_error"), Some(&1));
    let listed: Vec<u64> = stats.errors.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = raw
        .iter()
        .filter(|r| r.event().ends_with("_error"))
        .map(RawRecord::seq)
        .collect();
    assert_eq!(listed, want);
    for e in &stats.errors {
        let r = raw.iter().find(|r| r.seq() == e.seq).unwrap();
        assert_eq!(
            (e.file.as_str(), e.line),
            (r.file.to_str().unwrap(), r.line)
        );
    }
    assert!(stats.seq_gaps.is_empty());
    assert_eq!(
        (
            stats.seq_out_of_order,
            stats.audit_gaps,
            stats.unreadable_lines
        ),
        (0, 0, 0)
    );

    // The text form names every figure's row; JSON carries the same figures.
    let text = stats.render_text();
    for needle in [
        "loopback-gpt",
        "offline",
        "get_account_balance",
        "20.0%",
        "p95",
        "541",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let json: Value = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["models"]["loopback-gpt"]["total_tokens"], 541);
    assert_eq!(json["tools"]["get_account_balance"]["calls"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_lines_and_damaged_lines_are_found() {
    let trail = standard_trail(None).await;
    let raw = read_independently(trail.dir.path());
    // Cut records 10..=12 and 20 out (as an attacker or a lost write would),
    // and damage the last line.
    let mut kept: Vec<String> = raw
        .iter()
        .filter(|r| !(10..=12).contains(&r.seq()) && r.seq() != 20)
        .map(|r| r.text.clone())
        .collect();
    let last = kept.len() - 1;
    kept[last] = "garbage".to_string();
    std::fs::write(&trail.path, kept.join("\n") + "\n").unwrap();

    let stats = stats_of(&[&trail.path]);
    let gaps: Vec<(u64, u64, u64)> = stats
        .seq_gaps
        .iter()
        .map(|g| (g.after, g.next, g.missing))
        .collect();
    assert_eq!(gaps, [(9, 13, 3), (19, 21, 1)]);
    assert_eq!((stats.seq_gap_count, stats.seq_missing), (2, 4));
    assert_eq!(stats.seq_gaps[0].line, 10, "the line after the hole");
    assert_eq!(stats.records, raw.len() as u64 - 5);
    assert_eq!(stats.unreadable_lines, 1);
    assert!(
        stats.unreadable[0].starts_with(&format!("{}:{}:", trail.path.display(), last + 1)),
        "{}",
        stats.unreadable[0]
    );
    let text = stats.render_text();
    assert!(text.contains("2 seq gap(s), 4 seq(s) missing"), "{text}");
    assert!(text.contains("seq gap: 3 missing after seq 9"), "{text}");
    assert!(text.contains("1 unreadable line(s)"), "{text}");
}
