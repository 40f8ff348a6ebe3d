//! Guarantees under hostile input (docs/guarantees.md, "Hostile input"):
//! oversized and deeply nested payloads are refused whole with a clear
//! error, never truncated and never a crash; text that is not UTF-8 is
//! rejected or lossily converted, never written; control characters and
//! newlines inside strings keep one record on one line; a symlink planted at
//! the log path is refused; a configuration file that is huge, endless,
//! binary or not UTF-8 gets an error naming the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_audit::agents::{self, ModelConfig, Provider};
use agent_audit::config::{Config, ConfigError, MAX_CONFIG_BYTES};
use agent_audit::jsonl::verify::{self, ProblemKind, VerifyOptions};
use agent_audit::jsonl::{JsonlError, JsonlOptions, JsonlSink, ReadError, Reader};
use agent_audit::stdout::{StdoutFormat, StdoutOptions, StdoutSink};
use agent_audit::{
    AckLevel, Auditor, Dispatcher, EmitError, EventType, MAX_PAYLOAD_DEPTH, SinkOptions,
};
use agent_audit_tests::chain::check_file;
use agent_audit_tests::chat::{ChatServer, Script};
use serde_json::{Value, json};

fn jsonl_config(path: &Path, limits: &str) -> Config {
    Config::parse(
        &format!(
            "{limits}\n[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            path.display()
        ),
        "hostile.toml",
    )
    .unwrap()
}

// ------------------------------------------------------------ size

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_payload_is_refused_whole_by_default_and_written_whole_when_the_limit_allows() {
    let big = "A".repeat(10 << 20);
    let dir = tempfile::tempdir().unwrap();

    // Default limit (1 MiB): refused before a seq is used, nothing written.
    let path = dir.path().join("default.jsonl");
    let d = jsonl_config(&path, "").start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("big"));
    let next = d.next_seq().await;
    let err = a
        .emit(EventType::ToolResult, &json!({"output": big}))
        .await
        .unwrap_err();
    match &err {
        EmitError::TooLarge { size, max } => {
            assert_eq!(*max, 1 << 20);
            assert!(*size > 10 << 20, "{size}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("max_record_bytes = 1048576") && msg.contains("not written (nor truncated)"),
        "{msg}"
    );
    assert_eq!(d.next_seq().await, next, "a refused record used a seq");
    a.emit_wait(
        EventType::ToolResult,
        &json!({"output": "small"}),
        AckLevel::Durable,
    )
    .await
    .unwrap();
    assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
    let recs = check_file(&path, None).unwrap().records;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].payload()["output"], "small");

    // `[limits] max_record_bytes` raised to 16 MiB: written whole.
    let path = dir.path().join("raised.jsonl");
    let d = jsonl_config(&path, "[limits]\nmax_record_bytes = 16777216\n")
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("big"));
    a.emit_wait(
        EventType::ToolResult,
        &json!({"output": big}),
        AckLevel::Durable,
    )
    .await
    .unwrap();
    assert!(d.shutdown(Duration::from_secs(30)).await.is_clean());
    let lines: Vec<_> = Reader::open(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0].record.payload["output"].as_str().map(str::len),
        Some(10 << 20)
    );
    assert_eq!(
        lines[0].record.payload["output"].as_str(),
        Some(big.as_str())
    );
    let report = verify::verify(&[&path], &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.intact, "{:?}", report.problem);
}

#[test]
fn a_record_limit_the_reader_could_not_read_back_is_a_configuration_error() {
    for (value, line) in [("67108864", 3), ("0", 3)] {
        let text = format!("[service]\nname = \"x\"\n[limits]\nmax_record_bytes = {value}\n");
        let e = Config::parse(&text, "limits.toml").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("limits.toml:{}:", line + 1))
                && msg.contains("limits.max_record_bytes")
                && msg.contains("16777216"),
            "{msg}"
        );
    }
}

// ------------------------------------------------------------ depth

