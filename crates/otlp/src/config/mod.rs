//! The `[[sinks]] type = "otlp"` table, the standard `OTEL_EXPORTER_OTLP_*`
//! variables, and the settings they resolve to.
//!
//! The options and their defaults are here; the rest is one file per job:
//! `bounds` (the range of every number), `resolve` (table and environment
//! to [`OtlpSettings`]), `endpoint` (URL parsing, credentials refused,
//! endpoints shown with secrets hidden), `headers`, `tls`, `service` (the
//! resource attributes) and `error`.

mod bounds;
mod endpoint;
mod error;
mod headers;
mod resolve;
mod service;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

pub use bounds::BOUNDS;
pub(crate) use endpoint::{has_userinfo, headers_hint, redact_endpoint};
pub use error::OtlpConfigError;
use headers::RedactedNames;
pub use resolve::{OtlpSettings, Signal};
pub use service::{RESOURCE_ATTRIBUTES_ENV, SCHEMA_URL, SERVICE_NAME_ENV, ServiceInfo};
pub use tls::{ClientIdentity, MAX_CLIENT_FILE_BYTES, TlsConfig, read_client_identity};

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
/// Every key is optional. The standard variables fill in, key by key,
/// what the table leaves out (whether or not it names the endpoint),
/// signal-specific first:
/// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (used as it is), then
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (with `/v1/logs` appended for HTTP), and
/// likewise `..._HEADERS`, `..._PROTOCOL`, `..._TIMEOUT`, `..._COMPRESSION`,
/// `..._CERTIFICATE`, `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY`. Keys
/// written in the table always win.
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
    /// (default 4): the sink tells the dispatcher's bridge to keep up to
    /// this many writes of `batch_size` records under way, acknowledged in
    /// seq order.
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

impl OtlpConfig {
    /// Most records per request (`batch_size`).
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// Most requests in flight at once (`max_in_flight`).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! What the tests of every part of the configuration share.

    use super::*;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    pub(crate) fn svc() -> ServiceInfo {
        ServiceInfo::new("svc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<OtlpConfig>("endpont = \"http://x:1\"").unwrap_err();
        assert!(e.to_string().contains("endpont"), "{e}");
        let e = toml::from_str::<OtlpConfig>("retry = { max_elapsed = 1 }").unwrap_err();
        assert!(e.to_string().contains("max_elapsed"), "{e}");
        let e = toml::from_str::<OtlpConfig>("protocol = \"udp\"").unwrap_err();
        assert!(e.to_string().contains("udp"), "{e}");
    }
}
