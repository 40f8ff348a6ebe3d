//! Guarantee: a record whose receipt said `Durable` survives the writer
//! being killed at any moment, byte for byte; a kill leaves at most one
//! torn final line, which the next writer cuts off the file and names (byte
//! offset, length, SHA-256) in a `sink_notice` audit_gap where it was;
//! the next writer continues the chain and the seq numbering without a
//! duplicate: no seq the killed writer handed out (even one never written)
//! is given to another record, and the seqs it reserved but never wrote
//! are named in a `seq_skipped` audit_gap record. (docs/guarantees.md,
//! "Process crash".)
//!
//! The writer is `src/bin/crash-writer.rs`: 4 tasks emitting as fast as
//! they can with `fsync = "batch"`, printing each seq once its receipt
//! reached Durable. It is SIGKILLed 5 to 50 ms after it says it is ready,
//! at least 200 times (`AGENT_AUDIT_CRASH_KILLS` raises the count, never
//! lowers it). After every kill the whole file is held to the promise.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_audit::jsonl::verify::{self, ProblemKind, VerifyOptions, VerifyReport};
use agent_audit::jsonl::{ReadError, Reader};
use agent_audit_tests::chain::{ChainChecker, check_file};
use agent_audit_tests::crash_payload;
use agent_audit_tests::procs::Lines;
use rand::Rng;

const MIN_KILLS: usize = 200;
const TASKS: usize = 4;

