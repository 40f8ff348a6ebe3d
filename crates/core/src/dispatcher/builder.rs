//! Building a dispatcher: [`DispatcherBuilder`] opens every sink (an async
//! one on its own thread and runtime, see [`super::bridge`]), decides
//! where the numbering continues, starts one worker per sink and writes a
//! gap record for anything the sinks or the seq lease found at start.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::async_sink::AsyncSink;
use crate::error::StartError;
use crate::ids::TraceId;
use crate::lease::{Leased, SeqLease};
use crate::record::{EventType, MAX_SEQ};
use crate::redact::PayloadFilter;
use crate::sink::Sink;

use super::bridge::{self, Driver, OpenedAsync};
use super::gaps::GapReason;
use super::options::SinkOptions;
use super::seq::Order;
use super::slot::SinkSlot;
use super::{Dispatcher, Shared};

/// A sink opened, its worker not yet started.
enum Opened {
    Sync(Box<dyn Sink>),
    Async(OpenedAsync),
}

/// Builds a [`Dispatcher`].
pub struct DispatcherBuilder {
    sinks: Vec<(SinkOptions, Driver)>,
    runtime: Option<tokio::runtime::Handle>,
    filter: Option<Arc<dyn PayloadFilter>>,
    attributes: crate::Attributes,
    max_record_bytes: usize,
    lease: Option<Arc<dyn SeqLease>>,
    lease_block: u64,
}

impl Default for DispatcherBuilder {
    fn default() -> Self {
        DispatcherBuilder {
            sinks: Vec::new(),
            runtime: None,
            filter: None,
            attributes: crate::Attributes::default(),
            max_record_bytes: 1 << 20,
            lease: None,
            lease_block: 65_536,
        }
    }
}

impl DispatcherBuilder {
    /// Adds a sink.
    pub fn sink(mut self, options: SinkOptions, sink: impl Sink) -> Self {
        self.sinks.push((options, Driver::Sync(Box::new(sink))));
        self
    }

    /// Adds a boxed sink (as built from configuration).
    pub fn boxed_sink(mut self, options: SinkOptions, sink: Box<dyn Sink>) -> Self {
        self.sinks.push((options, Driver::Sync(sink)));
        self
    }

    /// Adds an async sink. Like every sink it gets a worker thread of its
    /// own; its futures run there, on a private current-thread tokio
    /// runtime, or on the runtime given with
    /// [`DispatcherBuilder::async_runtime`]. See [`AsyncSink`] for what the
    /// bridge guarantees.
    pub fn async_sink(mut self, options: SinkOptions, sink: impl AsyncSink) -> Self {
        self.sinks.push((options, Driver::Async(Box::new(sink))));
        self
    }

    /// Adds a boxed async sink (as built from configuration).
    pub fn boxed_async_sink(mut self, options: SinkOptions, sink: Box<dyn AsyncSink>) -> Self {
        self.sinks.push((options, Driver::Async(sink)));
        self
    }

