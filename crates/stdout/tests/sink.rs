//! The stdout sink through a real dispatcher: conformance, both formats,
//! and closed pipes (an OS pipe, `head -n1`, `/dev/full`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::conformance::{Check, Target, run_all, run_check};
use agent_audit_core::{
    AckLevel, Auditor, Batch, DeliveryError, Dispatcher, EmitError, EventType, FailureKind,
    MemorySink, Sink, SinkOptions, StoredRecord,
};
use agent_audit_stdout::{StdoutError, StdoutFormat, StdoutOptions, StdoutSink};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A writer whose bytes the test can read while the sink owns a clone.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn opts(format: StdoutFormat) -> StdoutOptions {
    StdoutOptions { format }
}

struct BufTarget {
    buf: SharedBuf,
    format: StdoutFormat,
}

impl Target for BufTarget {
    fn make(&self) -> Box<dyn Sink> {
        Box::new(StdoutSink::with_writer(
            opts(self.format),
            "buffer",
            self.buf.clone(),
        ))
    }
    fn read_back(&self) -> Option<Vec<StoredRecord>> {
        match self.format {
            StdoutFormat::Json => Some(
                self.buf
                    .text()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect(),
            ),
            // Readable lines cannot be read back as records.
            _ => None,
        }
    }
    fn persistent(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_json() {
    let t = BufTarget {
        buf: SharedBuf::default(),
        format: StdoutFormat::Json,
    };
    run_all(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_pretty() {
    let t = BufTarget {
        buf: SharedBuf::default(),
        format: StdoutFormat::Pretty,
    };
    run_check(&t, Check::Delivery).await.unwrap();
    assert_eq!(t.buf.text().lines().count(), 200);
    run_all(&t).await.unwrap();
}

async fn start(sink: impl Sink, memory: &MemorySink) -> Dispatcher {
    Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .sink(SinkOptions::new("stdout"), sink)
        .start()
        .await
        .unwrap()
}

fn tutorial_payloads() -> Vec<(EventType, serde_json::Value)> {
    vec![
        (
            EventType::UserRequest,
            json!({"text": "What is the balance of account 12345?"}),
        ),
        (
            EventType::AssistantOutput,
            json!({"tool_calls": [{"id": "call_1", "name": "get_account_balance", "arguments": {"account_id": "12345"}}]}),
        ),
        (
            EventType::ToolCall,
            json!({"tool": "get_account_balance", "call_id": "call_1", "arguments": {"account_id": "12345"}}),
        ),
        (
            EventType::ToolResult,
            json!({"tool": "get_account_balance", "call_id": "call_1", "result": "The balance of account 12345 is 1,024.50 EUR."}),
        ),
        (
            EventType::FinalResult,
            json!({"answer": "Your account 12345 holds 1,024.50 EUR. Anything else I can help you with today, perhaps?"}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn json_is_the_exact_schema_line_with_its_own_chain() {
    let buf = SharedBuf::default();
    let memory = MemorySink::new();
    let d = start(
        StdoutSink::with_writer(opts(StdoutFormat::Json), "buffer", buf.clone()),
        &memory,
    )
    .await;
    let a = Auditor::new(d.clone())
        .for_request(Some("req-1"))
        .with_agent("assistant");
    let mut last = 0;
    for (t, p) in tutorial_payloads() {
        last = a.emit(t, &p).await.unwrap().seq;
    }
    let r = d.wait(last, AckLevel::Written).await.unwrap();
    assert_eq!(r.level, AckLevel::Written);
    assert!(d.shutdown(Duration::from_secs(5)).await.is_clean());

    let text = buf.text();
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    let records = memory.records();
    assert_eq!(lines.len(), records.len());
    let mut prev = agent_audit_stdout::GENESIS.to_string();
    assert_eq!(prev.len(), 64);
    for (line, record) in lines.iter().zip(&records) {
        // Byte-identical to what the JSONL file sink encodes, given the prev.
        let mut expected = Vec::new();
        record.encode_line(&prev, &mut expected);
        assert_eq!(line.as_bytes(), &expected[..]);
        let stored: StoredRecord = serde_json::from_str(line).unwrap();
        assert_eq!(stored.prev, prev);
        assert_eq!(stored.request_id.as_deref(), Some("req-1"));
        // The tutorial's reader: json.loads, then event_type and payload.
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["event_type"], record.event_type.as_str());
        assert_eq!(v["payload"], record.payload_value());
        prev = hex::encode(Sha256::digest(line.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pretty_is_one_readable_line_per_record() {
    let buf = SharedBuf::default();
    let memory = MemorySink::new();
    let d = start(
        StdoutSink::with_writer(opts(StdoutFormat::Pretty), "buffer", buf.clone()),
        &memory,
    )
    .await;
    let a = Auditor::new(d.clone())
        .for_request(Some("req-1"))
        .with_agent("assistant");
    for (t, p) in tutorial_payloads() {
        a.emit_wait(t, &p, AckLevel::Written).await.unwrap();
    }
    assert!(d.shutdown(Duration::from_secs(5)).await.is_clean());
    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (line, record) in lines.iter().zip(memory.records()) {
        // Time in milliseconds, then seq, agent, event type.
        let ts = record.ts.as_str();
        assert!(
            line.starts_with(&format!("{}Z #{} ", &ts[..23], record.seq)),
            "{line}"
        );
        assert!(line.contains(" assistant "), "{line}");
        assert!(line.contains(record.event_type.as_str()), "{line}");
    }
    assert!(
        lines[0].ends_with("What is the balance of account 12345?"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with(r#"calls get_account_balance({"account_id":"12345"})"#),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].ends_with(r#"get_account_balance({"account_id":"12345"})"#),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].ends_with("get_account_balance -> The balance of account 12345 is 1,024.50 EUR."),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].ends_with("Your account 12345 holds 1,024.50 EUR. Anything else I can help you…"),
        "{}",
        lines[4]
    );
}

fn one_record() -> Arc<agent_audit_core::Record> {
    // A record as the dispatcher makes it, taken from a memory sink.
    let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    rt.block_on(async {
        let memory = MemorySink::new();
        let d = Dispatcher::builder()
            .sink(SinkOptions::new("memory"), memory.clone())
            .start()
            .await
            .unwrap();
        Auditor::new(d.clone())
            .emit_wait(
                EventType::ToolCall,
                &json!({"tool": "t"}),
                AckLevel::Durable,
            )
            .await
            .unwrap();
        d.shutdown(Duration::from_secs(5)).await;
        memory.records()[0].clone()
    })
}

fn stdout_error(e: &agent_audit_core::SinkError) -> &StdoutError {
    // SinkError keeps its cause as an `Arc<dyn Error>`, and `source()` hands
    // out the Arc itself, so look through it.
    let source = std::error::Error::source(e).unwrap_or_else(|| panic!("no source: {e:?}"));
    source
        .downcast_ref::<StdoutError>()
        .or_else(|| {
            source
                .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
                .and_then(|inner| inner.downcast_ref::<StdoutError>())
        })
        .unwrap_or_else(|| panic!("source is not a StdoutError: {e:?}"))
}

#[test]
fn closed_os_pipe_is_a_permanent_typed_error() {
    let record = one_record();
    let (reader, writer) = std::io::pipe().unwrap();
    let mut sink = StdoutSink::with_writer(opts(StdoutFormat::Json), "pipe", writer);
    let batch = Batch {
        records: std::slice::from_ref(&record),
        deadline: None,
    };
    // Open reader: the line goes through.
    assert_eq!(sink.write(&batch).unwrap(), AckLevel::Written);
    let mut reader = reader;
    let mut first = [0u8; 8];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"{\"v\":2,\"");
    drop(reader);
    for _ in 0..2 {
        let e = sink.write(&batch).unwrap_err();
        assert_eq!(e.kind(), FailureKind::Permanent);
        assert!(
            matches!(stdout_error(&e), StdoutError::ClosedPipe { target } if target == "pipe"),
            "{e:?}"
        );
        assert!(e.to_string().contains("EPIPE"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_pipe_fails_emit_of_a_required_sink() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("stdout"),
            StdoutSink::with_writer(opts(StdoutFormat::Pretty), "stdout", writer),
        )
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    let e = a
        .emit_wait(
            EventType::ToolCall,
            &json!({"tool": "t"}),
            AckLevel::Written,
        )
        .await
        .unwrap_err();
    match &e {
        EmitError::SinkFailed {
            sink,
            error: DeliveryError::Failed(se),
        } => {
            assert_eq!(sink, "stdout");
            assert_eq!(se.kind(), FailureKind::Permanent);
            assert!(matches!(stdout_error(se), StdoutError::ClosedPipe { .. }));
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(e.to_string().contains("stdout"), "{e}");
    // The agent must not act: further emits are refused too.
    assert!(a.emit(EventType::ToolCall, &json!({})).await.is_err());
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(!report.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_pipe_of_an_optional_sink_is_counted_and_others_continue() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), memory.clone())
        .sink(
            SinkOptions::new("stdout").required(false),
            StdoutSink::with_writer(opts(StdoutFormat::Json), "stdout", writer),
        )
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone());
    for i in 0..10 {
        let r = a
            .emit_wait(EventType::ToolCall, &json!({"i": i}), AckLevel::Written)
            .await
            .unwrap();
        assert_eq!(r.failed.len(), 1);
        assert_eq!(r.failed[0].sink, "stdout");
    }
    let h = d.health();
    let stdout = h.sinks.iter().find(|s| s.name == "stdout").unwrap();
    assert!(stdout.failed >= 10, "{stdout:?}");
    d.shutdown(Duration::from_secs(5)).await;
    assert!(memory.len() >= 10);
}

#[test]
fn head_n1_reads_one_line_then_the_pipe_closes() {
    let mut head = Command::new("head")
        .arg("-n1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("`head` (coreutils) must be installed for this test");
    let stdin = head.stdin.take().unwrap();
    let record = one_record();
    let mut sink = StdoutSink::with_writer(opts(StdoutFormat::Pretty), "head", stdin);
    let batch = Batch {
        records: std::slice::from_ref(&record),
        deadline: None,
    };
    assert_eq!(sink.write(&batch).unwrap(), AckLevel::Written);
    // `head` exits after its first line; its end of the pipe closes with it.
    let out = head.wait_with_output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains(" tool_call ") && printed.ends_with("t\n"),
        "{printed:?}"
    );
    let e = sink.write(&batch).unwrap_err();
    assert_eq!(e.kind(), FailureKind::Permanent);
    assert!(matches!(stdout_error(&e), StdoutError::ClosedPipe { target } if target == "head"));
}

#[test]
fn dev_full_is_a_permanent_write_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full must exist (Linux)");
    let record = one_record();
    let mut sink = StdoutSink::with_writer(opts(StdoutFormat::Json), "/dev/full", full);
    let e = sink
        .write(&Batch {
            records: std::slice::from_ref(&record),
            deadline: None,
        })
        .unwrap_err();
    assert_eq!(e.kind(), FailureKind::Permanent);
    match stdout_error(&e) {
        StdoutError::Write { target, source } => {
            assert_eq!(target, "/dev/full");
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
        }
        other => panic!("{other:?}"),
    }
}
