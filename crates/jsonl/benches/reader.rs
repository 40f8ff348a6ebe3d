//! How fast the streaming [`Reader`] reads a log, beside the bare parse it
//! is built on.
//!
//! `cargo bench -p agent-audit-jsonl --bench reader [-- --records N --rounds R]`
//! (defaults 1,000,000 records, 5 rounds).
//!
//! The log is written once by the real sink (`Auditor` -> `Dispatcher` ->
//! `JsonlSink`, `fsync = "never"`) with tutorial-sized `tool_call` records,
//! then read, each round, by:
//!
//! - `serde`: `BufRead::read_until` per line and `serde_json::from_slice`
//!   into `StoredRecord`, nothing else (the floor: what the reader adds on
//!   top is line numbers, offsets, torn-line handling and schema checks);
//! - `reader`: [`Reader`] over the file, every line a checked record.
//!
//! The median round of each is reported, in records and MB per second.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use agent_audit_core::{Auditor, Dispatcher, EventType, SinkOptions, StoredRecord};
use agent_audit_jsonl::{FsyncPolicy, JsonlOptions, JsonlSink, Reader};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
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

fn write_log(path: &Path, n: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sink = JsonlSink::new(JsonlOptions::new(path).fsync(FsyncPolicy::Never)).expect("sink");
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("jsonl").queue(65_536), sink)
            .start()
            .await
            .expect("dispatcher");
        let a = Auditor::new(d.clone())
            .for_request(Some("req-0001"))
            .with_agent("user_proxy");
        for i in 0..n {
            a.emit(EventType::ToolCall, &tool_call(i))
                .await
                .expect("emit");
        }
        assert!(d.shutdown(Duration::from_secs(120)).await.is_clean());
    });
}

fn serde_only(path: &Path) -> u64 {
    let mut r = BufReader::with_capacity(256 << 10, std::fs::File::open(path).expect("open"));
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).expect("read") == 0 {
            break;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let rec: StoredRecord = serde_json::from_slice(body).expect("a record");
        n += u64::from(rec.seq > 0);
    }
    n
}

fn reader(path: &Path) -> u64 {
    let mut n = 0;
    for line in Reader::open(path).expect("open") {
        let line = line.unwrap_or_else(|e| panic!("{e}"));
        n += u64::from(line.record.seq > 0);
    }
    n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too:
    // keep that run short.
    let quick = std::env::args().all(|a| a != "--bench");
    let n = arg("--records", if quick { 2_000 } else { 1_000_000 });
    let rounds = arg("--rounds", if quick { 1 } else { 5 }) as usize;
    let dir = std::env::temp_dir().join(format!("agent-audit-reader-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("audit-log.jsonl");
    write_log(&path, n);
    let bytes = std::fs::metadata(&path).expect("log").len();
    type Scenario = (&'static str, fn(&Path) -> u64);
    let scenarios: [Scenario; 2] = [("serde", serde_only), ("reader", reader)];
    let mut times = vec![Vec::new(); scenarios.len()];
    for round in 0..rounds {
        for k in 0..scenarios.len() {
            let i = (k + round) % scenarios.len();
            let t = Instant::now();
            let read = (scenarios[i].1)(&path);
            times[i].push(t.elapsed());
            assert_eq!(read, n, "{} read {read} of {n} records", scenarios[i].0);
        }
    }
    println!(
        "{n} records, {:.1} MB ({:.0} bytes a line), median of {rounds} round(s):",
        bytes as f64 / 1e6,
        bytes as f64 / n as f64
    );
    let floor = median(times[0].clone());
    for (i, (name, _)) in scenarios.iter().enumerate() {
        let t = median(times[i].clone());
        println!(
            "  {name:<7} {:>8.3} s  {:>10.0} records/s  {:>7.1} MB/s  {:.2}x serde",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64(),
            bytes as f64 / 1e6 / t.as_secs_f64(),
            floor.as_secs_f64() / t.as_secs_f64()
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
