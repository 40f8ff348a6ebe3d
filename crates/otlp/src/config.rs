//! The `[[sinks]] type = "otlp"` table, the standard `OTEL_EXPORTER_OTLP_*`
//! variables, and the settings they resolve to.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Wire protocol to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    /// OTLP over gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with a protobuf body (port 4318, path `/v1/logs`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP over HTTP with a JSON body (port 4318, path `/v1/logs`).
    #[serde(rename = "http/json")]
    HttpJson,
}

impl Protocol {
    /// The name used in configuration and in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        }
    }

    fn parse(s: &str) -> Option<Protocol> {
        match s.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        }
    }

    fn is_http(self) -> bool {
        !matches!(self, Protocol::Grpc)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Request body compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Bodies are sent as they are (the OTLP default).
    #[default]
    None,
    /// Bodies are gzip-compressed (`Content-Encoding: gzip`, or gRPC's gzip
    /// message encoding).
    Gzip,
}

impl Compression {
    fn parse(s: &str) -> Option<Compression> {
        match s.trim() {
            "gzip" => Some(Compression::Gzip),
            "none" | "" => Some(Compression::None),
            _ => None,
        }
    }
}

/// TLS options (the `tls` key of the sink table).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA that signed the collector's certificate. When set,
    /// only this CA is trusted; otherwise the bundled web PKI roots are.
    pub ca_file: Option<PathBuf>,
}

/// Retry options (the `retry` key of the sink table).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff after a transient failure, in milliseconds (default 100).
    pub initial_backoff_ms: u64,
    /// Largest backoff between attempts, in milliseconds (default 5000).
    pub max_backoff_ms: u64,
    /// How long one batch is retried before its records are reported
    /// failed, in milliseconds (default 300000, five minutes); `0` sends each
    /// batch once. While a batch is retried the sink's queue fills and its
    /// overflow policy applies.
    pub max_elapsed_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 5_000,
            max_elapsed_ms: 300_000,
        }
    }
}

