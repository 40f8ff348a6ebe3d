//! Attacks on record reuse (the dispatcher's `recycle`, issue 15): a
//! record a sink still holds, strongly or weakly, in a spawned task, across
//! retries, a panic or an abandoned shutdown, must never change; no field
//! of a reused record may show in the record filled into it; seqs,
//! receipts and acknowledgements are as without reuse.
//!
//! Every sink here is a real implementation of the sink traits that
//! remembers what it was given; the property is the dispatcher's, not a
//! destination's (the JSONL file is checked in the jsonl crate's
//! `tests/reuse_file.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use agent_audit_core::ids::TraceContext;
use agent_audit_core::{
    AckLevel, AsyncSink, Attributes, Auditor, Batch, Dispatcher, EmitError, EventType, FailureKind,
    MemorySink, Overflow, PayloadFilter, Record, Scope, Sink, SinkError, SinkOptions, SpanId,
    StoredRecord, TraceFlags, TraceId,
};
use serde_json::{Value, json};

/// Everything a record shows: every field (private ones too, through
/// `Debug`) and its line as a sink encodes it.
fn fingerprint(r: &Record) -> String {
    let mut line = Vec::new();
    r.encode_line("prev", &mut line);
    format!(
        "{r:?}\nevent: {}\npayload: {}\n{}",
        r.event_type,
        r.payload_json(),
        String::from_utf8_lossy(&line)
    )
}

/// The body a record with these parts must have, built here key by key
/// rather than by the crate's writer.
fn expected_body(event: &str, s: &Scope, payload: &Value) -> String {
    let text = |v: &Option<Arc<str>>| serde_json::to_string(&v.as_deref()).unwrap();
    let parent = s
        .parent_span_id
        .map_or("null".to_string(), |p| format!("\"{p}\""));
    format!(
        "\"event_type\":{},\"request_id\":{},\"correlation_id\":{},\"trace_id\":\"{}\",\"span_id\":\"{}\",\"parent_span_id\":{parent},\"agent\":{},\"user_id\":{},\"session_id\":{},\"attributes\":{},\"payload\":{}",
        serde_json::to_string(event).unwrap(),
        text(&s.request_id),
        text(&s.correlation_id),
        s.trace_id,
        s.span_id,
        text(&s.agent),
        text(&s.user_id),
        text(&s.session_id),
        serde_json::to_string(&s.attributes.to_json_map()).unwrap(),
        serde_json::to_string(payload).unwrap(),
    )
}

/// Checks that every public view of `r` shows exactly `event`, `scope` and
/// `payload`, and nothing else.
fn assert_exactly(r: &Record, event: &str, scope: &Scope, payload: &Value) {
    let seq = r.seq;
    assert_eq!(r.event_type.as_str(), event, "seq {seq}: event type");
    assert_eq!(&*r.scope, scope, "seq {seq}: scope");
    let body = expected_body(event, scope, payload);
    assert_eq!(r.body(), body, "seq {seq}: body");
    assert_eq!(
        r.payload_json(),
        serde_json::to_string(payload).unwrap(),
        "seq {seq}: payload text"
    );
    assert_eq!(&r.payload_value(), payload, "seq {seq}: payload value");
    let mut line = Vec::new();
    r.encode_line("p", &mut line);
    let expected_line = format!(
        "{{\"v\":2,\"seq\":{seq},\"ts\":\"{}\",{body},\"prev\":\"p\"}}",
        r.ts.as_str()
    );
    assert_eq!(
        String::from_utf8(line.clone()).unwrap(),
        expected_line,
        "seq {seq}: line"
    );
    let stored: StoredRecord = serde_json::from_slice(&line).unwrap();
    assert_eq!(stored, r.to_stored("p"), "seq {seq}: stored form");
    assert_eq!(&stored.payload, payload, "seq {seq}: stored payload");
}

