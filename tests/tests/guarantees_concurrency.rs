//! Guarantees under concurrency (docs/guarantees.md, "Ordering and
//! numbering"): 8 tasks x 100,000 emits through two sinks get unique,
//! contiguous seqs, and every sink holds each task's records in the order
//! the task emitted them; under `block` with a stalled sink, a shutdown
//! deadline ends everything: no deadlock, blocked emitters return.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use agent_audit::jsonl::{FsyncPolicy, JsonlOptions, JsonlSink};
use agent_audit::stdout::{StdoutFormat, StdoutOptions, StdoutSink};
use agent_audit::{Auditor, Dispatcher, EmitError, EventType, MemorySink, Overflow, SinkOptions};

const TASKS: u64 = 8;
const PER_TASK: u64 = 100_000;

#[derive(serde::Serialize)]
struct Step {
    t: u64,
    n: u64,
}

/// `{"v":2,"seq":<seq>,` ... `"payload":{"t":<t>,"n":<n>}` read from the
/// bytes: a full JSON parse of 800,000 lines would dominate a debug build's
/// run time, and the byte layout is itself part of the schema.
fn scan_line(line: &[u8]) -> (u64, u64, u64) {
    fn num_after(line: &[u8], key: &[u8]) -> u64 {
        let at = line
            .windows(key.len())
            .position(|w| w == key)
            .unwrap_or_else(|| panic!("no {:?} in {}", key, String::from_utf8_lossy(line)))
            + key.len();
        let end = line[at..].iter().position(|b| !b.is_ascii_digit()).unwrap() + at;
        std::str::from_utf8(&line[at..end])
            .unwrap()
            .parse()
            .unwrap()
    }
    assert!(line.starts_with(br#"{"v":2,"seq":"#));
    (
        num_after(line, br#"{"v":2,"seq":"#),
        num_after(line, br#""payload":{"t":"#),
        num_after(line, br#","n":"#),
    )
}

/// Seqs contiguous from 1, and each task's `n` in emission order.
fn check_order(sink: &str, rows: &[(u64, u64, u64)]) {
    assert_eq!(rows.len() as u64, TASKS * PER_TASK, "{sink}: record count");
    let mut next_n = vec![0u64; TASKS as usize];
    for (i, &(seq, t, n)) in rows.iter().enumerate() {
        assert_eq!(seq, i as u64 + 1, "{sink}: seq not contiguous at row {i}");
        assert_eq!(
            n, next_n[t as usize],
            "{sink}: task {t} record {n} out of order (seq {seq})"
        );
        next_n[t as usize] += 1;
    }
    assert!(next_n.iter().all(|&n| n == PER_TASK), "{sink}: {next_n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_of_100k_emits_get_unique_contiguous_seqs_in_task_order_in_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(JsonlOptions::new(&path).fsync(FsyncPolicy::Never)).unwrap(),
        )
        .sink(SinkOptions::new("memory"), memory.clone())
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let run = async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let a = Auditor::new(d.clone()).for_request(Some(&format!("task-{t}")));
            tasks.push(tokio::spawn(async move {
                let mut last = 0;
                for n in 0..PER_TASK {
                    let r = a.emit(EventType::ToolCall, &Step { t, n }).await.unwrap();
                    assert!(r.seq > last, "task {t}: seq went back");
                    last = r.seq;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        d.shutdown(Duration::from_secs(60)).await
    };
    let report = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("800,000 emits did not finish within 180 s: deadlock?");
    assert!(report.is_clean(), "{report}");
    let emitted_in = started.elapsed();

    let rows: Vec<(u64, u64, u64)> = memory
        .records()
        .iter()
        .map(|r| {
            let p: serde_json::Value = serde_json::from_str(r.payload_json()).unwrap();
            (r.seq, p["t"].as_u64().unwrap(), p["n"].as_u64().unwrap())
        })
        .collect();
    check_order("memory", &rows);

    let file = std::fs::File::open(&path).unwrap();
    let mut rows = Vec::with_capacity((TASKS * PER_TASK) as usize);
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    while r.read_until(b'\n', &mut line).unwrap() > 0 {
        assert_eq!(line.pop(), Some(b'\n'), "unterminated line");
        rows.push(scan_line(&line));
        line.clear();
    }
    check_order("jsonl", &rows);
    eprintln!(
        "concurrency: {} records through 2 sinks in {emitted_in:.1?}, order checked in both",
        TASKS * PER_TASK
    );
}

/// A stdout sink writing into a pipe nobody reads: a real, permanently
/// stalled destination. Under `block`, emitters wait for room; a shutdown
/// with a deadline must still return by then and release every emitter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_with_a_stalled_sink_and_a_shutdown_deadline_does_not_deadlock() {
    let (reader, writer) = std::io::pipe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(JsonlOptions::new(&path)).unwrap(),
        )
        .sink(
            SinkOptions::new("stalled")
                .queue(16)
                .overflow(Overflow::Block)
                .required(false),
            StdoutSink::with_writer(
                StdoutOptions {
                    format: StdoutFormat::Json,
                },
                "pipe",
                writer,
            ),
        )
        .start()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let a = Auditor::new(d.clone()).for_request(Some(&format!("task-{t}")));
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            for n in 0..PER_TASK {
                match a.emit(EventType::ToolCall, &Step { t, n }).await {
                    Ok(_) => accepted += 1,
                    Err(EmitError::Closed) => return (accepted, true),
                    Err(e) => panic!("task {t}: {e}"),
                }
            }
            (accepted, false)
        }));
    }
    // Let the pipe (64 KiB) and the queue fill up, and the emitters block.
    let start = Instant::now();
    loop {
        let h = d.health();
        if h.sinks[1].queued >= 16 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the stalled sink's queue never filled: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let deadline = Duration::from_millis(500);
    let shutdown_started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(30), d.shutdown(deadline))
        .await
        .expect("shutdown with a 500 ms deadline did not return within 30 s: deadlock");
    let took = shutdown_started.elapsed();
    let mut accepted = 0;
    for t in tasks {
        let (n, closed) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("an emitter blocked on the stalled queue was not released by shutdown")
            .unwrap();
        assert!(
            closed,
            "an emitter finished all its records against a stalled sink"
        );
        accepted += n;
    }
    let stalled = report
        .sinks
        .iter()
        .find(|s| s.health.name == "stalled")
        .unwrap();
    assert!(!stalled.finished, "{report}");
    let jsonl = report
        .sinks
        .iter()
        .find(|s| s.health.name == "jsonl")
        .unwrap();
    // Every accepted record is accounted for on the stalled sink.
    let h = &stalled.health;
    assert_eq!(
        h.delivered + h.failed + h.dropped + stalled.undelivered,
        jsonl.health.delivered + jsonl.undelivered,
        "{report}"
    );
    assert!(jsonl.health.delivered >= accepted, "{report}");
    eprintln!(
        "stalled sink: shutdown({deadline:?}) returned after {took:.1?}; {accepted} records accepted before it; report:\n{report}"
    );
    drop(reader);
}
