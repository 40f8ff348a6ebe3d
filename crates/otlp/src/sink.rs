//! The sink: batches -> export requests, retried, acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_audit_core::retry;
use agent_audit_core::{
    AckLevel, Batch, FailureKind, Record, Retrying, ShutdownSignal, Sink, SinkError, StatusSignal,
    Timestamp,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use prost::bytes::Bytes;
use tokio::task::JoinHandle;

use crate::config::{
    OtlpConfig, OtlpConfigError, OtlpSettings, Protocol, ServiceInfo, has_userinfo, headers_hint,
    redact_endpoint,
};
use crate::mapping::Mapper;
use crate::transport::{Accepted, Transport};

/// Why records did not reach the collector. Names the endpoint (its query
/// and fragment shown as `***`); never carries header values.
#[derive(Debug, Clone, thiserror::Error)]
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
/// It implements the synchronous [`Sink`] trait: the dispatcher calls it on
/// the sink's own worker thread, where records are encoded, and the network
/// I/O runs on one tokio worker thread the sink owns. A batch (up to
/// `batch_size * max_in_flight` records) is split into requests of at most
/// `batch_size` records and `max_request_bytes` bytes, up to
/// `max_in_flight` of them on the wire at once; each request is retried
/// with exponential backoff and jitter on transient failures, honouring
/// `Retry-After` and gRPC `RetryInfo`, until the retry budget or the
/// dispatcher's shutdown deadline runs out. `write` returns once every
/// request of the batch was answered: the records of requests that failed
/// or were rejected are counted exactly, the first failure in seq order is
/// the one reported. Meanwhile the dispatcher's queue holds later records
/// and the sink's overflow policy applies.
pub struct OtlpSink {
    settings: OtlpSettings,
    policy: Arc<Policy>,
    mapper: Mapper,
    transport: Option<Transport>,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: ShutdownSignal,
    /// Where a request being retried says so (`Sink::watch_status`).
    status: StatusSignal,
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
/// that its failure is counted before the dispatcher writes its report.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(20);

/// How often a request waiting on the collector looks whether shutdown
/// began (core's signal is a plain value, not a notification).
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

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
    /// the first write. An endpoint with a user or password is refused
    /// here too, for settings built without [`OtlpConfig::resolve`].
    pub fn new(settings: OtlpSettings) -> Result<OtlpSink, OtlpConfigError> {
        if has_userinfo(&settings.endpoint) {
            return Err(OtlpConfigError::Credentials {
                origin: "endpoint".to_string(),
                hint: headers_hint("endpoint"),
            });
        }
        // One worker thread carries the connection and the requests in
        // flight while the dispatcher's thread encodes the next ones.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_io()
            .enable_time()
            .thread_name("audit-otlp-io")
            .build()
            .map_err(OtlpConfigError::Runtime)?;
        let transport = {
            let _guard = runtime.enter();
            Transport::new(&settings)?
        };
        Ok(OtlpSink {
            mapper: Mapper::new(&settings.service),
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
            runtime: Some(runtime),
            shutdown: ShutdownSignal::new(),
            status: StatusSignal::new(),
            buf: Vec::new(),
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

    /// The next request: up to `batch_size` records and (unless one record
    /// alone is larger) `max_request_bytes`, starting at `records[*i]`.
    /// Every record is mapped exactly once, in order, since mapping advances
    /// the hash chain; one that does not fit is carried to the next request.
    fn next_request(
        &mut self,
        records: &[Arc<Record>],
        i: &mut usize,
        carry: &mut Option<Carry>,
        observed: u64,
    ) -> Result<(Bytes, u64), ExportError> {
        let batch_size = self.settings.batch_size;
        let max_bytes = self.settings.max_request_bytes;
        let json = self.transport.as_ref().is_some_and(Transport::is_json);
        if json {
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
            let transport = self
                .transport
                .as_ref()
                .ok_or_else(|| self.encode_error("the sink is closed".into()))?;
            let body = transport
                .json_body(&request)
                .map_err(|e| self.encode_error(e))?;
            Ok((body, n))
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
            let transport = self
                .transport
                .as_ref()
                .ok_or_else(|| self.encode_error("the sink is closed".into()))?;
            let body = transport
                .protobuf_body(raw)
                .map_err(|e| self.encode_error(e))?;
            Ok((body, n))
        }
    }

    /// Splits `records` into requests, keeps up to `max_in_flight` of them
    /// on the wire, and waits for every answer. Returns how many were
    /// rejected (and the collector's message), or the first error in seq
    /// order and how many records in all were not delivered (those of
    /// every failed or unsent request, plus the rejected ones).
    #[allow(clippy::type_complexity)]
    fn write_records(
        &mut self,
        records: &[Arc<Record>],
        deadline: Option<Instant>,
    ) -> Result<(u64, Option<String>), (ExportError, u64)> {
        let Some(handle) = self.runtime.as_ref().map(|r| r.handle().clone()) else {
            return Err((
                self.encode_error("the sink is closed".into()),
                records.len() as u64,
            ));
        };
        let observed = now_unix_nanos();
        let total = records.len() as u64;
        let mut in_flight: VecDeque<(JoinHandle<Result<Accepted, ExportError>>, u64)> =
            VecDeque::new();
        let mut delivered = 0u64;
        let mut rejected = 0u64;
        let mut message = None;
        // The first failure of a request, in seq order, and a failure to
        // encode (which can only concern records after every request sent).
        let mut failure: Option<ExportError> = None;
        let mut encode_failure: Option<ExportError> = None;
        let mut carry = None;
        let mut i = 0;
        loop {
            // After a failure nothing new is sent: what follows would meet
            // the same collector, and the batch fails anyway.
            while failure.is_none()
                && encode_failure.is_none()
                && in_flight.len() < self.settings.max_in_flight
                && (i < records.len() || carry.is_some())
            {
                match self.next_request(records, &mut i, &mut carry, observed) {
                    Ok((body, n)) => {
                        let Some(transport) = self.transport.clone() else {
                            encode_failure = Some(self.encode_error("the sink is closed".into()));
                            break;
                        };
                        let task = export(
                            transport,
                            self.policy.clone(),
                            body,
                            deadline,
                            self.shutdown.clone(),
                            self.status.clone(),
                        );
                        in_flight.push_back((handle.spawn(task), n));
                    }
                    Err(e) => encode_failure = Some(e),
                }
            }
            let Some((task, n)) = in_flight.pop_front() else {
                break;
            };
            let result = handle.block_on(task).unwrap_or_else(|e| {
                Err(self.encode_error(format!("the export task ended abnormally: {e}")))
            });
            match result {
                Ok(a) => {
                    if a.rejected > 0 {
                        rejected += (a.rejected as u64).min(n);
                        message = Some(a.message);
                    }
                    delivered += n;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure.or(encode_failure) {
            None => Ok((rejected, message)),
            Some(e) => Err((e, total - delivered + rejected)),
        }
    }
}

/// Sends one request body, retrying transient failures until the retry
/// budget, the batch's deadline or the dispatcher's shutdown deadline
/// (whichever comes first) runs out.
async fn export(
    mut transport: Transport,
    p: Arc<Policy>,
    body: Bytes,
    deadline: Option<Instant>,
    shutdown: ShutdownSignal,
    status: StatusSignal,
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
            () = shutdown_passed(stop_at) => {
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
            publish_retrying(&status, &p, attempts, &detail, end);
        }
        // Sleeps in slices so that a shutdown beginning meanwhile ends the
        // wait as soon as the rest of it would pass the deadline.
        let wake = Instant::now() + wait;
        loop {
            let end = stop_at().map_or(budget_end, |s| s.min(budget_end));
            if wake >= end {
                return Err(gave_up(attempts, detail));
            }
            let now = Instant::now();
            if now >= wake {
                break;
            }
            tokio::time::sleep((wake - now).min(SHUTDOWN_POLL)).await;
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

/// Resolves once the shutdown deadline (less the margin) has passed.
async fn shutdown_passed(stop_at: impl Fn() -> Option<Instant>) {
    loop {
        match stop_at() {
            Some(d) if Instant::now() >= d => return,
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => tokio::time::sleep(SHUTDOWN_POLL).await,
        }
    }
}

/// A record mapped for one request that did not fit and goes in the next.
enum Carry {
    Struct(LogRecord),
    Encoded(Vec<u8>),
}

impl Sink for OtlpSink {
    fn max_level(&self) -> AckLevel {
        AckLevel::Exported
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let total = batch.records.len() as u64;
        let result = self.write_records(batch.records, batch.deadline);
        // Delivered or given up: either way no longer retrying.
        self.status.clear();
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

    fn watch_shutdown(&mut self, signal: ShutdownSignal) {
        self.shutdown = signal;
    }

    fn watch_status(&mut self, status: StatusSignal) {
        self.status = status;
    }

    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.transport = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        Ok(None)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime's
        // async context (a sink built and dropped by async config code).
        self.transport = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