/// What a sink saw of each record: its fingerprint by seq, the records
/// it keeps and the problems it found (a retry that saw other content).
#[derive(Clone, Default)]
struct Seen {
    by_seq: Arc<Mutex<BTreeMap<u64, String>>>,
    order: Arc<Mutex<Vec<u64>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    /// Notes a record as seen now; a second sight (a retry) must match.
    fn note(&self, r: &Record) {
        let f = fingerprint(r);
        let mut by_seq = self.by_seq.lock().unwrap();
        match by_seq.get(&r.seq) {
            Some(before) if *before != f => self.problems.lock().unwrap().push(format!(
                "seq {} changed between two sights:\n{before}\n{f}",
                r.seq
            )),
            Some(_) => {}
            None => {
                by_seq.insert(r.seq, f);
            }
        }
    }

    fn order(&self, batch: &Batch<'_>) {
        self.order
            .lock()
            .unwrap()
            .extend(batch.records.iter().map(|r| r.seq));
    }

    fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }

    fn fingerprint(&self, seq: u64) -> Option<String> {
        self.by_seq.lock().unwrap().get(&seq).cloned()
    }
}

/// A record held weakly, with its seq.
type WeakOne = (u64, Weak<Record>);

/// A sink that notes what it sees and keeps some records: strongly
/// (`keep_every`), weakly (`weak_every`); it can fail a batch transiently
/// once (`flaky_every` batches), panic part way through a batch after
/// taking clones (`panic_every` batches), a few times each, or sleep.
#[derive(Clone, Default)]
struct Probe {
    seen: Seen,
    kept: Arc<Mutex<Vec<Arc<Record>>>>,
    weak: Arc<Mutex<Vec<WeakOne>>>,
    keep_every: u64,
    weak_every: u64,
    flaky_every: usize,
    panic_every: usize,
    sleep: Duration,
    batches: Arc<AtomicUsize>,
    retried: Arc<AtomicUsize>,
    panicked: Arc<AtomicUsize>,
    /// Seqs this sink saw ahead of the one it saw before: they must rise.
    last: Arc<Mutex<u64>>,
}

impl Probe {
    fn keeping(keep_every: u64, weak_every: u64) -> Probe {
        Probe {
            keep_every,
            weak_every,
            ..Probe::default()
        }
    }

    /// Every record it still holds, strongly or through a weak pointer
    /// that upgrades, must show what it showed when written.
    fn check_held(&self) -> usize {
        let mut checked = 0;
        for r in self.kept.lock().unwrap().iter() {
            assert_eq!(
                Some(fingerprint(r)),
                self.seen.fingerprint(r.seq),
                "a kept record changed"
            );
            checked += 1;
        }
        for (seq, w) in self.weak.lock().unwrap().iter() {
            if let Some(r) = w.upgrade() {
                assert_eq!(r.seq, *seq, "a weak pointer reached another record");
                assert_eq!(
                    Some(fingerprint(&r)),
                    self.seen.fingerprint(*seq),
                    "a weakly held record changed"
                );
                checked += 1;
            }
        }
        checked
    }
}

#[derive(Debug, thiserror::Error)]
#[error("probe: try again")]
struct TryAgain;

impl Sink for Probe {
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let n = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        for r in batch.records {
            self.seen.note(r);
        }
        // A few times each: a retry waits 50 ms, a panic prints.
        if self.flaky_every > 0
            && n.is_multiple_of(self.flaky_every)
            && self.retried.load(Ordering::Relaxed) < 20
        {
            // Failed whole and transient: the dispatcher writes the same
            // batch again, which `note` compares with this sight.
            self.retried.fetch_add(1, Ordering::Relaxed);
            return Err(SinkError::new(FailureKind::Transient, TryAgain));
        }
        {
            let mut last = self.last.lock().unwrap();
            for r in batch.records {
                assert!(r.seq > *last, "seq {} after {}", r.seq, *last);
                *last = r.seq;
            }
        }
        self.seen.order(batch);
        for r in batch.records {
            if self.keep_every > 0 && r.seq % self.keep_every == 0 {
                self.kept.lock().unwrap().push(r.clone());
            }
            if self.weak_every > 0 && r.seq % self.weak_every == 0 {
                self.weak.lock().unwrap().push((r.seq, Arc::downgrade(r)));
            }
        }
        if self.panic_every > 0
            && n.is_multiple_of(self.panic_every)
            && self.panicked.load(Ordering::Relaxed) < 5
        {
            // Clones taken, then a panic: they unwind with the write.
            let _held: Vec<Arc<Record>> = batch.records.to_vec();
            self.panicked.fetch_add(1, Ordering::Relaxed);
            panic!("probe panics on purpose");
        }
        if !self.sleep.is_zero() {
            std::thread::sleep(self.sleep);
        }
        Ok(AckLevel::Written)
    }

    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
}

