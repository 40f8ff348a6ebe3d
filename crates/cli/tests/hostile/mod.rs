//! A hostile Chat Completions server on loopback for the CLI's tests: a
//! real HTTP/1.1 server (one request per connection) whose answers a test
//! writes as raw bytes, so it can send what no JSON encoder would (the key
//! `\u`-escaped, terminal escape sequences), and an `audit.toml` pointing
//! `[model]` at it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The key the client sent (`Authorization: Bearer KEY`).
    pub fn key(&self) -> String {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string()
    }
}

type Handler = Arc<dyn Fn(usize, &Request) -> (u16, String) + Send + Sync>;

pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// `answer(n, request)` gives the status and the raw body of the
    /// `n`-th request (0-based).
    pub fn start(
        answer: impl Fn(usize, &Request) -> (u16, String) + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(answer);
        let count = Arc::new(AtomicUsize::new(0));
        let (reqs, stop2) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (reqs, handler, count) = (reqs.clone(), handler.clone(), count.clone());
                std::thread::spawn(move || {
                    let Some(req) = read_request(&stream) else {
                        return;
                    };
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = handler(n, &req);
                    reqs.lock().unwrap().push(req);
                    let head = format!(
                        "HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let mut s = stream;
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(body.as_bytes());
                    let _ = s.flush();
                });
            }
        });
        Server {
            addr,
            requests,
            stop,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { headers, body })
}

/// A Chat Completions answer whose message content is `content_json`, a
/// JSON string literal written as raw text (quotes included), so it may
/// hold any escape.
pub fn completion(content_json: &str) -> String {
    format!(
        r#"{{"id":"chatcmpl-hostile","object":"chat.completion","created":1700000000,"model":"test-model","choices":[{{"index":0,"message":{{"role":"assistant","content":{content_json}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}}"#
    )
}

/// An OpenAI-style error body whose message is `message_json`, a JSON
/// string literal written as raw text.
pub fn error(message_json: &str) -> String {
    format!(
        r#"{{"error":{{"message":{message_json},"type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
    )
}

/// Every UTF-16 unit of `text` as `\uXXXX`.
pub fn u_escape(text: &str) -> String {
    text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect()
}

/// Writes `audit.toml` in `dir`: the JSONL log `log`, then `extra` (more
/// sinks), and a `[model]` at `server` whose key is in `key_var`.
pub fn config(dir: &Path, log: &str, extra: &str, server: &Server, key_var: &str) -> String {
    let path = dir.join("audit.toml");
    std::fs::write(
        &path,
        format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{log}\"\n{extra}\n[model]\nprovider = \"openai\"\nbase_url = \"{}\"\nmodel = \"test-model\"\napi_key_env = \"{key_var}\"\ntimeout_ms = 10000\nmax_retries = 1\n",
            server.base_url()
        ),
    )
    .unwrap();
    path.display().to_string()
}
