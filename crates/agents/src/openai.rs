//! The OpenAI-compatible Chat Completions client (OpenAI, Ollama's `/v1`,
//! vLLM, llama.cpp's `llama-server`, any proxy speaking the same format).

use std::time::{Duration, SystemTime};

use self::scrub::Scrubber;

use agent_audit_core::retry;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    BoxFuture, ChatModel, ChatRequest, ChatResponse, Message, ModelError, ToolCall, ToolChoice,
    ToolSpec, Usage,
};

/// An API key. It has no `Display`, its `Debug` prints `ApiKey(***)`, and it
/// is not `Serialize`, so it cannot end up in a record or a log by accident.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// How failed attempts are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = one attempt only).
    pub max_retries: u32,
    /// Backoff before the first retry; doubles on each further retry.
    pub initial_backoff: Duration,
    /// Upper bound of the exponential backoff.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured. A server asking for longer is not
    /// retried: the error is returned with the requested delay, so the
    /// caller can decide instead of hanging.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): the server's
    /// `Retry-After` when given, else exponential backoff with full jitter
    /// over its upper half (so two clients do not retry in lockstep, and a
    /// retry never comes immediately).
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or_else(|| {
            retry::jitter(retry::backoff(
                self.initial_backoff,
                self.max_backoff,
                retry,
            ))
        })
    }
}

/// Largest response body read by default: 16 MiB, far above any Chat
/// Completions answer, far below what would hurt the process.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// Largest `max_response_bytes` accepted: 256 MiB.
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// Smallest `max_response_bytes` accepted: 1 KiB, room for an error body.
pub const MIN_RESPONSE_BYTES: u64 = 1024;

/// Error building an [`OpenAiClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The base URL is not an http(s) URL.
    #[error("model base_url `{url}` is not valid: {reason}")]
    BaseUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("could not build the HTTP client: {0}")]
    Http(String),
    /// `max_response_bytes` outside [`MIN_RESPONSE_BYTES`] to
    /// [`MAX_RESPONSE_BYTES`].
    #[error(
        "max_response_bytes is {value}: it must be between {MIN_RESPONSE_BYTES} and {MAX_RESPONSE_BYTES}"
    )]
    ResponseLimit {
        /// The value given.
        value: u64,
    },
}

/// Builder of an [`OpenAiClient`].
#[derive(Debug, Clone)]
pub struct OpenAiClientBuilder {
    base_url: String,
    model: String,
    api_key: Option<ApiKey>,
    timeout: Duration,
    retry: RetryPolicy,
    max_response_bytes: u64,
}

