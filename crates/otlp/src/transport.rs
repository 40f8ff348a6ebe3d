//! One export attempt over gRPC (tonic) or HTTP (reqwest), and what the
//! collector answered.

use std::io::Write as _;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use crate::config::{Compression, OtlpConfigError, OtlpSettings, Protocol, redact_endpoint};

/// The collector took the request; `rejected` of its records were refused.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accepted {
    pub(crate) rejected: i64,
    pub(crate) message: String,
}

/// An attempt that failed, and whether another could succeed.
#[derive(Debug, Clone)]
pub(crate) struct AttemptError {
    pub(crate) retryable: bool,
    /// How long the collector asked us to wait (Retry-After, RetryInfo).
    pub(crate) retry_after: Option<Duration>,
    /// What happened, without header values.
    pub(crate) detail: String,
    /// No answer came within the attempt's timeout.
    pub(crate) timed_out: bool,
}

impl AttemptError {
    fn transient(detail: String) -> AttemptError {
        AttemptError {
            retryable: true,
            retry_after: None,
            detail,
            timed_out: false,
        }
    }
    fn timeout(detail: String) -> AttemptError {
        AttemptError {
            timed_out: true,
            ..AttemptError::transient(detail)
        }
    }
    fn permanent(detail: String) -> AttemptError {
        AttemptError {
            retryable: false,
            retry_after: None,
            detail,
            timed_out: false,
        }
    }
}

/// Cheap to clone: each request in flight sends through its own clone of
/// the one channel (gRPC) or connection pool (HTTP).
#[derive(Clone)]
pub(crate) enum Transport {
    Grpc {
        /// Checked when the sink is built; the channel is made by
        /// [`Transport::connect`], on the sink's runtime. Boxed: it is
        /// large beside the HTTP variant.
        endpoint: Box<tonic::transport::Endpoint>,
        gzip: bool,
        /// TLS without a client certificate (see [`MTLS_HINT`]).
        no_client_cert: bool,
        client: Option<tonic::client::Grpc<Channel>>,
        headers: Vec<(
            tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
            tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        )>,
    },
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
        headers: reqwest::header::HeaderMap,
        json: bool,
        gzip: bool,
        /// TLS without a client certificate (see [`MTLS_HINT`]).
        no_client_cert: bool,
    },
}

/// Added to a connection failure over TLS when no client certificate is
/// configured: a collector that requires one closes the connection after
/// the handshake, and the client often sees only a broken pipe or a reset
/// instead of the TLS alert that says why.
const MTLS_HINT: &str = "; no client certificate is configured: if the collector requires one (mutual TLS), set tls.client_cert_file and tls.client_key_file or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY";

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

