//! The table and the standard `OTEL_EXPORTER_OTLP_*` variables, resolved to
//! the settings a sink runs with, key by key: a key written in the table
//! wins, then the logs-specific variable, then the generic one, then the
//! OTLP default. A table that names the endpoint still takes the headers,
//! protocol, timeout, ... it leaves out from the environment (a token kept
//! in `OTEL_EXPORTER_OTLP_HEADERS` is not dropped).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::endpoint::{parse_url, redact_endpoint};
use super::headers::{RedactedNames, check_header, parse_env_headers};
use super::tls::{ClientIdentity, read_ca, read_client_identity};
use super::{
    BOUNDS, Compression, DEFAULT_LINGER, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_TIMEOUT, OtlpConfig,
    OtlpConfigError, Protocol, ServiceInfo,
};

/// Everything an [`crate::OtlpSink`] needs, resolved from an [`OtlpConfig`]
/// and the environment.
#[derive(Clone)]
pub struct OtlpSettings {
    /// Where requests go: the gRPC base URL, or the full HTTP URL. Never
    /// holds a user or password ([`crate::OtlpSink::new`] refuses one); a
    /// query is allowed but never shown.
    pub endpoint: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Extra headers, names lowercased. Never logged.
    pub headers: Vec<(String, String)>,
    /// Body compression.
    pub compression: Compression,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// PEM of the only CA to trust, when configured.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate and key for mutual TLS, when configured.
    pub client_identity: Option<ClientIdentity>,
    /// Most records per request.
    pub batch_size: usize,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// How long queued records wait for more before they are sent.
    pub linger: Duration,
    /// Largest uncompressed request body.
    pub max_request_bytes: usize,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Retry budget per batch.
    pub max_elapsed: Duration,
    /// Resource attributes.
    pub service: ServiceInfo,
}

impl fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSettings")
            .field("endpoint", &redact_endpoint(&self.endpoint))
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &RedactedNames(self.headers.iter().map(|(k, _)| k.clone()).collect()),
            )
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("client_identity", &self.client_identity)
            .field("batch_size", &self.batch_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("linger", &self.linger)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_elapsed", &self.max_elapsed)
            .field("service", &self.service)
            .finish()
    }
}

/// Prefix of the logs-specific variables, read first.
pub(super) const LOGS: &str = "OTEL_EXPORTER_OTLP_LOGS_";

/// The OTLP signal whose exporter a configuration is resolved for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Logs: the audit records (`OTEL_EXPORTER_OTLP_LOGS_*`, `/v1/logs`).
    Logs,
    /// Traces (`OTEL_EXPORTER_OTLP_TRACES_*`, `/v1/traces`).
    Traces,
    /// Metrics (`OTEL_EXPORTER_OTLP_METRICS_*`, `/v1/metrics`).
    Metrics,
}

impl Signal {
    /// Prefix of its own variables.
    pub fn prefix(self) -> &'static str {
        match self {
            Signal::Logs => LOGS,
            Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_",
            Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_",
        }
    }

    /// The path joined to a base URL over HTTP.
    pub fn path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}
/// Prefix of the generic variables, read when no logs-specific one is set.
pub(super) const ALL: &str = "OTEL_EXPORTER_OTLP_";

impl OtlpConfig {
    /// Resolves the configuration against the process environment.
    pub fn resolve(&self, service: ServiceInfo) -> Result<OtlpSettings, OtlpConfigError> {
        self.resolve_with_env(service, |k| std::env::var(k).ok())
    }

