//! The sink: batches -> export requests, retried, acknowledged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_audit_core::retry;
use agent_audit_core::{
    AckLevel, AsyncSink, Batch, FailureKind, Record, Retrying, ShutdownSignal, SinkError, SinkOpen,
    StatusSignal, Timestamp,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use prost::bytes::Bytes;

use crate::config::{
    OtlpConfig, OtlpConfigError, OtlpSettings, Protocol, ServiceInfo, has_userinfo, headers_hint,
    redact_endpoint,
};
use crate::mapping::Mapper;
use crate::transport::{Accepted, Transport};

/// Why records did not reach the collector. Names the endpoint (its query
/// and fragment shown as `***`); never carries header values.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Transient failures (connection refused, UNAVAILABLE, HTTP 503...)
    /// went on past the retry budget or the shutdown deadline.
    #[error(
        "OTLP export to {endpoint} ({protocol}) failed after {attempts} attempt(s) over {elapsed_ms} ms: {detail}"
    )]
    GaveUp {
        /// Collector endpoint.
        endpoint: String,
        /// Protocol.
        protocol: Protocol,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed_ms: u64,
        /// The last failure.
        detail: String,
    },
    /// The collector refused the request in a way a retry cannot fix
    /// (HTTP 400, gRPC INVALID_ARGUMENT, an unreadable answer...).
    #[error("OTLP collector at {endpoint} ({protocol}) refused the request: {detail}")]
    Refused {
        /// Collector endpoint.
        endpoint: String,
        /// Protocol.
        protocol: Protocol,
        /// What it said.
        detail: String,
    },
    /// The collector answered with a `partial_success` rejecting records.
    #[error("OTLP collector at {endpoint} rejected {rejected} of {sent} log record(s): {message}")]
    Rejected {
        /// Collector endpoint.
        endpoint: String,
        /// Records rejected.
        rejected: u64,
        /// Records sent.
        sent: u64,
        /// The collector's `error_message`.
        message: String,
    },
    /// The request could not be encoded.
    #[error("OTLP export to {endpoint}: {detail}")]
    Encode {
        /// Collector endpoint.
        endpoint: String,
        /// What failed.
        detail: String,
    },
}

impl ExportError {
    fn kind(&self) -> FailureKind {
        // `GaveUp` comes after this sink retried for its whole budget (or
        // until the shutdown deadline): the dispatcher, which retries a
        // `Transient` failure, must not start that over.
        FailureKind::Permanent
    }
}

/// Exports every record it is given to an OpenTelemetry Collector as one
/// OTLP LogRecord, and acknowledges [`AckLevel::Exported`] only once the
/// collector answered success with nothing rejected.
///
/// It implements [`AsyncSink`]: the dispatcher's bridge runs it on the
/// sink's own worker thread and runtime (see
/// [`DispatcherBuilder::async_sink`](agent_audit_core::DispatcherBuilder::async_sink)).
/// A write is one request of at most `batch_size` records (its
/// [`AsyncSink::max_batch`]) and `max_request_bytes` bytes (a larger batch,
/// from an explicit `SinkOptions::max_batch`, is split and sent request
/// after request); up to `max_in_flight` writes are on the wire at once
/// ([`AsyncSink::max_in_flight`]), acknowledged in seq order. Each request
/// is retried with exponential backoff and jitter on transient failures,
/// honouring `Retry-After` and gRPC `RetryInfo`, until the retry budget or
/// the dispatcher's shutdown deadline runs out; the deadline is awaited
/// beside the request, so a shutdown cuts a wait short at once. Meanwhile
/// the dispatcher's queue holds later records and the sink's overflow
/// policy applies.
pub struct OtlpSink {
    settings: OtlpSettings,
    policy: Arc<Policy>,
    /// Maps records to requests: taken before a write's first `.await`,
    /// so that the chain (`audit.prev`) advances in seq order while the
    /// requests themselves are in flight together.
    encoder: Mutex<Encoder>,
    /// Validated when the sink is built; connected on the sink's runtime
    /// in `open` (tonic's lazy channel spawns its worker there).
    transport: Option<Transport>,
    shutdown: ShutdownSignal,
    /// Where a request being retried says so (`AsyncSink::watch_status`).
    status: StatusSignal,
}

