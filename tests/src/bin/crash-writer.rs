//! Child process of the crash loop (`tests/tests/guarantees_crash.rs`).
//!
//! `crash-writer <log path> <tasks>` appends records to a JSONL log with
//! `fsync = "batch"` from `<tasks>` concurrent tasks as fast as it can, and
//! prints one line per record as soon as it has a seq, and one more once
//! its receipt reached `Durable`:
//!
//! ```text
//! READY <next seq>
//! A <seq>
//! D <seq> <task> <n>
//! ```
//!
//! A `D` line is printed (and flushed) only after the receipt said Durable,
//! so every `D` line the parent reads is a promise the file must keep after
//! the parent kills this process with SIGKILL; every `A` line is a seq that
//! no later process may give to another record. The seq lease
//! (`<log>.seq`, blocks of 4096) is what keeps that second promise. It never exits on its own,
//! unless a third argument bounds the records per task: then it waits for
//! every receipt, shuts down and exits 0 (for tracing it under strace).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_audit::jsonl::{FileLease, FsyncPolicy, JsonlOptions, JsonlSink};
use agent_audit::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(tasks)) = (args.next(), args.next()) else {
        eprintln!("usage: crash-writer <log path> <tasks>");
        std::process::exit(2);
    };
    let path = PathBuf::from(path);
    let tasks: usize = tasks.parse().expect("tasks is a number");
    let per_task: u64 = args
        .next()
        .map(|n| n.parse().expect("records per task is a number"))
        .unwrap_or(u64::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(path, tasks, per_task));
}

async fn run(path: PathBuf, tasks: usize, per_task: u64) {
    let sink = match JsonlSink::new(JsonlOptions::new(&path).fsync(FsyncPolicy::Batch)) {
        Ok(s) => s,
        Err(e) => fail(&format!("options: {e}")),
    };
    let Some(lease) = FileLease::for_log(&path) else {
        fail("the log is not a regular file");
    };
    let dispatcher = match Dispatcher::builder()
        .sink(SinkOptions::new("jsonl").queue(4096), sink)
        .seq_lease(Arc::new(lease))
        .lease_block(4096)
        .start()
        .await
    {
        Ok(d) => d,
        Err(e) => fail(&format!("start: {e}")),
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    say(&out, &format!("READY {}", dispatcher.next_seq().await));
    let auditor = Auditor::new(dispatcher.clone())
        .for_request(Some("crash-loop"))
        .with_agent("crash-writer");
    let mut handles = Vec::new();
    for task in 0..tasks {
        // Emitting and waiting are split so a task keeps emitting while its
        // earlier records are being synced: full speed, group commit.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, u64)>(1024);
        let d = dispatcher.clone();
        let out2 = out.clone();
        handles.push(tokio::spawn(async move {
            while let Some((seq, n)) = rx.recv().await {
                match d.wait(seq, AckLevel::Durable).await {
                    Ok(r) if r.level >= AckLevel::Durable => {
                        say(&out2, &format!("D {seq} {task} {n}"))
                    }
                    Ok(r) => fail(&format!("seq {seq} settled at {}", r.level)),
                    Err(e) => fail(&format!("seq {seq}: {e}")),
                }
            }
        }));
        let a = auditor.child_span();
        let out3 = out.clone();
        handles.push(tokio::spawn(async move {
            for n in 0..per_task {
                let payload = agent_audit_tests::crash_payload(task, n);
                match a.emit(EventType::ToolCall, &payload).await {
                    Ok(r) => {
                        say(&out3, &format!("A {}", r.seq));
                        if tx.send((r.seq, n)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => fail(&format!("emit: {e}")),
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let report = dispatcher
        .shutdown(std::time::Duration::from_secs(30))
        .await;
    if !report.is_clean() {
        fail(&format!("shutdown: {report}"));
    }
}

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    let out = out.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = out.lock();
    // A failed print means the parent is gone; there is nobody to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(msg: &str) -> ! {
    eprintln!("crash-writer: {msg}");
    std::process::exit(1);
}