/// The options of an OTLP sink: the `[[sinks]]` table with `type = "otlp"`
/// minus the keys the dispatcher owns (`type`, `name`, `required`,
/// `overflow`, `queue`).
///
/// Every key is optional. When `endpoint` is absent, the standard
/// variables fill in what the table leaves out, signal-specific first:
/// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (used as it is), then
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (with `/v1/logs` appended for HTTP), and
/// likewise `..._HEADERS`, `..._PROTOCOL`, `..._TIMEOUT`, `..._COMPRESSION`
/// and `..._CERTIFICATE`. Keys written in the table always win.
///
/// ```
/// let config: agent_audit_otlp::OtlpConfig = toml::from_str(r#"
///     endpoint = "http://127.0.0.1:4317"
///     protocol = "grpc"
///     headers = { authorization = "Bearer s3cret" }
///     compression = "gzip"
///     retry = { max_elapsed_ms = 60000 }
/// "#).unwrap();
/// // Header values never appear in Debug output or errors.
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Collector URL. For gRPC `http://host:4317` (or `https://`); for HTTP
    /// the full URL, or a base URL without path to which `/v1/logs` is
    /// appended. A user or password in the URL (`http://user:pw@host`) is
    /// refused: credentials go in `headers`. Wherever the endpoint is
    /// shown (errors, Debug, `audit_gap` records) its query and fragment
    /// are shown as `***`.
    pub endpoint: Option<String>,
    /// `grpc`, `http/protobuf` (the OTLP default) or `http/json`.
    pub protocol: Option<Protocol>,
    /// Extra request headers or gRPC metadata, for auth tokens. Values are
    /// never logged nor put in errors.
    pub headers: Option<BTreeMap<String, String>>,
    /// `gzip` or `none` (default).
    pub compression: Option<Compression>,
    /// Time allowed for one export attempt, in milliseconds (default 10000).
    pub timeout_ms: Option<u64>,
    /// TLS options for `https://` endpoints.
    pub tls: Option<TlsConfig>,
    /// Most log records in one export request (default 1024).
    pub batch_size: Option<usize>,
    /// Most export requests in flight at once over the one connection
    /// (default 4). The dispatcher hands the sink up to
    /// `batch_size * max_in_flight` records at a time
    /// ([`OtlpConfig::max_batch`]); the sink sends them as that many
    /// requests together and acknowledges the batch when every one has
    /// been answered.
    pub max_in_flight: Option<usize>,
    /// How long, in milliseconds, records wait in the queue for more to
    /// fill a batch before they are sent anyway (default 5): a trickle of
    /// records becomes fewer, larger requests. Shutdown never waits for it;
    /// `0` sends whatever is queued at once.
    pub linger_ms: Option<u64>,
    /// Largest uncompressed request body in bytes (default 3 MiB, below the
    /// 4 MiB that gRPC servers accept by default); a batch is split to fit.
    pub max_request_bytes: Option<usize>,
    /// Retry and backoff options.
    pub retry: Option<RetryConfig>,
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint.as_deref().map(redact_endpoint))
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self
                    .headers
                    .as_ref()
                    .map(|h| RedactedNames(h.keys().cloned().collect())),
            )
            .field("compression", &self.compression)
            .field("timeout_ms", &self.timeout_ms)
            .field("tls", &self.tls)
            .field("batch_size", &self.batch_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("linger_ms", &self.linger_ms)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Header names with their values hidden, for Debug output.
struct RedactedNames(Vec<String>);

impl fmt::Debug for RedactedNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// Default records per request.
pub const DEFAULT_BATCH_SIZE: usize = 1024;
/// Default requests in flight at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Default linger.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Default largest uncompressed request body.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 << 20;
/// Default time allowed for one attempt (the OTLP default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The range of every number an OTLP sink takes, as `(key, min, max)`.
/// The upper bounds keep each size to what one process can hold (a
/// `batch_size * max_in_flight` batch is allocated; a trillion aborts the
/// process) and each time to what an operator means by it.
pub const BOUNDS: [(&str, u64, u64); 8] = [
    ("timeout_ms", 1, 600_000),
    ("batch_size", 1, 65_536),
    ("max_in_flight", 1, 64),
    ("linger_ms", 0, 60_000),
    ("max_request_bytes", 1024, 64 << 20),
    ("retry.initial_backoff_ms", 1, 60_000),
    ("retry.max_backoff_ms", 0, 600_000),
    ("retry.max_elapsed_ms", 0, 86_400_000),
];

/// The `service.*` and `host.name` resource attributes every exported
/// record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `service.name`, from the configuration's `[service]` table.
    pub name: String,
    /// `service.version`, omitted when `None`.
    pub version: Option<String>,
    /// `host.name`, omitted when `None`.
    pub host_name: Option<String>,
}

impl ServiceInfo {
    /// A service with this name, no version, and this machine's host name.
    pub fn new(name: impl Into<String>) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            version: None,
            host_name: detect_host_name(),
        }
    }

    /// Sets `service.version`.
    pub fn with_version(mut self, version: impl Into<String>) -> ServiceInfo {
        self.version = Some(version.into());
        self
    }

    /// Sets `host.name` (or omits it with `None`).
    pub fn with_host_name(mut self, host: Option<String>) -> ServiceInfo {
        self.host_name = host;
        self
    }
}

