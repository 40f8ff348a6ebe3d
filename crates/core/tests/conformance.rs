//! The conformance suite on core's own sink, [`MemorySink`]: every check,
//! the failure checks through the suite's decorator.

use agent_audit_core::conformance::{Check, Target, run_all, run_check};
use agent_audit_core::{MemorySink, Sink, StoredRecord};

/// Every sink made shares the one store, so a new one continues the
/// numbering.
struct MemoryTarget(MemorySink);

impl Target for MemoryTarget {
    fn make(&self) -> Box<dyn Sink> {
        Box::new(self.0.clone())
    }
    fn read_back(&self) -> Option<Vec<StoredRecord>> {
        Some(self.0.records().iter().map(|r| r.to_stored("")).collect())
    }
    fn persistent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sink_passes_the_conformance_suite() {
    run_all(&MemoryTarget(MemorySink::new())).await.unwrap();
}

/// A sink that acknowledges writes only at `Written` although it can reach
/// `Durable`, and never raises them: the tick check must catch it, as
/// it would a file sink that forgot to fsync on its interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_never_raises_its_writes_fails_the_tick_check() {
    struct Lazy(MemorySink);
    impl Sink for Lazy {
        fn max_level(&self) -> agent_audit_core::AckLevel {
            agent_audit_core::AckLevel::Durable
        }
        fn write(
            &mut self,
            batch: &agent_audit_core::Batch<'_>,
        ) -> Result<agent_audit_core::AckLevel, agent_audit_core::SinkError> {
            self.0.write(batch)?;
            Ok(agent_audit_core::AckLevel::Written)
        }
        fn tick_interval(&self) -> Option<std::time::Duration> {
            Some(std::time::Duration::from_millis(10))
        }
    }
    struct LazyTarget(MemorySink);
    impl Target for LazyTarget {
        fn make(&self) -> Box<dyn Sink> {
            Box::new(Lazy(self.0.clone()))
        }
        fn read_back(&self) -> Option<Vec<StoredRecord>> {
            None
        }
        fn persistent(&self) -> bool {
            false
        }
    }
    let e = run_check(&LazyTarget(MemorySink::new()), Check::Tick)
        .await
        .unwrap_err();
    assert_eq!(e.check, "tick");
    assert!(e.detail.contains("must raise them in tick"), "{e}");
}
