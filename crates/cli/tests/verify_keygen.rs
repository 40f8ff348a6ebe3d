//! `agent-audit verify` and `agent-audit keygen` as a user runs them: the
//! real binary on logs written by the real sink, exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agent_audit::jsonl::checkpoint::{CheckpointOptions, Checkpointer};
use agent_audit::jsonl::keys::Signer;
use agent_audit::jsonl::{JsonlOptions, JsonlSink};
use agent_audit::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};

const KEY: &str = "7f3a9c1e5b2d8f4a6c0e9b3d7a1f5c2e8b4d0a6f3c9e1b7d5a2f8c4e0b6d3a9f";

fn agent_audit(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-audit"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run agent-audit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("unrecognized subcommand"),
        "`agent-audit {}` is not wired into the CLI: add `Verify(cmd::verify::Args)` and `Keygen(cmd::keygen::Args)` to the subcommand enum in main.rs and `pub mod verify; pub mod keygen;` to cmd/mod.rs\n{err}",
        args[0]
    );
    out
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `n` records through the real sink, optionally keyed and with a
/// checkpointer signing with `signer`; a second sink stands for the
/// collector's copy.
async fn write_log(dir: &Path, n: u64, key: bool, signer: Option<Signer>) -> (PathBuf, PathBuf) {
    let path = dir.join("audit-log.jsonl");
    let copy = dir.join("copy").join("collector.jsonl");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let mut opts = JsonlOptions::new(&path);
    if key {
        opts = opts.chain_key(KEY);
    }
    let sink = JsonlSink::new(opts).unwrap();
    let head = sink.head_handle();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("jsonl"), sink)
        .sink(
            SinkOptions::new("collector"),
            JsonlSink::new(JsonlOptions::new(&copy)).unwrap(),
        )
        .start()
        .await
        .unwrap();
    let cp = signer.map(|s| {
        Checkpointer::start(
            Auditor::new(d.clone()),
            head,
            s,
            CheckpointOptions {
                every: 5,
                interval: Duration::from_secs(3600),
            },
        )
        .unwrap()
    });
    let a = Auditor::new(d.clone()).for_request(Some("r1"));
    for i in 0..n {
        a.emit_wait(
            EventType::ToolCall,
            &serde_json::json!({"i": i}),
            AckLevel::Written,
        )
        .await
        .unwrap();
    }
    if let Some(cp) = cp {
        cp.finish().await.unwrap();
    }
    assert!(d.shutdown(Duration::from_secs(10)).await.is_clean());
    (path, copy)
}

