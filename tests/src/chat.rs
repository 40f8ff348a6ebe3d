//! A real Chat Completions server on loopback (HTTP/1.1, one request per
//! connection) that plays the tutorial: the first request of a
//! conversation gets a `get_account_balance` tool call, the one after the
//! tool result gets the final answer. It records every request, headers
//! included, so a test can prove the secret really went over the wire.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub use crate::http::Request;
use crate::http::read_request;

/// The server; it stops accepting when dropped.
pub struct ChatServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// What the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// The tutorial: a tool call, then the answer.
    Tutorial,
    /// 401 with an OpenAI-style body that masks the key as OpenAI does
    /// (`sk-abc***...wxyz`: first 3 and last 4 characters only).
    Unauthorized,
    /// 401 whose error message echoes the whole key it was sent, as a
    /// careless proxy might.
    EchoKey,
    /// The tutorial, but the final answer's content carries bytes that are
    /// not UTF-8 (`0xFF 0xFE`) inside the JSON string.
    InvalidUtf8,
}

impl ChatServer {
    /// Binds 127.0.0.1 on a free port and serves on a thread.
    pub fn start(script: Script) -> std::io::Result<ChatServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reqs, stop2) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let reqs = reqs.clone();
                std::thread::spawn(move || serve(stream, script, &reqs));
            }
        });
        Ok(ChatServer {
            addr,
            requests,
            stop,
        })
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, script: Script, reqs: &Mutex<Vec<Request>>) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let key = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if let Ok(mut r) = reqs.lock() {
        r.push(req);
    }
    let (status, reply) = match script {
        Script::Unauthorized => {
            let masked = if key.len() > 8 {
                format!("{}***{}", &key[..3], &key[key.len() - 4..])
            } else {
                "***".to_string()
            };
            (
                401,
                json!({"error": {
                    "message": format!("Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."),
                    "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            )
        }
        Script::EchoKey => (
            401,
            json!({"error": {
                "message": format!("key {key} is not valid here (Authorization: Bearer {key})"),
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        ),
        Script::Tutorial | Script::InvalidUtf8 => {
            let has_tool_result = body["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
            let message = if has_tool_result {
                json!({"role": "assistant", "content": "The balance of account 12345 is 1,234.56 USD."})
            } else {
                json!({"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "get_account_balance", "arguments": "{\"account_id\": \"12345\"}"}}]})
            };
            (
                200,
                json!({
                    "id": "chatcmpl-guarantees", "object": "chat.completion", "created": 1_700_000_000,
                    "model": "test-model",
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": if has_tool_result { "stop" } else { "tool_calls" }}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                }),
            )
        }
    };
    let mut text = reply.to_string().into_bytes();
    if script == Script::InvalidUtf8 {
        let marker = b"1,234.56 USD";
        if let Some(at) = text.windows(marker.len()).position(|w| w == marker) {
            text.splice(at..at, [0xFF, 0xFE, b' ']);
        }
    }
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Unauthorized" },
        text.len()
    );
    let mut s = stream;
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&text);
    let _ = s.flush();
}
