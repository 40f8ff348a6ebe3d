//! Traces and metrics of agent runs, exported through the OpenTelemetry
//! SDK and `opentelemetry-otlp` when `audit.toml` has a `[telemetry]`
//! section (feature `otel`).
//!
//! This is the lossy path, on purpose (docs/decisions/0007): spans and
//! metrics go through the SDK's batch span processor and periodic metric
//! reader, which drop when their queue is full and report failures only
//! when asked. Audit records never take it; they keep the `otlp` sink's
//! acknowledged path. What this module adds is that a telemetry failure is
//! never silent and never fails the run: every export is counted, and
//! [`TelemetryHandle::shutdown`] flushes within a deadline and returns a
//! [`TelemetryReport`] that says what could not be exported.
//!
//! [`Config::start_telemetry`](crate::config::Config::start_telemetry)
//! installs the providers globally (`opentelemetry::global`), so spans the
//! agents runtime and the application open through the API are exported,
//! and returns the handle. `OTEL_SDK_DISABLED=true` turns telemetry off;
//! it never turns off an audit sink.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit::{Auditor, config::Config};
//!
//! let config = Config::discover(None)?;
//! let telemetry = config.start_telemetry().await?;
//! let dispatcher = config.start().await?;
//! let mut auditor = Auditor::new(dispatcher.clone()).for_request(None);
//! if let Some(t) = &telemetry {
//!     auditor = auditor.with_telemetry(t.telemetry());
//! }
//! // ... the agent runs ...
//! dispatcher.shutdown(Duration::from_secs(10)).await;
//! if let Some(t) = telemetry {
//!     let report = t.shutdown(Duration::from_secs(5)).await;
//!     if !report.is_clean() {
//!         eprintln!("{report}");
//!     }
//! }
//! # Ok(()) }
//! ```

mod export;
mod report;

use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::otel::{HealthMetrics, Telemetry, TelemetryOptions};
use agent_audit_otlp::{OtlpSettings, Protocol, Signal};
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::config::{Config, TelemetryConfig};
use export::{Counted, SignalStats};
pub use report::{SignalReport, TelemetryReport};

/// The variable that turns the SDK off (`true`, any case).
pub const SDK_DISABLED_ENV: &str = "OTEL_SDK_DISABLED";

/// Whether `OTEL_SDK_DISABLED` is `true` in this process.
pub fn sdk_disabled() -> bool {
    std::env::var(SDK_DISABLED_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Default period of the metric reader.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A key or variable is unusable (names it; never a header value nor
    /// a key file's content).
    #[error("{source_file}: [telemetry] {signal}: {source}")]
    Config {
        /// Configuration file.
        source_file: String,
        /// `traces` or `metrics`.
        signal: &'static str,
        /// Cause.
        #[source]
        source: agent_audit_otlp::OtlpConfigError,
    },
    /// The resource variables are malformed.
    #[error("{source_file}: resource: {source}")]
    Resource {
        /// Configuration file.
        source_file: String,
        /// Cause.
        #[source]
        source: agent_audit_otlp::OtlpConfigError,
    },
    /// The exporter could not be built.
    #[error(
        "{source_file}: [telemetry] {signal}: the exporter to {endpoint} could not be built: {reason}"
    )]
    Exporter {
        /// Configuration file.
        source_file: String,
        /// `traces` or `metrics`.
        signal: &'static str,
        /// Endpoint, with anything secret hidden.
        endpoint: String,
        /// What failed.
        reason: String,
    },
}

/// The running telemetry: the SDK providers (installed globally), the
/// [`Telemetry`] to give the agents runtime, and what every export did.
pub struct TelemetryHandle {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    telemetry: Telemetry,
    traces: Option<(String, Arc<SignalStats>)>,
    metrics: Option<(String, Arc<SignalStats>)>,
    health: Option<HealthMetrics>,
}

impl std::fmt::Debug for TelemetryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryHandle")
            .field("traces", &self.traces.as_ref().map(|t| &t.0))
            .field("metrics", &self.metrics.as_ref().map(|m| &m.0))
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Starts the SDK's exporters when there is a `[telemetry]` section and
    /// `OTEL_SDK_DISABLED` is not `true`, and installs its providers as the
    /// global ones; `None` otherwise. Call it inside the tokio runtime the
    /// application runs on (the gRPC channel and HTTP requests run there),
    /// before the agent's first span.
    pub async fn start_telemetry(&self) -> Result<Option<TelemetryHandle>, TelemetryError> {
        match &self.telemetry {
            Some(t) if !sdk_disabled() => start(self, t).map(Some),
            _ => Ok(None),
        }
    }
}