impl OpenAiClientBuilder {
    /// The largest response body read, success or error, in bytes: past it
    /// the call fails with [`ModelError::TooLarge`] without reading the
    /// rest. Default [`DEFAULT_MAX_RESPONSE_BYTES`]; [`MIN_RESPONSE_BYTES`]
    /// to [`MAX_RESPONSE_BYTES`], checked by `build`.
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The API key, sent as `Authorization: Bearer ..`.
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Per-attempt timeout (whole request, connect to last byte). Default 60 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries after the first attempt. Default 2.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The whole retry policy.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<OpenAiClient, ClientBuildError> {
        if !(MIN_RESPONSE_BYTES..=MAX_RESPONSE_BYTES).contains(&self.max_response_bytes) {
            return Err(ClientBuildError::ResponseLimit {
                value: self.max_response_bytes,
            });
        }
        let base = self.base_url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| ClientBuildError::BaseUrl {
            url: self.base_url.clone(),
            reason: e.to_string(),
        })?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(ClientBuildError::BaseUrl {
                url: self.base_url.clone(),
                reason: format!("scheme must be http or https, not `{}`", parsed.scheme()),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            // Credentials in the URL would end up in error messages and records.
            return Err(ClientBuildError::BaseUrl {
                url: format!(
                    "{}://…@{}",
                    parsed.scheme(),
                    parsed.host_str().unwrap_or("")
                ),
                reason: "credentials in the URL are not allowed; use api_key_env".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| ClientBuildError::Http(e.to_string()))?;
        let scrubber = Scrubber::new(self.api_key.iter().map(ApiKey::expose));
        Ok(OpenAiClient {
            endpoint: format!("{base}/chat/completions"),
            model: self.model,
            api_key: self.api_key,
            scrubber,
            timeout: self.timeout,
            retry: self.retry,
            max_response_bytes: self.max_response_bytes,
            http,
        })
    }
}

/// A Chat Completions client over reqwest (rustls), with retries.
///
/// Retried: 408, 409, 429 (except `insufficient_quota`), 5xx, connection
/// errors and timeouts, with exponential backoff and jitter, honouring
/// `Retry-After` (seconds or HTTP date) up to [`RetryPolicy::max_retry_after`].
///
/// A server may echo the API key back, on purpose or not, so the key is
/// scrubbed (replaced by `[REDACTED]`) twice: from every string of the
/// decoded body (or from the body as text when it is not JSON), and again
/// from every text the client returns (content, tool-call ids, names and
/// arguments, finish reason, model name, response id, every error
/// message), since joining content parts or re-serialising an arguments
/// object can assemble what no single string held. The scrub recognises
/// the key in any letter case, behind JSON, JavaScript, Rust and percent
/// escapes and HTML character references (nested and mixed, up to 8
/// levels), with invisible characters (every default-ignorable code point
/// and format character) or combining marks between its letters, spelt in
/// compatibility forms (full-width, mathematical, enclosed letters and
/// digits), all seen through [`agent_audit_core::normalize`], a run of 16 of
/// its characters on its own (a key cut short), and, for keys of 4 bytes
/// or more, its hex and base64 forms at any offset (so base64 of
/// `Bearer KEY` or of `user:KEY` is caught). Out of reach: a key split into
/// pieces shorter than 16 characters across separate fields or answers,
/// reversed, encrypted or otherwise transformed; a server that knows the
/// key can always disguise it.
#[derive(Clone)]
pub struct OpenAiClient {
    endpoint: String,
    model: String,
    api_key: Option<ApiKey>,
    scrubber: Scrubber,
    timeout: Duration,
    retry: RetryPolicy,
    max_response_bytes: u64,
    http: reqwest::Client,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tools: &'a [ToolSpec],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    stream: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

/// What one attempt produced.
enum Attempt {
    Done(ChatResponse),
    Retry {
        error: ModelError,
        retry_after: Option<Duration>,
    },
    Fail(ModelError),
}

impl OpenAiClient {
    /// A builder for `model` at `base_url` (for example
    /// `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`).
    pub fn builder(base_url: impl Into<String>, model: impl Into<String>) -> OpenAiClientBuilder {
        OpenAiClientBuilder {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn attempt(&self, body: &[u8], attempt: u32) -> Attempt {
        let mut req = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => return self.transport_error(&e, attempt),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        let bytes = match self.read_body(response, status, attempt).await {
            Ok(b) => b,
            Err(failed) => return failed,
        };
        let raw = String::from_utf8_lossy(&bytes);
        // Decoded first, then scrubbed string by string: scrubbing the JSON
        // text itself could cut an escape in half and make a body that
        // hides the key unreadable. The raw text is scrubbed only where it
        // is quoted (a body that is not JSON). `send` scrubs once more what
        // is built from the strings (joined content parts, arguments).
        let parsed = serde_json::from_str::<Value>(&raw).map(|mut v| {
            self.scrubber.value(&mut v);
            v
        });
        let text = || self.scrubber.text(&raw).into_owned();
        if (200..300).contains(&status) {
            return match self.parse_success(parsed, text, status, attempt) {
                Ok(r) => Attempt::Done(r),
                Err(e) => Attempt::Fail(e),
            };
        }
        let info = ErrorInfo::parse(parsed.ok(), text);
        let endpoint = self.endpoint.clone();
        let message = info.message.clone();
        match status {
            401 | 403 => Attempt::Fail(ModelError::Auth {
                endpoint,
                status,
                message,
            }),
            429 if info.is_quota() => Attempt::Fail(ModelError::Quota { endpoint, message }),
            429 => Attempt::Retry {
                error: ModelError::RateLimited {
                    endpoint,
                    message,
                    retry_after,
                    attempts: attempt,
                },
                retry_after,
            },
            500..=599 => Attempt::Retry {
                error: ModelError::Server {
                    endpoint,
                    status,
                    message,
                    attempts: attempt,
                },
                retry_after,
            },
            408 | 409 => Attempt::Retry {
                error: ModelError::Http {
                    endpoint,
                    status,
                    message,
                    attempts: attempt,
                },
                retry_after,
            },
            _ => Attempt::Fail(ModelError::Http {
                endpoint,
                status,
                message,
                attempts: attempt,
            }),
        }
    }

    /// The body, read chunk by chunk up to `max_response_bytes`: a server
    /// that never ends its body (or announces a huge one) gets a
    /// [`ModelError::TooLarge`] instead of the process's memory.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        status: u16,
        attempt: u32,
    ) -> Result<Vec<u8>, Attempt> {
        let limit = self.max_response_bytes;
        let too_large = || {
            Attempt::Fail(ModelError::TooLarge {
                endpoint: self.endpoint.clone(),
                status,
                limit,
                attempts: attempt,
            })
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err(self.transport_error(&e, attempt)),
            }
        }
    }

    fn transport_error(&self, e: &reqwest::Error, attempt: u32) -> Attempt {
        let error = if e.is_timeout() {
            ModelError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.timeout,
                attempts: attempt,
            }
        } else {
            // reqwest's message names the URL, never headers; `send`
            // scrubs it anyway.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            ModelError::Connect {
                endpoint: self.endpoint.clone(),
                message,
                attempts: attempt,
            }
        };
        Attempt::Retry {
            error,
            retry_after: None,
        }
    }

    fn parse_success(
        &self,
        parsed: Result<Value, serde_json::Error>,
        text: impl Fn() -> String,
        status: u16,
        attempt: u32,
    ) -> Result<ChatResponse, ModelError> {
        let malformed = |detail: String| ModelError::Malformed {
            endpoint: self.endpoint.clone(),
            status,
            detail,
        };
        let with_preview = |e: serde_json::Error| {
            let preview: String = text().chars().take(200).collect();
            malformed(format!("{e}; body starts with {preview:?}"))
        };
        let wire: WireResponse = parsed
            .and_then(serde_json::from_value)
            .map_err(with_preview)?;
        let choice = wire
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| malformed("`choices` is empty".into()))?;
        let content = match choice.message.content {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            // Content parts: join their text.
            Some(Value::Array(parts)) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
            ),
            Some(other) => {
                return Err(malformed(format!(
                    "`message.content` must be a string, an array or null, got {other}"
                )));
            }
        };
        let mut tool_calls = choice.message.tool_calls.unwrap_or_default();
        for (i, call) in tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{i}");
            }
            if call.name.is_empty() {
                return Err(malformed(format!(
                    "tool call {i} has an empty function name"
                )));
            }
        }
        Ok(ChatResponse {
            content,
            tool_calls,
            finish_reason: choice.finish_reason,
            usage: wire.usage,
            model: wire
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| self.model.clone()),
            id: wire.id,
            attempts: attempt,
        })
    }

    /// Every text the server could have put into the answer or the error,
    /// with the key scrubbed after decoding: the raw scrub in `attempt`
    /// cannot see a key that only decoding reveals (`\u`-escaped, split
    /// across content parts that are joined, re-serialised from an
    /// arguments object).
    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        if self.scrubber.is_empty() {
            return self.send_attempts(request).await;
        }
        match self.send_attempts(request).await {
            Ok(mut r) => {
                let s = &self.scrubber;
                for text in [&mut r.content, &mut r.finish_reason, &mut r.id]
                    .into_iter()
                    .flatten()
                {
                    s.string(text);
                }
                s.string(&mut r.model);
                for call in &mut r.tool_calls {
                    s.string(&mut call.id);
                    s.string(&mut call.name);
                    s.string(&mut call.arguments);
                }
                Ok(r)
            }
            Err(mut e) => {
                e.for_each_server_text(|t| self.scrubber.string(t));
                Err(e)
            }
        }
    }

    async fn send_attempts(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let body = serde_json::to_vec(&WireRequest {
            model: &self.model,
            messages: &request.messages,
            tools: &request.tools,
            tool_choice: request.tool_choice.as_ref(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            stream: false,
        })
        .map_err(|e| ModelError::Malformed {
            endpoint: self.endpoint.clone(),
            status: 0,
            detail: format!("could not serialise the request: {e}"),
        })?;
        let mut attempt = 1;
        loop {
            match self.attempt(&body, attempt).await {
                Attempt::Done(r) => return Ok(r),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { error, retry_after } => {
                    if attempt > self.retry.max_retries {
                        return Err(error);
                    }
                    if retry_after.is_some_and(|d| d > self.retry.max_retry_after) {
                        return Err(error);
                    }
                    tokio::time::sleep(self.retry.delay(attempt, retry_after)).await;
                    attempt += 1;
                }
            }
        }
    }
}

