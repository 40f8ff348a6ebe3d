//! A [`Config`] to a running dispatcher: the redaction filter, each sink
//! opened, the sequence lease beside a required log, and signed
//! checkpoints.

use std::fmt;

use agent_audit_core::{Dispatcher, DispatcherBuilder, SinkOptions};

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
        let mut head = None;
        #[cfg(feature = "jsonl")]
        let mut leased = false;
        let mut b = Dispatcher::builder().max_record_bytes(self.limits.max_record_bytes);
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
        for s in &self.sinks {
            #[allow(unused_mut)]
            let mut options = SinkOptions::new(s.name.clone())
                .queue(s.queue)
                .overflow(s.overflow)
                .required(s.required);
            let sink: Box<dyn agent_audit_core::Sink> = match &s.kind {
                #[cfg(feature = "jsonl")]
                super::SinkKind::Jsonl(o) => {
                    let mut o = o.clone();
                    if let Some(integrity) = &self.integrity {
                        integrity.apply_chain_key(&mut o).map_err(|source| {
                            BuildError::Integrity {
                                source_file: self.source.clone(),
                                source,
                            }
                        })?;
                    }
                    let o_path = o.path.clone();
                    let sink =
                        agent_audit_jsonl::JsonlSink::new(o).map_err(|e| sink_error(self, s, e))?;
                    let wanted = self
                        .integrity
                        .as_ref()
                        .and_then(|i| i.sink.as_deref())
                        .is_none_or(|name| name == s.name);
                    if head.is_none() && wanted {
                        head = Some(sink.head_handle());
                    }
                    // One lease is enough (it bounds the numbering, not a
                    // sink), beside a required log: a lease that cannot be
                    // stored refuses records, which only a required sink's
                    // failure may do.
                    if s.required
                        && !leased
                        && let Some(lease) = agent_audit_jsonl::FileLease::for_log(&o_path)
                    {
                        b = b.seq_lease(std::sync::Arc::new(lease));
                        leased = true;
                    }
                    Box::new(sink)
                }
                #[cfg(feature = "stdout")]
                super::SinkKind::Stdout(o) => {
                    Box::new(agent_audit_stdout::StdoutSink::stdout(o.clone()))
                }
                #[cfg(feature = "otlp")]
                super::SinkKind::Otlp(o) => {
                    // One dispatcher batch feeds up to max_in_flight requests.
                    options = options.max_batch(o.max_batch());
                    let mut service = agent_audit_otlp::ServiceInfo::new(&self.service.name);
                    if let Some(v) = &self.service.version {
                        service = service.with_version(v);
                    }
                    Box::new(
                        agent_audit_otlp::OtlpSink::from_config(o, service)
                            .map_err(|e| sink_error(self, s, e))?,
                    )
                }
            };
            b = b.boxed_sink(options, sink);
        }
        Ok((b, head))
    }
}

#[cfg(feature = "jsonl")]
type Head = agent_audit_jsonl::HeadHandle;
#[cfg(not(feature = "jsonl"))]
type Head = ();

fn sink_error(config: &Config, sink: &SinkConfig, e: impl fmt::Display) -> BuildError {
    BuildError::Sink {
        source_file: config.source.clone(),
        sink: sink.name.clone(),
        line: sink.line,
        message: e.to_string(),
    }
}
