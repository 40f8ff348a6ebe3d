//! Who asked, per conversation: an auditor given a user, a session and
//! attributes before the conversation starts hands them to every record
//! the runtime writes for it (every agent turn, model call and tool
//! call), and another conversation on the same dispatcher keeps its own.

use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::{OfflineModel, tutorial};
use agent_audit_core::{Auditor, Dispatcher, MemorySink, SinkOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_of_a_conversation_carries_its_user_session_and_attributes() {
    let memory = MemorySink::new();
    let d = Dispatcher::builder()
        .sink(SinkOptions::new("m"), memory.clone())
        .start()
        .await
        .unwrap();
    let base = Auditor::new(d.clone());
    let alice = base
        .with_user("u-42")
        .with_session("s-7")
        .with_attribute("purpose", "support")
        .unwrap()
        .for_request(Some("req-a"));
    let bob = base.with_user("u-7").for_request(Some("req-b"));
    let model = Arc::new(OfflineModel::new());
    let prompt = "What is the balance of account 12345?";
    let (a, b) = tokio::join!(
        tutorial::run(&alice, model.clone(), prompt),
        tutorial::run(&bob, model, prompt)
    );
    a.unwrap();
    b.unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let records = memory.records();
    let of = |rid: &str| -> Vec<Arc<agent_audit_core::Record>> {
        records
            .iter()
            .filter(|r| r.request_id.as_deref() == Some(rid))
            .cloned()
            .collect()
    };
    assert_eq!(of("req-a").len(), 8, "the tutorial's eight records");
    for r in &of("req-a") {
        assert_eq!(r.user_id.as_deref(), Some("u-42"), "{}", r.event_type);
        assert_eq!(r.session_id.as_deref(), Some("s-7"));
        assert_eq!(r.attributes.json(), r#"{"purpose":"support"}"#);
    }
    for r in &of("req-b") {
        assert_eq!(r.user_id.as_deref(), Some("u-7"));
        assert_eq!((r.session_id.clone(), r.attributes.len()), (None, 0));
    }
}