/// The sink's mapping state, one write at a time.
struct Encoder {
    mapper: Mapper,
    /// Reused buffer for encoded LogRecords.
    buf: Vec<u8>,
}

/// What one request's retry loop needs, shared by the requests in flight.
struct Policy {
    /// The endpoint as shown in errors ([`redact_endpoint`]).
    endpoint: String,
    protocol: Protocol,
    timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_elapsed: Duration,
}

impl std::fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSink")
            .field("endpoint", &self.policy.endpoint)
            .field("protocol", &self.settings.protocol)
            .finish()
    }
}

/// How long before the shutdown deadline a retried request gives up, so
/// that its failure is counted before the dispatcher writes its report
/// (and before the bridge would cancel the write, 10 ms before it, with a
/// less telling error).
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(20);

impl OtlpSink {
    /// A sink from a configuration table, with the standard
    /// `OTEL_EXPORTER_OTLP_*` variables of this process applied as
    /// [`OtlpConfig`] describes.
    pub fn from_config(
        config: &OtlpConfig,
        service: ServiceInfo,
    ) -> Result<OtlpSink, OtlpConfigError> {
        OtlpSink::new(config.resolve(service)?)
    }

    /// A sink from resolved settings. Nothing is sent (nor connected) until
    /// the first write; the client is checked here, so a bad header or TLS
    /// file is refused before the dispatcher starts. An endpoint with a
    /// user or password is refused here too, for settings built without
    /// [`OtlpConfig::resolve`].
    pub fn new(settings: OtlpSettings) -> Result<OtlpSink, OtlpConfigError> {
        if has_userinfo(&settings.endpoint) {
            return Err(OtlpConfigError::Credentials {
                origin: "endpoint".to_string(),
                hint: headers_hint("endpoint"),
            });
        }
        let transport = Transport::new(&settings)?;
        Ok(OtlpSink {
            encoder: Mutex::new(Encoder {
                mapper: Mapper::new(&settings.service),
                buf: Vec::new(),
            }),
            policy: Arc::new(Policy {
                endpoint: redact_endpoint(&settings.endpoint),
                protocol: settings.protocol,
                timeout: settings.timeout,
                initial_backoff: settings.initial_backoff,
                max_backoff: settings.max_backoff,
                max_elapsed: settings.max_elapsed,
            }),
            settings,
            transport: Some(transport),
            shutdown: ShutdownSignal::new(),
            status: StatusSignal::new(),
        })
    }

    /// Where records go, as configured: it may hold a query with a
    /// secret, so print [`OtlpSink`]'s Debug form or an error instead.
    pub fn endpoint(&self) -> &str {
        &self.settings.endpoint
    }

    /// The settings in force.
    pub fn settings(&self) -> &OtlpSettings {
        &self.settings
    }

    fn encode_error(&self, detail: String) -> ExportError {
        ExportError::Encode {
            endpoint: self.policy.endpoint.clone(),
            detail,
        }
    }

    /// Maps `records` into request bodies of up to `batch_size` records and
    /// (unless one record alone is larger) `max_request_bytes`, in order.
    /// Every record is mapped exactly once, since mapping advances the hash
    /// chain; one that does not fit is carried to the next request. A
    /// failure to encode ends the list: the bodies before it stand.
    fn encode(
        &self,
        transport: &Transport,
        records: &[Arc<Record>],
    ) -> (Vec<(Bytes, u64)>, Option<ExportError>) {
        let observed = now_unix_nanos();
        let mut enc = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let mut bodies = Vec::new();
        let mut carry = None;
        let mut i = 0;
        while i < records.len() || carry.is_some() {
            match enc.next_request(
                &self.settings,
                transport,
                records,
                &mut i,
                &mut carry,
                observed,
            ) {
                Ok(body) => bodies.push(body),
                Err(detail) => return (bodies, Some(self.encode_error(detail))),
            }
        }
        (bodies, None)
    }

