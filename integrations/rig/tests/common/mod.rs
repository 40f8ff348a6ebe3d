//! Test support: a real HTTP/1.1 server on loopback speaking the Chat
//! Completions wire format (scripted replies), the same as agent-audit's
//! runtime tests use (crates/agents/tests/common), and record helpers.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::Record;

#[path = "../../../../crates/agents/tests/common/server.rs"]
mod server;
#[allow(unused_imports)] // not every test binary uses the server
pub use server::*;

pub fn events(records: &[Arc<Record>]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.event_type.as_str().to_string())
        .collect()
}

pub async fn finish(dispatcher: &agent_audit_core::Dispatcher) {
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "dispatcher shutdown not clean: {report}");
}
