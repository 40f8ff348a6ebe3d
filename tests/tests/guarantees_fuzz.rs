//! Fuzzing of what reads untrusted bytes (docs/guarantees.md, "Hostile
//! input"): the JSONL reader, the verifier and the configuration loader.
//! Every input must end in a result or a clear error naming the file (and
//! the line, where there is one): never a panic, never a hang.
//!
//! Each run replays the seed corpus in `tests/fuzz-corpus/` and then runs a
//! bounded property-based pass (proptest) over mutations of it (byte flips,
//! insertions of interesting tokens, deletions, truncation, duplicated and
//! swapped lines), freshly chained logs with random payloads, and random
//! bytes. `AGENT_AUDIT_FUZZ_CASES` raises the pass (default 4000 cases for
//! the reader and the configuration loader, 2000 for the verifier, which
//! works on files; a fixed seed, `AGENT_AUDIT_FUZZ_SEED` picks another). A case running
//! longer than 20 s fails the test as a hang, naming the input.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_audit::config::Config;
use agent_audit::jsonl::verify::{self, VerifyOptions};
use agent_audit::jsonl::{ReadError, Reader};
use agent_audit_tests::chain::{self, check_bytes};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} missing: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 10,
        "corpus {kind} has only {} entries",
        out.len()
    );
    out
}