impl ChatModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.model
    }

    fn describe(&self) -> String {
        format!("model `{}` at {}", self.model, self.endpoint)
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(self.send(request))
    }
}

/// The useful parts of an error body, whatever its shape:
/// `{"error": {"message", "type", "param", "code"}}` with `code` a string or
/// an integer (llama.cpp), `{"error": "text"}` (Ollama), or plain text.
struct ErrorInfo {
    message: String,
    kind: Option<String>,
    code: Option<String>,
}

impl ErrorInfo {
    /// `value` is the body when it is JSON; `text` gives the body as text
    /// (scrubbed) for one that is not.
    fn parse(value: Option<Value>, text: impl Fn() -> String) -> ErrorInfo {
        let error = value.as_ref().and_then(|v| v.get("error"));
        let as_text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        match error {
            Some(Value::Object(obj)) => ErrorInfo {
                message: obj
                    .get("message")
                    .and_then(as_text)
                    .unwrap_or_else(|| Value::Object(obj.clone()).to_string()),
                kind: obj.get("type").and_then(as_text),
                code: obj.get("code").and_then(as_text),
            },
            Some(Value::String(s)) => ErrorInfo {
                message: s.clone(),
                kind: None,
                code: None,
            },
            _ => {
                let preview: String = text().chars().take(300).collect();
                ErrorInfo {
                    message: if preview.is_empty() {
                        "(empty body)".into()
                    } else {
                        preview
                    },
                    kind: None,
                    code: None,
                }
            }
        }
    }

