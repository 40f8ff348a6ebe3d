//! What integrity costs: throughput with the keyed (HMAC-SHA256) chain and
//! with signed checkpoints, beside the plain SHA-256 chain.
//!
//! `cargo bench -p agent-audit-jsonl --bench integrity [-- --records N --rounds R]`
//! (defaults 200,000 records, 5 rounds).
//!
//! Each round runs every scenario once, in turn (starting with a different
//! one each round), so background load on a shared machine hits them
//! alike; the median round of each is reported.
//! A scenario pushes N tutorial-sized `tool_call` records through
//! `Auditor` -> `Dispatcher` -> `JsonlSink` with `fsync = "never"` (so the
//! chain's CPU cost is not hidden behind disk syncs) and times from the
//! first emit until the last record is in the file:
//!
//! - `plain`: SHA-256 chain (the default);
//! - `keyed`: HMAC-SHA256 chain (`[integrity] key_env`);
//! - `keyed+checkpoints`: HMAC chain and an Ed25519 checkpoint every 1000
//!   records (the default `checkpoint_every`).
//!
//! It then times `verify` over the written file, plain and keyed. The goal
//! is keyed >= 70 % of plain (at most 30 % slower).

use std::path::Path;
use std::time::{Duration, Instant};

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_jsonl::checkpoint::{CheckpointOptions, Checkpointer};
use agent_audit_jsonl::keys::Signer;
use agent_audit_jsonl::verify::{self, VerifyOptions};
use agent_audit_jsonl::{ChainKey, FsyncPolicy, JsonlOptions, JsonlSink};

const KEY: &[u8] = b"7f3a9c1e5b2d8f4a6c0e9b3d7a1f5c2e8b4d0a6f3c9e1b7d5a2f8c4e0b6d3a9f";

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Plain,
    Keyed,
    KeyedCheckpoints,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Plain => "plain",
            Scenario::Keyed => "keyed",
            Scenario::KeyedCheckpoints => "keyed+checkpoints",
        }
    }
}

fn tool_call(i: u64) -> serde_json::Value {
    serde_json::json!({
        "tool": "get_account_balance",
        "call_id": format!("call_{i:012}"),
        "arguments": {"account_id": "12345", "currency": "EUR"},
        "model": "gpt-4o-mini-2024-07-18",
        "step": 3,
        "reason": "user asked for the balance of account 12345",
    })
}

async fn write(path: &Path, n: u64, scenario: Scenario) -> Duration {
    let mut opts = JsonlOptions::new(path).fsync(FsyncPolicy::Never);
    if scenario != Scenario::Plain {
        opts = opts.chain_key(KEY);
    }
    let sink = JsonlSink::new(opts).expect("options");
    let head = sink.head_handle();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl"), sink)
        .start()
        .await
        .expect("start");
    let checkpointer = (scenario == Scenario::KeyedCheckpoints).then(|| {
        Checkpointer::start(
            Auditor::new(d.clone()),
            head,
            Signer::generate(),
            CheckpointOptions::default(),
        )
        .expect("checkpointer")
    });
    let a = Auditor::new(d.clone())
        .for_request(None)
        .with_agent("assistant");
    let start = Instant::now();
    let mut last = 0;
    for i in 0..n {
        last = a
            .emit(EventType::ToolCall, &tool_call(i))
            .await
            .expect("emit")
            .seq;
    }
    d.wait(last, AckLevel::Written).await.expect("wait");
    if let Some(c) = checkpointer {
        c.finish().await.expect("checkpoints");
    }
    let elapsed = start.elapsed();
    let report = d.shutdown(Duration::from_secs(60)).await;
    assert!(report.is_clean(), "{report}");
    elapsed
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = arg("--records", 200_000);
    let rounds = arg("--rounds", 5).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scenarios = [Scenario::Plain, Scenario::Keyed, Scenario::KeyedCheckpoints];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); scenarios.len()];
    let mut verify_rates = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Each round starts with another scenario, so none always runs
        // first (cold caches) or last.
        let start = round as usize % scenarios.len();
        for i in (0..scenarios.len()).map(|k| (k + start) % scenarios.len()) {
            let s = scenarios[i];
            let path = dir.path().join(format!("{}-{round}.jsonl", s.name()));
            let t = rt.block_on(write(&path, n, s));
            rates[i].push(n as f64 / t.as_secs_f64());
            if s != Scenario::KeyedCheckpoints {
                let options = VerifyOptions {
                    key: (s == Scenario::Keyed).then(|| ChainKey::new(KEY)),
                    ..VerifyOptions::default()
                };
                let start = Instant::now();
                let report = verify::verify(&[&path], &options, &mut |_| {}).expect("verify");
                let secs = start.elapsed().as_secs_f64();
                assert!(report.intact, "{report}");
                verify_rates[usize::from(s == Scenario::Keyed)].push(report.records as f64 / secs);
            }
            std::fs::remove_file(&path).expect("remove");
        }
    }
    println!("integrity bench: {n} records x {rounds} rounds, fsync = never, median round");
    let plain = median(&mut rates[0].clone());
    for (i, s) in scenarios.iter().enumerate() {
        let r = median(&mut rates[i]);
        println!(
            "  write {:<18} {:>10.0} records/s  ({:.1} % of plain)",
            s.name(),
            r,
            100.0 * r / plain
        );
    }
    // The chain alone, on one real line, to show the intrinsic cost of
    // HMAC over SHA-256 apart from everything else a write does.
    let line = serde_json::to_vec(
        &serde_json::json!({"v": 1, "seq": 1, "payload": tool_call(1), "prev": "0".repeat(64)}),
    )
    .expect("line");
    let mut chain_rates = [0.0f64; 2];
    for (k, rate) in chain_rates.iter_mut().enumerate() {
        let mut chain = if k == 0 {
            agent_audit_jsonl::chain::Chain::plain()
        } else {
            agent_audit_jsonl::chain::Chain::keyed(KEY)
        };
        let reps = 1_000_000u64;
        let start = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(chain.next(std::hint::black_box(&line)));
        }
        *rate = reps as f64 / start.elapsed().as_secs_f64();
    }
    println!(
        "  chain only, {}-byte line: plain {:.0} lines/s, keyed {:.0} lines/s ({:.1} % of plain)",
        line.len(),
        chain_rates[0],
        chain_rates[1],
        100.0 * chain_rates[1] / chain_rates[0]
    );
    let vp = median(&mut verify_rates[0]);
    let vk = median(&mut verify_rates[1]);
    println!("  verify plain             {vp:>10.0} records/s");
    println!(
        "  verify keyed             {vk:>10.0} records/s  ({:.1} % of plain)",
        100.0 * vk / vp
    );
}
