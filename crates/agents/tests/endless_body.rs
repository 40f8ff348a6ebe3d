//! A model server on loopback that never ends its body (finding 5: 4.6 GB
//! buffered in 8 s before the client had a limit). The client must stop at
//! `max_response_bytes`, promptly, with an error that names the limit, for
//! a 200 and for an error status alike, and the process's peak memory must
//! not follow the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_audit_agents::{
    ChatModel, ChatRequest, ClientBuildError, MAX_RESPONSE_BYTES, Message, ModelConfig,
    ModelConfigError, ModelError, ModelErrorKind, OpenAiClient, Provider, RetryPolicy,
    build_model_with_env,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server sends after its status line and headers.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// `Transfer-Encoding: chunked`, chunks without end.
    Chunked,
    /// Neither length nor chunks: bytes until the connection closes,
    /// which it never does.
    UntilClose,
    /// A `Content-Length` of 10 GiB, then a trickle.
    Announced,
}

/// The most the server sends before it stops writing (and holds the
/// connection open): far past the client's limit, bounded so that a
/// client without a limit fails this test by timing out rather than by
/// exhausting the machine.
const SERVER_CAP: u64 = 96 << 20;

async fn endless_server(status: u16, body: Body, sent: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let framing = match body {
                    Body::Chunked => "Transfer-Encoding: chunked\r\n".to_string(),
                    Body::UntilClose => "Connection: close\r\n".to_string(),
                    Body::Announced => format!("Content-Length: {}\r\n", 10u64 << 30),
                };
                let json = "{\"choices\":[{\"message\":{\"content\":\"";
                let json = match body {
                    Body::Chunked => format!("{:x}\r\n{json}\r\n", json.len()),
                    _ => json.to_string(),
                };
                let start = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{framing}\r\n{json}"
                );
                if stream.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'a'; 64 * 1024];
                while sent.load(Ordering::SeqCst) < SERVER_CAP {
                    let written = match body {
                        Body::Chunked => {
                            let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                            chunk.extend_from_slice(&piece);
                            chunk.extend_from_slice(b"\r\n");
                            stream.write_all(&chunk).await
                        }
                        Body::UntilClose => stream.write_all(&piece).await,
                        Body::Announced => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            stream.write_all(&piece[..1024]).await
                        }
                    };
                    if written.is_err() {
                        return;
                    }
                    sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
    });
    format!("http://{addr}/v1")
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_stops_at_the_limit_with_an_error_naming_it_and_memory_stays_bounded() {
    const LIMIT: u64 = 1 << 20;
    let before = peak_rss();
    for (status, body) in [
        (200, Body::Chunked),
        (200, Body::UntilClose),
        (500, Body::Chunked),
        (500, Body::UntilClose),
        (200, Body::Announced),
    ] {
        let sent = Arc::new(AtomicU64::new(0));
        let base = endless_server(status, body, sent.clone()).await;
        let client = OpenAiClient::builder(&base, "m")
            .timeout(Duration::from_secs(8))
            .retry_policy(RetryPolicy {
                max_retries: 2,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(1),
            })
            .max_response_bytes(LIMIT)
            .build()
            .unwrap();
        let request = ChatRequest {
            messages: vec![Message::user("hello")],
            ..ChatRequest::default()
        };
        let started = Instant::now();
        let e = client.complete(&request).await.unwrap_err();
        let took = started.elapsed();
        let what = format!("{status} {body:?}");
        assert!(
            matches!(
                e,
                ModelError::TooLarge { status: s, limit: LIMIT, attempts: 1, .. } if s == status
            ),
            "{what}: {e:?}"
        );
        assert_eq!(e.kind(), ModelErrorKind::TooLarge);
        let message = e.to_string();
        assert!(
            message.contains("1048576-byte limit") && message.contains("max_response_bytes"),
            "{what}: {message}"
        );
        assert!(took < Duration::from_secs(4), "{what}: took {took:?}");
        // Not retried: the same server would send the same flood again.
        assert!(
            sent.load(Ordering::SeqCst) < SERVER_CAP,
            "{what}: the server sent all it had"
        );
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 48 << 20, "peak RSS grew by {} MiB", grown >> 20);
}

#[test]
fn the_limit_has_a_default_and_bounds_in_the_builder_and_the_configuration() {
    let build = |n| {
        OpenAiClient::builder("http://127.0.0.1:1/v1", "m")
            .max_response_bytes(n)
            .build()
    };
    assert!(matches!(
        build(MAX_RESPONSE_BYTES + 1),
        Err(ClientBuildError::ResponseLimit { .. })
    ));
    assert!(matches!(
        build(0),
        Err(ClientBuildError::ResponseLimit { value: 0 })
    ));
    assert!(build(MAX_RESPONSE_BYTES).is_ok());
    let default = OpenAiClient::builder("http://127.0.0.1:1/v1", "m")
        .build()
        .unwrap();
    assert!(
        format!("{default:?}").contains("max_response_bytes: 16777216"),
        "{default:?}"
    );

    let config: ModelConfig = toml::from_str(
        "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmax_response_bytes = 1000000000000",
    )
    .unwrap();
    assert_eq!(config.provider, Provider::Openai);
    let e = build_model_with_env(&config, |_| None).err().unwrap();
    assert!(
        matches!(
            e,
            ModelConfigError::OutOfRange {
                key: "max_response_bytes",
                ..
            }
        ),
        "{e}"
    );
}