/// A payload `depth` objects deep, generated while serialising (no deep
/// `Value` is ever built, which would itself overflow a stack when
/// dropped).
struct Deep(usize);

impl serde::Serialize for Deep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        if self.0 > 1 {
            m.serialize_entry("a", &Deep(self.0 - 1))?;
        } else {
            m.serialize_entry("a", "leaf")?;
        }
        m.end()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_payloads_are_refused_with_a_clear_error_and_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.jsonl");
    let d = jsonl_config(&path, "").start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("deep"));
    for depth in [MAX_PAYLOAD_DEPTH + 1, 10_000, 1_000_000] {
        let next = d.next_seq().await;
        let err = a
            .emit(EventType::ToolResult, &Deep(depth))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EmitError::TooDeep {
                    max: MAX_PAYLOAD_DEPTH
                }
            ),
            "depth {depth}: {err:?}"
        );
        assert!(err.to_string().contains("deeper than 100 levels"), "{err}");
        assert_eq!(d.next_seq().await, next);
    }
    // At the limit: written, and every reader of the log can parse it.
    a.emit_wait(
        EventType::ToolResult,
        &Deep(MAX_PAYLOAD_DEPTH),
        AckLevel::Durable,
    )
    .await
    .unwrap();
    assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
    let lines: Vec<_> = Reader::open(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lines.len(), 1);
    let report = verify::verify(&[&path], &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.intact, "{:?}", report.problem);
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(text.trim_end()).unwrap();
    let mut p = &v["payload"];
    let mut levels = 0;
    while p.is_object() {
        levels += 1;
        p = &p["a"];
    }
    assert_eq!((levels, p.as_str()), (MAX_PAYLOAD_DEPTH, Some("leaf")));
}

// ------------------------------------------------------------ UTF-8

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_is_rejected_or_lossily_converted_and_never_written() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("utf8.jsonl");
    let d = jsonl_config(&path, "").start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("utf8"));

    // A tool handing over a file name that is not UTF-8: rejected whole,
    // before a seq is used.
    let bad = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/report-\xff\xfe.csv"));
    let next = d.next_seq().await;
    let err = a
        .emit(EventType::ToolResult, &json!({"tool": "export"}))
        .await
        .map(|_| ());
    assert!(err.is_ok());
    #[derive(serde::Serialize)]
    struct Export {
        path: PathBuf,
    }
    let err = a
        .emit(EventType::ToolResult, &Export { path: bad })
        .await
        .unwrap_err();
    assert!(matches!(err, EmitError::Serialize(_)), "{err:?}");
    assert!(err.to_string().contains("invalid UTF-8"), "{err}");
    assert_eq!(
        d.next_seq().await,
        next + 1,
        "only the good record used a seq"
    );

    // A model answering with bytes that are not UTF-8: the client converts
    // them to U+FFFD before they become records.
    let server = ChatServer::start(Script::InvalidUtf8).unwrap();
    let model = agents::build_model_with_env(
        &ModelConfig {
            provider: Provider::Openai,
            base_url: Some(server.base_url()),
            model: Some("test-model".into()),
            ..ModelConfig::default()
        },
        |_| None,
    )
    .unwrap();
    let answer = agents::tutorial::run(&a, model, "What is the balance of account 12345?")
        .await
        .unwrap();
    assert!(answer.contains("\u{FFFD}\u{FFFD} 1,234.56 USD"), "{answer}");
    assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());

    let bytes = std::fs::read(&path).unwrap();
    assert!(
        std::str::from_utf8(&bytes).is_ok(),
        "the log holds invalid UTF-8"
    );
    let recs = check_file(&path, None).unwrap().records;
    assert!(
        recs.iter()
            .any(|r| r.event_type() == "final_result" && r.value.to_string().contains('\u{FFFD}')),
        "the converted answer is recorded"
    );

    // Invalid UTF-8 in a log (damage or tampering) is reported with its
    // line and column, and reading goes on.
    let mut damaged = bytes.clone();
    let second = damaged.iter().position(|&b| b == b'\n').unwrap() + 1;
    damaged[second + 5] = 0xFF;
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, &damaged).unwrap();
    let items: Vec<_> = Reader::open(&broken).unwrap().collect();
    assert_eq!(items.len(), recs.len());
    match &items[1] {
        Err(
            e @ ReadError::NotUtf8 {
                line: 2, column: 6, ..
            },
        ) => {
            assert!(e.to_string().contains("broken.jsonl:2"), "{e}")
        }
        other => panic!("expected NotUtf8 at line 2, got {other:?}"),
    }
    assert!(items.iter().enumerate().all(|(i, r)| i == 1 || r.is_ok()));
    let report = verify::verify(&[&broken], &VerifyOptions::default(), &mut |_| {}).unwrap();
    let p = report.problem.unwrap();
    assert_eq!(p.line, 2, "{p:?}");
    assert!(
        matches!(p.kind, ProblemKind::BadJson | ProblemKind::Edited),
        "{p:?}"
    );
}