/// An async sink that notes what it sees and hands clones of the records
/// to a task of their own, which looks at them again later.
///
/// The tasks run on the test's runtime: the sink's own (the bridge's
/// private one) ends with the dispatcher and would cancel them.
#[derive(Clone)]
struct Spawning {
    seen: Seen,
    runtime: tokio::runtime::Handle,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<Vec<String>>>>>,
}

impl Spawning {
    fn new() -> Spawning {
        Spawning {
            seen: Seen::default(),
            runtime: tokio::runtime::Handle::current(),
            tasks: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl AsyncSink for Spawning {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }

    fn max_in_flight(&self) -> usize {
        3
    }

    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        for r in batch.records {
            self.seen.note(r);
        }
        self.seen.order(batch);
        let records: Vec<Arc<Record>> = batch.records.to_vec();
        let seen = self.seen.clone();
        self.tasks
            .lock()
            .unwrap()
            .push(self.runtime.spawn(async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                records
                    .iter()
                    .filter(|r| Some(fingerprint(r)) != seen.fingerprint(r.seq))
                    .map(|r| format!("seq {} changed in a spawned task", r.seq))
                    .collect()
            }));
        tokio::task::yield_now().await;
        Ok(AckLevel::Written)
    }
}

/// What an emitter sent: the event type, the scope and payload the record
/// must show.
type Sent = HashMap<u64, (String, Scope, Value)>;

/// One of several differently scoped handles: a bare one, and ones with
/// every scope field set to values of their own, in another trace with
/// other flags, under a child span.
fn handle(d: &Dispatcher, task: usize, kind: usize) -> Auditor {
    let bare = Auditor::new(d.clone());
    match kind % 3 {
        0 => bare,
        1 => bare
            .with_agent(&format!("agent-{task}-with-a-longer-name"))
            .with_trace_context(TraceContext::new(
                TraceId::random(),
                Some(SpanId::random()),
                TraceFlags::NONE,
            ))
            .for_request(Some(&format!("request-{task}-{}", "r".repeat(task * 5))))
            .with_correlation_id(&format!("correlation-{task}"))
            .with_user(&format!("user-{task}"))
            .with_session(&format!("session-{task}"))
            .with_attribute("task", task as i64)
            .unwrap()
            .with_attribute("zz", "a long attribute value ".repeat(4).as_str())
            .unwrap()
            .child_span(),
        _ => bare.for_request(Some(&format!("r{task}"))).with_agent("b"),
    }
}

/// A payload whose size swings: long, short, empty and, now and then,
/// over the size a reused body is kept at.
fn payload(task: usize, i: usize) -> Value {
    match i % 5 {
        0 => json!({"t": task, "i": i, "long": "L".repeat(1500 + i % 700)}),
        1 => json!({"t": task, "i": i}),
        2 => json!({}),
        3 if i % 35 == 3 => json!({"t": task, "i": i, "huge": "H".repeat(20_000)}),
        _ => json!({"t": task, "i": i, "mid": "m".repeat(200), "n": [1, 2, 3]}),
    }
}

fn event(i: usize) -> &'static str {
    match i % 4 {
        0 => "tool_call",
        1 => "x",
        2 => "a_custom_event_type_with_a_much_longer_name_than_the_others",
        _ => "final_result",
    }
}

