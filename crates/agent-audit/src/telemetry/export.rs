//! The SDK exporters for one signal, wrapped so that every export is
//! counted (the SDK itself reports a failed background export nowhere the
//! application can read), and the HTTP client they send through.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_otlp::{OtlpSettings, Protocol};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::report::SignalReport;

/// What the exports of one signal did so far.
#[derive(Debug, Default)]
pub(super) struct SignalStats {
    inner: Mutex<Counts>,
    /// What the HTTP client last saw go wrong: the exporter's own error
    /// says only "network error".
    transport: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Spans that ended (handed to the span processors); 0 for metrics.
    ended: u64,
    exported: u64,
    failed: u64,
    last_error: Option<String>,
}

impl SignalStats {
    fn count_ended(&self) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.ended += 1;
    }

    fn count(&self, n: u64, result: &OTelSdkResult) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => c.exported += n,
            Err(e) => {
                c.failed += n;
                let transport = self
                    .transport
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                c.last_error = Some(match transport {
                    Some(t) => format!("{e} ({t})"),
                    None => e.to_string(),
                });
            }
        }
    }

    pub(super) fn report(
        &self,
        signal: &'static str,
        endpoint: String,
        flush_error: Option<String>,
        timed_out: bool,
    ) -> SignalReport {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        SignalReport {
            signal,
            endpoint,
            exported: c.exported,
            failed: c.failed,
            // Ended but neither exported nor failed: still in the batch
            // processor's queue, in an export that had not answered, or
            // dropped by the processor when its queue was full.
            not_exported: c.ended.saturating_sub(c.exported + c.failed),
            last_error: c.last_error.clone(),
            // A failed export is already counted; the flush's own error
            // adds only what the counts do not say.
            flush_error: flush_error.filter(|_| c.failed == 0),
            timed_out,
        }
    }
}

/// A span processor that only counts the spans that end, beside the batch
/// processor: what the exporter never saw (queued, dropped, in flight at
/// the deadline) is then reported too.
#[derive(Debug)]
pub(super) struct EndCounter(pub(super) Arc<SignalStats>);

impl opentelemetry_sdk::trace::SpanProcessor for EndCounter {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, _span: SpanData) {
        self.0.count_ended();
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// An exporter whose exports are counted in `stats`.
pub(super) struct Counted<E> {
    inner: E,
    stats: Arc<SignalStats>,
}

impl<E> Counted<E> {
    pub(super) fn new(inner: E, stats: Arc<SignalStats>) -> Self {
        Counted { inner, stats }
    }
}

impl<E> fmt::Debug for Counted<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counted")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        self.stats.count(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Counted<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.stats.count(1, &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

pub(super) fn redacted_endpoint(s: &OtlpSettings) -> String {
    // The settings' Debug shows the endpoint with query, fragment and path
    // parameters hidden; reuse it rather than a second masking rule.
    let debug = format!("{s:?}");
    debug
        .split("endpoint: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("<endpoint>")
        .to_string()
}

fn metadata(s: &OtlpSettings) -> Result<tonic::metadata::MetadataMap, String> {
    let mut map = tonic::metadata::MetadataMap::new();
    for (k, v) in &s.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
            .map_err(|_| format!("header `{k}` is not valid gRPC metadata"))?;
        let value = v
            .parse()
            .map_err(|_| format!("the value of header `{k}` is not valid gRPC metadata"))?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Sends exactly the resolved headers as gRPC metadata. The exporter
/// re-reads `OTEL_EXPORTER_OTLP_*HEADERS` and appends them to what it was
/// given; the settings already merged the environment with the table
/// (the table wins per key, and its `headers` replaces the variables'),
/// so whatever else is there is replaced.
#[derive(Clone, Debug)]
struct ExactMetadata(Arc<tonic::metadata::MetadataMap>);

impl tonic::service::Interceptor for ExactMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        *request.metadata_mut() = (*self.0).clone();
        Ok(request)
    }
}

fn tls(s: &OtlpSettings) -> Option<tonic::transport::ClientTlsConfig> {
    if !s.endpoint.starts_with("https://") {
        return None;
    }
    let mut tls = tonic::transport::ClientTlsConfig::new();
    tls = match &s.ca_pem {
        Some(pem) => tls.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        None => tls.with_webpki_roots(),
    };
    if let Some(id) = &s.client_identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            &id.cert_pem,
            &id.key_pem,
        ));
    }
    Some(tls)
}

