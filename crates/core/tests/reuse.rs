//! Records are reused once every sink is done with them (the dispatcher's
//! `recycle`): what each sink sees must still be exactly the record
//! emitted, whatever record it was filled into, and a record a sink keeps
//! must never change afterwards. Real threads, one worker per sink; the
//! sinks are in memory (the property is about the dispatcher, not a
//! destination).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::{
    AckLevel, Auditor, Batch, Dispatcher, MemorySink, Sink, SinkError, SinkOptions,
};
use serde_json::json;

/// A sink that copies what it is given and keeps no record: the records
/// it wrote are free to be reused at once.
#[derive(Clone, Default)]
struct Copying(Arc<Mutex<Vec<Seen>>>);

/// A record's seq, body text and request id, as a sink saw it.
type Seen = (u64, String, Option<String>);

impl Sink for Copying {
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let mut seen = self.0.lock().unwrap();
        for r in batch.records {
            seen.push((
                r.seq,
                r.body().to_string(),
                r.request_id.as_deref().map(String::from),
            ));
        }
        Ok(AckLevel::Written)
    }

    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_sink_sees_each_record_as_emitted_while_records_are_reused() {
    let copying = Copying::default();
    let alone = Copying::default();
    let keeping = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("copying").queue(8), copying.clone())
        .sink(SinkOptions::new("keeping").queue(64), keeping.clone())
        .start()
        .await
        .unwrap();
    // A dispatcher whose only sink keeps nothing: every record is reused.
    let d2 = Dispatcher::builder()
        .sink(SinkOptions::new("alone").queue(4), alone.clone())
        .start()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        for (k, d) in [&d, &d2].into_iter().enumerate() {
            // Scopes differ per task (request, attributes) and payloads
            // differ in size, so a field left from a reused record shows.
            let aud = Auditor::new(d.clone())
                .for_request(Some(&format!("req-{k}-{t}")))
                .with_attribute("task", t as i64)
                .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0..2_000 {
                    let pad = "x".repeat((i * 7 + t) % 300);
                    let payload = json!({"t": t, "i": i, "pad": pad});
                    let seq = aud.emit("reuse", &payload).await.unwrap().seq;
                    sent.push((k, seq, t, i, pad.len()));
                }
                sent
            }));
        }
    }
    let mut expected: [HashMap<u64, (usize, usize, usize)>; 2] = Default::default();
    for task in tasks {
        for (k, seq, t, i, pad) in task.await.unwrap() {
            expected[k].insert(seq, (t, i, pad));
        }
    }
    assert!(d.shutdown(Duration::from_secs(30)).await.is_clean());
    assert!(d2.shutdown(Duration::from_secs(30)).await.is_clean());

    let check = |k: usize, seq: u64, body: &str, request: Option<&str>| {
        let Some(&(t, i, pad)) = expected[k].get(&seq) else {
            return; // the dispatcher's own records
        };
        let v: serde_json::Value = serde_json::from_str(&format!("{{{body}}}")).unwrap();
        assert_eq!(v["payload"]["t"], t, "seq {seq}: {body}");
        assert_eq!(v["payload"]["i"], i, "seq {seq}: {body}");
        assert_eq!(
            v["payload"]["pad"].as_str().unwrap().len(),
            pad,
            "seq {seq}"
        );
        assert_eq!(v["attributes"]["task"], t, "seq {seq}: {body}");
        let req = format!("req-{k}-{t}");
        assert_eq!(v["request_id"], req.as_str(), "seq {seq}: {body}");
        assert_eq!(request, Some(req.as_str()), "seq {seq}: the typed scope");
    };
    for (sink, k) in [(&copying, 0), (&alone, 1)] {
        let seen = sink.0.lock().unwrap();
        assert_eq!(
            seen.iter()
                .filter(|s| expected[k].contains_key(&s.0))
                .count(),
            expected[k].len()
        );
        for (seq, body, request) in seen.iter() {
            check(k, *seq, body, request.as_deref());
        }
    }
    // Read after the run: the records a sink kept were never filled in
    // again.
    let kept = keeping.records();
    assert_eq!(
        kept.iter()
            .filter(|r| expected[0].contains_key(&r.seq))
            .count(),
        expected[0].len()
    );
    for r in &kept {
        check(0, r.seq, r.body(), r.request_id.as_deref());
    }
}