/// Emits `n` records from each of `tasks` tasks on `d`, sizes, scopes and
/// event types varying; returns what was sent by seq. Emits a full
/// `fail_closed` queue refuses are left out.
async fn emit_many(d: &Dispatcher, tasks: usize, n: usize) -> Sent {
    let mut joins = Vec::new();
    for t in 0..tasks {
        let handles: Vec<Auditor> = (0..3).map(|k| handle(d, t, k)).collect();
        joins.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..n {
                let a = &handles[(i + t) % 3];
                let p = payload(t, i);
                match a.emit(event(i), &p).await {
                    Ok(receipt) => {
                        sent.push((receipt.seq, (event(i).to_string(), a.scope().clone(), p)))
                    }
                    Err(EmitError::QueueFull { .. }) => {}
                    Err(e) => panic!("emit: {e}"),
                }
            }
            sent
        }));
    }
    let mut all = Sent::new();
    for j in joins {
        for (seq, s) in j.await.unwrap() {
            assert!(all.insert(seq, s).is_none(), "seq {seq} given twice");
        }
    }
    all
}

/// Every record a sink saw is exactly what was sent under its seq (the
/// dispatcher's own records excepted); returns how many were checked.
fn assert_seen_as_sent(name: &str, seen: &Seen, sent: &Sent) -> usize {
    assert!(seen.problems().is_empty(), "{name}: {:?}", seen.problems());
    let by_seq = seen.by_seq.lock().unwrap();
    let mut checked = 0;
    for (seq, (event, scope, payload)) in sent {
        let Some(f) = by_seq.get(seq) else {
            continue;
        };
        let body = expected_body(event, scope, payload);
        let shown = [
            format!(",{body},\"prev\":\"prev\"}}"),
            format!("scope: {scope:?}"),
            format!("\nevent: {event}\n"),
            format!("\npayload: {}\n", serde_json::to_string(payload).unwrap()),
        ];
        for s in shown {
            assert!(
                f.contains(&s),
                "{name}: seq {seq} was seen as\n{f}\nwithout\n{s}"
            );
        }
        checked += 1;
    }
    // A time left from an earlier record would run backwards.
    let mut last = String::new();
    for (seq, f) in by_seq.iter() {
        let line: Value = serde_json::from_str(f.lines().last().unwrap()).unwrap();
        let ts = line["ts"].as_str().unwrap().to_string();
        assert!(ts >= last, "{name}: seq {seq} at {ts}, after {last}");
        last = ts;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_anything_still_holds_never_changes() {
    let fast = Probe::default();
    let strong = Probe::keeping(3, 0);
    let weak = Probe::keeping(0, 2);
    let flaky = Probe {
        flaky_every: 4,
        keep_every: 7,
        ..Probe::default()
    };
    let panicky = Probe {
        panic_every: 5,
        keep_every: 11,
        ..Probe::default()
    };
    let slow_dropping = Probe {
        sleep: Duration::from_micros(300),
        keep_every: 5,
        ..Probe::default()
    };
    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("fast").queue(2), fast.clone())
        .sink(SinkOptions::new("strong").queue(8), strong.clone())
        .sink(SinkOptions::new("weak").queue(5), weak.clone())
        .sink(SinkOptions::new("flaky").queue(3), flaky.clone())
        .sink(
            SinkOptions::new("panicky").queue(6).required(false),
            panicky.clone(),
        )
        .sink(
            SinkOptions::new("slow")
                .queue(1)
                .overflow(Overflow::DropNewest)
                .required(false),
            slow_dropping.clone(),
        )
        .start()
        .await
        .unwrap();
    // A dispatcher whose records an async sink clones into tasks, beside
    // a sync sink that refuses emits when full, and one that keeps every
    // record in memory.
    let spawning = Spawning::new();
    let closed_fast = Probe::keeping(4, 3);
    let gated = Probe {
        sleep: Duration::from_micros(200),
        ..Probe::default()
    };
    let d2 = Dispatcher::builder()
        .async_sink(SinkOptions::new("spawning").queue(4), spawning.clone())
        .sink(
            SinkOptions::new("closed-fast").queue(3),
            closed_fast.clone(),
        )
        .sink(
            SinkOptions::new("fail-closed")
                .queue(2)
                .overflow(Overflow::FailClosed),
            gated.clone(),
        )
        .start()
        .await
        .unwrap();
    let d3 = Dispatcher::builder()
        .sink(SinkOptions::new("memory").queue(16), memory.clone())
        .sink(SinkOptions::new("fast").queue(2), Probe::default())
        .start()
        .await
        .unwrap();
    let (sent, sent2, sent3) = tokio::join!(
        emit_many(&d, 6, 1500),
        emit_many(&d2, 6, 1500),
        emit_many(&d3, 2, 500)
    );
    d.shutdown(Duration::from_secs(30)).await;
    d2.shutdown(Duration::from_secs(30)).await;
    d3.shutdown(Duration::from_secs(30)).await;

    for (name, p) in [
        ("fast", &fast),
        ("strong", &strong),
        ("weak", &weak),
        ("flaky", &flaky),
        ("panicky", &panicky),
        ("slow", &slow_dropping),
    ] {
        let checked = assert_seen_as_sent(name, &p.seen, &sent);
        assert!(checked > 0, "{name} saw nothing");
        p.check_held();
    }
    assert_eq!(
        assert_seen_as_sent("fast", &fast.seen, &sent),
        sent.len(),
        "the fast sink saw every record"
    );
    assert!(
        flaky.retried.load(Ordering::Relaxed) > 0,
        "no retry happened"
    );
    assert!(panicky.panicked.load(Ordering::Relaxed) > 0, "no panic");
    assert!(
        strong.check_held() > 0 && weak.check_held() > 0,
        "nothing held to check"
    );
    assert!(
        d.health().sinks[5].dropped > 0,
        "the slow drop_newest sink dropped nothing"
    );

    for (name, seen) in [
        ("spawning", &spawning.seen),
        ("closed-fast", &closed_fast.seen),
        ("fail-closed", &gated.seen),
    ] {
        assert!(assert_seen_as_sent(name, seen, &sent2) > 0, "{name}");
    }
    closed_fast.check_held();
    let tasks = std::mem::take(&mut *spawning.tasks.lock().unwrap());
    assert!(!tasks.is_empty());
    for t in tasks {
        let changed = t.await.unwrap();
        assert!(changed.is_empty(), "{changed:?}");
    }
    for r in memory.records() {
        if let Some((event, scope, payload)) = sent3.get(&r.seq) {
            assert_exactly(&r, event, scope, payload);
        }
    }
    assert_eq!(
        memory
            .records()
            .iter()
            .filter(|r| sent3.contains_key(&r.seq))
            .count(),
        sent3.len()
    );
}

/// A filter that masks every string holding `secret`.
struct MaskSecrets;

fn mask(v: &mut Value) -> bool {
    match v {
        Value::String(s) if s.contains("secret") => {
            *s = "[masked]".into();
            true
        }
        Value::Array(a) => a.iter_mut().fold(false, |f, v| mask(v) | f),
        Value::Object(m) => m.values_mut().fold(false, |f, v| mask(v) | f),
        _ => false,
    }
}

impl PayloadFilter for MaskSecrets {
    fn apply(&self, payload: &mut Value) -> Vec<String> {
        if mask(payload) {
            vec!["mask-rule".into()]
        } else {
            Vec::new()
        }
    }

    fn may_apply(&self, payload_json: &str) -> bool {
        payload_json.contains("secret")
    }
}

/// A sync sink that copies what it is given, keeping no record.
#[derive(Clone, Default)]
struct Copy(Arc<Mutex<Vec<Copied>>>);

/// A copy of a record, with the name of the sink that took it.
type Copied = (Arc<str>, Record);

impl Sink for Copy {
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let mut c = self.0.lock().unwrap();
        for r in batch.records {
            c.push(("sync".into(), (**r).clone()));
        }
        Ok(AckLevel::Written)
    }

    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
}

