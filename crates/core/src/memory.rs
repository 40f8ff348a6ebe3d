//! An in-memory sink: always available, for tests and for embedding.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::record::Record;
use crate::sink::{AckLevel, Batch, FailureKind, Sink, SinkError};

/// Keeps every record it receives; clones share the same storage.
///
/// Its behaviour can be slowed or made to fail, so dispatcher behaviour
/// under a slow or broken destination can be shown without a real one.
#[derive(Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    records: Vec<Arc<Record>>,
    delay: Duration,
    fail: Option<(FailureKind, String)>,
    level: Option<AckLevel>,
    batches: usize,
}

/// The error a [`MemorySink`] returns when told to fail.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MemorySinkError(pub String);

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemorySink({} records)", self.len())
    }
}

impl MemorySink {
    /// An empty sink that acknowledges at `Durable`.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps this long in every write: a slow destination.
    pub fn with_delay(self, delay: Duration) -> MemorySink {
        self.inner().delay = delay;
        self
    }

    /// Reports this level instead of `Durable`.
    pub fn with_level(self, level: AckLevel) -> MemorySink {
        self.inner().level = Some(level);
        self
    }

    /// Makes every later write fail with `message`.
    pub fn fail_with(&self, kind: FailureKind, message: &str) {
        self.inner().fail = Some((kind, message.to_string()));
    }

    /// Makes later writes succeed again.
    pub fn heal(&self) {
        self.inner().fail = None;
    }

    /// The records received so far.
    pub fn records(&self) -> Vec<Arc<Record>> {
        self.inner().records.clone()
    }

    /// How many records were received.
    pub fn len(&self) -> usize {
        self.inner().records.len()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many batches were written.
    pub fn batches(&self) -> usize {
        self.inner().batches
    }
}

impl Sink for MemorySink {
    fn max_level(&self) -> AckLevel {
        self.inner().level.unwrap_or(AckLevel::Durable)
    }

    fn open(&mut self) -> Result<crate::sink::SinkOpen, SinkError> {
        Ok(crate::sink::SinkOpen {
            last_seq: self.inner().records.last().map(|r| r.seq),
            notices: Vec::new(),
        })
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let delay = self.inner().delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut inner = self.inner();
        if let Some((kind, msg)) = &inner.fail {
            return Err(SinkError::new(*kind, MemorySinkError(msg.clone())));
        }
        inner.records.extend(batch.records.iter().cloned());
        inner.batches += 1;
        Ok(inner.level.unwrap_or(AckLevel::Durable))
    }
}