    fn is_quota(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota")
            || self.kind.as_deref() == Some("insufficient_quota")
    }
}

/// Finding a secret in text a server sent, however it was encoded.
///
/// The text is decoded and folded by core's normaliser
/// ([`agent_audit_core::normalize`], the one redaction uses): escapes
/// undone level after level (`\\u0073`, `%2573`), invisible characters and
/// combining marks dropped, compatibility forms (full-width, mathematical,
/// enclosed letters and digits) folded to ASCII, each character remembering
/// where in the original text it came from. The secret goes through the
/// same normaliser, so a secret that itself looks like an escape (`%41`)
/// still matches its literal occurrences. Both sides are then folded to
/// lower case and compared by windows: any
/// [`WINDOW`] consecutive characters of the secret (all of it when it is
/// shorter) mark their source span, and overlapping spans merge into one
/// `[REDACTED]`. Hex and base64 forms are matched whole.
mod scrub {
    use std::borrow::Cow;
    use std::collections::HashSet;
    use std::sync::Arc;

    use agent_audit_core::normalize;

    /// Characters of a secret matched on their own: a key cut short after
    /// this many characters is still scrubbed.
    const WINDOW: usize = 16;
    /// Hex and base64 forms are looked for only for secrets this long:
    /// shorter patterns would match ordinary text.
    const MIN_ENCODED_BYTES: usize = 4;
    const MARK: &str = "[REDACTED]";

