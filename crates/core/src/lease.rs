//! The seq lease: a durable note of how far the dispatcher may number
//! records, so that no seq is ever given to two records, even across a
//! crash.
//!
//! Sinks deliver at their own pace. When a process dies, a collector may
//! already hold seq 1000 while the log file ends at 990; a new process that
//! continued after the file's last seq would give 991..1000 to other
//! records, and the two copies of the trail would disagree about what seq
//! 1000 was. With a lease, the dispatcher durably reserves a block of seqs
//! ahead of use ([`SeqLease::store`]), and on start continues after the
//! higher of the lease and the sinks' last seq. Seqs reserved but not in
//! the log are skipped and named in an `audit_gap` record (reason
//! `seq_skipped`), never reused. A clean [`crate::Dispatcher::shutdown`]
//! lowers the lease to the last seq used, so a normal restart leaves no
//! gap.
//!
//! `agent-audit-jsonl` keeps the lease in a file beside the log;
//! [`MemoryLease`] keeps it in memory, for tests and for checking the
//! numbering of several dispatchers in one process.
//!
//! ```
//! use std::sync::Arc;
//! use agent_audit_core::{Auditor, Dispatcher, MemoryLease, MemorySink, SeqLease, SinkOptions};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let lease = MemoryLease::new();
//! let d = Dispatcher::builder()
//!     .sink(SinkOptions::new("memory"), MemorySink::new())
//!     .seq_lease(Arc::new(lease.clone()))
//!     .start()
//!     .await?;
//! Auditor::new(d.clone()).emit("note", &serde_json::json!({})).await?;
//! // Ahead of use, a block is reserved.
//! assert!(lease.load()?.unwrap() > 1);
//! d.shutdown(std::time::Duration::from_secs(5)).await;
//! // After a clean shutdown, the lease ends at the last seq used.
//! assert_eq!(lease.load()?, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::sync::{Arc, Mutex};

use crate::record::MAX_SEQ;

/// Where a dispatcher durably notes the highest seq it may hand out.
///
/// Implementations must make [`SeqLease::store`] durable before returning
/// (the dispatcher numbers records up to `upto` as soon as it returns).
/// Calls come from the emitting task, at most once per block of seqs.
pub trait SeqLease: Send + Sync + 'static {
    /// The highest seq an earlier process may have handed out, or `None`
    /// when no lease was ever stored.
    fn load(&self) -> Result<Option<u64>, LeaseError>;

    /// Durably notes that seqs up to and including `upto` may be handed out.
    fn store(&self, upto: u64) -> Result<(), LeaseError>;

    /// Where the lease lives, for errors (a file path). The default says
    /// only that it is a lease.
    fn location(&self) -> String {
        String::from("unnamed")
    }

    /// Something the last [`SeqLease::load`] found and worked around (a
    /// lease file left empty by a store that never completed, read as no
    /// lease), for an `audit_gap` record with reason `lease_notice`, so
    /// that nothing is handled silently. The default has none.
    fn take_notice(&self) -> Option<String> {
        None
    }
}

/// A lease could not be read or stored.
#[derive(Debug, thiserror::Error)]
#[error("seq lease `{location}`: {source}")]
pub struct LeaseError {
    /// Where the lease lives (a file path).
    pub location: String,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl LeaseError {
    /// An error about the lease at `location`.
    pub fn new(
        location: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        LeaseError {
            location: location.into(),
            source: source.into(),
        }
    }
}

/// A lease kept in memory; clones share it.
#[derive(Clone, Debug, Default)]
pub struct MemoryLease {
    upto: Arc<Mutex<Option<u64>>>,
}

impl MemoryLease {
    /// An empty lease.
    pub fn new() -> Self {
        MemoryLease::default()
    }
}

impl SeqLease for MemoryLease {
    fn load(&self) -> Result<Option<u64>, LeaseError> {
        self.upto
            .lock()
            .map(|g| *g)
            .map_err(|_| LeaseError::new("memory", "poisoned"))
    }

    fn store(&self, upto: u64) -> Result<(), LeaseError> {
        let mut g = self
            .upto
            .lock()
            .map_err(|_| LeaseError::new("memory", "poisoned"))?;
        *g = Some(upto);
        Ok(())
    }

    fn location(&self) -> String {
        String::from("memory")
    }
}

/// The dispatcher's view of its lease.
pub(crate) struct Leased {
    store: Arc<dyn SeqLease>,
    /// Seqs up to here are durably reserved.
    upto: u64,
    block: u64,
}

impl Leased {
    /// Reads the lease. Returns the state and the seqs an earlier process
    /// reserved beyond `last_seq` (the highest seq any sink holds).
    pub(crate) fn open(
        store: Arc<dyn SeqLease>,
        block: u64,
        last_seq: u64,
    ) -> Result<(Leased, Option<(u64, u64)>), LeaseError> {
        let held = store.load()?.unwrap_or(0);
        // `held > last_seq`, so `last_seq + 1` cannot overflow.
        let skipped = (held > last_seq).then(|| (last_seq + 1, held));
        let leased = Leased {
            store,
            upto: held.max(last_seq),
            block: block.max(2),
        };
        Ok((leased, skipped))
    }

    /// The last seq an earlier process may have used.
    pub(crate) fn last_reserved(&self) -> u64 {
        self.upto
    }

    /// Where the lease lives, for errors.
    pub(crate) fn location(&self) -> String {
        self.store.location()
    }

    /// What the store worked around when it was read, if anything.
    pub(crate) fn take_notice(&self) -> Option<String> {
        self.store.take_notice()
    }

    /// Keeps at least half a block reserved ahead of `next_seq`, so that
    /// the few records the dispatcher numbers on its own between emits
    /// (gap records) never outrun the lease. Nothing is reserved beyond
    /// [`MAX_SEQ`]: no record can get a seq there, and a lease above it
    /// would make the next start refuse to number anything.
    pub(crate) fn ensure(&mut self, next_seq: u64) -> Result<(), LeaseError> {
        let wanted = next_seq.saturating_add(self.block / 2).min(MAX_SEQ);
        if self.upto >= wanted {
            return Ok(());
        }
        let upto = next_seq.saturating_add(self.block - 1).min(MAX_SEQ);
        self.store.store(upto)?;
        self.upto = upto;
        Ok(())
    }

    /// Lowers the lease to the last seq used, at a clean shutdown.
    pub(crate) fn release(&mut self, last_used: u64) -> Result<(), LeaseError> {
        self.store.store(last_used)?;
        self.upto = last_used;
        Ok(())
    }
}
