//! The default redaction's cost per record on its own, single-threaded and
//! deterministic, for instruction counts under callgrind (wall time on a
//! shared 2-core machine varies by tens of percent; instruction counts
//! repeat to a few parts per million).
//!
//! Each record does what core's `Auditor` does with a filter: run
//! `may_apply` on the payload's compact JSON text and, when it says maybe,
//! build the `Value`, `apply` the filter and serialise again.
//!
//! ```sh
//! cargo bench -p agent-audit-redact --bench redact_cost --no-run
//! B=$(ls -t target/release/deps/redact_cost-* | grep -v '\.d$' | head -1)
//! for n in 0 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n $B tutorial $n 2>&1 | grep 'refs'
//! done
//! # instructions per record = (refs(20000) - refs(0)) / 20000
//! ```
//!
//! Sets: `tutorial` (the six tutorial records, nothing to redact),
//! `custom` (the same under the defaults plus five custom field names, as
//! `docs/redaction.md`'s example adds: the pre-check's automaton then
//! needs its 32-bit table),
//! `cards` (100 KB strings of one-digit groups, every detector on: the
//! card scanner's worst case; run it with a few records, not 20000),
//! `mixed` (those plus non-ASCII prose, a percent-encoded URL, a
//! secret-named field and a key in text: the slow paths); `none` and
//! `none-mixed` are those sets with no filter at all: the JSON work alone,
//! to subtract.

use agent_audit_core::PayloadFilter;
use agent_audit_redact::{RedactionConfig, Redactor};
use serde_json::{Value, json};

fn tutorial() -> Vec<Value> {
    vec![
        json!({"text": "What is the balance of my account 12345? I need it for the rent transfer due tomorrow morning."}),
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "You are a helpful bank assistant. Use tools to look up balances."},
            {"role": "user", "content": "What is the balance of my account 12345?"}
        ]}),
        json!({"tool_calls": [{"id": "call_7f3a", "name": "get_account_balance", "arguments": {"account_id": "12345"}}],
               "usage": {"prompt_tokens": 112, "completion_tokens": 18, "total_tokens": 130}}),
        json!({"tool": "get_account_balance", "call_id": "call_7f3a", "arguments": {"account_id": "12345"},
               "description": "Look up the current balance of a customer account by its five digit id."}),
        json!({"tool": "get_account_balance", "call_id": "call_7f3a", "duration_ms": 12,
               "result": {"account_id": "12345", "balance": "1024.50", "currency": "EUR", "as_of": "2026-11-25T10:00:00Z"}}),
        json!({"answer": "The balance of account 12345 is 1,024.50 EUR as of this morning. Anything else I can help with?",
               "turns": 2}),
    ]
}

fn mixed() -> Vec<Value> {
    let mut v = tutorial();
    v.extend([
        json!({"text": "Der Kontostand für Konto 12345 beträgt 1.024,50 € — möchten Sie eine Überweisung tätigen?"}),
        json!({"answer": "口座 12345 の残高は 1,024.50 ユーロです。ほかにご用件はありますか？", "turns": 2}),
        json!({"tool": "fetch", "arguments": {"url": "https://example.com/search?q=balance%20of%20account&lang=en"}}),
        json!({"tool": "login", "arguments": {"user": "app", "client_secret": "s3cr3t-value"}}),
        json!({"tool_result": "export OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"}),
    ]);
    v
}

/// Digit groups a card scanner must not slow down on: 100 KB of
/// `1-1-1-…` and of `1 1 1 …`, with every detector on.
fn cards() -> Vec<Value> {
    vec![
        json!({"text": "1-".repeat(50_000)}),
        json!({"text": "1 ".repeat(50_000)}),
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let set = args.next().unwrap_or_else(|| "tutorial".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let (payloads, filtered) = match set.as_str() {
        "cards" => (cards(), true),
        "mixed" => (mixed(), true),
        "none-mixed" => (mixed(), false),
        "none" => (tutorial(), false),
        _ => (tutorial(), true),
    };
    let config = match set.as_str() {
        "cards" => RedactionConfig::all_detectors(),
        "custom" => RedactionConfig {
            rules: vec![agent_audit_redact::RuleConfig {
                name: "customer".into(),
                pattern: None,
                fields: Some(
                    [
                        "customer_name",
                        "address",
                        "phone_number",
                        "date_of_birth",
                        "tax_id",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                action: None,
            }],
            ..RedactionConfig::default()
        },
        _ => RedactionConfig::default(),
    };
    let redactor = Redactor::from_config(&config).expect("defaults compile");
    let filter: Option<&dyn PayloadFilter> = filtered.then_some(&redactor as _);
    let mut bytes = 0usize;
    let mut fired = 0usize;
    for i in 0..n {
        let p = &payloads[i % payloads.len()];
        let text = serde_json::to_string(p).expect("serialises");
        let out = match filter {
            Some(f) if f.may_apply(&text) => {
                let mut value: Value = serde_json::from_str(&text).expect("parses");
                fired += f.apply(&mut value).len();
                serde_json::to_string(&value).expect("serialises")
            }
            _ => text,
        };
        bytes += out.len();
    }
    println!("{set}: {n} records, {bytes} bytes out, {fired} rule firings");
}