/// Builds the exporter for one signal over gRPC or HTTP/protobuf.
macro_rules! build_exporter {
    ($builder:expr, $s:expr, $stats:expr) => {{
        let s: &OtlpSettings = $s;
        match s.protocol {
            Protocol::Grpc => {
                let mut b = $builder
                    .with_tonic()
                    .with_endpoint(s.endpoint.clone())
                    .with_timeout(s.timeout)
                    .with_interceptor(ExactMetadata(Arc::new(metadata(s)?)));
                if let Some(tls) = tls(s) {
                    b = b.with_tls_config(tls);
                }
                b.build().map_err(|e| e.to_string())
            }
            _ => $builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(s.endpoint.clone())
                .with_timeout(s.timeout)
                .with_headers(s.headers.iter().cloned().collect())
                .with_http_client(Http::new(s, $stats.clone())?)
                .build()
                .map_err(|e| e.to_string()),
        }
    }};
}

pub(super) fn span_exporter(
    s: &OtlpSettings,
    stats: &Arc<SignalStats>,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    build_exporter!(opentelemetry_otlp::SpanExporter::builder(), s, stats)
}

pub(super) fn metric_exporter(
    s: &OtlpSettings,
    stats: &Arc<SignalStats>,
) -> Result<opentelemetry_otlp::MetricExporter, String> {
    build_exporter!(opentelemetry_otlp::MetricExporter::builder(), s, stats)
}

/// HTTP through the workspace's reqwest, on the runtime that started
/// telemetry: the SDK's batch thread has no runtime of its own, so each
/// request is spawned there and awaited.
#[derive(Debug)]
struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    stats: Arc<SignalStats>,
    /// The endpoint's query, hidden wherever an error quotes the URL.
    query: Option<String>,
    /// The resolved headers, the only ones sent.
    headers: Arc<reqwest::header::HeaderMap>,
}

impl Http {
    fn new(s: &OtlpSettings, stats: Arc<SignalStats>) -> Result<Http, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "telemetry must start inside a tokio runtime".to_string())?;
        let mut builder = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(5)));
        if let Some(pem) = &s.ca_pem {
            builder = builder.tls_built_in_root_certs(false);
            for c in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("CA certificate: {e}"))?
            {
                builder = builder.add_root_certificate(c);
            }
        }
        if let Some(id) = &s.client_identity {
            let mut pem = id.cert_pem.clone();
            pem.push(b'\n');
            pem.extend_from_slice(&id.key_pem);
            builder = builder.identity(
                reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("client certificate or key: {e}"))?,
            );
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &s.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("header `{k}` is not a valid HTTP header name"))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| format!("the value of header `{k}` is not a valid HTTP header"))?;
            headers.append(name, value);
        }
        Ok(Http {
            headers: Arc::new(headers),
            client: builder.build().map_err(|e| e.to_string())?,
            runtime,
            stats,
            query: reqwest::Url::parse(&s.endpoint)
                .ok()
                .and_then(|u| u.query().filter(|q| !q.is_empty()).map(str::to_string)),
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Http {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let mut request = reqwest::Request::try_from(request)?;
        // Exactly the resolved headers: the exporter re-reads
        // `OTEL_EXPORTER_OTLP_*HEADERS` and sets them over the table's;
        // only what says how the body is encoded is kept of its own.
        let mut headers = reqwest::header::HeaderMap::new();
        for name in [
            reqwest::header::CONTENT_TYPE,
            reqwest::header::CONTENT_ENCODING,
            reqwest::header::USER_AGENT,
        ] {
            if let Some(v) = request.headers().get(&name) {
                headers.insert(name, v.clone());
            }
        }
        for (k, v) in self.headers.iter() {
            headers.insert(k.clone(), v.clone());
        }
        *request.headers_mut() = headers;
        let client = self.client.clone();
        let answer = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, body))
            })
            .await
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        let answer = answer.inspect_err(|e| {
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                detail.push_str(&format!(": {s}"));
                source = s.source();
            }
            // reqwest quotes the URL; its query may hold a token.
            if let Some(q) = &self.query {
                detail = detail.replace(q.as_str(), "***");
            }
            *self
                .stats
                .transport
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(detail);
        })?;
        Ok(opentelemetry_http::Response::builder()
            .status(answer.0)
            .body(answer.1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor as _;

    #[test]
    fn grpc_metadata_is_exactly_the_resolved_headers() {
        let mut resolved = tonic::metadata::MetadataMap::new();
        resolved.insert("authorization", "table".parse().unwrap());
        let mut interceptor = ExactMetadata(Arc::new(resolved));
        // What the exporter hands over: the table's and the variables'.
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .append("authorization", "table".parse().unwrap());
        request
            .metadata_mut()
            .append("authorization", "from-env".parse().unwrap());
        request
            .metadata_mut()
            .append("x-env-only", "from-env".parse().unwrap());
        let out = interceptor.call(request).unwrap();
        let sent: Vec<_> = out.metadata().clone().into_headers().into_iter().collect();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(out.metadata().get("authorization").unwrap(), "table");
    }
}
