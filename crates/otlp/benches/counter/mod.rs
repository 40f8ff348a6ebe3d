//! The far end of the collector's pipeline for the throughput bench: a
//! real OTLP/gRPC logs receiver (tonic) that rotel's OTLP exporter
//! forwards to, counting log records per `service.name` and which
//! `audit.seq` values arrived, so a lost or duplicated record shows.
//!
//! It decodes only what it counts, walking the protobuf wire format in
//! place (no message is built, nothing is allocated per record), which
//! keeps its CPU cost well below rotel's. It runs on its own runtime whose
//! threads are named [`THREAD_NAME`], so the bench can read their CPU time
//! from /proc.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prost::Message as _;
use prost::bytes::Buf as _;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};

/// Name of the counter's runtime threads (15 bytes: what Linux keeps).
pub const THREAD_NAME: &str = "far-end-counter";

const PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Reads a varint at `*i`; `None` when the buffer ends inside it.
fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The fields of one protobuf message: (field number, wire type, value),
/// where value is the varint itself or the bytes of a length-delimited
/// field (fixed-size fields are skipped, with an empty slice).
struct Fields<'a> {
    b: &'a [u8],
    i: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Field<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.i >= self.b.len() {
            return None;
        }
        let step = (|| {
            let key = varint(self.b, &mut self.i).ok_or("truncated key")?;
            let field = match key & 7 {
                0 => Field::Varint(varint(self.b, &mut self.i).ok_or("truncated varint")?),
                1 => {
                    self.i += 8;
                    Field::Other
                }
                2 => {
                    let len = varint(self.b, &mut self.i).ok_or("truncated length")? as usize;
                    let end = self.i.checked_add(len).ok_or("bad length")?;
                    let v = self.b.get(self.i..end).ok_or("length past the end")?;
                    self.i = end;
                    Field::Bytes(v)
                }
                5 => {
                    self.i += 4;
                    Field::Other
                }
                _ => return Err("unsupported wire type"),
            };
            if self.i > self.b.len() {
                return Err("fixed field past the end");
            }
            Ok((key >> 3, field))
        })();
        if step.is_err() {
            self.i = self.b.len();
        }
        Some(step)
    }
}

fn fields(b: &[u8]) -> Fields<'_> {
    Fields { b, i: 0 }
}

/// The length-delimited fields numbered `n` of a message.
fn each(b: &[u8], n: u64) -> impl Iterator<Item = Result<&[u8], &'static str>> {
    fields(b).filter_map(move |f| match f {
        Ok((k, Field::Bytes(v))) if k == n => Some(Ok(v)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    })
}

/// A KeyValue's key and its AnyValue's bytes.
fn key_value(kv: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for f in fields(kv) {
        match f? {
            (1, Field::Bytes(k)) => key = k,
            (2, Field::Bytes(v)) => value = v,
            _ => {}
        }
    }
    Ok((key, value))
}