/// The async twin of [`Copy`], writing into the same list.
struct AsyncCopy(Copy);

#[async_trait::async_trait]
impl AsyncSink for AsyncCopy {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }

    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let mut c = self.0.0.lock().unwrap();
        for r in batch.records {
            c.push(("async".into(), (**r).clone()));
        }
        Ok(AckLevel::Written)
    }
}

/// One emit at a time, each written before the next, so that every record
/// is filled into the one written just before (the sinks keep none): a
/// long record then a short one, a full scope then a bare one, a secret
/// masked then none. Every view of every record must show its own parts
/// and nothing of the record before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_field_of_a_reused_record_shows_in_the_next() {
    let copy = Copy::default();
    let d = Dispatcher::builder()
        .filter(Arc::new(MaskSecrets))
        .attributes(Attributes::new().with("deployment", "test").unwrap())
        .sink(SinkOptions::new("sync").queue(1), copy.clone())
        .async_sink(SinkOptions::new("async").queue(1), AsyncCopy(copy.clone()))
        .start()
        .await
        .unwrap();
    let handles: Vec<Auditor> = (0..3).map(|k| handle(&d, 7, k)).collect();
    let mut sent = Sent::new();
    for i in 0..3_000 {
        let a = &handles[i % 3];
        let mut p = payload(7, i);
        if i % 4 == 1 {
            p["key"] = json!(format!("secret-{i}-{}", "s".repeat(i % 900)));
        }
        let receipt = a.emit_wait(event(i), &p, AckLevel::Written).await.unwrap();
        let mut expected = p.clone();
        if mask(&mut expected) {
            expected["_redacted"] = json!(["mask-rule"]);
        }
        sent.insert(
            receipt.seq,
            (event(i).to_string(), a.scope().clone(), expected),
        );
    }
    assert!(d.shutdown(Duration::from_secs(30)).await.is_clean());
    let copies = copy.0.lock().unwrap();
    assert_eq!(copies.len(), 2 * sent.len());
    let mut last_ts: HashMap<&str, (u64, String)> = HashMap::new();
    let mut masked = 0;
    for (sink, r) in copies.iter() {
        let (event, scope, payload) = &sent[&r.seq];
        assert_exactly(r, event, scope, payload);
        assert!(!r.body().contains("secret"), "seq {}: {}", r.seq, r.body());
        masked += usize::from(r.body().contains("[masked]"));
        // A time left from an earlier record would run backwards.
        let ts = r.ts.as_str().to_string();
        if let Some((seq, before)) = last_ts.get(&**sink) {
            assert!(
                r.seq > *seq && ts >= *before,
                "{sink}: seq {} at {ts} after {before}",
                r.seq
            );
        }
        last_ts.insert(sink, (r.seq, ts));
    }
    assert!(masked > 0, "nothing was masked");
}

