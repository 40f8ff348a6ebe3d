//! The built-in sink types, registered through the same [`SinkType`] trait
//! a team's own type uses. Only what no other type may do goes through the
//! private part of [`SinkContext`]: the JSONL log's chain key, checkpoint
//! head and seq lease, which the facade's `[integrity]` section and
//! numbering rely on.

use super::registry::SinkRegistry;
#[cfg(any(
    feature = "jsonl",
    feature = "stdout",
    feature = "otlp",
    feature = "sql"
))]
use super::registry::{BuiltSink, OptionError, SinkBuildError, SinkContext, SinkType};

/// Adds each built-in type this build has.
pub(super) fn register(registry: &mut SinkRegistry) {
    // The names are fixed and distinct, so these cannot fail; were one to,
    // a configuration naming it would say it is not registered.
    #[cfg(feature = "jsonl")]
    let _ = registry.insert(Jsonl);
    #[cfg(feature = "stdout")]
    let _ = registry.insert(Stdout);
    #[cfg(feature = "otlp")]
    let _ = registry.insert(Otlp);
    #[cfg(feature = "sql")]
    let _ = registry.insert(Sql);
    #[cfg(not(any(
        feature = "jsonl",
        feature = "stdout",
        feature = "otlp",
        feature = "sql"
    )))]
    let _ = registry;
}

/// `type = "jsonl"`: the audit file.
#[cfg(feature = "jsonl")]
pub(super) struct Jsonl;

#[cfg(feature = "jsonl")]
impl SinkType for Jsonl {
    type Options = agent_audit_jsonl::JsonlOptions;

    fn name(&self) -> &str {
        "jsonl"
    }

    fn validate(&self, o: &Self::Options) -> Result<(), OptionError> {
        o.validate()
            .map_err(|e| OptionError::new(e.field, format!("{} {}", e.field, e.reason)))
    }

    /// The trail itself: losing it must stop the agent.
    fn required_by_default(&self) -> bool {
        true
    }

    fn build(
        &self,
        o: &Self::Options,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        let mut o = o.clone();
        let assembly = &mut *context.assembly;
        if let Some(integrity) = &assembly.integrity {
            integrity
                .apply_chain_key(&mut o)
                .map_err(|source| super::BuildError::Integrity {
                    source_file: context.source.to_string(),
                    source,
                })?;
        }
        let path = o.path.clone();
        let sink = agent_audit_jsonl::JsonlSink::new(o)?;
        let wanted = assembly
            .integrity
            .as_ref()
            .and_then(|i| i.sink.as_deref())
            .is_none_or(|name| name == context.name);
        if assembly.head.is_none() && wanted {
            assembly.head = Some(sink.head_handle());
        }
        // One lease is enough (it bounds the numbering, not a sink), beside
        // a required log: a lease that cannot be stored refuses records,
        // which only a required sink's failure may do.
        if context.required
            && assembly.lease.is_none()
            && let Some(lease) = agent_audit_jsonl::FileLease::for_log(&path)
        {
            assembly.lease = Some(std::sync::Arc::new(lease));
        }
        Ok(BuiltSink::new(sink))
    }
}

/// `type = "stdout"`.
#[cfg(feature = "stdout")]
pub(super) struct Stdout;

#[cfg(feature = "stdout")]
impl SinkType for Stdout {
    type Options = agent_audit_stdout::StdoutOptions;

    fn name(&self) -> &str {
        "stdout"
    }

    fn build(
        &self,
        o: &Self::Options,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        // The same class as /dev/null as a JSONL path: a required sink
        // that keeps nothing is a run with no trail.
        if context.required() && agent_audit_stdout::stdout_is_discarded() {
            return Err("it is required, but standard output is /dev/null: nothing would keep the trail (redirect stdout to a file, or make the sink optional)".into());
        }
        Ok(BuiltSink::new(agent_audit_stdout::StdoutSink::stdout(
            o.clone(),
        )))
    }
}

/// `type = "otlp"`: an OpenTelemetry Collector.
#[cfg(feature = "otlp")]
pub(super) struct Otlp;

#[cfg(feature = "otlp")]
impl SinkType for Otlp {
    type Options = agent_audit_otlp::OtlpConfig;

    fn name(&self) -> &str {
        "otlp"
    }

    fn validate(&self, o: &Self::Options) -> Result<(), OptionError> {
        // A configuration error (exit 2), before anything starts.
        o.check_credentials()
            .map_err(|e| OptionError::new("endpoint", e.to_string()))?;
        match o.validate() {
            Ok(()) => Ok(()),
            Err(e @ agent_audit_otlp::OtlpConfigError::OutOfRange { key, .. }) => Err(
                OptionError::new(key, e.to_string().trim_start_matches("otlp sink: ")),
            ),
            Err(other) => Err(OptionError::table(other.to_string())),
        }
    }

    fn build(
        &self,
        o: &Self::Options,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        let info = context.service.resource()?;
        // Its batch size and requests in flight are its own hooks
        // (`max_batch`, `max_in_flight`): nothing to set here.
        Ok(BuiltSink::new_async(
            agent_audit_otlp::OtlpSink::from_config(o, info)?,
        ))
    }
}

/// `type = "sql"`: a SQLite file or a PostgreSQL table.
#[cfg(feature = "sql")]
pub(super) struct Sql;

#[cfg(feature = "sql")]
impl SinkType for Sql {
    type Options = agent_audit_sql::SqlOptions;

    fn name(&self) -> &str {
        "sql"
    }

    /// A password in `url`, a bad table name, an unset `url_env`: a
    /// configuration error naming the key, before anything connects.
    fn validate(&self, o: &Self::Options) -> Result<(), OptionError> {
        o.validate().map_err(|e| OptionError::new(e.key, e.reason))
    }

    fn build(
        &self,
        o: &Self::Options,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        // Connecting is the sink's `open`, on its own runtime: a server
        // that is down fails the start naming the sink.
        let sink = agent_audit_sql::SqlSink::new(o)?;
        // The table's chain is keyed as the JSONL log's is, so that an
        // edit cannot be hidden by recomputing it.
        #[cfg(feature = "jsonl")]
        let sink = match &context.assembly.integrity {
            Some(integrity) => sink.with_chain_key(integrity.chain_key().map_err(|source| {
                super::BuildError::Integrity {
                    source_file: context.source.to_string(),
                    source,
                }
            })?),
            None => sink,
        };
        #[cfg(not(feature = "jsonl"))]
        let _ = context;
        Ok(BuiltSink::new_async(sink))
    }
}
