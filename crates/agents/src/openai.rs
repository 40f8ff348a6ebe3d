//! The OpenAI-compatible Chat Completions client (OpenAI, Ollama's `/v1`,
//! vLLM, llama.cpp's `llama-server`, any proxy speaking the same format).

use std::time::{Duration, SystemTime};

use rand::Rng;
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
        if let Some(after) = retry_after {
            return after;
        }
        let exp = self.initial_backoff.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let ceiling = exp.min(self.max_backoff);
        let half = ceiling / 2;
        let jitter_nanos =
            rand::thread_rng().gen_range(0..=half.as_nanos().min(u64::MAX as u128) as u64);
        half + Duration::from_nanos(jitter_nanos)
    }
}

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
}

/// Builder of an [`OpenAiClient`].
#[derive(Debug, Clone)]
pub struct OpenAiClientBuilder {
    base_url: String,
    model: String,
    api_key: Option<ApiKey>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl OpenAiClientBuilder {
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
        Ok(OpenAiClient {
            endpoint: format!("{base}/chat/completions"),
            model: self.model,
            api_key: self.api_key,
            timeout: self.timeout,
            retry: self.retry,
            http,
        })
    }
}

/// A Chat Completions client over reqwest (rustls), with retries.
///
/// Retried: 408, 409, 429 (except `insufficient_quota`), 5xx, connection
/// errors and timeouts, with exponential backoff and jitter, honouring
/// `Retry-After` (seconds or HTTP date) up to [`RetryPolicy::max_retry_after`].
/// The API key is scrubbed from every response byte before it is parsed, so
/// a server echoing it cannot leak it into an error, a log or a record.
#[derive(Clone)]
pub struct OpenAiClient {
    endpoint: String,
    model: String,
    api_key: Option<ApiKey>,
    timeout: Duration,
    retry: RetryPolicy,
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
        }
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn scrub(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "[REDACTED]"),
            _ => text.to_string(),
        }
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
            .and_then(parse_retry_after);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport_error(&e, attempt),
        };
        let text = self.scrub(&String::from_utf8_lossy(&bytes));
        if (200..300).contains(&status) {
            return match self.parse_success(&text, status, attempt) {
                Ok(r) => Attempt::Done(r),
                Err(e) => Attempt::Fail(e),
            };
        }
        let info = ErrorInfo::parse(&text);
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

    fn transport_error(&self, e: &reqwest::Error, attempt: u32) -> Attempt {
        let error = if e.is_timeout() {
            ModelError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.timeout,
                attempts: attempt,
            }
        } else {
            // reqwest's message names the URL, never headers; scrub anyway.
            let mut message = self.scrub(&e.to_string());
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&self.scrub(&s.to_string()));
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
        text: &str,
        status: u16,
        attempt: u32,
    ) -> Result<ChatResponse, ModelError> {
        let malformed = |detail: String| ModelError::Malformed {
            endpoint: self.endpoint.clone(),
            status,
            detail,
        };
        let wire: WireResponse = serde_json::from_str(text).map_err(|e| {
            let preview: String = text.chars().take(200).collect();
            malformed(format!("{e}; body starts with {preview:?}"))
        })?;
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

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
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

/// `Retry-After`: delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
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
    fn parse(text: &str) -> ErrorInfo {
        let value: Option<Value> = serde_json::from_str(text).ok();
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
                let preview: String = text.chars().take(300).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        let future = SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

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

    #[test]
    fn error_bodies() {
        let e = ErrorInfo::parse(r#"{"error":{"message":"m","type":"t","param":null,"code":500}}"#);
        assert_eq!((e.message.as_str(), e.code.as_deref()), ("m", Some("500")));
        let e = ErrorInfo::parse(
            r#"{"error":{"message":"q","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert!(e.is_quota());
        assert_eq!(
            ErrorInfo::parse(r#"{"error":"model not found"}"#).message,
            "model not found"
        );
        assert_eq!(ErrorInfo::parse("Bad Gateway").message, "Bad Gateway");
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
