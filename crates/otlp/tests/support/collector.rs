//! A small real OTLP logs receiver (gRPC via tonic, or HTTP/1.1 on a raw
//! tokio socket) for what rotel cannot do: answer `partial_success`, ask
//! for a retry (Retry-After, RetryInfo), refuse, check headers, serve TLS,
//! and record every request before answering it so "acked means stored"
//! holds even when the server is torn down mid-stream.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_audit_otlp::proto::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use agent_audit_otlp::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use agent_audit_otlp::proto::common::v1::any_value::Value as AnyKind;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the server answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Success, nothing rejected.
    Ok,
    /// Success with `partial_success` rejecting this many records.
    Partial(i64, &'static str),
    /// A gRPC status, with a RetryInfo delay when given.
    Grpc(tonic::Code, Option<Duration>),
    /// An HTTP status, with a Retry-After value when given.
    Http(u16, Option<&'static str>),
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub seqs: Vec<u64>,
    pub headers: BTreeMap<String, String>,
    pub content_type: String,
    pub gzip: bool,
    pub reply: String,
}

#[derive(Default)]
pub struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    /// gRPC: how long each answer is held back, so requests overlap.
    hold: Mutex<Duration>,
    /// gRPC: requests being answered now, and the most at once.
    active: Mutex<(usize, usize)>,
}

impl State {
    /// Answers the next requests with these replies, then with the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// The reply once the script is used up (default: `Ok`).
    pub fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = Some(reply);
    }

    /// gRPC: holds every answer back this long, so that requests sent
    /// together are in the server together.
    pub fn hold_replies(&self, d: Duration) {
        *self.hold.lock().unwrap() = d;
    }

    /// gRPC: the most requests the server was answering at once.
    pub fn max_concurrent(&self) -> usize {
        self.active.lock().unwrap().1
    }

    fn next(&self) -> Reply {
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| self.default.lock().unwrap().clone())
            .unwrap_or(Reply::Ok)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Seqs of every request that was answered with success (partial or
    /// not), in arrival order.
    pub fn stored_seqs(&self) -> Vec<u64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.reply.starts_with("ok") || s.reply.starts_with("partial"))
            .flat_map(|s| s.seqs.clone())
            .collect()
    }

    fn record(
        &self,
        req: &ExportLogsServiceRequest,
        headers: BTreeMap<String, String>,
        content_type: &str,
        gzip: bool,
        reply: &Reply,
    ) {
        let seqs = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .filter_map(|lr| {
                lr.attributes
                    .iter()
                    .find(|kv| kv.key == "audit.seq")
                    .and_then(
                        |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(AnyKind::IntValue(n)) => Some(*n as u64),
                            _ => None,
                        },
                    )
            })
            .collect();
        self.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            seqs,
            headers,
            content_type: content_type.to_string(),
            gzip,
            reply: match reply {
                Reply::Ok => "ok".to_string(),
                Reply::Partial(n, _) => format!("partial {n}"),
                Reply::Grpc(c, _) => format!("grpc {c:?}"),
                Reply::Http(c, _) => format!("http {c}"),
            },
        });
    }
}

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

fn response(reply: &Reply) -> ExportLogsServiceResponse {
    match reply {
        Reply::Partial(n, msg) => ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: *n,
                error_message: msg.to_string(),
            }),
        },
        _ => ExportLogsServiceResponse {
            partial_success: None,
        },
    }
}

struct Grpc(Arc<State>);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let gzip = request
            .metadata()
            .get("grpc-encoding")
            .is_some_and(|v| v == "gzip");
        {
            let mut a = self.0.active.lock().unwrap();
            a.0 += 1;
            a.1 = a.1.max(a.0);
        }
        let hold = *self.0.hold.lock().unwrap();
        tokio::time::sleep(hold).await;
        self.0.active.lock().unwrap().0 -= 1;
        let reply = self.0.next();
        self.0
            .record(request.get_ref(), headers, "application/grpc", gzip, &reply);
        match reply {
            Reply::Grpc(code, retry) => {
                let details = retry.map(|d| {
                    RpcStatus {
                        code: code as i32,
                        message: "slow down".into(),
                        details: vec![ProtoAny {
                            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                            value: RetryInfo {
                                retry_delay: Some(ProtoDuration {
                                    seconds: d.as_secs() as i64,
                                    nanos: d.subsec_nanos() as i32,
                                }),
                            }
                            .encode_to_vec(),
                        }],
                    }
                    .encode_to_vec()
                });
                Err(match details {
                    Some(d) => tonic::Status::with_details(code, "slow down", d.into()),
                    None => tonic::Status::new(code, "refused by the test collector"),
                })
            }
            Reply::Http(..) => Err(tonic::Status::internal("an HTTP reply scripted for gRPC")),
            r => Ok(tonic::Response::new(response(&r))),
        }
    }
}