    /// A normalised character and the source bytes `[start, end)` it came
    /// from.
    type Unit = (char, usize, usize);

    struct Needle {
        windows: HashSet<Vec<char>>,
        /// The first two characters of each window: a cheap test before
        /// hashing a whole window.
        firsts: Bigrams,
        width: usize,
        /// Compared after case folding (the text forms, hex); base64 is
        /// compared exactly.
        folded: bool,
        /// Compared with the text as it is rather than decoded: a secret
        /// that looks like escapes (`%41`) has windows of its own
        /// spelling that no decoded window shows.
        undecoded: bool,
    }

    struct Inner {
        needles: Vec<Needle>,
        min_width: usize,
        /// Folded and exact characters of every needle: a character outside
        /// these and outside escape syntax ends a run worth decoding.
        chars: HashSet<char>,
        /// The ASCII part of `chars` and of escape syntax, as a bitmap.
        ascii: u128,
    }

    /// Scrubs a set of secrets. Cheap to clone; no `Debug` that could print
    /// what it holds.
    #[derive(Clone, Default)]
    pub(super) struct Scrubber {
        inner: Option<Arc<Inner>>,
    }

    impl std::fmt::Debug for Scrubber {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Scrubber(***)")
        }
    }

    impl Scrubber {
        /// A scrubber for `secrets` (empty ones are ignored).
        pub(super) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Scrubber {
            let mut needles = Vec::new();
            for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
                let raw: Vec<char> = folded_units(secret).iter().map(|u| lower(u.0)).collect();
                let normal: Vec<char> = decoded_units(secret).iter().map(|u| lower(u.0)).collect();
                needles.extend(text_needle(normal.clone(), false));
                if raw != normal {
                    needles.extend(text_needle(raw, true));
                }
                if secret.len() >= MIN_ENCODED_BYTES {
                    let hex: Vec<char> = secret
                        .bytes()
                        .flat_map(|b| {
                            let h = format!("{b:02x}");
                            h.chars().collect::<Vec<_>>()
                        })
                        .collect();
                    needles.push(whole_needle(hex, true));
                    for pattern in base64_patterns(secret.as_bytes()) {
                        needles.push(whole_needle(pattern, false));
                    }
                }
            }
            if needles.is_empty() {
                return Scrubber::default();
            }
            let min_width = needles.iter().map(|n| n.width).min().unwrap_or(1);
            let chars = needles
                .iter()
                .flat_map(|n| n.windows.iter().flatten().copied())
                .collect();
            let mut inner = Inner {
                needles,
                min_width,
                chars,
                ascii: 0,
            };
            for c in (0u8..128).map(char::from) {
                if inner.may_belong_slow(c) {
                    inner.ascii |= 1 << c as u32;
                }
            }
            Scrubber {
                inner: Some(Arc::new(inner)),
            }
        }

        /// No secret to scrub.
        pub(super) fn is_empty(&self) -> bool {
            self.inner.is_none()
        }

        /// `text` with every occurrence of a secret replaced by `[REDACTED]`.
        pub(super) fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
            let Some(inner) = &self.inner else {
                return Cow::Borrowed(text);
            };
            let mut spans = Vec::new();
            let mut run_start: Option<(usize, usize)> = None; // (byte, chars)
            for (i, c) in text
                .char_indices()
                .chain(std::iter::once((text.len(), ' ')))
            {
                let inside = i < text.len() && inner.may_belong(c);
                match (inside, &mut run_start) {
                    (true, Some((_, n))) => *n += 1,
                    (true, None) => run_start = Some((i, 1)),
                    (false, Some((start, n))) => {
                        if *n >= inner.min_width {
                            inner.find(text, *start, i, &mut spans);
                        }
                        run_start = None;
                    }
                    (false, None) => {}
                }
            }
            if spans.is_empty() {
                return Cow::Borrowed(text);
            }
            spans.sort_unstable();
            let mut out = String::with_capacity(text.len());
            let mut at = 0;
            let mut pending: Option<(usize, usize)> = None;
            for (s, e) in spans {
                match &mut pending {
                    Some((_, pe)) if s <= *pe => *pe = (*pe).max(e),
                    _ => {
                        if let Some((ps, pe)) = pending.take() {
                            out.push_str(&text[at..ps]);
                            out.push_str(MARK);
                            at = pe;
                        }
                        pending = Some((s, e));
                    }
                }
            }
            if let Some((ps, pe)) = pending {
                out.push_str(&text[at..ps]);
                out.push_str(MARK);
                at = pe;
            }
            out.push_str(&text[at..]);
            Cow::Owned(out)
        }

        /// Scrubs `s` in place.
        pub(super) fn string(&self, s: &mut String) {
            if let Cow::Owned(clean) = self.text(s) {
                *s = clean;
            }
        }

        /// Scrubs every string and every object key inside `value`.
        pub(super) fn value(&self, value: &mut serde_json::Value) {
            use serde_json::Value;
            if self.is_empty() {
                return;
            }
            match value {
                Value::String(s) => self.string(s),
                Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
                Value::Object(map) => {
                    let old = std::mem::take(map);
                    for (mut k, mut v) in old {
                        self.string(&mut k);
                        self.value(&mut v);
                        map.insert(k, v);
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }

    impl Inner {
        fn may_belong(&self, c: char) -> bool {
            if c.is_ascii() {
                return self.ascii & (1 << c as u32) != 0;
            }
            self.may_belong_slow(c)
        }

        fn may_belong_slow(&self, c: char) -> bool {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '\\' | '%' | '&' | '#' | ';' | '{' | '}' | '"' | '\'' | '/'
                )
                || self.chars.contains(&c)
                || match normalize::fold(c) {
                    normalize::Fold::Remove => true,
                    normalize::Fold::Same => self.chars.contains(&lower(c)),
                    normalize::Fold::Char(d) => self.chars.contains(&lower(d)),
                    normalize::Fold::To(s) => s.chars().any(|d| self.chars.contains(&lower(d))),
                }
        }

        /// Adds the byte spans of `text[start..end]` that hold a secret.
        fn find(&self, text: &str, start: usize, end: usize, spans: &mut Vec<(usize, usize)>) {
            let shift = |units: Vec<Unit>| -> Vec<Unit> {
                units
                    .into_iter()
                    .map(|(c, s, e)| (c, start + s, start + e))
                    .collect()
            };
            let decoded = shift(decoded_units(&text[start..end]));
            let source = shift(folded_units(&text[start..end]));
            let exact: Vec<char> = decoded.iter().map(|u| u.0).collect();
            let folded: Vec<char> = exact.iter().map(|&c| lower(c)).collect();
            let source_folded: Vec<char> = source.iter().map(|u| lower(u.0)).collect();
            for needle in &self.needles {
                let (units, chars) = match (needle.undecoded, needle.folded) {
                    (true, _) => (&source, &source_folded),
                    (false, true) => (&decoded, &folded),
                    (false, false) => (&decoded, &exact),
                };
                if chars.len() < needle.width {
                    continue;
                }
                for p in 0..=chars.len() - needle.width {
                    let second = chars.get(p + 1).copied().filter(|_| needle.width > 1);
                    if needle.firsts.contains(chars[p], second)
                        && needle.windows.contains(&chars[p..p + needle.width])
                    {
                        {
                            // Invisible characters and marks right after the
                            // key belong to it: a mark is drawn on its last
                            // character.
                            let mut e = units[p + needle.width - 1].2;
                            while let Some(c) = text[e..end].chars().next()
                                && normalize::is_removed(c)
                            {
                                e += c.len_utf8();
                            }
                            spans.push((units[p].1, e));
                        }
                    }
                }
            }
        }
    }

    fn text_needle(chars: Vec<char>, undecoded: bool) -> Option<Needle> {
        if chars.is_empty() {
            return None;
        }
        let width = chars.len().min(WINDOW);
        let windows: HashSet<Vec<char>> = chars.windows(width).map(<[char]>::to_vec).collect();
        Some(Needle {
            firsts: Bigrams::of(windows.iter().map(Vec::as_slice)),
            windows,
            width,
            folded: true,
            undecoded,
        })
    }

    /// A bitmap of (low byte of the first, low byte of the second
    /// character) pairs; a hit may be false and is checked in full.
    struct Bigrams(Box<[u64; 1024]>);

    impl Bigrams {
        fn index(a: char, b: Option<char>) -> usize {
            ((a as usize & 0xff) << 8) | b.map_or(0, |b| b as usize & 0xff)
        }

        fn of<'a>(windows: impl IntoIterator<Item = &'a [char]>) -> Bigrams {
            let mut bits = Box::new([0u64; 1024]);
            for w in windows {
                if let Some(&a) = w.first() {
                    let i = Bigrams::index(a, w.get(1).copied());
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            Bigrams(bits)
        }

        fn contains(&self, a: char, b: Option<char>) -> bool {
            let i = Bigrams::index(a, b);
            self.0[i / 64] & (1 << (i % 64)) != 0
        }
    }

    fn whole_needle(chars: Vec<char>, folded: bool) -> Needle {
        Needle {
            firsts: Bigrams::of([chars.as_slice()]),
            width: chars.len(),
            windows: HashSet::from([chars]),
            folded,
            undecoded: false,
        }
    }

    /// The base64 characters that depend only on `secret`, for each of the
    /// three offsets it can start at inside encoded text, in the standard
    /// and the URL-safe alphabet.
    fn base64_patterns(secret: &[u8]) -> Vec<Vec<char>> {
        const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bits = secret.len() * 8;
        let mut out = Vec::new();
        for offset in 0..3usize {
            let mut buf = vec![0u8; offset];
            buf.extend_from_slice(secret);
            buf.extend_from_slice(&[0, 0]);
            // Character i covers bits 6i..6i+6 of the stream; keep those
            // that lie inside the secret's bits 8*offset..8*offset+bits.
            let first = (8 * offset).div_ceil(6);
            let last = (8 * offset + bits) / 6; // exclusive
            let pattern: Vec<char> = (first..last)
                .map(|i| {
                    let bit = 6 * i;
                    let (byte, shift) = (bit / 8, bit % 8);
                    let two = (u16::from(buf[byte]) << 8) | u16::from(buf[byte + 1]);
                    STD[usize::from((two >> (10 - shift)) & 63)] as char
                })
                .collect();
            if pattern.len() >= MIN_ENCODED_BYTES {
                let url: Vec<char> = pattern
                    .iter()
                    .map(|&c| match c {
                        '+' => '-',
                        '/' => '_',
                        c => c,
                    })
                    .collect();
                if url != pattern {
                    out.push(url);
                }
                out.push(pattern);
            }
        }
        out
    }

    /// `text` decoded and folded, character by character.
    fn decoded_units(text: &str) -> Vec<Unit> {
        match normalize::view(text) {
            Some(v) => v.chars().collect(),
            None => plain_units(text),
        }
    }

    /// `text` folded without decoding: how a secret that looks like
    /// escapes is spelt literally.
    fn folded_units(text: &str) -> Vec<Unit> {
        match normalize::fold_view(text) {
            Some(v) => v.chars().collect(),
            None => plain_units(text),
        }
    }

    fn plain_units(text: &str) -> Vec<Unit> {
        text.char_indices()
            .map(|(i, c)| (c, i, i + c.len_utf8()))
            .collect()
    }

    /// Lower case, when it is one character.
    fn lower(c: char) -> char {
        if c.is_ascii() {
            return c.to_ascii_lowercase();
        }
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) => l,
            _ => c,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn s(secret: &str, text: &str) -> String {
            Scrubber::new([secret]).text(text).into_owned()
        }

        #[test]
        fn every_encoding_of_the_key_is_scrubbed() {
            let key = "sk-Ab1\"/\\xyz-0123456789";
            let u: String = key.encode_utf16().map(|c| format!("\\u{c:04X}")).collect();
            let pct: String = key.bytes().map(|b| format!("%{b:02x}")).collect();
            let pct2: String = key.bytes().map(|b| format!("%25{b:02x}")).collect();
            let refs: String = key.chars().map(|c| format!("&#{};", c as u32)).collect();
            let zw: String = key.chars().flat_map(|c| [c, '\u{200b}']).collect();
            let wide: String = key
                .chars()
                .map(|c| match c {
                    '!'..='~' => char::from_u32(c as u32 + 0xfee0).unwrap(),
                    c => c,
                })
                .collect();
            let json = serde_json::to_string(key).unwrap();
            let twice = serde_json::to_string(&json[1..json.len() - 1]).unwrap();
            for form in [
                key.to_string(),
                key.to_uppercase(),
                u.clone(),
                u.replace('\\', "\\\\"),
                pct,
                pct2,
                refs,
                zw,
                wide,
                json[1..json.len() - 1].to_string(),
                twice[1..twice.len() - 1].to_string(),
                key[..16].to_string(),
            ] {
                let out = s(key, &format!("before {form} after"));
                assert_eq!(out, "before [REDACTED] after", "{form:?}");
            }
        }

        #[test]
        fn base64_and_hex_at_any_offset() {
            let key = "k3y-5ecret-v4lue";
            let b64 = |t: &str| {
                const A: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                let mut o = String::new();
                for ch in t.as_bytes().chunks(3) {
                    let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
                    let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                    for i in 0..=ch.len() {
                        o.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
                    }
                }
                o
            };
            for prefix in ["Bearer ", "user:", "", "x"] {
                let text = b64(&format!("{prefix}{key}"));
                let out = s(key, &format!("auth {text} end"));
                assert!(out.contains("[REDACTED]"), "{prefix:?}: {out}");
                assert!(!out.contains(&text), "{out}");
            }
            let hex: String = key.bytes().map(|b| format!("{b:02X}")).collect();
            assert_eq!(s(key, &hex), "[REDACTED]");
        }

        #[test]
        fn ordinary_text_is_left_alone_and_short_keys_still_match() {
            let key = "sk-0123456789abcdef0123";
            let text = "The balance of account 12345 is 1,024.50 EUR. \\n %41 &amp;";
            assert!(matches!(Scrubber::new([key]).text(text), Cow::Borrowed(_)));
            assert_eq!(
                s("q7Zk", "a Q7ZK b q7\\u005ak"),
                "a [REDACTED] b [REDACTED]"
            );
            assert_eq!(s("", "anything"), "anything");
            // A key that looks like an escape still matches itself.
            assert_eq!(s("ab%41\\ncd", "x ab%41\\ncd y"), "x [REDACTED] y");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = p.delay(2, None);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(150) && d9 <= Duration::from_millis(300));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }

    fn parse_text(text: &str) -> ErrorInfo {
        ErrorInfo::parse(serde_json::from_str(text).ok(), || text.to_string())
    }

    #[test]
    fn error_bodies() {
        let e = parse_text(r#"{"error":{"message":"m","type":"t","param":null,"code":500}}"#);
        assert_eq!((e.message.as_str(), e.code.as_deref()), ("m", Some("500")));
        let e = parse_text(
            r#"{"error":{"message":"q","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert!(e.is_quota());
        assert_eq!(
            parse_text(r#"{"error":"model not found"}"#).message,
            "model not found"
        );
        assert_eq!(parse_text("Bad Gateway").message, "Bad Gateway");
    }

    #[test]
    fn debug_hides_key() {
        let c = OpenAiClient::builder("http://127.0.0.1:1/v1", "m")
            .api_key(ApiKey::new("sk-secret-123"))
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("sk-secret-123"));
    }
}
