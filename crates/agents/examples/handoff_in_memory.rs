//! A triage agent hands the customer to a specialist; all records share one
//! correlation id and each agent turn is its own span. Prints the span tree.
//!
//! ```text
//! cargo run -p agent-audit-agents --example handoff_in_memory -- "What is the balance of account 12345?"
//! ```

use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::{OfflineModel, multi};
use agent_audit_core::{Auditor, Dispatcher, MemorySink, SinkOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the balance of account 12345?".into());
    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .start()
        .await?;
    let auditor = Auditor::new(dispatcher.clone())
        .with_correlation_id("conversation-1")
        .for_request(None);
    let result = multi::run(&auditor, Arc::new(OfflineModel), &prompt).await?;
    dispatcher.shutdown(Duration::from_secs(5)).await;

    // Each span's depth is its parent's plus one.
    let mut depth: Vec<(agent_audit_core::SpanId, usize)> = vec![(auditor.scope().span_id, 0)];
    for r in sink.records() {
        let d = match depth.iter().find(|(s, _)| *s == r.span_id) {
            Some((_, d)) => *d,
            None => {
                let parent = r
                    .parent_span_id
                    .and_then(|p| depth.iter().find(|(s, _)| *s == p).map(|(_, d)| *d))
                    .unwrap_or(0);
                depth.push((r.span_id, parent + 1));
                parent + 1
            }
        };
        println!(
            "{:>3} {}{:<12} {:<16} span {} correlation {}",
            r.seq,
            "  ".repeat(d),
            r.agent.as_deref().unwrap_or("-"),
            r.event_type.as_str(),
            r.span_id,
            r.correlation_id.as_deref().unwrap_or("-")
        );
    }
    println!("answer ({}): {}", result.answered_by, result.answer);
    Ok(())
}
