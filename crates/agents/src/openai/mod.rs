//! The OpenAI-compatible Chat Completions client (OpenAI, Ollama's `/v1`,
//! vLLM, llama.cpp's `llama-server`, any proxy speaking the same format):
//! the client, its builder and policies here; the wire format in `wire`,
//! one attempt and the retry loop in `attempt`, the key scrubber in
//! `scrub`.

mod attempt;
mod scrub;
mod wire;

use std::time::Duration;

use agent_audit_core::retry;

use self::scrub::Scrubber;
use crate::model::{BoxFuture, ChatModel, ChatRequest, ChatResponse, ModelError};

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
#[non_exhaustive]
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
}

impl ChatModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.model
    }

    /// `openai` for any Chat Completions server: the conventions name the
    /// API's flavour this way when the client cannot tell who hosts it.
    fn provider(&self) -> Option<&str> {
        Some("openai")
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

    #[test]
    fn debug_hides_key() {
        let c = OpenAiClient::builder("http://127.0.0.1:1/v1", "m")
            .api_key(ApiKey::new("sk-secret-123"))
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("sk-secret-123"));
    }
}