    /// Sends the bodies one after another (a write is normally one). Returns
    /// how many records were rejected (and the collector's message), or the
    /// first error and how many records in all were not delivered (those of
    /// the failed request and every one after it, plus the rejected ones).
    #[allow(clippy::type_complexity)]
    async fn send_all(
        &self,
        transport: Transport,
        bodies: Vec<(Bytes, u64)>,
        encode_failure: Option<ExportError>,
        total: u64,
        deadline: Option<Instant>,
    ) -> Result<(u64, Option<String>), (ExportError, u64)> {
        let mut delivered = 0u64;
        let mut rejected = 0u64;
        let mut message = None;
        for (body, n) in bodies {
            let sent = export(
                transport.clone(),
                &self.policy,
                body,
                deadline,
                &self.shutdown,
                &self.status,
            )
            .await;
            match sent {
                Ok(a) => {
                    if a.rejected > 0 {
                        rejected += (a.rejected as u64).min(n);
                        message = Some(a.message);
                    }
                    delivered += n;
                }
                // What follows would meet the same collector, and the
                // batch fails anyway.
                Err(e) => return Err((e, total - delivered + rejected)),
            }
        }
        match encode_failure {
            None => Ok((rejected, message)),
            Some(e) => Err((e, total - delivered + rejected)),
        }
    }
}

impl Encoder {
    /// The next request body and its record count, starting at
    /// `records[*i]`.
    fn next_request(
        &mut self,
        settings: &OtlpSettings,
        transport: &Transport,
        records: &[Arc<Record>],
        i: &mut usize,
        carry: &mut Option<Carry>,
        observed: u64,
    ) -> Result<(Bytes, u64), String> {
        let batch_size = settings.batch_size;
        let max_bytes = settings.max_request_bytes;
        if transport.is_json() {
            let mut chunk = Vec::with_capacity(batch_size.min(records.len() - *i + 1));
            let mut bytes = 0usize;
            if let Some(Carry::Struct(lr)) = carry.take() {
                bytes += lr.encoded_len() + 8;
                chunk.push(lr);
            }
            while *i < records.len() && chunk.len() < batch_size {
                let lr = self.mapper.map(&records[*i], observed);
                *i += 1;
                let len = lr.encoded_len() + 8;
                if !chunk.is_empty() && bytes + len > max_bytes {
                    *carry = Some(Carry::Struct(lr));
                    break;
                }
                bytes += len;
                chunk.push(lr);
            }
            let n = chunk.len() as u64;
            let request = ExportLogsServiceRequest {
                resource_logs: vec![self.mapper.resource_logs(chunk)],
            };
            Ok((transport.json_body(&request)?, n))
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let mut n = 0u64;
            if let Some(Carry::Encoded(bytes)) = carry.take() {
                buf.extend_from_slice(&bytes);
                n += 1;
            }
            while *i < records.len() && (n as usize) < batch_size {
                let before = buf.len();
                self.mapper.encode(&records[*i], observed, &mut buf);
                *i += 1;
                if n > 0 && buf.len() > max_bytes {
                    *carry = Some(Carry::Encoded(buf[before..].to_vec()));
                    buf.truncate(before);
                    break;
                }
                n += 1;
            }
            let raw = self.mapper.request_bytes(&buf);
            self.buf = buf;
            Ok((transport.protobuf_body(raw)?, n))
        }
    }
}

