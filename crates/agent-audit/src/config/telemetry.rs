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
        .map_err(|e| err("endpoint", bare(&e)))?;
    otlp.validate().map_err(|e| match &e {
        agent_audit_otlp::OtlpConfigError::OutOfRange { key, .. } => err(key, bare(&e)),
        _ => err("endpoint", bare(&e)),
    })?;
    // What the table alone says (headers, endpoint, a client certificate
    // without its key) is checked now, with the key's line, not first at
    // start; the variables are read at start. An endpoint left to the
    // variables is stood in for; no file is read here (a review command
    // loads this configuration too, where the files need not be).
    let mut table = otlp;
    table
        .endpoint
        .get_or_insert_with(|| "http://localhost:4318".to_string());
    if let Some(tls) = &mut table.tls {
        tls.ca_file = None;
        if tls.client_cert_file.is_some() && tls.client_key_file.is_some() {
            tls.client_cert_file = None;
            tls.client_key_file = None;
        }
    }
    table
        .resolve_signal_with_env(
            agent_audit_otlp::Signal::Traces,
            agent_audit_otlp::ServiceInfo::new("agent-audit"),
            |_| None,
        )
        .map(|_| ())
        .map_err(|e| {
            use agent_audit_otlp::OtlpConfigError as E;
            let key = match &e {
                E::Header { .. } => "headers",
                E::CaFile { .. } | E::ClientIdentity { .. } => "tls",
                E::Timeout { .. } => "timeout_ms",
                E::OutOfRange { key, .. } => key,
                _ => "endpoint",
            };
            err(key, bare(&e))
        })
}

/// An OTLP configuration error without its `otlp sink: ` prefix: the
/// error's key already says `telemetry.…`.
fn bare(e: &agent_audit_otlp::OtlpConfigError) -> String {
    let text = e.to_string();
    text.strip_prefix("otlp sink: ")
        .unwrap_or(&text)
        .to_string()
}