impl Transport {
    /// Builds and checks the client (a gRPC channel is made later, by
    /// [`Transport::connect`]); needs no runtime.
    pub(crate) fn new(s: &OtlpSettings) -> Result<Transport, OtlpConfigError> {
        let client_err = |reason: String| OtlpConfigError::Client {
            protocol: s.protocol,
            endpoint: redact_endpoint(&s.endpoint),
            reason,
        };
        match s.protocol {
            Protocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(s.endpoint.clone())
                    .map_err(|e| client_err(e.to_string()))?
                    .connect_timeout(s.timeout.min(Duration::from_secs(5)))
                    .tcp_nodelay(true);
                if s.endpoint.starts_with("https://") {
                    let mut tls = tonic::transport::ClientTlsConfig::new();
                    tls = match &s.ca_pem {
                        Some(pem) => {
                            tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
                        }
                        None => tls.with_webpki_roots(),
                    };
                    if let Some(id) = &s.client_identity {
                        tls = tls.identity(tonic::transport::Identity::from_pem(
                            &id.cert_pem,
                            &id.key_pem,
                        ));
                    }
                    endpoint = endpoint
                        .tls_config(tls)
                        .map_err(|e| client_err(e.to_string()))?;
                }
                let mut headers = Vec::new();
                for (k, v) in &s.headers {
                    let key =
                        tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).map_err(|_| {
                            client_err(format!("header `{k}` is not valid gRPC metadata"))
                        })?;
                    let value =
                        tonic::metadata::MetadataValue::try_from(v.as_str()).map_err(|_| {
                            client_err(format!(
                                "the value of header `{k}` is not valid gRPC metadata"
                            ))
                        })?;
                    headers.push((key, value));
                }
                Ok(Transport::Grpc {
                    endpoint: Box::new(endpoint),
                    gzip: s.compression == Compression::Gzip,
                    no_client_cert: s.endpoint.starts_with("https://")
                        && s.client_identity.is_none(),
                    client: None,
                    headers,
                })
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let url =
                    reqwest::Url::parse(&s.endpoint).map_err(|e| client_err(e.to_string()))?;
                let mut builder = reqwest::Client::builder()
                    .timeout(s.timeout)
                    .connect_timeout(s.timeout.min(Duration::from_secs(5)))
                    .tcp_nodelay(true)
                    .user_agent(concat!("agent-audit-otlp/", env!("CARGO_PKG_VERSION")));
                if let Some(pem) = &s.ca_pem {
                    let certs = reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| client_err(format!("CA certificate: {e}")))?;
                    builder = builder.tls_built_in_root_certs(false);
                    for c in certs {
                        builder = builder.add_root_certificate(c);
                    }
                }
                if let Some(id) = &s.client_identity {
                    // reqwest's rustls identity takes the key and the chain
                    // in one PEM. Its error is about the parse, never the
                    // key's bytes.
                    let mut pem = id.cert_pem.clone();
                    pem.push(b'\n');
                    pem.extend_from_slice(&id.key_pem);
                    let identity = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| client_err(format!("client certificate or key: {e}")))?;
                    builder = builder.identity(identity);
                }
                let client = builder.build().map_err(|e| client_err(e.to_string()))?;
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &s.headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| client_err(format!("header `{k}` is not a valid name")))?;
                    let mut value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                        client_err(format!("the value of header `{k}` is not valid"))
                    })?;
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
                let json = s.protocol == Protocol::HttpJson;
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HeaderValue::from_static(if json {
                        "application/json"
                    } else {
                        "application/x-protobuf"
                    }),
                );
                let gzip = s.compression == Compression::Gzip;
                if gzip {
                    headers.insert(
                        reqwest::header::CONTENT_ENCODING,
                        reqwest::header::HeaderValue::from_static("gzip"),
                    );
                }
                Ok(Transport::Http {
                    no_client_cert: url.scheme() == "https" && s.client_identity.is_none(),
                    client,
                    url,
                    headers,
                    json,
                    gzip,
                })
            }
        }
    }

    /// Makes the gRPC channel (lazily connected). Must run inside the
    /// sink's runtime context: tonic spawns the channel's worker there.
    pub(crate) fn connect(&mut self) {
        if let Transport::Grpc {
            endpoint,
            gzip,
            client: client @ None,
            ..
        } = self
        {
            let mut c = tonic::client::Grpc::new(
                endpoint.connect_with_connector_lazy(crate::quickack::QuickAckConnector),
            );
            if *gzip {
                c = c
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
            }
            *client = Some(c);
        }
    }

    /// Whether requests are OTLP/JSON, built from message structs; the
    /// other protocols take protobuf bytes encoded directly.
    pub(crate) fn is_json(&self) -> bool {
        matches!(self, Transport::Http { json: true, .. })
    }

    /// The body of an OTLP/JSON request, encoded once and resent as is on
    /// retry.
    pub(crate) fn json_body(&self, request: &ExportLogsServiceRequest) -> Result<Bytes, String> {
        let raw = serde_json::to_vec(request).map_err(|e| format!("could not encode JSON: {e}"))?;
        self.finish(raw)
    }

    /// The body for an encoded protobuf request.
    pub(crate) fn protobuf_body(&self, raw: Vec<u8>) -> Result<Bytes, String> {
        self.finish(raw)
    }

    /// Compresses HTTP bodies when configured (gRPC compresses per message
    /// itself).
    fn finish(&self, raw: Vec<u8>) -> Result<Bytes, String> {
        match self {
            Transport::Http { gzip: true, .. } => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(raw.len() / 4),
                    flate2::Compression::fast(),
                );
                enc.write_all(&raw)
                    .and_then(|_| enc.finish())
                    .map(Bytes::from)
                    .map_err(|e| format!("could not gzip the body: {e}"))
            }
            _ => Ok(Bytes::from(raw)),
        }
    }

    /// One attempt, bounded by `timeout`.
    pub(crate) async fn send(
        &mut self,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Accepted, AttemptError> {
        let attempt = async {
            match self {
                Transport::Grpc {
                    client: Some(client),
                    headers,
                    ..
                } => send_grpc(client, headers, body, timeout).await,
                // `open` connects before any write.
                Transport::Grpc { client: None, .. } => Err(AttemptError::permanent(
                    "the gRPC channel was never connected (the sink was not opened)".to_string(),
                )),
                Transport::Http {
                    client,
                    url,
                    headers,
                    json,
                    ..
                } => send_http(client, url, headers, *json, body, timeout).await,
            }
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(AttemptError::timeout(format!(
                "timed out: no answer within {} ms",
                timeout.as_millis()
            ))),
        };
        // What the collector says ends up in errors, health and audit_gap
        // records; a collector or proxy that echoes the request's auth
        // header back must not put its value there.
        match result {
            Ok(mut a) => {
                a.message = self.scrub(a.message);
                Ok(a)
            }
            Err(mut e) => {
                e.detail = self.scrub(e.detail);
                let no_client_cert = match self {
                    Transport::Grpc { no_client_cert, .. }
                    | Transport::Http { no_client_cert, .. } => *no_client_cert,
                };
                if no_client_cert && is_connection_failure(&e.detail) {
                    e.detail.push_str(MTLS_HINT);
                }
                Err(e)
            }
        }
    }

    /// `text` with every configured header value, and the endpoint's
    /// query, replaced by `***`.
    fn scrub(&self, mut text: String) -> String {
        // A collector or proxy may quote the URL it was asked for.
        if let Transport::Http { url, .. } = self
            && let Some(q) = url.query().filter(|q| !q.is_empty())
            && text.contains(q)
        {
            text = text.replace(q, "***");
        }
        let values: Vec<&str> = match self {
            Transport::Grpc { headers, .. } => headers
                .iter()
                .filter_map(|(_, v)| v.to_str().ok())
                .collect(),
            Transport::Http { headers, .. } => {
                headers.values().filter_map(|v| v.to_str().ok()).collect()
            }
        };
        for v in values {
            // A value is also scrubbed without its scheme (`Bearer x`: `x`).
            for part in std::iter::once(v).chain(v.split_whitespace().skip(1)) {
                if part.len() >= 4 && text.contains(part) {
                    text = text.replace(part, "***");
                }
            }
        }
        text
    }
}

