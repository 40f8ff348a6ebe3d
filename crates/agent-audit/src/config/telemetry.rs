//! `[telemetry]`: where the OpenTelemetry SDK exports the traces and
//! metrics of agent runs (the audit records never go this way).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::ConfigError;
use super::position::{key_line, section};

/// `[telemetry]`: spans and metrics of agent runs through the
/// OpenTelemetry SDK and `opentelemetry-otlp` (see the crate's
/// `telemetry` module). Every key is optional; the `OTEL_EXPORTER_OTLP_*`
/// variables fill in, key by key, what the table leaves out, the
/// signal's own (`OTEL_EXPORTER_OTLP_TRACES_*`, `..._METRICS_*`) before
/// the generic ones.
///
/// ```toml
/// [telemetry]
/// endpoint = "http://collector:4317"
/// protocol = "grpc"          # grpc | http/protobuf
/// traces = true
/// metrics = true
/// capture_content = false
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Collector URL: for gRPC `http://host:4317`; for HTTP a base URL
    /// (`/v1/traces` and `/v1/metrics` are joined) or a full one.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (the OTLP default).
    pub protocol: Option<agent_audit_otlp::Protocol>,
    /// Export spans (default true).
    #[serde(default = "yes")]
    pub traces: bool,
    /// Export metrics (default true).
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Put message content, tool arguments and results on spans, after
    /// redaction (default false).
    #[serde(default)]
    pub capture_content: bool,
    /// Request headers or gRPC metadata (auth tokens); values never shown.
    pub headers: Option<BTreeMap<String, String>>,
    /// Time allowed for one export, in milliseconds (default 10000).
    pub timeout_ms: Option<u64>,
    /// How often metrics are exported, in milliseconds (default 60000; the
    /// last export happens at shutdown whatever the interval).
    pub metrics_interval_ms: Option<u64>,
    /// `ca_file`, `client_cert_file`, `client_key_file`, as for the OTLP
    /// sink.
    pub tls: Option<agent_audit_otlp::TlsConfig>,
}

fn yes() -> bool {
    true
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("otlp", &self.otlp())
            .field("traces", &self.traces)
            .field("metrics", &self.metrics)
            .field("capture_content", &self.capture_content)
            .field("metrics_interval_ms", &self.metrics_interval_ms)
            .finish()
    }
}

/// Bounds of `metrics_interval_ms`.
const INTERVAL_BOUNDS: (u64, u64) = (100, 3_600_000);

impl TelemetryConfig {
    /// The keys an OTLP exporter shares with the OTLP sink, as its table,
    /// for the same resolution rules.
    pub fn otlp(&self) -> agent_audit_otlp::OtlpConfig {
        agent_audit_otlp::OtlpConfig {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            headers: self.headers.clone(),
            timeout_ms: self.timeout_ms,
            tls: self.tls.clone(),
            ..Default::default()
        }
    }
}

/// Refuses values the exporters cannot take, naming the key's line.
pub(super) fn check_telemetry(
    text: &str,
    source: &str,
    t: &TelemetryConfig,
) -> Result<(), ConfigError> {
    let err = |key: &str, message: String| ConfigError::Parse {
        path: source.into(),
        line: key_line(text, section(text, "telemetry"), key),
        column: 1,
        key: Some(format!("telemetry.{key}")),
        message,
    };
    if t.protocol == Some(agent_audit_otlp::Protocol::HttpJson) {
        return Err(err(
            "protocol",
            "http/json is not offered for telemetry: use grpc or http/protobuf".into(),
        ));
    }
    if let Some(ms) = t.metrics_interval_ms
        && !(INTERVAL_BOUNDS.0..=INTERVAL_BOUNDS.1).contains(&ms)
    {
        return Err(err(
            "metrics_interval_ms",
            format!(
                "{ms} is out of range: between {} and {}",
                INTERVAL_BOUNDS.0, INTERVAL_BOUNDS.1
            ),
        ));
    }
    let otlp = t.otlp();
    otlp.check_credentials_with_env(|_| None)
        .map_err(|e| err("endpoint", e.to_string()))?;
    otlp.validate().map_err(|e| match &e {
        agent_audit_otlp::OtlpConfigError::OutOfRange { key, .. } => {
            err(key, e.to_string().trim_start_matches("otlp sink: ").into())
        }
        _ => err("endpoint", e.to_string()),
    })
}