/// The dispatcher's own records (gap records for drops and notices) are
/// filled into reused records too: they carry the dispatcher's scope, not
/// the emitter's whose record they were filled into.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gap_records_carry_nothing_of_an_emitters_record() {
    /// A sink that raises a notice every 50th write.
    #[derive(Clone, Default)]
    struct Noticing(Arc<AtomicUsize>);
    impl Sink for Noticing {
        fn write(&mut self, _: &Batch<'_>) -> Result<AckLevel, SinkError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(AckLevel::Written)
        }
        fn max_level(&self) -> AckLevel {
            AckLevel::Written
        }
        fn take_notices(&mut self) -> Vec<String> {
            if self.0.load(Ordering::Relaxed) % 50 == 1 {
                vec!["noticed something".into()]
            } else {
                Vec::new()
            }
        }
    }
    let copy = Copy::default();
    let dispatcher_attributes = Attributes::new().with("deployment", "gaps").unwrap();
    let d = Dispatcher::builder()
        .attributes(dispatcher_attributes.clone())
        .sink(SinkOptions::new("copy").queue(2), copy.clone())
        .sink(SinkOptions::new("noticing").queue(4), Noticing::default())
        .sink(
            SinkOptions::new("slow")
                .queue(1)
                .overflow(Overflow::DropNewest)
                .required(false),
            Probe {
                sleep: Duration::from_micros(500),
                ..Probe::default()
            },
        )
        .start()
        .await
        .unwrap();
    let sent = emit_many(&d, 4, 800).await;
    d.shutdown(Duration::from_secs(30)).await;
    let copies = copy.0.lock().unwrap();
    let mut gaps = 0;
    for (expected_seq, (_, r)) in (copies[0].1.seq..).zip(copies.iter()) {
        assert_eq!(r.seq, expected_seq, "seqs are contiguous in the sink");
        match sent.get(&r.seq) {
            Some((event, scope, payload)) => assert_exactly(r, event, scope, payload),
            None => {
                gaps += 1;
                assert_eq!(r.event_type, EventType::AuditGap, "seq {}", r.seq);
                let own = Scope {
                    attributes: dispatcher_attributes.clone(),
                    span_id: r.span_id,
                    ..Scope::new(r.trace_id, Some(Arc::from("agent-audit")))
                };
                assert_exactly(r, "audit_gap", &own, &r.payload_value());
            }
        }
    }
    assert!(gaps > 0, "no gap record was written");
    assert_eq!(copies.len() - gaps, sent.len());
}