/// Sends one request body, retrying transient failures until the retry
/// budget, the batch's deadline or the dispatcher's shutdown deadline
/// (whichever comes first) runs out.
async fn export(
    mut transport: Transport,
    p: &Policy,
    body: Bytes,
    deadline: Option<Instant>,
    shutdown: &ShutdownSignal,
    status: &StatusSignal,
) -> Result<Accepted, ExportError> {
    let start = Instant::now();
    let budget_end = start + p.max_elapsed;
    // The earlier of the batch's deadline and the shutdown signal's, less
    // a margin; read afresh each time since shutdown may begin mid-retry.
    let stop_at = || {
        deadline
            .into_iter()
            .chain(shutdown.deadline())
            .min()
            .map(|d| d.checked_sub(SHUTDOWN_MARGIN).unwrap_or(d))
    };
    let gave_up = |attempts: u32, detail: String| ExportError::GaveUp {
        endpoint: p.endpoint.clone(),
        protocol: p.protocol,
        attempts,
        elapsed_ms: start.elapsed().as_millis() as u64,
        detail,
    };
    let mut backoff = p.initial_backoff;
    let mut attempts = 0u32;
    let mut last_detail: Option<String> = None;
    loop {
        attempts += 1;
        let stop = stop_at();
        let end = stop.map_or(budget_end, |s| s.min(budget_end));
        let left = end.saturating_duration_since(Instant::now());
        // The first attempt gets the full timeout unless a shutdown
        // deadline is closer: the retry budget bounds retrying, and may be
        // zero ("try once"), which must not turn the one try into 1 ms.
        // Retries get only what is left.
        let timeout = match (attempts, stop) {
            (1, None) => p.timeout,
            (1, Some(stop)) => p.timeout.min(
                stop.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ),
            _ => p.timeout.min(left.max(Duration::from_millis(1))),
        };
        let attempt = tokio::select! {
            r = transport.send(body.clone(), timeout) => r,
            () = stop_reached(deadline, shutdown) => {
                return Err(gave_up(attempts, format!(
                    "{} (an attempt was cut short by the shutdown deadline)",
                    last_detail.unwrap_or_else(|| "no answer yet".to_string())
                )));
            }
        };
        let mut err = match attempt {
            Ok(accepted) => {
                // The collector answers again: whatever another request
                // of the batch said about retrying is over too.
                status.clear();
                return Ok(accepted);
            }
            Err(e) => e,
        };
        // An attempt cut short by what is left of the retry budget says
        // little about the collector; the answer before it (a 503, a
        // refused connection) is what the operator needs.
        if timeout < p.timeout
            && err.timed_out
            && let Some(prev) = last_detail.take()
        {
            err.detail = format!(
                "{prev} (a last attempt was cut short after {} ms by the retry budget)",
                timeout.as_millis()
            );
        }
        last_detail = Some(err.detail.clone());
        if !err.retryable {
            return Err(ExportError::Refused {
                endpoint: p.endpoint.clone(),
                protocol: p.protocol,
                detail: err.detail,
            });
        }
        let wait = err.retry_after.unwrap_or_else(|| retry::jitter(backoff));
        backoff = (backoff * 2).min(p.max_backoff);
        let detail = match err.retry_after {
            Some(ra) => format!(
                "{} (asked to retry after {} ms)",
                err.detail,
                ra.as_millis()
            ),
            None => err.detail,
        };
        // Said before the first backoff, so that an operator learns within
        // one attempt's time that records are stuck, and until when.
        let end = stop_at().map_or(budget_end, |s| s.min(budget_end));
        if retry::fits(Instant::now(), wait, end) {
            publish_retrying(status, p, attempts, &detail, end);
        }
        let wake = Instant::now() + wait;
        if wake >= end {
            return Err(gave_up(attempts, detail));
        }
        // A shutdown beginning meanwhile ends the wait as soon as the rest
        // of it would pass the deadline: the watch wakes us, nothing polls.
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            () = deadline_before(shutdown, wake) => return Err(gave_up(attempts, detail)),
        }
    }
}

