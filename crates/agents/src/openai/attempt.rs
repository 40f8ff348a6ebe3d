//! One call to the server and the loop around it: an attempt sends the
//! request, reads the body up to the limit, scrubs the key from what came
//! back and sorts the answer into done, retry or fail; `send` retries with
//! the policy's backoff and scrubs once more what it returns.

use std::time::{Duration, SystemTime};

use agent_audit_core::retry;
use serde_json::Value;

use super::OpenAiClient;
use super::wire::{ErrorInfo, WireRequest, WireResponse};
use crate::model::{ChatRequest, ChatResponse, ModelError};

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
    pub(super) async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
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
