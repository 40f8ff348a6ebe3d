//! Child process of the fault tests (`tests/tests/guarantees_faults.rs`):
//! loads an `audit.toml` through the facade, optionally limits its own file
//! size (`RLIMIT_FSIZE`), emits records and reports what happened as one
//! JSON line on stderr, prefixed `REPORT `.
//!
//! ```text
//! fault-writer --config FILE --records N [--payload-bytes B]
//!              [--fsize-limit BYTES] [--wait written|durable]
//!              [--shutdown-ms MS]
//! ```
//!
//! A child process is needed where the fault is process-wide: a file size
//! limit applies to every file the process writes, and peak memory (RSS)
//! can only be measured per process.

// setrlimit(2) and signal(2) have no safe wrapper in the workspace's
// dependencies; the two calls are below, each with its reason.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_audit::config::Config;
use agent_audit::{AckLevel, Auditor, EventType};
use serde_json::json;

struct Args {
    config: PathBuf,
    records: u64,
    payload_bytes: usize,
    fsize_limit: Option<u64>,
    wait: Option<AckLevel>,
    shutdown: Duration,
}

fn parse_args() -> Args {
    let mut a = Args {
        config: PathBuf::new(),
        records: 0,
        payload_bytes: 100,
        fsize_limit: None,
        wait: None,
        shutdown: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        let num = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| fail(&format!("{flag}: not a number")))
        };
        match flag.as_str() {
            "--config" => a.config = PathBuf::from(&value),
            "--records" => a.records = num(),
            "--payload-bytes" => a.payload_bytes = num() as usize,
            "--fsize-limit" => a.fsize_limit = Some(num()),
            "--shutdown-ms" => a.shutdown = Duration::from_millis(num()),
            "--wait" => {
                a.wait = Some(match value.as_str() {
                    "written" => AckLevel::Written,
                    "durable" => AckLevel::Durable,
                    "exported" => AckLevel::Exported,
                    _ => fail("--wait: written | durable | exported"),
                })
            }
            _ => fail(&format!("unknown flag {flag}")),
        }
    }
    a
}

fn limit_file_size(bytes: u64) {
    // Without this the kernel kills the process with SIGXFSZ at the limit;
    // ignored, write(2) returns EFBIG instead, which is what an audit
    // writer must survive and report.
    let old = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if old == libc::SIG_ERR {
        fail("signal(SIGXFSZ, SIG_IGN) failed");
    }
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // Lowering a limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) } != 0 {
        fail(&format!(
            "setrlimit(RLIMIT_FSIZE, {bytes}): {}",
            std::io::Error::last_os_error()
        ));
    }
}

fn main() {
    let args = parse_args();
    if let Some(limit) = args.fsize_limit {
        limit_file_size(limit);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let report = rt.block_on(run(&args));
    eprintln!("REPORT {report}");
    // A sink stalled in a write (a pipe nobody reads) would keep its
    // thread; the process ends here regardless, as a real one would.
    std::process::exit(0);
}

async fn run(args: &Args) -> serde_json::Value {
    let config = Config::load(&args.config).unwrap_or_else(|e| fail(&format!("config: {e}")));
    let dispatcher = config
        .start()
        .await
        .unwrap_or_else(|e| fail(&format!("start: {e}")));
    let auditor = Auditor::new(dispatcher.clone())
        .for_request(Some("fault"))
        .with_agent("fault-writer");
    let pad = "x".repeat(args.payload_bytes);
    let started = Instant::now();
    let mut ok = 0u64;
    let mut errors = 0u64;
    let mut first_error: Option<serde_json::Value> = None;
    let mut receipt_failures = 0u64;
    let mut first_receipt_failure: Option<serde_json::Value> = None;
    let mut seqs = Vec::new();
    for i in 0..args.records {
        let payload = json!({"tool": "transfer", "i": i, "pad": pad});
        let result = match args.wait {
            Some(level) => {
                auditor
                    .emit_wait(EventType::ToolCall, &payload, level)
                    .await
            }
            None => auditor.emit(EventType::ToolCall, &payload).await,
        };
        match result {
            Ok(r) => {
                ok += 1;
                seqs.push(r.seq);
                if !r.failed.is_empty() {
                    receipt_failures += 1;
                    if first_receipt_failure.is_none() {
                        first_receipt_failure = Some(json!({
                            "index": i,
                            "seq": r.seq,
                            "sink": r.failed[0].sink,
                            "error": r.failed[0].error.to_string(),
                        }));
                    }
                }
            }
            Err(e) => {
                errors += 1;
                if first_error.is_none() {
                    first_error = Some(json!({"index": i, "error": e.to_string()}));
                }
            }
        }
    }
    let emit_ms = started.elapsed().as_millis() as u64;
    let health = dispatcher.health();
    let hwm_before_shutdown = agent_audit_tests::procs::self_status_kib("VmHWM");
    let shutdown = dispatcher.shutdown(args.shutdown).await;
    json!({
        "emitted": ok,
        "errors": errors,
        "first_error": first_error,
        "receipt_failures": receipt_failures,
        "first_receipt_failure": first_receipt_failure,
        "first_seq": seqs.first(),
        "last_seq": seqs.last(),
        "emit_ms": emit_ms,
        "health": health,
        "shutdown": shutdown,
        "shutdown_clean": shutdown.is_clean(),
        "vm_hwm_kib": hwm_before_shutdown,
        "vm_hwm_kib_end": agent_audit_tests::procs::self_status_kib("VmHWM"),
    })
}

fn fail(msg: &str) -> ! {
    eprintln!("fault-writer: {msg}");
    std::process::exit(3);
}