fn edit_line(path: &Path, index: usize, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines[index].contains(from));
    lines[index] = lines[index].replacen(from, to, 1);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_0_1_2_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_log(dir.path(), 8, false, None).await;
    let p = path.to_str().unwrap();

    let o = agent_audit(&["verify", p], &[]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("intact: 8 records"),
        "{}",
        stdout(&o)
    );
    // Not a terminal: no progress bar on stderr.
    assert_eq!(stderr(&o), "");

    edit_line(&path, 2, "\"i\":2", "\"i\":9");
    let o = agent_audit(&["verify", p], &[]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains(&format!("{p}:3: edited")),
        "{}",
        stdout(&o)
    );

    let o = agent_audit(&["verify", "--json", p], &[]);
    assert_eq!(code(&o), 1);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["problem"]["kind"], "edited");
    assert_eq!(report["problem"]["line"], 3);

    let missing = dir.path().join("missing.jsonl");
    let o = agent_audit(&["verify", missing.to_str().unwrap()], &[]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("missing.jsonl"), "{}", stderr(&o));
    let o = agent_audit(&["verify", "--json", missing.to_str().unwrap()], &[]);
    assert_eq!(code(&o), 2);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["error"].as_str().unwrap().contains("missing.jsonl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_takes_the_chain_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_log(dir.path(), 6, true, None).await;
    let p = path.to_str().unwrap();
    let o = agent_audit(&["verify", "--key-env", "CHAIN_K", p], &[("CHAIN_K", KEY)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("chain hmac-sha256"));

    let o = agent_audit(&["verify", p], &[]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("key_mismatch") && stdout(&o).contains("--key-env"),
        "{}",
        stdout(&o)
    );

    let o = agent_audit(&["verify", "--key-env", "CHAIN_K_UNSET", p], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("CHAIN_K_UNSET is not set"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_then_signed_checkpoints_verify_and_truncation_is_caught_off_host() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let o = agent_audit(&["keygen", "--out", keys.to_str().unwrap()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("signing_key_file = "), "{}", stdout(&o));
    let private = keys.join("audit-signing-key.pem");
    let public = keys.join("audit-signing-key.pub.pem");
    let o = agent_audit(&["keygen", "--out", keys.to_str().unwrap()], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );

    let signer = Signer::load(&private).unwrap();
    let (path, copy) = write_log(dir.path(), 12, false, Some(signer)).await;
    let (p, pk, c) = (
        path.to_str().unwrap(),
        public.to_str().unwrap(),
        copy.to_str().unwrap(),
    );
    let o = agent_audit(&["verify", "--public-key", pk, "--checkpoints", c, p], &[]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("signatures verified"), "{}", stdout(&o));

    // Cut the last three lines (the shutdown checkpoint among them).
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, lines[..lines.len() - 3].join("\n") + "\n").unwrap();
    let o = agent_audit(&["verify", "--public-key", pk, p], &[]);
    assert_eq!(code(&o), 0, "locally the cut is invisible: {}", stdout(&o));
    let o = agent_audit(&["verify", "--public-key", pk, "--checkpoints", c, p], &[]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("truncated"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_nan_record_between_two_records_of_a_keyed_signed_log_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let o = agent_audit(&["keygen", "--out", keys.to_str().unwrap()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let signer = Signer::load(keys.join("audit-signing-key.pem")).unwrap();
    let (path, _) = write_log(dir.path(), 12, true, Some(signer)).await;
    let (p, pk) = (
        path.to_str().unwrap(),
        keys.join("audit-signing-key.pub.pem"),
    );
    let args = [
        "verify",
        "--key-env",
        "CHAIN_K",
        "--public-key",
        pk.to_str().unwrap(),
        p,
    ];
    let o = agent_audit(&args, &[("CHAIN_K", KEY)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));

    // What an attacker without the key writes: a tool_call record that
    // Python's json and jq read as any other, with "seq":NaN so that this
    // reader does not, put between two records.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let forged = lines[4]
        .replacen(r#""seq":5,"#, r#""seq":NaN,"#, 1)
        .replacen(r#""i":4"#, r#""i":"rm -rf /srv/data""#, 1);
    assert!(
        forged.contains("NaN") && forged.contains("rm -rf"),
        "{forged}"
    );
    lines.insert(5, forged);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let o = agent_audit(&args, &[("CHAIN_K", KEY)]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("{p}:6: bad_json")),
        "{}",
        stdout(&o)
    );
}

/// Runs the binary with stdout and stderr to files, sampling the child's
/// peak resident set (`VmHWM` in /proc/<pid>/status) every millisecond
/// until it exits. Returns the exit code, the peak in KiB, and stderr.
fn peak_rss(args: &[&str], dir: &Path) -> (i32, u64, String) {
    let out = std::fs::File::create(dir.join("stdout")).unwrap();
    let err = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(args)
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        // Read before try_wait: once reaped, the pid's status is gone.
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    // Killed by a signal (an abort on allocation failure) has no code.
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{args:?}: {status}\n{stderr}"));
    (code, peak, stderr)
}

/// What the checking tools may use, whatever the file.
const RSS_BOUND_KIB: u64 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checking_tools_stay_small_on_millions_of_bad_lines_and_one_endless_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_log(dir.path(), 3, false, None).await;
    // Three million short junk lines after three records (20 MB).
    let mut data = std::fs::read(&path).unwrap();
    let junk: [&[u8]; 6] = [
        b"junk!\n",
        b"{\"v\":1,\n",
        b"NaN NaN\n",
        b"]]]]]]\n",
        b"\xff\xfe\xfd\xfc\n",
        b"{{{{{{\n",
    ];
    for i in 0..3_000_000 {
        data.extend_from_slice(junk[i % junk.len()]);
    }
    std::fs::write(&path, &data).unwrap();
    drop(data);
    let p = path.to_str().unwrap();
    let work = dir.path().join("out");
    std::fs::create_dir_all(&work).unwrap();
    for (args, expect) in [
        (vec!["verify", p], 1),
        (vec!["tail", "-n", "5", p], 1),
        (vec!["stats", p], 0),
        (vec!["show", p], 1),
        (vec!["timeline", "--request-id", "r1", p], 0),
    ] {
        let (code, kib, stderr) = peak_rss(&args, &work);
        eprintln!(
            "{args:?}: exit {code}, peak RSS {kib} KiB, {} bytes on stderr",
            stderr.len()
        );
        assert_eq!(code, expect, "{args:?}: {stderr:.2000}");
        assert!(kib < RSS_BOUND_KIB, "{args:?}: peak RSS {kib} KiB");
        // The first bad lines in full, the rest counted.
        assert!(
            stderr.len() < 64 << 10,
            "{args:?}: {} bytes on stderr",
            stderr.len()
        );
    }
    let (_, _, shown) = peak_rss(&["show", p], &work);
    assert!(shown.contains("more line(s)"), "{shown:.2000}");

    // One line of 300 MB without a newline.
    let huge = dir.path().join("huge.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&huge).unwrap());
        f.write_all(br#"{"v":1,"seq":1,"ts":""#).unwrap();
        let block = vec![b'a'; 1 << 20];
        for _ in 0..300 {
            f.write_all(&block).unwrap();
        }
    }
    let h = huge.to_str().unwrap();
    for args in [
        vec!["verify", h],
        vec!["tail", "-n", "5", h],
        vec!["show", h],
        vec!["stats", h],
    ] {
        let (code, kib, stderr) = peak_rss(&args, &work);
        eprintln!("{args:?}: exit {code}, peak RSS {kib} KiB");
        assert!(kib < RSS_BOUND_KIB, "{args:?}: peak RSS {kib} KiB");
        if args[0] == "stats" {
            assert_eq!(code, 0, "{stderr}");
        } else if args[0] == "tail" {
            // The line may still be being written: said, not failed.
            assert_eq!(code, 0, "{stderr}");
            assert!(
                stderr.contains(&format!("{h}:1: ")) && stderr.contains("no newline yet"),
                "{stderr}"
            );
        } else {
            assert_eq!(code, 1, "{args:?}: {stderr}");
        }
    }
    let o = agent_audit(&["verify", h], &[]);
    assert!(
        stdout(&o).contains(&format!("{h}:1: torn_tail")) && stdout(&o).contains("longer than"),
        "{}",
        stdout(&o)
    );
    let o = agent_audit(&["show", h], &[]);
    assert!(
        stderr(&o).contains(&format!("{h}:1: ")) && stderr(&o).contains("longer than"),
        "{}",
        stderr(&o)
    );
}

/// `verify --checkpoints COPY` where COPY is a full copy of a log (allowed:
/// lines of other event types are skipped) of 200 MB: the copy is read
/// line by line, keeping only its checkpoints, so memory does not grow
/// with it (before, the whole copy was read into one string first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_streams_a_large_checkpoints_copy_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let o = agent_audit(&["keygen", "--out", keys.to_str().unwrap()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let signer = Signer::load(keys.join("audit-signing-key.pem")).unwrap();
    let (path, copy) = write_log(dir.path(), 12, false, Some(signer)).await;
    // The collector's copy, then 200 MB of other records it also holds.
    let filler = format!(
        "{{\"event_type\":\"tool_call\",\"payload\":{{\"note\":\"{}\"}}}}\n",
        "x".repeat(2000)
    );
    let block = filler.repeat(1000);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap();
    while f.metadata().unwrap().len() < 200 << 20 {
        std::io::Write::write_all(&mut f, block.as_bytes()).unwrap();
    }
    drop(f);
    let public = keys.join("audit-signing-key.pub.pem");
    let work = tempfile::tempdir().unwrap();
    let args = [
        "verify",
        "--public-key",
        public.to_str().unwrap(),
        "--checkpoints",
        copy.to_str().unwrap(),
        path.to_str().unwrap(),
    ];
    let (code, kib, stderr) = peak_rss(&args, work.path());
    eprintln!("verify --checkpoints (200 MB copy): exit {code}, peak RSS {kib} KiB");
    assert_eq!(code, 0, "{stderr}");
    assert!(kib < RSS_BOUND_KIB, "peak RSS {kib} KiB");
}