// ------------------------------------------------------------ control chars

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_newlines_inside_strings_keep_one_record_on_one_line() {
    let every_control: String = (0u32..0x20)
        .chain([0x7f, 0x85, 0x2028, 0x2029, 0x202e])
        .map(|c| char::from_u32(c).unwrap())
        .collect();
    let payloads = [
        json!({"text": "line one\nline two\r\nline three\rend"}),
        json!({"text": every_control}),
        json!({"multi\nline key": "v", "nested": {"k\u{0}": ["\n", "\u{1b}[31mred\u{1b}[0m"]}}),
        json!({"json_inside": "{\"v\":1,\"seq\":999}\n{\"forged\":true}"}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctrl.jsonl");
    let (reader, writer) = std::io::pipe().unwrap();
    let pretty = std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = reader;
        std::io::Read::read_to_string(&mut r, &mut s).unwrap();
        s
    });
    let (jreader, jwriter) = std::io::pipe().unwrap();
    let json_out = std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = jreader;
        std::io::Read::read_to_string(&mut r, &mut s).unwrap();
        s
    });
    let d = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(JsonlOptions::new(&path)).unwrap(),
        )
        .sink(
            SinkOptions::new("pretty"),
            StdoutSink::with_writer(StdoutOptions::default(), "pipe", writer),
        )
        .sink(
            SinkOptions::new("json"),
            StdoutSink::with_writer(
                StdoutOptions {
                    format: StdoutFormat::Json,
                },
                "pipe",
                jwriter,
            ),
        )
        .start()
        .await
        .unwrap();
    // Hostile text in the envelope too: request id, agent, event type.
    let a = Auditor::new(d.clone())
        .for_request(Some("req\n{\"v\":1}"))
        .with_agent("agent\r\nname\u{0}");
    for p in &payloads {
        a.emit(EventType::from("custom\nevent"), p).await.unwrap();
    }
    assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
    drop(d);
    drop(a);

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches('\n').count(),
        payloads.len(),
        "one line per record"
    );
    let recs = check_file(&path, None).unwrap().records;
    for (r, p) in recs.iter().zip(&payloads) {
        assert_eq!(r.payload(), p, "payload round-trips exactly");
        assert_eq!(r.value["request_id"], "req\n{\"v\":1}");
        assert_eq!(r.value["agent"], "agent\r\nname\u{0}");
        assert_eq!(r.value["event_type"], "custom\nevent");
        // No raw C0 control byte (newline, CR, NUL, ESC...) in the line: JSON
        // escapes them. DEL, U+2028/2029 and bidi overrides stay raw (valid
        // JSON, not line breaks for a JSONL reader); the readable form below
        // escapes them.
        assert!(r.bytes.iter().all(|&b| b >= 0x20), "{:?}", r.bytes);
    }
    let pretty = pretty.join().unwrap();
    assert_eq!(pretty.matches('\n').count(), payloads.len(), "{pretty}");
    assert!(
        !pretty.chars().any(|c| c.is_control() && c != '\n'),
        "the readable form escapes control characters: {pretty:?}"
    );
    let json_lines = json_out.join().unwrap();
    assert_eq!(json_lines.matches('\n').count(), payloads.len());
    for (line, p) in json_lines.lines().zip(&payloads) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(&v["payload"], p);
    }
}