    /// Runs the async sinks on this runtime instead of a private one each:
    /// the sink's worker thread polls its futures, the runtime's threads
    /// drive their I/O and timers, so a client bound to the application's
    /// runtime (a pool shared with it) works. It must be a multi-thread
    /// runtime with timers (`enable_all`); [`DispatcherBuilder::start`]
    /// refuses another with [`StartError::RuntimeHandle`].
    pub fn async_runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Stamps `attributes` on every record, the dispatcher's own
    /// included (`[attributes]` in `audit.toml`); a request's own
    /// attributes ([`Auditor::with_attribute`](crate::Auditor::with_attribute))
    /// add to them. The filter's rules apply to them at start.
    pub fn attributes(mut self, attributes: crate::Attributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// Runs `filter` over every payload before fan-out (redaction).
    pub fn filter(mut self, filter: Arc<dyn PayloadFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Largest serialised record accepted; bigger ones fail
    /// [`EmitError::TooLarge`](crate::EmitError::TooLarge) rather than being truncated. Default 1 MiB.
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Keeps a durable [`SeqLease`] ahead of the numbering, so that a seq
    /// handed to any sink (or on a receipt) is never reused after a crash.
    /// See [`crate::lease`].
    pub fn seq_lease(mut self, lease: Arc<dyn SeqLease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How many seqs one lease store reserves (default 65,536; at least 2):
    /// a larger block means fewer durable writes, and a larger gap of
    /// skipped seqs after a crash.
    pub fn lease_block(mut self, seqs: u64) -> Self {
        self.lease_block = seqs;
        self
    }

    /// Opens every sink, continues the seq after the highest one they hold,
    /// starts the workers and writes a gap record for any damage reported.
    pub async fn start(self) -> Result<Dispatcher, StartError> {
        if self.sinks.is_empty() {
            return Err(StartError::NoSinks);
        }
        let mut last_seq = 0u64;
        let mut held_by = String::new();
        let mut opened = Vec::new();
        let mut notices = Vec::new();
        for (options, driver) in self.sinks {
            if opened
                .iter()
                .any(|(o, _): &(SinkOptions, _)| o.name == options.name)
            {
                return Err(StartError::DuplicateName { sink: options.name });
            }
            let (open, sink) = match driver {
                Driver::Sync(mut sink) => {
                    let open = sink.open().map_err(|source| StartError::Open {
                        sink: options.name.clone(),
                        source,
                    })?;
                    (open, Opened::Sync(sink))
                }
                Driver::Async(sink) => {
                    let (open, sink) =
                        bridge::open(&options.name, sink, self.runtime.clone()).await?;
                    (open, Opened::Async(sink))
                }
            };
            if let Some(seq) = open.last_seq
                && seq > last_seq
            {
                last_seq = seq;
                held_by = format!("sink `{}`", options.name);
            }
            for n in open.notices {
                notices.push((options.name.clone(), n));
            }
            opened.push((options, sink));
        }
        let lease_error = |source| StartError::Lease { source };
        let (lease, skipped, lease_notice) = match self.lease {
            Some(store) => {
                let (leased, skipped) =
                    Leased::open(store, self.lease_block, last_seq).map_err(lease_error)?;
                if skipped.is_some() {
                    last_seq = leased.last_reserved();
                    held_by = format!("the seq lease `{}`", leased.location());
                }
                let notice = leased.take_notice().map(|n| (leased.location(), n));
                (Some(leased), skipped, notice)
            }
            None => (None, None, None),
        };
        // The start numbers its own notices, then at least one record must
        // fit: refused up front rather than half started. Before anything
        // is written or reserved, so the sinks and the lease stay as found.
        let needed = notices.len() as u64
            + u64::from(skipped.is_some())
            + u64::from(lease_notice.is_some())
            + 1;
        if MAX_SEQ.saturating_sub(last_seq) < needed {
            return Err(StartError::SeqExhausted { last_seq, held_by });
        }
        let lease = match lease {
            Some(mut leased) => {
                leased.ensure(last_seq + 1).map_err(lease_error)?;
                Some(leased)
            }
            None => None,
        };
        let slots: Vec<Arc<SinkSlot>> = opened
            .into_iter()
            .map(|(options, sink)| match sink {
                Opened::Sync(sink) => SinkSlot::spawn(options, sink),
                Opened::Async(sink) => sink.start(options),
            })
            .collect::<Result<_, _>>()?;
        let shared = Arc::new(Shared {
            order: Mutex::new(Order::new(last_seq + 1, lease)),
            sinks: slots,
            attributes: self.attributes.redacted(self.filter.as_ref()),
            filter: self.filter,
            max_record_bytes: self.max_record_bytes,
            closed: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            trace_id: TraceId::random(),
            before_shutdown: Mutex::new(Vec::new()),
        });
        let d = Dispatcher { shared };
        // What the lease store worked around comes first: it decided
        // where the numbering starts.
        if let Some((lease, detail)) = lease_notice {
            let payload = serde_json::json!({"reason": GapReason::LeaseNotice.as_str(), "lease": lease, "detail": detail});
            d.emit_internal(EventType::AuditGap, payload).await?;
        }
        for (sink, notice) in notices {
            let payload = serde_json::json!({"reason": GapReason::SinkNotice.as_str(), "sink": sink, "detail": notice});
            d.emit_internal(EventType::AuditGap, payload).await?;
        }
        // After the sinks' own notices (a torn tail is about the file as
        // it was found), the seqs an earlier process reserved and no sink
        // here holds.
        if let Some((from, to)) = skipped {
            let payload = serde_json::json!({
                "reason": GapReason::SeqSkipped.as_str(),
                "from_seq": from,
                "to_seq": to,
                "detail": format!(
                    "seqs {from}..={to} were reserved by an earlier process but no sink here holds them (it stopped without a clean shutdown, or failed to write them); they may be in other sinks, and are never reused"
                ),
            });
            d.emit_internal(EventType::AuditGap, payload).await?;
        }
        Ok(d)
    }
}