#[test]
fn durable_records_survive_sigkill_at_random_moments_and_the_next_writer_continues() {
    let kills = std::env::var("AGENT_AUDIT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MIN_KILLS)
        .max(MIN_KILLS);
    let exe = env!("CARGO_BIN_EXE_crash-writer");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let mut rng = rand::thread_rng();

    let mut checker = ChainChecker::new();
    let mut before: Vec<u8> = Vec::new();
    // seq -> (task, n) of every tool_call record in the file.
    let mut written: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut durable_confirmed = 0u64;
    let mut torn_tails = 0u64;
    // Torn lines a restart cut off and named.
    let mut torn_cut = 0u64;
    let mut gap_notices = 0u64;
    let mut highest_durable = 0u64;
    // The highest seq any killed writer handed out (its `A` lines).
    let mut highest_accepted = 0u64;
    let mut skipped_gaps = 0u64;
    let mut accepted_unwritten = 0u64;
    // Offset of the last whole record line checked: verification of the
    // next round's bytes starts there, so the link into them is checked.
    let mut last_record_at: Option<u64> = None;
    let mut verified_bytes = 0u64;
    let region_file = dir.path().join("region.jsonl");
    let started = Instant::now();

    for round in 0..kills {
        let mut child = Command::new(exe)
            .arg(&path)
            .arg(TASKS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crash-writer");
        let lines = Lines::spawn(child.stdout.take().unwrap());
        let ready = lines.next_within(Duration::from_secs(60));
        let Some(next_seq) = ready
            .as_deref()
            .and_then(|l| l.strip_prefix("READY "))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "round {round}: crash-writer did not get ready (said {ready:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // The next writer continues the numbering: nothing in the file, and
        // nothing ever acknowledged, gets its seq again.
        let floor = checker
            .last_seq()
            .unwrap_or(0)
            .max(highest_durable)
            .max(highest_accepted);
        assert!(
            next_seq > floor,
            "round {round}: the writer restarted at seq {next_seq}, but seq {floor} is already taken"
        );
        let last_in_file = checker.last_seq().unwrap_or(0);
        // The torn final line the last kill left, if any: the writer since
        // must have cut it and named it in its first record there.
        let torn_before = checker
            .torn_tail(&before)
            .map(|(at, len)| (at, before[at as usize..(at + len) as usize].to_vec()));

        std::thread::sleep(Duration::from_millis(rng.gen_range(5..=50)));
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        if status.signal() != Some(libc::SIGKILL) {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!(
                "round {round}: crash-writer ended on its own ({status}) before the kill: {err}"
            );
        }
        let durable = lines.rest();

        let bytes = std::fs::read(&path).unwrap();
        // Append-only but for a torn final line: what was checked after
        // earlier kills (every whole line) is unchanged.
        let region_start = checker.consumed();
        let checked = region_start as usize;
        assert!(
            bytes.len() >= checked && bytes[..checked] == before[..checked],
            "round {round}: bytes checked after an earlier kill changed"
        );
        let new = checker
            .feed(&bytes)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        if let Some((at, torn)) = &torn_before {
            // Cut back to where the torn line began; the first record there
            // (unless this writer was killed before it was whole) names it,
            // never by its bytes.
            assert!(bytes.len() as u64 >= *at);
            if let Some(first) = new.first() {
                assert_eq!(
                    first.offset, *at,
                    "round {round}: the torn line was not cut"
                );
                let detail = first.payload()["detail"].as_str().unwrap_or("");
                for part in [
                    format!("{} bytes at byte offset {at} ", torn.len()),
                    format!("SHA-256 {}", agent_audit_tests::chain::line_hash(torn)),
                ] {
                    assert!(
                        first.event_type() == "audit_gap" && detail.contains(&part),
                        "round {round}: the first record after the cut does not name it (`{part}`): {:?}",
                        first.value
                    );
                }
                torn_cut += 1;
            }
        }
        for rec in &new {
            match rec.event_type() {
                "tool_call" => {
                    let p = rec.payload();
                    let (task, n) = (p["task"].as_u64().unwrap(), p["n"].as_u64().unwrap());
                    assert_eq!(
                        *p,
                        crash_payload(task as usize, n),
                        "round {round}: seq {} holds a payload that was never emitted",
                        rec.seq
                    );
                    written.insert(rec.seq, (task, n));
                }
                "audit_gap" if rec.payload()["reason"] == "seq_skipped" => {
                    let p = rec.payload();
                    let (from, to) = (p["from_seq"].as_u64(), p["to_seq"].as_u64());
                    // From right after the file's last record: a torn
                    // line's prefix sets nothing (the lease covers its seq).
                    assert!(
                        from == Some(last_in_file + 1),
                        "round {round}: the skipped range starts right after the file's last seq {last_in_file}: {:?}",
                        rec.value
                    );
                    assert!(
                        to.is_some_and(|to| to >= highest_accepted && rec.seq > to),
                        "round {round}: the skipped range covers every seq handed out (up to {highest_accepted}): {:?}",
                        rec.value
                    );
                    skipped_gaps += 1;
                }
                "audit_gap" => {
                    assert_eq!(rec.payload()["reason"], "sink_notice", "{:?}", rec.value);
                    gap_notices += 1;
                }
                other => panic!("round {round}: unexpected event type {other}"),
            }
        }
        let mut accepted_now = Vec::new();
        for line in &durable {
            if line.starts_with("READY") {
                continue;
            }
            if let Some(seq) = line.strip_prefix("A ") {
                accepted_now.push(seq.parse::<u64>().unwrap());
                continue;
            }
            let parts: Vec<u64> = line
                .strip_prefix("D ")
                .unwrap_or_else(|| panic!("round {round}: odd line from the writer: {line}"))
                .split(' ')
                .map(|s| s.parse().unwrap())
                .collect();
            let (seq, task, n) = (parts[0], parts[1], parts[2]);
            assert_eq!(
                written.get(&seq),
                Some(&(task, n)),
                "round {round}: seq {seq} was acknowledged Durable (task {task}, record {n}) but is not in the file"
            );
            highest_durable = highest_durable.max(seq);
            durable_confirmed += 1;
        }
        for seq in accepted_now {
            highest_accepted = highest_accepted.max(seq);
            if !written.contains_key(&seq) {
                accepted_unwritten += 1;
            }
        }

        // The reader, on what this round added: every line a record, except
        // at most one torn final line (the previous round's was cut).
        let region = &bytes[region_start as usize..];
        let mut errors = Vec::new();
        let mut count = 0u64;
        for item in Reader::new(&path, region) {
            count += 1;
            if let Err(e) = item {
                errors.push((count, e));
            }
        }
        for (i, (line, e)) in errors.iter().enumerate() {
            match e {
                ReadError::TornFinalLine { .. } => {
                    assert!(
                        i == errors.len() - 1 && *line == count,
                        "round {round}: a torn line that is not the last: {e}"
                    );
                    torn_tails += 1;
                }
                other => panic!("round {round}: reader error {other}"),
            }
        }
        assert_eq!(
            errors
                .iter()
                .any(|(_, e)| matches!(e, ReadError::TornFinalLine { .. })),
            checker.torn_tail(&bytes).is_some(),
            "round {round}: the reader and the checker disagree about a torn tail"
        );
        // The verifier (agent-audit-jsonl's `verify`), on the same part of
        // the file plus the last record before it: intact, apart from a
        // reported torn tail. What came before was verified in an earlier
        // round and is unchanged (checked above).
        let from = last_record_at.unwrap_or(0) as usize;
        std::fs::write(&region_file, &bytes[from..]).unwrap();
        verified_bytes += (bytes.len() - from) as u64;
        let report = verify::verify(
            &[&region_file],
            &VerifyOptions {
                partial: last_record_at.is_some(),
                ..VerifyOptions::default()
            },
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("round {round}: verify: {e}"));
        assert_torn_tail_at_most(&report, checker.torn_tail(&bytes).is_some(), round);
        if let Some(last) = new.last() {
            last_record_at = Some(last.offset);
        }
        before = bytes;
    }

    // Once more from scratch, over the whole file, with both checkers.
    let summary = check_file(&path, None).unwrap();
    let report = verify::verify(&[&path], &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert_torn_tail_at_most(&report, summary.torn_tail.is_some(), kills);
    assert_eq!(report.records, summary.records.len() as u64);
    assert_eq!(report.last_seq, summary.records.last().map(|r| r.seq));
    assert_eq!(summary.records.len() as u64, checker.records);
    assert_eq!(
        checker.damaged, 0,
        "a line that is not a record was left in the log"
    );
    assert!(summary.records.len() as u64 >= durable_confirmed.min(1));
    assert!(
        skipped_gaps > 0,
        "no restart ever found seqs reserved ahead of the file: the lease is not in use"
    );
    eprintln!(
        "crash loop: {kills} SIGKILLs survived in {:.1?}; {} records checked (chain, seq, payload), {durable_confirmed} Durable receipts confirmed in the file, {torn_tails} torn tails seen and {torn_cut} cut and named by the next writer, {gap_notices} audit_gap notices, {accepted_unwritten} seqs handed out but never written and never reused, {skipped_gaps} seq_skipped records, {} bytes; verify run {} times over {verified_bytes} bytes",
        started.elapsed(),
        summary.records.len(),
        before.len(),
        kills + 1
    );
}

/// `verify` found nothing, or only the torn final line the kill left.
fn assert_torn_tail_at_most(report: &VerifyReport, torn: bool, round: usize) {
    match &report.problem {
        None => assert!(!torn, "round {round}: verify missed the torn tail"),
        Some(p) => {
            assert!(
                torn && p.kind == ProblemKind::TornTail,
                "round {round}: verify found {:?} at line {}: {}",
                p.kind,
                p.line,
                p.message
            );
        }
    }
}

/// Guarantee: a receipt says `Durable` only after the record's bytes were
/// handed to `fdatasync(2)` and it returned, and after the directory entry
/// of a newly created log was synced (docs/guarantees.md, "Power loss").
///
/// A power cut cannot be staged in a test; what can be proven is the order
/// of operations the promise rests on. The crash writer runs under strace
/// (installed by `.ci/setup.d/strace.sh`), which records every `write`,
/// `fdatasync` and `fsync` in the order it observed them; a thread printing
/// a `D <seq>` line is woken only after the sink thread's `fdatasync`
/// returned, so that order is the real one. For every seq printed, the
/// bytes up to the end of its line must have been written before the start
/// of an `fdatasync` of the log that returned 0 before the print.
#[test]
fn durable_receipts_come_only_after_fdatasync_of_their_bytes() {
    const PER_TASK: u64 = 5000;
    let strace = ["/usr/bin/strace", "/bin/strace"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("strace not installed: run .ci/setup.d/strace.sh (scripts/test.sh does)")
        });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.jsonl");
    let trace = dir.path().join("trace.txt");
    let out = Command::new(strace)
        .args([
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=openat,write,fdatasync,fsync,close",
            "-s",
            "64",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(&path)
        .arg(TASKS.to_string())
        .arg(PER_TASK.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crash-writer under strace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Where each seq's line ends in the file.
    let bytes = std::fs::read(&path).unwrap();
    let summary = agent_audit_tests::chain::check_bytes(&bytes, None).unwrap();
    let end_of: HashMap<u64, u64> = summary
        .records
        .iter()
        .map(|r| (r.seq, r.offset + r.bytes.len() as u64 + 1))
        .collect();

    let text = std::fs::read_to_string(&trace).unwrap();
    let mut t = SyncTrace {
        log: format!("{:?}", path.display().to_string()),
        dir: format!("{:?}", dir.path().display().to_string()),
        ..SyncTrace::default()
    };
    let mut checked = 0u64;
    for line in text.lines() {
        if let Some(seq) = t.line(line) {
            let end = end_of[&seq];
            assert!(
                end <= t.synced && t.dir_synced,
                "seq {seq} (its line ends at byte {end}) was acknowledged Durable when only {} bytes were synced (directory synced: {})",
                t.synced,
                t.dir_synced
            );
            checked += 1;
        }
    }
    let written = t.written;
    assert_eq!(
        written,
        bytes.len() as u64,
        "every byte of the file was seen written"
    );
    assert_eq!(
        checked,
        TASKS as u64 * PER_TASK,
        "every receipt was checked"
    );
    eprintln!("fdatasync order: {checked} Durable receipts, each after the fdatasync of its bytes");
}

/// Follows an strace log of `openat`, `write`, `fdatasync` and `fsync`.
#[derive(Default)]
struct SyncTrace {
    /// The log's path and its directory, quoted as strace prints them.
    log: String,
    dir: String,
    log_fd: Option<String>,
    dir_fds: Vec<String>,
    /// Bytes whose write to the log returned.
    written: u64,
    /// Bytes written before the entry of an fdatasync that returned 0.
    synced: u64,
    dir_synced: bool,
    /// Calls entered but not yet returned, per thread: (name, arguments,
    /// `written` at entry).
    pending: HashMap<String, (String, String, u64)>,
}

impl SyncTrace {
    /// Takes one line; returns the seq of a `D <seq>` print it starts.
    fn line(&mut self, line: &str) -> Option<u64> {
        let (pid, rest) = line.split_once(' ')?;
        let rest = rest.trim_start();
        let ret = |s: &str| s.rsplit_once(" = ").map(|(_, r)| r.trim().to_string());
        if let Some(r) = rest.strip_prefix("<... ") {
            let (name, args, at) = self.pending.remove(pid)?;
            self.complete(&name, &args, at, ret(r)?);
            return None;
        }
        let (name, args) = rest.split_once('(')?;
        let mut printed = None;
        if name == "write" && args.starts_with("1, \"D ") {
            printed = args
                .split('"')
                .nth(1)
                .and_then(|p| p.strip_prefix("D "))
                .and_then(|p| p.split(' ').next())
                .and_then(|s| s.parse().ok());
        }
        let at = self.written;
        if rest.ends_with("<unfinished ...>") {
            self.pending
                .insert(pid.to_string(), (name.to_string(), args.to_string(), at));
        } else if let Some(r) = ret(rest) {
            self.complete(name, args, at, r);
        }
        printed
    }

    fn complete(&mut self, name: &str, args: &str, at_entry: u64, ret: String) {
        let fd = args.split([',', ')', ' ']).next().unwrap_or("").to_string();
        match name {
            // The writer's descriptor, not a reader's: the sink opens the
            // log again read-only to find its first line.
            "openat" if args.contains(&self.log) && args.contains("O_APPEND") => {
                self.log_fd = Some(ret)
            }
            "openat" if args.contains(&format!("{},", self.dir)) => self.dir_fds.push(ret),
            "write" if Some(&fd) == self.log_fd.as_ref() => {
                self.written += ret.parse::<u64>().unwrap_or(0);
            }
            "fdatasync" if Some(&fd) == self.log_fd.as_ref() && ret == "0" => {
                self.synced = self.synced.max(at_entry);
            }
            "fsync" if self.dir_fds.contains(&fd) && ret == "0" => self.dir_synced = true,
            // A closed descriptor's number is reused (by the seq lease's
            // temporary file, say): an fsync of that is not the directory's.
            "close" if ret == "0" => self.dir_fds.retain(|d| *d != fd),
            _ => {}
        }
    }
}

// ------------------------------------------------ the seq lease file itself

fn leased_start(
    log: &std::path::Path,
) -> impl std::future::Future<Output = Result<agent_audit::Dispatcher, agent_audit::StartError>> {
    let lease = agent_audit::jsonl::FileLease::for_log(log).unwrap();
    let sink = agent_audit::jsonl::JsonlSink::new(
        agent_audit::jsonl::JsonlOptions::new(log).fsync(agent_audit::jsonl::FsyncPolicy::Batch),
    )
    .unwrap();
    agent_audit::Dispatcher::builder()
        .sink(agent_audit::SinkOptions::new("jsonl"), sink)
        .seq_lease(std::sync::Arc::new(lease))
        .lease_block(16)
        .start()
}

async fn write_records(log: &std::path::Path, n: u64) -> Vec<u64> {
    let d = leased_start(log).await.unwrap();
    let a = agent_audit::Auditor::new(d.clone());
    let mut seqs = Vec::new();
    for i in 0..n {
        let r = a
            .emit_wait(
                agent_audit::EventType::ToolCall,
                &serde_json::json!({"i": i}),
                agent_audit::AckLevel::Durable,
            )
            .await
            .unwrap();
        seqs.push(r.seq);
    }
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_file_at_the_top_of_the_seq_space_refuses_the_start_and_leaves_log_and_lease_as_they_were()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let seq_file = dir.path().join("audit-log.jsonl.seq");
    assert_eq!(write_records(&log, 3).await, vec![1, 2, 3]);
    let log_before = std::fs::read(&log).unwrap();
    for top in [u64::MAX, agent_audit::MAX_SEQ] {
        let lease = format!("upto {top:020}\n");
        std::fs::write(&seq_file, &lease).unwrap();
        let err = leased_start(&log).await.unwrap_err();
        assert!(
            matches!(err, agent_audit::StartError::SeqExhausted { last_seq, .. } if last_seq == top),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("audit-log.jsonl.seq") && msg.contains("never wrap"),
            "{msg}"
        );
        // Before, the next writer handed out 0, 1, 2... after seq 3.
        assert_eq!(std::fs::read(&log).unwrap(), log_before, "log untouched");
        assert_eq!(std::fs::read_to_string(&seq_file).unwrap(), lease);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbering_runs_up_to_the_last_seq_of_a_lease_file_and_stops_there_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let seq_file = dir.path().join("audit-log.jsonl.seq");
    write_records(&log, 3).await;
    let max = agent_audit::MAX_SEQ;
    std::fs::write(&seq_file, format!("upto {:020}\n", max - 5)).unwrap();
    let d = leased_start(&log).await.unwrap();
    let a = agent_audit::Auditor::new(d.clone());
    let mut got = Vec::new();
    let mut refused = 0;
    for i in 0..10 {
        match a
            .emit_wait(
                agent_audit::EventType::ToolCall,
                &serde_json::json!({"i": i}),
                agent_audit::AckLevel::Durable,
            )
            .await
        {
            Ok(r) => got.push(r.seq),
            Err(agent_audit::EmitError::SeqExhausted { last_seq }) => {
                assert_eq!(last_seq, max);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // seq_skipped takes max - 4.
    assert_eq!(got, ((max - 3)..=max).collect::<Vec<_>>());
    assert_eq!(refused, 6);
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        std::fs::read_to_string(&seq_file).unwrap(),
        format!("upto {max:020}\n"),
        "never a lease beyond the last seq"
    );
    // One chain, seqs rising to the last one, no wrap.
    let recs = check_file(&log, None).unwrap().records;
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    let mut want = vec![1, 2, 3];
    want.extend((max - 4)..=max);
    assert_eq!(seqs, want);
    assert_eq!(recs[3].payload()["reason"], "seq_skipped");
    // And the next start says there is nothing left.
    let err = leased_start(&log).await.unwrap_err();
    assert!(
        matches!(err, agent_audit::StartError::SeqExhausted { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_file_its_writer_left_torn_is_recovered_from_the_log_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let seq_file = dir.path().join("audit-log.jsonl.seq");
    let mut next = write_records(&log, 7).await.last().copied().unwrap() + 1;
    // What an earlier version's first store left when the disk was full
    // or the process died mid-write.
    for torn in [&b""[..], b"upto 000000000", &[0u8; 26]] {
        std::fs::write(&seq_file, torn).unwrap();
        let seqs = write_records(&log, 2).await;
        // The recovery note takes the first seq after the log's last.
        assert_eq!(seqs, vec![next + 1, next + 2], "{torn:?}");
        let recs = check_file(&log, None).unwrap().records;
        let note = recs.iter().find(|r| r.seq == next).unwrap();
        assert_eq!(note.event_type(), "audit_gap");
        assert_eq!(note.payload()["reason"], "lease_notice");
        assert!(
            note.payload()["detail"]
                .as_str()
                .unwrap()
                .contains("continues after the log's last record"),
            "{}",
            note.payload()
        );
        next += 3;
    }
    // Foreign content is not guessed at.
    std::fs::write(&seq_file, "hello, world\n").unwrap();
    let err = leased_start(&log).await.unwrap_err().to_string();
    assert!(
        err.contains("audit-log.jsonl.seq") && !err.contains("hello"),
        "{err}"
    );
}