    /// Resolves the configuration, reading variables through `env` (so tests
    /// need not touch the process environment).
    pub fn resolve_with_env(
        &self,
        service: ServiceInfo,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<OtlpSettings, OtlpConfigError> {
        self.resolve_signal_with_env(Signal::Logs, service, env)
    }

    /// Resolves the configuration for another signal's exporter (the
    /// facade's traces and metrics): the same keys and rules, with that
    /// signal's variables (`OTEL_EXPORTER_OTLP_TRACES_*`) before the
    /// generic ones and its path (`/v1/traces`) joined to a base URL.
    pub fn resolve_signal_with_env(
        &self,
        signal: Signal,
        service: ServiceInfo,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<OtlpSettings, OtlpConfigError> {
        let own = signal.prefix();
        let join = |base: &str| format!("{}{}", base.trim().trim_end_matches('/'), signal.path());
        // Signal-specific variable first, then the generic one.
        let var = |suffix: &str| -> Option<(String, String)> {
            for prefix in [own, ALL] {
                let name = format!("{prefix}{suffix}");
                if let Some(v) = env(&name).filter(|v| !v.trim().is_empty()) {
                    return Some((name, v));
                }
            }
            None
        };

        let protocol = match self.protocol {
            Some(p) => p,
            None => match var("PROTOCOL") {
                Some((origin, value)) => {
                    Protocol::parse(&value).ok_or(OtlpConfigError::Protocol { origin, value })?
                }
                None => Protocol::HttpProtobuf,
            },
        };

        let endpoint = match &self.endpoint {
            Some(e) => {
                let url = parse_url("endpoint", e)?;
                if protocol.is_http() && (url.path().is_empty() || url.path() == "/") {
                    join(e)
                } else {
                    e.trim().to_string()
                }
            }
            None => {
                if let Some(v) = env(&format!("{own}ENDPOINT")).filter(|v| !v.trim().is_empty()) {
                    parse_url(&format!("{own}ENDPOINT"), &v)?;
                    v.trim().to_string()
                } else if let Some(v) =
                    env(&format!("{ALL}ENDPOINT")).filter(|v| !v.trim().is_empty())
                {
                    parse_url(&format!("{ALL}ENDPOINT"), &v)?;
                    if protocol.is_http() {
                        join(&v)
                    } else {
                        v.trim().to_string()
                    }
                } else if protocol.is_http() {
                    join("http://localhost:4318")
                } else {
                    "http://localhost:4317".to_string()
                }
            }
        };

        let headers = match &self.headers {
            Some(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (k, v) in map {
                    out.push(check_header("headers", k, v)?);
                }
                out
            }
            None => match var("HEADERS") {
                Some((origin, value)) => parse_env_headers(&origin, &value)?,
                None => Vec::new(),
            },
        };

        let compression = match self.compression {
            Some(c) => c,
            None => match var("COMPRESSION") {
                Some((origin, value)) => Compression::parse(&value)
                    .ok_or(OtlpConfigError::Compression { origin, value })?,
                None => Compression::None,
            },
        };

        self.validate()?;
        let timeout = match self.timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => match var("TIMEOUT") {
                Some((origin, value)) => match value.trim().parse::<u64>() {
                    Ok(ms) if (1..=BOUNDS[0].2).contains(&ms) => Duration::from_millis(ms),
                    _ => return Err(OtlpConfigError::Timeout { origin, value }),
                },
                None => DEFAULT_TIMEOUT,
            },
        };

        let ca = match self.tls.as_ref().and_then(|t| t.ca_file.clone()) {
            Some(path) => Some(("tls.ca_file".to_string(), path)),
            None => var("CERTIFICATE").map(|(origin, v)| (origin, PathBuf::from(v.trim()))),
        };
        let ca_pem = match ca {
            Some((origin, path)) => Some(read_ca(&origin, path)?),
            None => None,
        };

        // Each of the pair merges on its own, like every other key.
        let tls = self.tls.clone().unwrap_or_default();
        let client_cert = match tls.client_cert_file {
            Some(path) => Some(("tls.client_cert_file".to_string(), path)),
            None => var("CLIENT_CERTIFICATE").map(|(origin, v)| (origin, PathBuf::from(v.trim()))),
        };
        let client_key = match tls.client_key_file {
            Some(path) => Some(("tls.client_key_file".to_string(), path)),
            None => var("CLIENT_KEY").map(|(origin, v)| (origin, PathBuf::from(v.trim()))),
        };
        let client_identity = read_client_identity(client_cert, client_key)?;

        let batch_size = self.batch_size();
        let max_in_flight = self.max_in_flight();
        let linger = self.linger_ms.map_or(DEFAULT_LINGER, Duration::from_millis);
        let max_request_bytes = self.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
        let retry = self.retry.clone().unwrap_or_default();
        Ok(OtlpSettings {
            endpoint,
            protocol,
            headers,
            compression,
            timeout,
            ca_pem,
            client_identity,
            batch_size,
            max_in_flight,
            linger,
            max_request_bytes,
            initial_backoff: Duration::from_millis(retry.initial_backoff_ms),
            max_backoff: Duration::from_millis(retry.max_backoff_ms.max(retry.initial_backoff_ms)),
            max_elapsed: Duration::from_millis(retry.max_elapsed_ms),
            service,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{env, svc};
    use std::collections::BTreeMap;

    #[test]
    fn table_endpoint_wins_and_env_headers_still_apply() {
        let c = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4317".into()),
            protocol: Some(Protocol::Grpc),
            ..Default::default()
        };
        let s = c
            .resolve_with_env(
                svc(),
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:1"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "a=b"),
                ]),
            )
            .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4317");
        // The documented setup: endpoint in the table, token in the
        // environment.
        assert_eq!(s.headers, vec![("a".to_string(), "b".to_string())]);
    }

    #[test]
    fn http_table_endpoint_without_path_gets_v1_logs() {
        let c = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4318/".into()),
            protocol: Some(Protocol::HttpJson),
            ..Default::default()
        };
        assert_eq!(
            c.resolve_with_env(svc(), env(&[])).unwrap().endpoint,
            "http://127.0.0.1:4318/v1/logs"
        );
        let c = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4318/custom/logs".into()),
            ..Default::default()
        };
        assert_eq!(
            c.resolve_with_env(svc(), env(&[])).unwrap().endpoint,
            "http://127.0.0.1:4318/custom/logs"
        );
    }

    #[test]
    fn env_precedence_follows_the_spec() {
        let c = OtlpConfig::default();
        // Generic endpoint gets /v1/logs for HTTP.
        let s = c
            .resolve_with_env(
                svc(),
                env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://col:4318/")]),
            )
            .unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.endpoint, "http://col:4318/v1/logs");
        // Signal-specific endpoint is used as is and wins.
        let s = c
            .resolve_with_env(
                svc(),
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://col:4318"),
                    (
                        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                        "http://logs:9999/ingest",
                    ),
                ]),
            )
            .unwrap();
        assert_eq!(s.endpoint, "http://logs:9999/ingest");
        // gRPC keeps the generic endpoint as is.
        let s = c
            .resolve_with_env(
                svc(),
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://col:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
                    (
                        "OTEL_EXPORTER_OTLP_HEADERS",
                        "authorization=Bearer%20abc, x-tenant = t1",
                    ),
                    ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ]),
            )
            .unwrap();
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.endpoint, "http://col:4317");
        assert_eq!(
            s.headers,
            vec![
                ("authorization".to_string(), "Bearer abc".to_string()),
                ("x-tenant".to_string(), "t1".to_string())
            ]
        );
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert_eq!(s.compression, Compression::Gzip);
        // Defaults with nothing set.
        let s = c.resolve_with_env(svc(), env(&[])).unwrap();
        assert_eq!(s.endpoint, "http://localhost:4318/v1/logs");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn errors_name_the_variable_and_never_a_header_value() {
        let c = OtlpConfig::default();
        let e = c
            .resolve_with_env(
                svc(),
                env(&[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "carrier-pigeon")]),
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"),
            "{e}"
        );
        let e = c
            .resolve_with_env(
                svc(),
                env(&[("OTEL_EXPORTER_OTLP_HEADERS", "authorization=top%zzsecret")]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let c = OtlpConfig {
            endpoint: Some("ftp://x".into()),
            ..Default::default()
        };
        let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("`endpoint`") || e.to_string().contains("endpoint ="),
            "{e}"
        );
        let mut headers = BTreeMap::new();
        headers.insert("authorization".to_string(), "Bearer s3cret\n".to_string());
        let c = OtlpConfig {
            headers: Some(headers),
            ..Default::default()
        };
        let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("authorization") && !e.to_string().contains("s3cret"),
            "{e}"
        );
    }
}

#[cfg(test)]
#[path = "precedence_tests.rs"]
mod precedence_tests;