/// Counts an `ExportLogsServiceRequest` without building it: per
/// ResourceLogs (field 1), `service.name` from the resource (1) attributes
/// (1), and each LogRecord (ScopeLogs 2, log_records 2) with the int value
/// (AnyValue field 3) of its `audit.seq` attribute (6).
fn summarise(req: &[u8]) -> Result<Summary, &'static str> {
    let mut out = Vec::new();
    for rl in each(req, 1) {
        let rl = rl?;
        let mut service = None;
        let (mut n, mut seqs) = (0, Vec::new());
        for f in fields(rl) {
            match f? {
                (1, Field::Bytes(resource)) => {
                    for kv in each(resource, 1) {
                        let (k, v) = key_value(kv?)?;
                        if k == b"service.name" {
                            for f in each(v, 1) {
                                service = Some(String::from_utf8_lossy(f?).into_owned());
                            }
                        }
                    }
                }
                (2, Field::Bytes(scope_logs)) => {
                    for lr in each(scope_logs, 2) {
                        n += 1;
                        for kv in each(lr?, 6) {
                            let (k, v) = key_value(kv?)?;
                            if k == b"audit.seq" {
                                for f in fields(v) {
                                    if let (3, Field::Varint(s)) = f? {
                                        seqs.push(s);
                                    }
                                }
                                break;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        out.push((service.unwrap_or_else(|| "?".to_string()), n, seqs));
    }
    Ok((req.len(), out))
}

/// `ExportLogsServiceResponse` with no `partial_success`: all accepted.
#[derive(Clone, PartialEq, prost::Message)]
struct Response {}

/// What arrived for one `service.name`.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Log records received (duplicates included).
    pub records: u64,
    /// Distinct `audit.seq` values received.
    pub distinct: u64,
    /// Records whose `audit.seq` had already arrived.
    pub duplicates: u64,
    /// Records without an integer `audit.seq`.
    pub no_seq: u64,
    /// Smallest and largest `audit.seq` received.
    pub min_seq: Option<u64>,
    pub max_seq: Option<u64>,
    /// Export requests that carried records of this service.
    pub requests: u64,
    /// Their size in bytes, as received (uncompressed).
    pub bytes: u64,
    seen: Vec<u64>,
}

impl Tally {
    fn seq(&mut self, seq: u64) {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
        } else {
            self.seen[word] |= bit;
            self.distinct += 1;
        }
        self.min_seq = Some(self.min_seq.map_or(seq, |m| m.min(seq)));
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
    }

    /// Seqs in 1..=n that never arrived (at most `limit` of them listed).
    pub fn missing(&self, n: u64, limit: usize) -> Vec<u64> {
        (1..=n)
            .filter(|s| {
                let w = (s / 64) as usize;
                self.seen.get(w).is_none_or(|x| x & (1 << (s % 64)) == 0)
            })
            .take(limit)
            .collect()
    }
}

#[derive(Default)]
struct State {
    tallies: Mutex<HashMap<String, Tally>>,
    changed: Condvar,
    undecodable: Mutex<u64>,
}

/// The running counter; its runtime (and server) stops when dropped.
pub struct Counter {
    state: Arc<State>,
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Counter {
    /// Starts the receiver on a free loopback port.
    pub fn start() -> Counter {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .expect("counter runtime");
        let state = Arc::new(State::default());
        let incoming = {
            let _guard = runtime.enter();
            tonic::transport::server::TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .expect("counter: bind 127.0.0.1:0")
                .with_nodelay(Some(true))
        };
        let addr = incoming.local_addr().expect("counter address");
        let svc = Svc(state.clone());
        runtime.spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                // rotel's exporter sends its batches as separate requests
                // over one connection; let them all be in flight.
                .initial_stream_window_size(Some(8 << 20))
                .initial_connection_window_size(Some(32 << 20))
                .serve_with_incoming(svc, incoming)
                .await
            {
                eprintln!("far-end counter stopped: {e}");
            }
        });
        Counter {
            state,
            addr,
            _runtime: runtime,
        }
    }

    /// The endpoint to give rotel's OTLP exporter.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What arrived so far for `service` (`?`: ResourceLogs without a
    /// `service.name`).
    pub fn tally(&self, service: &str) -> Tally {
        self.state
            .tallies
            .lock()
            .unwrap()
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Requests the counter could not decode (answered with an error).
    pub fn undecodable(&self) -> u64 {
        *self.state.undecodable.lock().unwrap()
    }

    /// Waits until `want` distinct seqs of `service` arrived, or nothing
    /// more arrived for `stall` (rotel's exporter retries after 5 s by
    /// default, so give it longer). Returns the tally and when it was
    /// complete.
    pub fn wait_for(&self, service: &str, want: u64, stall: Duration) -> (Tally, Option<Instant>) {
        let mut map = self.state.tallies.lock().unwrap();
        let mut last = u64::MAX;
        let mut since = Instant::now();
        loop {
            let (records, distinct) = map.get(service).map_or((0, 0), |t| (t.records, t.distinct));
            if distinct >= want {
                return (map[service].clone(), Some(Instant::now()));
            }
            if records != last {
                last = records;
                since = Instant::now();
            } else if since.elapsed() >= stall {
                return (map.get(service).cloned().unwrap_or_default(), None);
            }
            map = self
                .state
                .changed
                .wait_timeout(map, Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }
}

/// Per request: its size, and (service.name, records, seqs) per resource.
type Summary = (usize, Vec<(String, u64, Vec<u64>)>);

#[derive(Clone)]
struct Svc(Arc<State>);

impl tonic::server::NamedService for Svc {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

struct Export(Arc<State>);

impl tonic::server::UnaryService<Summary> for Export {
    type Response = Response;
    type Future = std::future::Ready<Result<tonic::Response<Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Summary>) -> Self::Future {
        {
            let mut map = self.0.tallies.lock().unwrap();
            let (bytes, resources) = request.into_inner();
            let mut services: Vec<&str> = Vec::new();
            for (service, n, seqs) in &resources {
                let t = map.entry(service.clone()).or_default();
                // A request counts once per service it carried, however
                // many ResourceLogs of that service it held.
                if !services.contains(&service.as_str()) {
                    services.push(service);
                    t.requests += 1;
                    t.bytes += bytes as u64;
                }
                t.records += n;
                t.no_seq += n - seqs.len() as u64;
                for &s in seqs {
                    t.seq(s);
                }
            }
        }
        self.0.changed.notify_all();
        std::future::ready(Ok(tonic::Response::new(Response {})))
    }
}

impl<B> Service<http::Request<B>> for Svc
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            if req.uri().path() != PATH {
                let status = tonic::Status::unimplemented(format!(
                    "the far-end counter serves only {PATH}, not {}",
                    req.uri().path()
                ));
                return Ok(status.into_http());
            }
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(CountCodec(state.clone()))
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                // rotel's batches of 8192 records exceed tonic's 4 MiB default.
                .apply_max_message_size_config(Some(512 << 20), None);
            Ok(grpc.unary(Export(state), req).await)
        })
    }
}

/// Decodes a request straight into its [`Summary`].
struct CountCodec(Arc<State>);

impl Codec for CountCodec {
    type Encode = Response;
    type Decode = Summary;
    type Encoder = CountCodec;
    type Decoder = CountCodec;

    fn encoder(&mut self) -> Self::Encoder {
        CountCodec(self.0.clone())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CountCodec(self.0.clone())
    }
}

impl Encoder for CountCodec {
    type Item = Response;
    type Error = tonic::Status;

    fn encode(&mut self, item: Response, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for CountCodec {
    type Item = Summary;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Summary>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        match summarise(&bytes) {
            Ok(summary) => Ok(Some(summary)),
            Err(e) => {
                *self.0.undecodable.lock().unwrap() += 1;
                Err(tonic::Status::invalid_argument(format!(
                    "far-end counter: undecodable request: {e}"
                )))
            }
        }
    }
}
