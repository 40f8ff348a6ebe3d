//! A [`Config`] to a running dispatcher: the redaction filter, each sink
//! opened, the sequence lease beside a required log, and signed
//! checkpoints.

use std::fmt;

use agent_audit_core::{Dispatcher, DispatcherBuilder, SinkOptions};

use super::registry::{BuiltSink, SinkContext};
use super::{BuildError, Config, SinkConfig};

impl Config {
    /// Opens every sink and starts the dispatcher, with signed checkpoints
    /// when `[integrity] signing_key_file` is set (the last one is written
    /// by [`Dispatcher::shutdown`]).
    pub async fn start(&self) -> Result<Dispatcher, BuildError> {
        self.start_with(|b| b).await
    }

    /// Like [`Config::start`], letting `extend` add sinks of your own.
    pub async fn start_with(
        &self,
        extend: impl FnOnce(DispatcherBuilder) -> DispatcherBuilder,
    ) -> Result<Dispatcher, BuildError> {
        let (builder, head) = self.assemble()?;
        let dispatcher = extend(builder).start().await?;
        #[cfg(feature = "jsonl")]
        if let (Some(integrity), Some(head)) = (&self.integrity, head) {
            let auditor =
                agent_audit_core::Auditor::new(dispatcher.clone()).with_agent("agent-audit");
            let started = integrity
                .start_checkpointer(auditor, head)
                .map_err(|source| BuildError::Integrity {
                    source_file: self.source.clone(),
                    source,
                });
            let checkpointer = match started {
                Ok(c) => c,
                Err(e) => {
                    dispatcher.shutdown(std::time::Duration::from_secs(5)).await;
                    return Err(e);
                }
            };
            if let Some(checkpointer) = checkpointer {
                dispatcher.before_shutdown(move || async move {
                    // The emit error behind a failed final checkpoint is
                    // already counted and reported by the dispatcher; this
                    // says which record it was.
                    if let Err(e) = checkpointer.finish().await {
                        eprintln!("agent-audit: the final signed checkpoint was not written: {e}");
                    }
                });
            }
        }
        #[cfg(not(feature = "jsonl"))]
        let _ = head;
        Ok(dispatcher)
    }

    /// A dispatcher builder with every configured sink and the redaction
    /// filter, for callers that assemble the dispatcher themselves. Signed
    /// checkpoints need [`Config::start_with`] instead.
    pub fn builder(&self) -> Result<DispatcherBuilder, BuildError> {
        Ok(self.assemble()?.0)
    }

    fn assemble(&self) -> Result<(DispatcherBuilder, Option<Head>), BuildError> {
        let mut b = Dispatcher::builder()
            .max_record_bytes(self.limits.max_record_bytes)
            .attributes(self.attributes.clone());
        #[cfg(feature = "redact")]
        {
            let cfg = self.redaction.clone().unwrap_or_default();
            let redactor = agent_audit_redact::Redactor::from_config(&cfg).map_err(|source| {
                BuildError::Redaction {
                    source_file: self.source.clone(),
                    source,
                }
            })?;
            b = b.filter(std::sync::Arc::new(redactor));
        }
        let mut assembly = Assembly {
            #[cfg(feature = "jsonl")]
            integrity: self.integrity.clone(),
            head: None,
            lease: None,
        };
        for s in &self.sinks {
            let mut context = SinkContext {
                name: &s.name,
                required: s.required,
                source: &self.source,
                line: s.line,
                service: &self.service,
                assembly: &mut assembly,
            };
            let built =
                s.sink_type.0.build(&s.options, &mut context).map_err(|e| {
                    match e.downcast::<BuildError>() {
                        Ok(e) => *e,
                        Err(e) => sink_error(self, s, e),
                    }
                })?;
            // The batch size is the sink's own (its `max_batch` hook).
            let options = SinkOptions::new(s.name.clone())
                .queue(s.queue)
                .overflow(s.overflow)
                .required(s.required);
            b = match built {
                BuiltSink::Sync(sink) => b.boxed_sink(options, sink),
                BuiltSink::Async(sink) => b.boxed_async_sink(options, sink),
            };
        }
        if let Some(lease) = assembly.lease {
            b = b.seq_lease(lease);
        }
        Ok((b, assembly.head))
    }
}

/// What the built-in types share across the sinks of one assembly.
pub(super) struct Assembly {
    /// `[integrity]`: the chain key each JSONL sink takes, and which sink's
    /// head the checkpoints cover.
    #[cfg(feature = "jsonl")]
    pub(super) integrity: Option<agent_audit_jsonl::integrity::IntegrityConfig>,
    /// The head of the JSONL log the checkpoints cover.
    pub(super) head: Option<Head>,
    /// The seq lease, beside the first required JSONL log.
    pub(super) lease: Option<std::sync::Arc<dyn agent_audit_core::SeqLease>>,
}

#[cfg(feature = "jsonl")]
pub(super) type Head = agent_audit_jsonl::HeadHandle;
#[cfg(not(feature = "jsonl"))]
pub(super) type Head = ();

fn sink_error(config: &Config, sink: &SinkConfig, e: impl fmt::Display) -> BuildError {
    BuildError::Sink {
        source_file: config.source.clone(),
        sink: sink.name.clone(),
        line: sink.line,
        message: e.to_string(),
    }
}