async fn send_grpc(
    client: &mut tonic::client::Grpc<Channel>,
    headers: &[(
        tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    )],
    body: Bytes,
    timeout: Duration,
) -> Result<Accepted, AttemptError> {
    client
        .ready()
        .await
        .map_err(|e| AttemptError::transient(format!("connection failed: {}", error_chain(&e))))?;
    let mut request = tonic::Request::new(body);
    request.set_timeout(timeout);
    for (k, v) in headers {
        request.metadata_mut().insert(k.clone(), v.clone());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
    match client.unary(request, path, RawCodec).await {
        Ok(response) => {
            let bytes = response.into_inner();
            let decoded = ExportLogsServiceResponse::decode(bytes)
                .map_err(|e| AttemptError::permanent(format!("unreadable response: {e}")))?;
            Ok(accepted(decoded))
        }
        Err(status) => Err(classify_status(&status)),
    }
}

fn accepted(r: ExportLogsServiceResponse) -> Accepted {
    match r.partial_success {
        Some(p) => Accepted {
            rejected: p.rejected_log_records,
            message: p.error_message,
        },
        None => Accepted::default(),
    }
}

/// Whether an attempt failed on the connection itself (closed, reset,
/// refused by TLS), where a missing client certificate may be the cause.
fn is_connection_failure(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    let on_the_connection = [
        "transport error",
        "error sending request",
        "connection",
        "broken pipe",
        "certificate",
        "handshake",
        "tls",
    ];
    on_the_connection.iter().any(|w| d.contains(w))
        && !["connection refused", "dns error", "timed out"]
            .iter()
            .any(|w| d.contains(w))
}

/// The OTLP specification's retryable gRPC codes; RESOURCE_EXHAUSTED only
/// when the server says when to retry. A status tonic made up from a local
/// transport failure (it carries a source error) is retryable too.
fn classify_status(status: &tonic::Status) -> AttemptError {
    use tonic::Code;
    let retry_after = retry_info(status.details());
    let local = std::error::Error::source(status).is_some();
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_after.is_some(),
        Code::Unknown | Code::Internal => local,
        _ => false,
    };
    let mut detail = format!(
        "gRPC status {:?}: {}",
        status.code(),
        truncate(status.message(), 512)
    );
    if local && let Some(src) = std::error::Error::source(status) {
        detail.push_str(&format!(" ({})", error_chain(src)));
    }
    AttemptError {
        retryable,
        retry_after,
        detail,
        timed_out: status.code() == Code::DeadlineExceeded,
    }
}