fn detect_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Why an OTLP sink could not be configured. Names the key or variable at
/// fault; header values are never included, nor an endpoint's user,
/// password, query or fragment.
#[derive(Debug, thiserror::Error)]
pub enum OtlpConfigError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("otlp sink: {origin} = `{value}` is not a valid endpoint: {reason}")]
    Endpoint {
        /// `endpoint` or the variable it came from.
        origin: String,
        /// The endpoint as given, with anything that could be a secret
        /// (user, password, query, fragment) shown as `***`.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The endpoint carries a user or password (`http://user:pw@host`).
    /// It is refused rather than used, because the endpoint is quoted in
    /// errors and `audit_gap` records; neither the user nor the password
    /// is in the message.
    #[error(
        "otlp sink: {origin} holds a user or password (an `@` in the URL), which would be quoted in errors and audit records; remove it from the URL and send credentials as a header instead, through {hint}"
    )]
    Credentials {
        /// `endpoint` or the variable it came from.
        origin: String,
        /// Where headers go for this origin.
        hint: &'static str,
    },
    /// A variable named an unknown protocol.
    #[error(
        "otlp sink: {origin} = `{value}` is not a protocol (expected grpc, http/protobuf or http/json)"
    )]
    Protocol {
        /// The variable.
        origin: String,
        /// Its value.
        value: String,
    },
    /// A variable named an unknown compression.
    #[error("otlp sink: {origin} = `{value}` is not a compression (expected gzip or none)")]
    Compression {
        /// The variable.
        origin: String,
        /// Its value.
        value: String,
    },
    /// A timeout variable is not a number of milliseconds from 1 to
    /// 600000 (the bound of `timeout_ms`).
    #[error("otlp sink: {origin} = `{value}` is not a number of milliseconds from 1 to 600000")]
    Timeout {
        /// The variable.
        origin: String,
        /// Its value.
        value: String,
    },
    /// A header name or value cannot be sent.
    #[error("otlp sink: header `{name}` from {origin} is invalid: {reason}")]
    Header {
        /// `headers` or the variable it came from.
        origin: String,
        /// The header name (its value is never shown).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A number outside its documented range (see [`OtlpConfig::validate`]).
    #[error("otlp sink: `{key}` is {value}: it must be between {min} and {max}")]
    OutOfRange {
        /// The key (`batch_size`, `retry.max_elapsed_ms`, ...).
        key: &'static str,
        /// The configured value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("otlp sink: CA certificate {path} (from {origin}): {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// `tls.ca_file` or the variable it came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP or gRPC client could not be built.
    #[error("otlp sink: could not build the {protocol} client for {endpoint}: {reason}")]
    Client {
        /// Protocol.
        protocol: Protocol,
        /// Endpoint, query and fragment shown as `***`.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// The sink's runtime could not start.
    #[error("otlp sink: could not start its I/O runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

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

const LOGS: &str = "OTEL_EXPORTER_OTLP_LOGS_";
const ALL: &str = "OTEL_EXPORTER_OTLP_";

impl OtlpConfig {
    /// Most records per request (`batch_size`).
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// Most requests in flight at once (`max_in_flight`).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT)
    }

    /// What the facade should give the dispatcher as this sink's
    /// `max_batch`: `batch_size * max_in_flight` records, so that one
    /// write fills every request slot.
    pub fn max_batch(&self) -> usize {
        self.batch_size()
            .saturating_mul(self.max_in_flight())
            .max(1)
    }

    /// Checks every number against [`BOUNDS`] without reading the
    /// environment or any file, so a configuration loader can refuse an
    /// absurd size with the key's line before anything starts.
    /// [`OtlpConfig::resolve`] checks the same.
    pub fn validate(&self) -> Result<(), OtlpConfigError> {
        let retry = self.retry.clone().unwrap_or_default();
        let values = [
            self.timeout_ms,
            self.batch_size.map(|n| n as u64),
            self.max_in_flight.map(|n| n as u64),
            self.linger_ms,
            self.max_request_bytes.map(|n| n as u64),
            Some(retry.initial_backoff_ms),
            Some(retry.max_backoff_ms),
            Some(retry.max_elapsed_ms),
        ];
        for ((key, min, max), value) in BOUNDS.into_iter().zip(values) {
            if let Some(value) = value.filter(|v| !(min..=max).contains(v)) {
                return Err(OtlpConfigError::OutOfRange {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Refuses a user or password in the endpoint this configuration
    /// would use (the table's, else `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` of this process), so that a
    /// caller can report it as a configuration error before starting
    /// anything. [`OtlpConfig::resolve`] refuses it too.
    pub fn check_credentials(&self) -> Result<(), OtlpConfigError> {
        self.check_credentials_with_env(|k| std::env::var(k).ok())
    }

    /// [`OtlpConfig::check_credentials`], reading variables through `env`.
    pub fn check_credentials_with_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), OtlpConfigError> {
        let (origin, value) = match &self.endpoint {
            Some(e) => ("endpoint".to_string(), e.clone()),
            None => {
                let found = [format!("{LOGS}ENDPOINT"), format!("{ALL}ENDPOINT")]
                    .into_iter()
                    .find_map(|k| env(&k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)));
                match found {
                    Some(f) => f,
                    None => return Ok(()),
                }
            }
        };
        if has_userinfo(&value) {
            return Err(OtlpConfigError::Credentials {
                hint: headers_hint(&origin),
                origin,
            });
        }
        Ok(())
    }

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
        let use_env = self.endpoint.is_none();
        // Signal-specific variable first, then the generic one; only when
        // the table names no endpoint.
        let var = |suffix: &str| -> Option<(String, String)> {
            if !use_env {
                return None;
            }
            for prefix in [LOGS, ALL] {
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
                    join_logs_path(e)
                } else {
                    e.trim().to_string()
                }
            }
            None => {
                if let Some(v) = env(&format!("{LOGS}ENDPOINT")).filter(|v| !v.trim().is_empty()) {
                    parse_url(&format!("{LOGS}ENDPOINT"), &v)?;
                    v.trim().to_string()
                } else if let Some(v) =
                    env(&format!("{ALL}ENDPOINT")).filter(|v| !v.trim().is_empty())
                {
                    parse_url(&format!("{ALL}ENDPOINT"), &v)?;
                    if protocol.is_http() {
                        join_logs_path(&v)
                    } else {
                        v.trim().to_string()
                    }
                } else if protocol.is_http() {
                    "http://localhost:4318/v1/logs".to_string()
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

/// Where credentials belong, for the error that refuses them in a URL.
pub(crate) fn headers_hint(origin: &str) -> &'static str {
    if origin.starts_with(LOGS) {
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS (e.g. authorization=Basic%20<base64>)"
    } else if origin.starts_with(ALL) {
        "OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Basic%20<base64>)"
    } else {
        "the sink's `headers` key (e.g. headers = { authorization = \"Basic <base64>\" })"
    }
}

pub(crate) fn parse_url(origin: &str, value: &str) -> Result<reqwest::Url, OtlpConfigError> {
    // Checked on the text before parsing, so that a URL the parser rejects
    // is refused for its credentials too instead of quoted.
    if has_userinfo(value) {
        return Err(OtlpConfigError::Credentials {
            origin: origin.to_string(),
            hint: headers_hint(origin),
        });
    }
    let err = |reason: String| OtlpConfigError::Endpoint {
        origin: origin.to_string(),
        value: redact_endpoint(value),
        reason,
    };
    // The parser's message never quotes the input.
    let url = reqwest::Url::parse(value.trim()).map_err(|e| err(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OtlpConfigError::Credentials {
            origin: origin.to_string(),
            hint: headers_hint(origin),
        });
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(err(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("no host".to_string()));
    }
    Ok(url)
}

/// Where what follows `scheme://` starts (0 when there is no scheme).
fn after_scheme(value: &str) -> usize {
    value.find("://").map_or(0, |i| i + 3)
}

/// Whether `value` may carry a user or password: any `@` after the scheme.
/// Wider than the URL grammar on purpose: a password holding `/`, `?` or
/// `#` makes a parser end the authority early, and the text must still be
/// caught (an `@` elsewhere in an OTLP endpoint has no use).
pub(crate) fn has_userinfo(value: &str) -> bool {
    value[after_scheme(value)..].contains('@')
}

/// `value` as it may be shown: everything up to the last `@` after the
/// scheme (a user and password, which are refused anyway) and the query
/// and fragment (which may carry an API key) replaced by `***`. Works on
/// text that is not a valid URL too, since that is what errors quote.
pub(crate) fn redact_endpoint(value: &str) -> String {
    let value = value.trim();
    let start = after_scheme(value);
    let mut out = String::with_capacity(value.len());
    out.push_str(&value[..start]);
    let mut rest = &value[start..];
    if let Some(at) = rest.rfind('@') {
        out.push_str("***");
        rest = &rest[at..];
    }
    match rest.find(['?', '#']) {
        Some(i) => {
            out.push_str(&rest[..=i]);
            out.push_str("***");
        }
        None => out.push_str(rest),
    }
    out
}

fn join_logs_path(base: &str) -> String {
    format!("{}/v1/logs", base.trim().trim_end_matches('/'))
}

fn check_header(
    origin: &str,
    name: &str,
    value: &str,
) -> Result<(String, String), OtlpConfigError> {
    let name = name.trim().to_ascii_lowercase();
    let err = |reason: &str| OtlpConfigError::Header {
        origin: origin.to_string(),
        name: name.clone(),
        reason: reason.to_string(),
    };
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
        || name.ends_with("-bin")
        || name.starts_with("grpc-")
    {
        return Err(err("not a usable header name"));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(err("the value holds characters a header cannot carry"));
    }
    Ok((name, value.to_string()))
}

/// Parses `key1=value1,key2=value2` (W3C Baggage style, values
/// percent-decoded) as the OTLP specification defines `..._HEADERS`.
fn parse_env_headers(origin: &str, value: &str) -> Result<Vec<(String, String)>, OtlpConfigError> {
    let mut out = Vec::new();
    for (i, pair) in value.split(',').enumerate() {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(OtlpConfigError::Header {
                origin: origin.to_string(),
                name: format!("#{} (no `=`)", i + 1),
                reason: "expected key=value".to_string(),
            });
        };
        let v = percent_decode(v.trim()).ok_or_else(|| OtlpConfigError::Header {
            origin: origin.to_string(),
            name: k.trim().to_ascii_lowercase(),
            reason: "bad percent-encoding in the value".to_string(),
        })?;
        out.push(check_header(origin, k, &v)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn read_ca(origin: &str, path: PathBuf) -> Result<Vec<u8>, OtlpConfigError> {
    let pem = std::fs::read(&path).map_err(|e| OtlpConfigError::CaFile {
        path: path.clone(),
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(OtlpConfigError::CaFile {
            path,
            origin: origin.to_string(),
            reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".to_string(),
        });
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn svc() -> ServiceInfo {
        ServiceInfo::new("svc")
    }

    #[test]
    fn table_endpoint_wins_and_env_is_ignored() {
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
        assert!(s.headers.is_empty());
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

    const USER: &str = "alice-the-user";
    const PASSWORD: &str = "hunter2-pass";

    fn assert_no_credentials(text: &str) {
        assert!(
            !text.contains(USER) && !text.contains(PASSWORD),
            "credentials leaked: {text}"
        );
    }

    #[test]
    fn credentials_in_the_table_endpoint_are_refused_without_being_quoted() {
        for endpoint in [
            format!("http://{USER}:{PASSWORD}@127.0.0.1:4318"),
            format!("https://{USER}:{PASSWORD}@collector.example/v1/logs?x=1"),
            format!("http://{USER}@127.0.0.1:4317"),
            format!("http://:{PASSWORD}@127.0.0.1:4317"),
            // The parser rejects these; they must still not be quoted.
            format!("http://{USER}:{PASSWORD}@"),
            format!("http://{USER}:{PASSWORD}@exa mple:99999"),
            // A `/` in the password ends a parser's authority early.
            format!("http://{USER}:{PASSWORD}/x@127.0.0.1:4317"),
        ] {
            for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
                let c = OtlpConfig {
                    endpoint: Some(endpoint.clone()),
                    protocol: Some(protocol),
                    ..Default::default()
                };
                let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
                assert!(
                    matches!(&e, OtlpConfigError::Credentials { origin, .. } if origin == "endpoint"),
                    "{endpoint}: {e:?}"
                );
                let text = e.to_string();
                assert!(
                    text.contains("endpoint") && text.contains("`headers`"),
                    "{text}"
                );
                assert_no_credentials(&text);
                assert_no_credentials(&format!("{e:?}"));
                assert_no_credentials(&format!("{c:?}"));
            }
        }
    }

    #[test]
    fn credentials_in_the_endpoint_variables_are_refused_without_being_quoted() {
        let url = format!("http://{USER}:{PASSWORD}@col:4318");
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        ] {
            let e = OtlpConfig::default()
                .resolve_with_env(svc(), env(&[(var, &url)]))
                .unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(&e, OtlpConfigError::Credentials { origin, .. } if origin == var),
                "{e:?}"
            );
            let headers_var = var.replace("ENDPOINT", "HEADERS");
            assert!(text.contains(var) && text.contains(&headers_var), "{text}");
            assert_no_credentials(&text);
            assert_no_credentials(&format!("{e:?}"));
        }
    }

    #[test]
    fn check_credentials_sees_what_resolve_would_use() {
        let url = format!("http://{USER}:{PASSWORD}@col:4318");
        let table = OtlpConfig {
            endpoint: Some(url.clone()),
            ..Default::default()
        };
        let e = table.check_credentials_with_env(env(&[])).unwrap_err();
        assert_no_credentials(&e.to_string());
        // The table's endpoint wins, so a variable with credentials is
        // not used and not refused.
        let clean = OtlpConfig {
            endpoint: Some("http://col:4318".into()),
            ..Default::default()
        };
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str())];
        assert!(clean.check_credentials_with_env(env(&vars)).is_ok());
        let e = OtlpConfig::default()
            .check_credentials_with_env(env(&vars))
            .unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
        assert_no_credentials(&e.to_string());
    }

    #[test]
    fn shown_endpoints_hide_queries_fragments_and_userinfo() {
        assert_eq!(
            redact_endpoint("https://col:4318/v1/logs?api_key=k3y#frag"),
            "https://col:4318/v1/logs?***"
        );
        assert_eq!(
            redact_endpoint("http://u:p@col:4317"),
            "http://***@col:4317"
        );
        assert_eq!(redact_endpoint("http://col#k3y"), "http://col#***");
        assert_eq!(redact_endpoint("http://col:4317/"), "http://col:4317/");
        // An invalid endpoint is quoted with its query hidden.
        let c = OtlpConfig {
            endpoint: Some("ftp://col/?token=k3y".into()),
            ..Default::default()
        };
        let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
        assert!(!e.to_string().contains("k3y"), "{e}");
        // A query is allowed, and never shown by Debug.
        let c = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4318/v1/logs?token=k3y".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("k3y"), "{c:?}");
        let s = c.resolve_with_env(svc(), env(&[])).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4318/v1/logs?token=k3y");
        assert!(!format!("{s:?}").contains("k3y"), "{s:?}");
    }

    #[test]
    fn every_number_is_accepted_up_to_its_bound_and_refused_one_past_it() {
        for (key, min, max) in BOUNDS {
            let table = |v: u64| match key.strip_prefix("retry.") {
                Some(k) => format!("retry = {{ {k} = {v} }}"),
                None => format!("{key} = {v}"),
            };
            let parse = |v: u64| -> OtlpConfig { toml::from_str(&table(v)).unwrap() };
            assert!(parse(max).validate().is_ok(), "{key} = {max}");
            assert!(parse(min).validate().is_ok(), "{key} = {min}");
            let e = parse(max + 1).validate().unwrap_err();
            assert!(
                matches!(e, OtlpConfigError::OutOfRange { key: k, value, .. } if k == key && value == max + 1),
                "{key}: {e:?}"
            );
            assert!(e.to_string().contains(&max.to_string()), "{e}");
            if min > 0 {
                assert!(parse(min - 1).validate().is_err(), "{key} = {}", min - 1);
            }
            // resolve() refuses what validate() refuses.
            assert!(parse(max + 1).resolve_with_env(svc(), env(&[])).is_err());
        }
        // The timeout variable has the table key's bound.
        let e = OtlpConfig::default()
            .resolve_with_env(svc(), env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "600001")]))
            .unwrap_err();
        assert!(matches!(e, OtlpConfigError::Timeout { .. }), "{e:?}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<OtlpConfig>("endpont = \"http://x:1\"").unwrap_err();
        assert!(e.to_string().contains("endpont"), "{e}");
        let e = toml::from_str::<OtlpConfig>("retry = { max_elapsed = 1 }").unwrap_err();
        assert!(e.to_string().contains("max_elapsed"), "{e}");
        let e = toml::from_str::<OtlpConfig>("protocol = \"udp\"").unwrap_err();
        assert!(e.to_string().contains("udp"), "{e}");
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a cert").unwrap();
        let c = OtlpConfig {
            tls: Some(TlsConfig {
                ca_file: Some(p.clone()),
            }),
            ..Default::default()
        };
        let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("ca.pem") && e.to_string().contains("tls.ca_file"),
            "{e}"
        );
    }
}