/// Says (or updates) that a request is being retried until `end`. Requests
/// in flight together share the one status: the earliest `since` stays,
/// the latest word on the error and the end wins.
fn publish_retrying(status: &StatusSignal, p: &Policy, attempts: u32, detail: &str, end: Instant) {
    let now = Timestamp::now();
    let left = end.saturating_duration_since(Instant::now());
    let until =
        Timestamp::from_unix_nanos(now.unix_nanos().saturating_add(left.as_nanos() as i128));
    status.update(|s| match s {
        Some(r) => {
            r.until = until;
            r.attempts = r.attempts.max(u64::from(attempts));
            r.last_error = detail.to_string();
        }
        None => {
            *s = Some(Retrying {
                since: now,
                until,
                budget_ms: p.max_elapsed.as_millis() as u64,
                attempts: u64::from(attempts),
                last_error: detail.to_string(),
            })
        }
    });
}

/// Resolves once the batch's deadline or the shutdown deadline (less the
/// margin) has passed.
async fn stop_reached(deadline: Option<Instant>, shutdown: &ShutdownSignal) {
    let Some(d) = deadline else {
        return shutdown.reached(SHUTDOWN_MARGIN).await;
    };
    let at = d.checked_sub(SHUTDOWN_MARGIN).unwrap_or(d);
    tokio::select! {
        () = tokio::time::sleep_until(at.into()) => {}
        () = shutdown.reached(SHUTDOWN_MARGIN) => {}
    }
}

/// Resolves once a shutdown deadline is set that, less the margin, comes
/// at or before `t`.
async fn deadline_before(shutdown: &ShutdownSignal, t: Instant) {
    let mut rx = shutdown.subscribe();
    let cuts =
        |d: &Option<Instant>| d.is_some_and(|d| d.checked_sub(SHUTDOWN_MARGIN).unwrap_or(d) <= t);
    // The sink holds the signal, so the sender outlives this wait.
    if rx.wait_for(cuts).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A record mapped for one request that did not fit and goes in the next.
enum Carry {
    Struct(LogRecord),
    Encoded(Vec<u8>),
}

#[async_trait::async_trait]
impl AsyncSink for OtlpSink {
    fn max_level(&self) -> AckLevel {
        AckLevel::Exported
    }

    async fn open(&mut self) -> Result<SinkOpen, SinkError> {
        // On the sink's runtime: the gRPC channel's worker is spawned here.
        if let Some(t) = &mut self.transport {
            t.connect();
        }
        Ok(SinkOpen::default())
    }

    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let total = batch.records.len() as u64;
        let Some(transport) = self.transport.clone() else {
            let e = self.encode_error("the sink is closed".into());
            return Err(SinkError::new(e.kind(), e));
        };
        // Before the first await: see `OtlpSink::encoder`.
        let (bodies, encode_failure) = self.encode(&transport, batch.records);
        let result = self
            .send_all(transport, bodies, encode_failure, total, batch.deadline)
            .await;
        match result {
            Ok((0, _)) => Ok(AckLevel::Exported),
            Ok((rejected, message)) => Err(SinkError::rejected(
                rejected,
                ExportError::Rejected {
                    endpoint: self.policy.endpoint.clone(),
                    rejected,
                    sent: total,
                    message: message.unwrap_or_default(),
                },
            )),
            Err((e, undelivered)) if undelivered >= total => Err(SinkError::new(e.kind(), e)),
            Err((e, undelivered)) => Err(SinkError::rejected(undelivered, e)),
        }
    }

    fn linger(&self) -> Option<Duration> {
        Some(self.settings.linger)
    }

    fn max_batch(&self) -> Option<usize> {
        Some(self.settings.batch_size)
    }

    fn max_in_flight(&self) -> usize {
        self.settings.max_in_flight
    }

    fn watch_shutdown(&mut self, signal: ShutdownSignal) {
        self.shutdown = signal;
    }

    fn watch_status(&mut self, status: StatusSignal) {
        self.status = status;
    }

    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.transport = None;
        Ok(None)
    }
}

fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
