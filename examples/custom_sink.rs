//! A sink of your own: implement one method, `write`, and the dispatcher
//! gives it a queue, a worker thread, acknowledgements, overflow handling and
//! gap records. This one keeps a running count per event type and prints it
//! at close.
//!
//! ```sh
//! cargo run -p agent-audit-examples --example custom_sink
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use agent_audit::{AckLevel, Auditor, Batch, Dispatcher, Sink, SinkError, SinkOptions};

/// Counts records by event type.
#[derive(Default)]
struct CountingSink {
    counts: BTreeMap<String, u64>,
}

impl Sink for CountingSink {
    fn max_level(&self) -> AckLevel {
        // Counting in memory survives nothing: it is only "written".
        AckLevel::Written
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        for r in batch.records {
            *self.counts.entry(r.event_type.to_string()).or_default() += 1;
        }
        Ok(AckLevel::Written)
    }

    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        for (event_type, n) in &self.counts {
            println!("{event_type:<18} {n}");
        }
        Ok(None)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = agent_audit::config::Config::discover(None)?;
    // The configured sinks, plus ours, optional: if it fails the agent goes on.
    let dispatcher: Dispatcher = config
        .builder()?
        .sink(
            SinkOptions::new("counter").required(false),
            CountingSink::default(),
        )
        .start()
        .await?;
    let auditor = Auditor::new(dispatcher.clone()).for_request(None);
    let model = config.model()?;
    agent_audit::agents::tutorial::run(&auditor, model, "What is the balance of account 12345?")
        .await?;
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    Ok(())
}