/// Which protocol the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Grpc,
    Http,
}

/// A running test collector on its own runtime, so `kill` tears down every
/// connection at once, like a crashed process.
pub struct TestCollector {
    runtime: Option<tokio::runtime::Runtime>,
    pub addr: SocketAddr,
    pub state: Arc<State>,
    kind: Kind,
}

/// PEM certificate and key for a TLS server, and the CA a client
/// certificate must be signed by when the server requires one (mTLS).
pub struct Tls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl TestCollector {
    pub fn start(kind: Kind) -> TestCollector {
        TestCollector::start_on(kind, 0, Arc::new(State::default()), None)
    }

    pub fn start_on(kind: Kind, port: u16, state: Arc<State>, tls: Option<Tls>) -> TestCollector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // No block_on: tests restart servers from inside their own runtime.
        let _guard = runtime.enter();
        let listener = (|| {
            let socket = tokio::net::TcpSocket::new_v4()?;
            // A restarted server takes its port back despite TIME_WAIT.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
            socket.listen(1024)
        })()
        .unwrap_or_else(|e| panic!("test collector could not bind 127.0.0.1:{port}: {e}"));
        let addr = listener.local_addr().unwrap();
        match kind {
            Kind::Grpc => {
                let svc = LogsServiceServer::new(Grpc(state.clone()))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                let mut builder = tonic::transport::Server::builder();
                if let Some(tls) = tls {
                    let mut config = tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(tls.cert, tls.key));
                    if let Some(ca) = tls.client_ca {
                        config = config
                            .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                            .client_auth_optional(false);
                    }
                    builder = builder.tls_config(config).unwrap();
                }
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                runtime.spawn(async move {
                    let _ = builder.serve_with_incoming(svc, incoming).await;
                });
            }
            Kind::Http => {
                assert!(
                    tls.is_none(),
                    "the HTTP test collector speaks plain HTTP only"
                );
                let state = state.clone();
                runtime.spawn(async move {
                    loop {
                        let Ok((sock, _)) = listener.accept().await else {
                            return;
                        };
                        let state = state.clone();
                        tokio::spawn(async move {
                            let _ = serve_http(sock, state).await;
                        });
                    }
                });
            }
        }
        drop(_guard);
        TestCollector {
            runtime: Some(runtime),
            addr,
            state,
            kind,
        }
    }

    pub fn endpoint(&self) -> String {
        match self.kind {
            Kind::Grpc => format!("http://127.0.0.1:{}", self.addr.port()),
            Kind::Http => format!("http://127.0.0.1:{}/v1/logs", self.addr.port()),
        }
    }

    /// Tears the server down at once: listener and every connection.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve_http(mut sock: tokio::net::TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        // Headers.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut headers = BTreeMap::new();
        for line in head.lines().skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let mut body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
        if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out)?;
            body = out;
        }
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        let json = content_type.contains("json");
        let req: ExportLogsServiceRequest = if json {
            serde_json::from_slice(&body).expect("valid OTLP/JSON request")
        } else {
            ExportLogsServiceRequest::decode(&body[..]).expect("valid OTLP/protobuf request")
        };
        let reply = state.next();
        state.record(&req, headers.clone(), &content_type, gzip, &reply);
        let (code, retry_after, body) = match &reply {
            Reply::Http(code, ra) => (
                *code,
                *ra,
                b"{\"code\":14,\"message\":\"refused by the test collector\"}".to_vec(),
            ),
            Reply::Grpc(..) => (500, None, b"a gRPC reply scripted for HTTP".to_vec()),
            r => {
                let resp = response(r);
                let body = if json {
                    serde_json::to_vec(&resp).unwrap()
                } else {
                    resp.encode_to_vec()
                };
                (200, None, body)
            }
        };
        let mut out = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            if json || code != 200 {
                "application/json"
            } else {
                "application/x-protobuf"
            },
            body.len()
        );
        if let Some(ra) = retry_after {
            out.push_str(&format!("retry-after: {ra}\r\n"));
        }
        out.push_str("\r\n");
        sock.write_all(out.as_bytes()).await?;
        sock.write_all(&body).await?;
    }
}