fn start(config: &Config, t: &TelemetryConfig) -> Result<TelemetryHandle, TelemetryError> {
    let source_file = config.source.clone();
    let service = config
        .service
        .resource()
        .map_err(|source| TelemetryError::Resource {
            source_file: source_file.clone(),
            source,
        })?;
    let mut attributes: Vec<KeyValue> = service
        .resource_attributes()
        .into_iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
        .collect();
    attributes.push(KeyValue::new("telemetry.sdk.language", "rust"));
    attributes.push(KeyValue::new("telemetry.sdk.name", "opentelemetry"));
    let resource = Resource::builder_empty()
        .with_schema_url(attributes, agent_audit_otlp::SCHEMA_URL)
        .build();
    let settings = |signal: Signal, name: &'static str| {
        let s = t
            .otlp()
            .resolve_signal_with_env(signal, service.clone(), |k| std::env::var(k).ok())
            .map_err(|source| TelemetryError::Config {
                source_file: source_file.clone(),
                signal: name,
                source,
            })?;
        // The table refuses http/json at load; only a variable can ask
        // for it, and the exporters here do not speak it.
        if s.protocol == Protocol::HttpJson {
            return Err(exporter_err(
                &source_file,
                name,
                &s,
                format!(
                    "OTEL_EXPORTER_OTLP_{}_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL asks for http/json, which telemetry does not offer: set grpc or http/protobuf (or `protocol` in [telemetry])",
                    name.to_ascii_uppercase()
                ),
            ));
        }
        Ok(s)
    };

    let mut tracer = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut traces = None;
    if t.traces {
        let s = settings(Signal::Traces, "traces")?;
        let stats = Arc::new(SignalStats::default());
        let exporter = export::span_exporter(&s, &stats)
            .map_err(|reason| exporter_err(&source_file, "traces", &s, reason))?;
        tracer = tracer
            .with_span_processor(export::EndCounter(stats.clone()))
            .with_batch_exporter(Counted::new(exporter, stats.clone()));
        traces = Some((shown(&s), stats));
    }
    let mut meter = SdkMeterProvider::builder().with_resource(resource);
    let mut metrics = None;
    if t.metrics {
        let s = settings(Signal::Metrics, "metrics")?;
        let stats = Arc::new(SignalStats::default());
        let exporter = export::metric_exporter(&s, &stats)
            .map_err(|reason| exporter_err(&source_file, "metrics", &s, reason))?;
        let interval = t
            .metrics_interval_ms
            .map_or(DEFAULT_METRICS_INTERVAL, Duration::from_millis);
        let reader = PeriodicReader::builder(Counted::new(exporter, stats.clone()))
            .with_interval(interval)
            .build();
        meter = meter.with_reader(reader);
        metrics = Some((shown(&s), stats));
    }
    let tracer = tracer.build();
    let meter = meter.build();
    opentelemetry::global::set_tracer_provider(tracer.clone());
    opentelemetry::global::set_meter_provider(meter.clone());
    let telemetry = Telemetry::new(
        &tracer,
        &meter,
        TelemetryOptions::default().capture_content(t.capture_content),
    );
    Ok(TelemetryHandle {
        tracer,
        meter,
        telemetry,
        traces,
        metrics,
        health: None,
    })
}

fn shown(s: &OtlpSettings) -> String {
    // Debug of the settings hides the endpoint's secrets; take its text.
    let protocol = match s.protocol {
        Protocol::Grpc => "grpc",
        Protocol::HttpJson => "http/json",
        _ => "http/protobuf",
    };
    format!("{} ({protocol})", export::redacted_endpoint(s))
}

fn exporter_err(
    source_file: &str,
    signal: &'static str,
    s: &OtlpSettings,
    reason: String,
) -> TelemetryError {
    TelemetryError::Exporter {
        source_file: source_file.to_string(),
        signal,
        endpoint: export::redacted_endpoint(s),
        reason,
    }
}

impl TelemetryHandle {
    /// The telemetry to give the agents runtime
    /// ([`Auditor::with_telemetry`](agent_audit_core::Auditor::with_telemetry)):
    /// these providers, with `capture_content` as configured.
    pub fn telemetry(&self) -> Telemetry {
        self.telemetry.clone()
    }

    /// Reports `dispatcher`'s health (records emitted, delivered, dropped
    /// and failed per sink, queue depth) as `agent_audit.*` metrics until
    /// shutdown.
    pub fn observe_health(&mut self, dispatcher: &agent_audit_core::Dispatcher) {
        self.health = Some(self.telemetry.observe_health(dispatcher));
    }

    /// Flushes what is buffered and shuts the providers down, within
    /// `deadline` in all; says what could not be exported. Never fails:
    /// telemetry is not the audit trail.
    pub async fn shutdown(self, deadline: Duration) -> TelemetryReport {
        let TelemetryHandle {
            tracer,
            meter,
            traces,
            metrics,
            health,
            ..
        } = self;
        // The gauges read the dispatcher at the last collection; dropped
        // after it. On a thread of its own, not the runtime's blocking
        // pool: a flush that outlives the deadline (a collector that never
        // answers) must not hold the runtime's shutdown, and so the
        // process, after the deadline.
        let (done, flushed) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("telemetry-flush".into())
            .spawn(move || {
                let traces_flush = tracer.force_flush().err().map(|e| e.to_string());
                let metrics_flush = meter.force_flush().err().map(|e| e.to_string());
                let _ = tracer.shutdown_with_timeout(deadline);
                let _ = meter.shutdown_with_timeout(deadline);
                drop(health);
                let _ = done.send((traces_flush, metrics_flush));
            });
        let (flushes, timed_out) = match spawned {
            Err(e) => {
                let e = format!("the flush thread could not start: {e}");
                ((Some(e.clone()), Some(e)), false)
            }
            Ok(_detached) => match tokio::time::timeout(deadline, flushed).await {
                Ok(Ok(f)) => (f, false),
                Ok(Err(e)) => ((Some(e.to_string()), Some(e.to_string())), false),
                // The flush goes on in its thread; what it had not sent by
                // now is reported as not exported.
                Err(_) => ((None, None), true),
            },
        };
        TelemetryReport {
            deadline,
            traces: traces
                .map(|(endpoint, stats)| stats.report("traces", endpoint, flushes.0, timed_out)),
            metrics: metrics
                .map(|(endpoint, stats)| stats.report("metrics", endpoint, flushes.1, timed_out)),
        }
    }
}