// google.rpc.Status / Any / RetryInfo / Duration, enough to read RetryInfo.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

fn retry_info(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .find_map(|a| RetryInfo::decode(a.value.as_slice()).ok()?.retry_delay)
        .map(|d| {
            Duration::new(
                d.seconds.max(0) as u64,
                d.nanos.clamp(0, 999_999_999) as u32,
            )
        })
}

async fn send_http(
    client: &reqwest::Client,
    url: &reqwest::Url,
    headers: &reqwest::header::HeaderMap,
    json: bool,
    body: Bytes,
    timeout: Duration,
) -> Result<Accepted, AttemptError> {
    let response = client
        .post(url.clone())
        .headers(headers.clone())
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // reqwest quotes the whole URL, query included; the endpoint is
            // already named (redacted) by the error this detail goes into.
            let e = e.without_url();
            let detail = format!("request failed: {}", error_chain(&e));
            if e.is_timeout() {
                AttemptError::timeout(detail)
            } else {
                AttemptError::transient(detail)
            }
        })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| agent_audit_core::retry::parse_retry_after(v, std::time::SystemTime::now()));
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    let bytes = response.bytes().await.map_err(|e| {
        let e = e.without_url();
        AttemptError::transient(format!("reading the response failed: {}", error_chain(&e)))
    })?;
    if status.is_success() {
        if bytes.is_empty() {
            return Ok(Accepted::default());
        }
        let decoded = if is_json || (json && !looks_like_protobuf(&bytes)) {
            serde_json::from_slice::<ExportLogsServiceResponse>(&bytes).map_err(|e| e.to_string())
        } else {
            ExportLogsServiceResponse::decode(bytes.clone()).map_err(|e| e.to_string())
        };
        return decoded.map(accepted).map_err(|e| {
            AttemptError::permanent(format!("HTTP {status} with an unreadable body: {e}"))
        });
    }
    let message = http_error_message(&bytes, is_json);
    let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
    Err(AttemptError {
        retryable,
        retry_after: if retryable { retry_after } else { None },
        detail: format!("HTTP {status}: {message}"),
        timed_out: false,
    })
}

fn looks_like_protobuf(b: &[u8]) -> bool {
    !matches!(b.first(), Some(b'{') | Some(b' ') | Some(b'\n'))
}

fn http_error_message(body: &[u8], is_json: bool) -> String {
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    if !is_json
        && let Ok(s) = RpcStatus::decode(body)
        && !s.message.is_empty()
    {
        return truncate(&s.message, 512);
    }
    truncate(&String::from_utf8_lossy(body), 512)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Sends pre-encoded protobuf bytes and hands back the response's bytes, so
/// a batch is encoded once however often it is retried.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.reserve(item.len());
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_is_read_from_status_details() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let s = tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            Bytes::from(status.encode_to_vec()),
        );
        let e = classify_status(&s);
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_millis(2500)));
        let e = classify_status(&tonic::Status::resource_exhausted("full"));
        assert!(
            !e.retryable,
            "RESOURCE_EXHAUSTED without RetryInfo is permanent"
        );
        assert!(!classify_status(&tonic::Status::invalid_argument("bad")).retryable);
        assert!(classify_status(&tonic::Status::unavailable("down")).retryable);
    }
}