/// Seqs, receipts and acknowledgements under 8 tasks, with reuse: every
/// receipt names the record its emit sent, every sink sees every seq once
/// and in order, and a waited receipt reached its level on every sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seqs_receipts_and_acks_are_unchanged() {
    let memory = MemorySink::new();
    let written = Probe::default();
    let spawning = Spawning::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("memory").queue(64), memory.clone())
        .sink(SinkOptions::new("written").queue(3), written.clone())
        .async_sink(SinkOptions::new("async").queue(5), spawning.clone())
        .start()
        .await
        .unwrap();
    let mut joins = Vec::new();
    for t in 0..8 {
        let a = handle(&d, t, t);
        joins.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..600 {
                let p = json!({"t": t, "i": i, "pad": "p".repeat((i * 13) % 400)});
                let receipt = match i % 3 {
                    0 => a.emit("r", &p).await.unwrap(),
                    1 => {
                        let r = a.emit_wait("r", &p, AckLevel::Written).await.unwrap();
                        assert!(r.level >= AckLevel::Written, "{r:?}");
                        r
                    }
                    _ => {
                        // The memory sink reaches Durable; the others settle
                        // for Written, their most.
                        let r = a.emit_wait("r", &p, AckLevel::Durable).await.unwrap();
                        assert!(r.level >= AckLevel::Written, "{r:?}");
                        r
                    }
                };
                assert!(receipt.failed.is_empty(), "{receipt:?}");
                got.push((receipt.seq, t, i));
            }
            got
        }));
    }
    let mut by_seq = BTreeMap::new();
    for j in joins {
        for (seq, t, i) in j.await.unwrap() {
            assert!(by_seq.insert(seq, (t, i)).is_none(), "seq {seq} twice");
        }
    }
    assert!(d.shutdown(Duration::from_secs(30)).await.is_clean());
    let first = *by_seq.keys().next().unwrap();
    let last = *by_seq.keys().last().unwrap();
    assert_eq!(last - first + 1, by_seq.len() as u64, "seqs contiguous");
    let check = |name: &str, seqs: Vec<u64>, payload_of: &dyn Fn(u64) -> Value| {
        assert_eq!(
            seqs,
            (first..=last).collect::<Vec<_>>(),
            "{name}: every seq once, in order"
        );
        for seq in seqs {
            let (t, i) = by_seq[&seq];
            let p = payload_of(seq);
            assert_eq!(
                (p["t"].clone(), p["i"].clone()),
                (json!(t), json!(i)),
                "{name}: seq {seq}"
            );
        }
    };
    let kept = memory.records();
    let kept_by_seq: HashMap<u64, Arc<Record>> = kept.iter().map(|r| (r.seq, r.clone())).collect();
    check("memory", kept.iter().map(|r| r.seq).collect(), &|s| {
        kept_by_seq[&s].payload_value()
    });
    let payload_in = |seen: &Seen, seq: u64| -> Value {
        let f = seen.fingerprint(seq).unwrap();
        let line = f.lines().last().unwrap();
        serde_json::from_str::<Value>(line).unwrap()["payload"].clone()
    };
    check(
        "written",
        written.seen.order.lock().unwrap().clone(),
        &|s| payload_in(&written.seen, s),
    );
    check("async", spawning.seen.order.lock().unwrap().clone(), &|s| {
        payload_in(&spawning.seen, s)
    });
    let tasks = std::mem::take(&mut *spawning.tasks.lock().unwrap());
    for t in tasks {
        assert!(t.await.unwrap().is_empty());
    }
}

