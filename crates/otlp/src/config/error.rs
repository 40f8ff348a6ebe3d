//! Why an OTLP sink could not be configured.

use std::path::PathBuf;

use super::Protocol;

/// Why an OTLP sink could not be configured. Names the key or variable at
/// fault; header values are never included, nor an endpoint's user,
/// password, query or fragment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A number outside its documented range (see [`OtlpConfig::validate`](crate::OtlpConfig::validate)).
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
    /// The client certificate or key could not be read, holds no PEM of
    /// its kind, or one was given without the other. The key's content is
    /// never shown.
    #[error("otlp sink: client certificate or key {path} (from {origin}): {reason}")]
    ClientIdentity {
        /// The file.
        path: PathBuf,
        /// `tls.client_cert_file`, `tls.client_key_file` or the variable it
        /// came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// `OTEL_RESOURCE_ATTRIBUTES` is not a list of `key=value` pairs.
    #[error(
        "{origin}: entry #{entry} is not a key=value pair with a percent-encoded value: {reason}"
    )]
    ResourceAttributes {
        /// The variable.
        origin: String,
        /// 1-based position of the entry at fault (its value is not shown).
        entry: usize,
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
}
