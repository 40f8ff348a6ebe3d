//! Emit throughput through `Auditor` -> `Dispatcher` -> `MemorySink` with
//! the default redaction rules, beside the same run without a filter
//! (issue 5's goal: redaction costs at most 30 % of throughput).
//!
//! `cargo bench -p agent-audit-redact --bench redact_throughput [-- RECORDS]`
//!
//! Also shown: a filter that changes nothing but cannot say so from the
//! text (what core's `Value` round trip costs by itself, i.e. every filter
//! before `PayloadFilter::may_apply`), every detector on, and the cost of
//! `Redactor::redact` and `Redactor::may_redact` alone per payload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_audit_core::{
    AckLevel, Auditor, Dispatcher, EventType, MemorySink, PayloadFilter, SinkOptions,
};
use agent_audit_redact::{RedactionConfig, Redactor};
use serde_json::{Value, json};

/// The tutorial's records, about 400 bytes a line.
fn payloads() -> Vec<(EventType, Value)> {
    vec![
        (
            EventType::UserRequest,
            json!({"text": "What is the balance of my account 12345? I need it for the rent transfer due tomorrow morning."}),
        ),
        (
            EventType::AssistantInput,
            json!({"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "You are a helpful bank assistant. Use tools to look up balances."},
                {"role": "user", "content": "What is the balance of my account 12345?"}
            ]}),
        ),
        (
            EventType::AssistantOutput,
            json!({"tool_calls": [{"id": "call_7f3a", "name": "get_account_balance", "arguments": {"account_id": "12345"}}],
                   "usage": {"prompt_tokens": 112, "completion_tokens": 18, "total_tokens": 130}}),
        ),
        (
            EventType::ToolCall,
            json!({"tool": "get_account_balance", "call_id": "call_7f3a", "arguments": {"account_id": "12345"},
                   "description": "Look up the current balance of a customer account by its five digit id."}),
        ),
        (
            EventType::ToolResult,
            json!({"tool": "get_account_balance", "call_id": "call_7f3a", "duration_ms": 12,
                   "result": {"account_id": "12345", "balance": "1024.50", "currency": "EUR", "as_of": "2026-11-25T10:00:00Z"}}),
        ),
        (
            EventType::FinalResult,
            json!({"answer": "The balance of account 12345 is 1,024.50 EUR as of this morning. Anything else I can help with?",
                   "turns": 2}),
        ),
    ]
}

/// Applies nothing, and keeps the default `may_apply` (always `true`).
struct RoundTripOnly;

impl PayloadFilter for RoundTripOnly {
    fn apply(&self, _payload: &mut Value) -> Vec<String> {
        Vec::new()
    }
}

/// CPU time of every live thread of this process, in nanoseconds: less
/// disturbed than wall time by other work on a shared machine.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Records per second (wall clock) and CPU nanoseconds per record.
fn run(
    records: usize,
    filter: Option<Arc<dyn PayloadFilter>>,
    rt: &tokio::runtime::Runtime,
) -> (f64, f64) {
    rt.block_on(async {
        let memory = MemorySink::new();
        let mut builder =
            Dispatcher::builder().sink(SinkOptions::new("memory").queue(8192), memory.clone());
        if let Some(f) = filter {
            builder = builder.filter(f);
        }
        let d = builder.start().await.expect("dispatcher starts");
        let a = Auditor::new(d.clone())
            .for_request(Some("bench"))
            .with_agent("assistant");
        let payloads = payloads();
        let cpu = cpu_ns();
        let start = Instant::now();
        let mut last = 0;
        for i in 0..records {
            let (t, p) = &payloads[i % payloads.len()];
            last = a.emit(t.clone(), p).await.expect("emit").seq;
        }
        d.wait(last, AckLevel::Durable).await.expect("delivered");
        let secs = start.elapsed().as_secs_f64();
        // Before shutdown, while the sink's worker thread still counts.
        let cpu = cpu_ns().saturating_sub(cpu) as f64 / records as f64;
        let report = d.shutdown(Duration::from_secs(30)).await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(memory.len(), records, "records lost");
        (records as f64 / secs, cpu)
    })
}

fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // No `hash` rule, so no key is needed.
    let default: Arc<dyn PayloadFilter> = Arc::new(
        Redactor::from_config(&RedactionConfig::default()).expect("default rules compile"),
    );
    let round_trip: Arc<dyn PayloadFilter> = Arc::new(RoundTripOnly);
    let all: Arc<dyn PayloadFilter> = Arc::new(
        Redactor::from_config(&RedactionConfig::all_detectors()).expect("all detectors compile"),
    );

    // Warm up, then alternate the variants and keep each one's best round,
    // so another process's burst on this shared machine hurts none of them
    // more than the others.
    run(records / 10, None, &rt);
    let variants: [(&str, Option<Arc<dyn PayloadFilter>>); 4] = [
        ("no filter", None),
        ("Value round trip only", Some(round_trip)),
        ("default rules", Some(default.clone())),
        ("every detector", Some(all.clone())),
    ];
    let rounds = 5;
    let mut best = [0f64; 4];
    let mut cpu = [f64::MAX; 4];
    for _round in 0..rounds {
        for (i, (_, f)) in variants.iter().enumerate() {
            let (rate, ns) = run(records, f.clone(), &rt);
            best[i] = best[i].max(rate);
            cpu[i] = cpu[i].min(ns);
        }
    }
    println!(
        "emit throughput, {records} tutorial records, Auditor -> Dispatcher -> MemorySink (best of {rounds} rounds):"
    );
    println!(
        "  {:<40} {:>10} {:>7}   {:>13} {:>7}",
        "", "records/s", "ratio", "CPU ns/record", "ratio"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "  {name:<40} {:>10.0} {:>6.2}x   {:>13.0} {:>6.2}x",
            best[i],
            best[i] / best[0],
            cpu[i],
            cpu[0] / cpu[i]
        );
    }

    // The redactor alone, per payload.
    let payloads = payloads();
    for (name, f) in [("default rules", &default), ("every detector", &all)] {
        let n = 200_000;
        let mut copies: Vec<Value> = (0..n)
            .map(|i| payloads[i % payloads.len()].1.clone())
            .collect();
        let start = Instant::now();
        let mut fired = 0;
        for p in &mut copies {
            fired += f.apply(p).len();
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "  Redactor::redact alone, {name:<16} {ns:>8.0} ns/payload ({fired} rule firings)"
        );
        let texts: Vec<String> = payloads.iter().map(|(_, p)| p.to_string()).collect();
        let start = Instant::now();
        let mut maybe = 0;
        for i in 0..n {
            maybe += usize::from(f.may_apply(&texts[i % texts.len()]));
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!("  Redactor::may_redact,    {name:<16} {ns:>8.0} ns/payload ({maybe} said maybe)");
    }
}