fn cases(default: u32) -> u32 {
    std::env::var("AGENT_AUDIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map(|n| n.max(default))
        .unwrap_or(default)
}

// ------------------------------------------------------------ targets

/// The reader over `bytes`: every line is a record or an error naming the
/// source and the line; a torn line only at the end; line bytes exact.
fn fuzz_reader(name: &str, bytes: &[u8]) -> Result<(), String> {
    let mut lines = 0u64;
    let items: Vec<_> = Reader::new(name, bytes).collect();
    let expected = bytes.iter().filter(|&&b| b == b'\n').count() as u64
        + u64::from(!bytes.is_empty() && bytes.last() != Some(&b'\n'));
    let last = items.len();
    for (i, item) in items.into_iter().enumerate() {
        lines += 1;
        match item {
            Ok(line) => {
                if line.number != lines {
                    return Err(format!("line {} numbered {}", lines, line.number));
                }
                let at = line.offset as usize;
                if bytes.get(at..at + line.bytes.len()) != Some(&line.bytes[..]) {
                    return Err(format!("line {lines}: bytes differ from the input"));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if !msg.starts_with(&format!("{name}:{lines}:")) {
                    return Err(format!("unclear error for line {lines}: {msg}"));
                }
                if matches!(e, ReadError::TornFinalLine { .. }) && i + 1 != last {
                    return Err(format!("torn line {lines} is not the last: {msg}"));
                }
                if matches!(e, ReadError::Io { .. } | ReadError::Open { .. }) {
                    return Err(format!("I/O error reading memory: {msg}"));
                }
            }
        }
    }
    if lines != expected {
        return Err(format!("{lines} lines read, the input has {expected}"));
    }
    Ok(())
}

/// `verify` over a file holding `bytes`, plain and as a partial log: a
/// report or an error naming the file; a problem names the file, a line
/// and what is wrong. When it says intact, the independent checker finds
/// every record link sound too.
fn fuzz_verify(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| e.to_string())?;
    for partial in [false, true] {
        let opts = VerifyOptions {
            partial,
            ..VerifyOptions::default()
        };
        match verify::verify(&[path], &opts, &mut |_| {}) {
            Err(e) => {
                let msg = e.to_string();
                if !msg.contains(&path.display().to_string()) {
                    return Err(format!("verify error without the file name: {msg}"));
                }
            }
            Ok(report) => match &report.problem {
                Some(p) => {
                    if p.file != path || p.message.trim().is_empty() {
                        return Err(format!("unclear problem: {p:?}"));
                    }
                    if report.intact {
                        return Err(format!("intact with a problem: {p:?}"));
                    }
                }
                None => {
                    if !report.intact {
                        return Err("not intact, but no problem named".into());
                    }
                    if !partial {
                        // The independent checker agrees on every link and
                        // seq. It is stricter about the schema (exact keys in
                        // order) and about damaged lines no audit_gap notice
                        // explains, which verify lists as notices.
                        if let Err(e) = check_bytes(bytes, None)
                            && (e.contains("is not the hash of the previous record line")
                                || e.contains("does not follow seq"))
                        {
                            return Err(format!(
                                "verify says intact, the independent checker says: {e}; input {:?}",
                                String::from_utf8_lossy(bytes)
                            ));
                        }
                    }
                }
            },
        }
    }
    Ok(())
}

/// The configuration loader over a file holding `bytes`: a configuration
/// (that also builds its sinks' options) or an error starting with the
/// file name.
fn fuzz_config(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    match Config::load(path) {
        Err(e) => {
            let msg = e.to_string();
            if !msg.starts_with(&name) {
                return Err(format!("error without the file name: {msg}"));
            }
        }
        Ok(config) => {
            // Builds sink objects without opening anything (a fuzzed path
            // must never be created).
            if let Err(e) = config.builder() {
                let msg = e.to_string();
                if !msg.starts_with(&name) {
                    return Err(format!("build error without the file name: {msg}"));
                }
            }
        }
    }
    // The same text through `Config::parse`, where it is UTF-8.
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Err(e) = Config::parse(text, "fuzz.toml")
        && !e.to_string().starts_with("fuzz.toml")
    {
        return Err(format!("parse error without the source name: {e}"));
    }
    Ok(())
}

// ------------------------------------------------------------ hang watch

/// Runs `work` on a thread while watching the case it is on: a case that
/// takes longer than `limit` fails the test as a hang, naming the input.
fn watched(label: &str, work: impl FnOnce(Arc<Watch>) + Send + 'static) -> u64 {
    let watch = Arc::new(Watch::default());
    let w = watch.clone();
    let handle = std::thread::spawn(move || work(w));
    let limit = Duration::from_secs(20);
    loop {
        if handle.is_finished() {
            if let Err(p) = handle.join() {
                std::panic::resume_unwind(p);
            }
            return watch.executions.load(Ordering::Relaxed);
        }
        if let Some((started, input)) = &*watch.current.lock().unwrap()
            && started.elapsed() > limit
        {
            panic!("{label}: a case ran for more than {limit:?} (hang?) on input {input}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Default)]
struct Watch {
    current: Mutex<Option<(Instant, String)>>,
    executions: AtomicU64,
}

impl Watch {
    fn run<T>(&self, input: &[u8], f: impl FnOnce() -> T) -> T {
        let shown = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
        *self.current.lock().unwrap() = Some((Instant::now(), format!("{shown:?}")));
        let r = f();
        *self.current.lock().unwrap() = None;
        self.executions.fetch_add(1, Ordering::Relaxed);
        r
    }
}

// ------------------------------------------------------------ inputs

/// Tokens that tend to matter to these parsers.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\xff",
    b"\x00",
    b"\xe2\x80\xa8",
    b"\xef\xbb\xbf",
    b"null",
    b"18446744073709551616",
    b"-1",
    b"1e999",
    b",\"prev\":\"",
    b"\"seq\":",
    b"{\"v\":1,\"seq\":1,",
    b"\"event_type\":\"checkpoint\"",
    b"[[sinks]]\n",
    b"type = \"jsonl\"\n",
    b" = ",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{a={a={a={a={a={a={a={a={a={a=",
    b"'''",
    b"\"\"\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    Truncate(usize),
    DupLine(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let len = b.len();
        match *m {
            Mutation::Flip(i, x) if len > 0 => b[i % len] = x,
            Mutation::Insert(i, t) => {
                let at = if len == 0 { 0 } else { i % (len + 1) };
                b.splice(at..at, TOKENS[t].iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let at = i % len;
                b.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(i) if len > 0 => b.truncate(i % len),
            Mutation::DupLine(i) | Mutation::SwapLines(i, _) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                if let Mutation::SwapLines(_, j) = *m {
                    lines.swap(i % n, j % n);
                } else {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
                b = lines.join(&b'\n');
            }
            _ => {}
        }
    }
    b
}

/// A JSON value of bounded size: strings with escapes, control characters
/// and non-ASCII text, numbers at the edges, nested arrays and objects.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
        "[\\x00-\\x1f\"\\\\\u{2028}\u{fffd}é✓]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A log of chained records with these payloads, written as the sink
/// writes them (so mutations start from a valid log).
fn chained_log(payloads: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = chain::GENESIS.to_string();
    for (i, p) in payloads.iter().enumerate() {
        let payload = if p.is_object() {
            p.clone()
        } else {
            serde_json::json!({ "value": p })
        };
        let line = format!(
            r#"{{"v":1,"seq":{},"ts":"2026-11-25T23:32:22.{:09}Z","event_type":"tool_result","request_id":"r1","correlation_id":"r1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","parent_span_id":null,"agent":"assistant","payload":{},"prev":"{prev}"}}"#,
            i + 1,
            i,
            serde_json::to_string(&payload).unwrap()
        );
        prev = chain::line_hash(line.as_bytes());
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// A runner with a fixed seed, so the test command runs the same cases
/// every time (a failure reproduces); `AGENT_AUDIT_FUZZ_SEED` (a number)
/// explores other ones.
fn runner(cases: u32, target: u8) -> TestRunner {
    let seed: u64 = std::env::var("AGENT_AUDIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6175_6469_745f_6675);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = target;
    TestRunner::new_with_rng(
        PropConfig {
            cases,
            // Failures are fixed and their input added to tests/fuzz-corpus/.
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..PropConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn bytes_input(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (prop::sample::select(seeds), prop::collection::vec(mutation(), 0..8))
            .prop_map(|(seed, ms)| apply(seed, &ms)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

// ------------------------------------------------------------ tests

#[test]
fn seed_corpus_replays_through_reader_verifier_and_config_loader() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("corpus.jsonl");
    for (name, bytes) in corpus("jsonl") {
        fuzz_reader(&name, &bytes).unwrap_or_else(|e| panic!("jsonl/{name}: reader: {e}"));
        fuzz_verify(&log, &bytes).unwrap_or_else(|e| panic!("jsonl/{name}: verify: {e}"));
        // The independent checker never panics either.
        let _ = check_bytes(&bytes, None);
    }
    // The valid seeds are valid, the damaged ones are found damaged.
    let verdict = |name: &str| {
        let bytes = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz-corpus/jsonl")
                .join(name),
        )
        .unwrap();
        std::fs::write(&log, &bytes).unwrap();
        verify::verify(&[&log], &VerifyOptions::default(), &mut |_| {})
            .unwrap()
            .intact
    };
    assert!(verdict("valid-3.jsonl"));
    assert!(verdict("torn-recovered.jsonl"));
    for damaged in [
        "torn-tail.jsonl",
        "bad-json-middle.jsonl",
        "not-utf8.jsonl",
        "edited-payload.jsonl",
        "reordered.jsonl",
        "deep-payload.jsonl",
    ] {
        assert!(!verdict(damaged), "{damaged} verified intact");
    }

    let cfg = dir.path().join("corpus.toml");
    for (name, bytes) in corpus("config") {
        fuzz_config(&cfg, &bytes).unwrap_or_else(|e| panic!("config/{name}: {e}"));
    }
    std::fs::write(
        &cfg,
        std::fs::read(corpus_path("config/full.toml")).unwrap(),
    )
    .unwrap();
    Config::load(&cfg).expect("the full example configuration loads");
}

fn corpus_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(rel)
}

#[test]
fn fuzz_jsonl_reader() {
    let seeds: Vec<Vec<u8>> = corpus("jsonl").into_iter().map(|(_, b)| b).collect();
    let n = cases(4000);
    let runs = watched("reader", move |w| {
        let strategy = prop_oneof![
            3 => bytes_input(seeds),
            2 => (prop::collection::vec(json_value(), 1..6), prop::collection::vec(mutation(), 0..4))
                .prop_map(|(p, ms)| apply(chained_log(&p), &ms)),
        ];
        runner(n, 1)
            .run(&strategy, |bytes| {
                w.run(&bytes, || fuzz_reader("fuzz.jsonl", &bytes))
                    .map_err(TestCaseError::fail)
            })
            .unwrap();
    });
    eprintln!("fuzz: reader ran {runs} executions");
}

#[test]
fn fuzz_verifier() {
    let seeds: Vec<Vec<u8>> = corpus("jsonl").into_iter().map(|(_, b)| b).collect();
    let n = cases(2000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let runs = watched("verify", move |w| {
        let strategy = prop_oneof![
            2 => bytes_input(seeds),
            3 => (prop::collection::vec(json_value(), 1..6), prop::collection::vec(mutation(), 0..4))
                .prop_map(|(p, ms)| apply(chained_log(&p), &ms)),
        ];
        runner(n, 2)
            .run(&strategy, |bytes| {
                w.run(&bytes, || fuzz_verify(&path, &bytes))
                    .map_err(TestCaseError::fail)
            })
            .unwrap();
    });
    eprintln!("fuzz: verify ran {runs} executions");
}

#[test]
fn fuzz_configuration_loader() {
    let seeds: Vec<Vec<u8>> = corpus("config").into_iter().map(|(_, b)| b).collect();
    let n = cases(4000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.toml");
    let runs = watched("config", move |w| {
        runner(n, 3)
            .run(&bytes_input(seeds), |bytes| {
                w.run(&bytes, || fuzz_config(&path, &bytes))
                    .map_err(TestCaseError::fail)
            })
            .unwrap();
    });
    eprintln!("fuzz: configuration loader ran {runs} executions");
}