/// A sink stuck in a write past the shutdown deadline, holding clones of
/// its batch, while emitters run into the shutdown: what it holds never
/// changes, emits end in `Closed`, nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_held_through_an_abandoned_shutdown_never_change() {
    /// Hangs in its third write until released, holding that batch.
    #[derive(Clone, Default)]
    struct Stuck {
        probe: Probe,
        release: Arc<AtomicBool>,
        done: Arc<AtomicBool>,
        held: Arc<Mutex<Vec<Arc<Record>>>>,
    }
    impl Sink for Stuck {
        fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
            let n = self.probe.batches.fetch_add(1, Ordering::Relaxed);
            for r in batch.records {
                self.probe.seen.note(r);
            }
            if n == 2 {
                self.held
                    .lock()
                    .unwrap()
                    .extend(batch.records.iter().cloned());
                while !self.release.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                self.done.store(true, Ordering::Release);
            }
            Ok(AckLevel::Written)
        }
        fn max_level(&self) -> AckLevel {
            AckLevel::Written
        }
    }
    let stuck = Stuck::default();
    let copy = Probe::keeping(2, 0);
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("copy").queue(4), copy.clone())
        .sink(
            SinkOptions::new("stuck").queue(8).required(false),
            stuck.clone(),
        )
        .sink(
            SinkOptions::new("fast").queue(1).required(false),
            Probe::default(),
        )
        .start()
        .await
        .unwrap();
    let mut emitters = Vec::new();
    for t in 0..4 {
        let a = handle(&d, t, t + 1);
        emitters.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0.. {
                let p = payload(t, i);
                match a.emit(event(i), &p).await {
                    Ok(r) => sent.push((r.seq, (event(i).to_string(), a.scope().clone(), p))),
                    Err(EmitError::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            sent
        }));
    }
    while stuck.held.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        d.shutdown(Duration::from_millis(400)),
    )
    .await
    .expect("shutdown hung");
    assert!(!report.sinks[1].finished, "the stuck sink was abandoned");
    let mut sent = Sent::new();
    for e in emitters {
        sent.extend(e.await.unwrap());
    }
    // Emits ran on while the sink held its batch, until the shutdown;
    // released now, its worker hands that batch back after the write.
    stuck.release.store(true, Ordering::Release);
    while !stuck.done.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for r in stuck.held.lock().unwrap().iter() {
        assert_eq!(Some(fingerprint(r)), stuck.probe.seen.fingerprint(r.seq));
        if let Some((event, scope, payload)) = sent.get(&r.seq) {
            assert_exactly(r, event, scope, payload);
        }
    }
    assert!(assert_seen_as_sent("copy", &copy.seen, &sent) > 0);
    assert!(assert_seen_as_sent("stuck", &stuck.probe.seen, &sent) > 0);
    copy.check_held();
}