// ------------------------------------------------------------ symlinks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_at_the_log_path_is_refused_at_start_and_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere.jsonl");
    std::fs::write(&target, b"not yours\n").unwrap();
    let path = dir.path().join("audit-log.jsonl");
    std::os::unix::fs::symlink(&target, &path).unwrap();

    let err = jsonl_config(&path, "")
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("symbolic link") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let e = JsonlSink::new(JsonlOptions::new(&path))
        .unwrap()
        .open_file()
        .unwrap_err();
    assert!(matches!(e, JsonlError::Symlink { .. }), "{e:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"not yours\n");

    // While running: the log is moved away and a link planted in its
    // place, pointing at /dev/null (so the trail would vanish). The next
    // write refuses to follow it and the required sink fails the emit.
    std::fs::remove_file(&path).unwrap();
    let d = jsonl_config(&path, "").start().await.unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("r"));
    a.emit_wait(EventType::ToolCall, &json!({"i": 1}), AckLevel::Durable)
        .await
        .unwrap();
    std::fs::rename(&path, dir.path().join("moved.jsonl")).unwrap();
    std::os::unix::fs::symlink("/dev/null", &path).unwrap();
    let err = a
        .emit_wait(EventType::ToolCall, &json!({"i": 2}), AckLevel::Durable)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, EmitError::SinkFailed { .. }) && msg.contains("symbolic link"),
        "{msg}"
    );
    d.shutdown(Duration::from_secs(5)).await;
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        check_file(&dir.path().join("moved.jsonl"), None)
            .unwrap()
            .records
            .len(),
        1
    );
}

// ------------------------------------------------------------ configuration files

fn load_err(path: &Path) -> ConfigError {
    Config::load(path).unwrap_err()
}

#[test]
fn hostile_configuration_files_get_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();

    // Huge: refused unread.
    let huge = dir.path().join("huge.toml");
    let mut text = String::from("[service]\nname = \"x\"\n");
    while text.len() as u64 <= MAX_CONFIG_BYTES {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&huge, &text).unwrap();
    let e = load_err(&huge);
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&huge.display().to_string()) && msg.contains("limit"),
        "{msg}"
    );

    // Endless (a device reports size 0): refused unread, as every file
    // that is not a regular file is (a FIFO would block the open).
    let e = load_err(Path::new("/dev/zero"));
    assert!(
        matches!(
            e,
            ConfigError::NotRegular {
                kind: "a character device",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("/dev/zero"), "{e}");

    // Binary: a PNG header (NUL bytes and 0x89 that is not UTF-8).
    let png = dir.path().join("logo.toml");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00").unwrap();
    let e = load_err(&png);
    assert!(matches!(e, ConfigError::NotUtf8 { line: 1, .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!("{}:1:", png.display())),
        "{e}"
    );

    // UTF-8 but binary: NUL bytes in otherwise valid text.
    let nul = dir.path().join("nul.toml");
    std::fs::write(&nul, b"[service]\nname = \"a\"\n\x00\x00\x00").unwrap();
    let e = load_err(&nul);
    assert!(matches!(e, ConfigError::NotUtf8 { line: 3, .. }), "{e:?}");

    // Latin-1 text: the line of the first bad byte is named.
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"[service]\n# caf\xe9\nname = \"x\"\n").unwrap();
    let e = load_err(&latin1);
    assert!(matches!(e, ConfigError::NotUtf8 { line: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("not UTF-8"), "{e}");

    // A directory, a missing file.
    let e = load_err(dir.path());
    assert!(
        e.to_string().starts_with(&dir.path().display().to_string()),
        "{e}"
    );
    let missing = dir.path().join("missing.toml");
    let e = load_err(&missing);
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );
}
