//! # agent-audit-redact
//!
//! Redaction for agent-audit, applied once in the dispatcher before fan-out
//! so that no sink ever sees the original: the [`Redactor`] built from the
//! `[redaction]` section ([`RedactionConfig`]) implements core's
//! [`PayloadFilter`](agent_audit_core::PayloadFilter). The `Auditor` runs it
//! on every payload and adds `_redacted`, the names of the rules that fired
//! (never the values), to the payload.
//!
//! - **Field names**, at any depth, matched by their parts (tokens split at
//!   `_ - .`, spaces and camelCase, canonical spellings: `pwd` is
//!   `password`, `access_tokens` holds `token`), decoded and folded like
//!   values: by default the 41 built-in secret names of
//!   [`DEFAULT_FIELDS`], which leave LLM usage counters (`max_tokens`,
//!   `prompt_tokens`) and names ending in a describing word
//!   (`token_type`, `password_length`) alone.
//! - **Strings that hold JSON text** (tool arguments and results in a
//!   message history) are parsed, redacted and written back; secret-named
//!   assignments in text (`password=…`, `"client_secret": "…"`) have their
//!   value masked.
//! - **A normalised view** of every string is scanned too: percent- and
//!   entity-encoding decoded, Unicode look-alikes folded; a match there
//!   redacts the original text it came from.
//! - **Record ids**: [`Redactor::redact_id`] applies the rules to a
//!   `request_id` or `correlation_id`.
//! - **Detectors** in string values, numbers and object keys: `email`,
//!   `payment_card` (Luhn; space, dash, dot, slash or underscore
//!   separators), `api_key` (`sk-…`, `AKIA…`, `ghp_…`, `xox?-…`,
//!   JWTs, PEM private keys…), `bearer_token`, `iban` (mod 97). By default
//!   `api_key` and `bearer_token` are on; the personal-data detectors are
//!   opt-in.
//! - **Custom rules**: a regex (`pattern`) or field names (`fields`).
//! - **Actions**: `mask` (`[REDACTED:<rule>]`), `hash` (`hmac:<16 hex>`,
//!   HMAC-SHA256 under a key from the environment: a stable pseudonym),
//!   `drop` (the field is removed; a match inside a string removes that
//!   whole value: object member removed, array element set to `null`).
//!
//! It never fails open: a bad regex or a missing key is an error at start
//! ([`RedactError`]), and a value it cannot scan (nested deeper than
//! [`MAX_DEPTH`]) is masked whole and reported as [`UNSCANNABLE`].
//!
//! What the defaults catch, measured on a corpus, and what is out of
//! reach (a secret split across fields, base64): `docs/redaction.md`.
//!
//! It lives beside `agent-audit-core`, not inside it, so that core stays
//! small and free of `regex` and HMAC (see
//! `docs/decisions/0002-redaction-crate.md`).
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, MemorySink, SinkOptions};
//! use agent_audit_redact::{RedactionConfig, Redactor};
//!
//! // Usually `[redaction]` from audit.toml; absent section = defaults.
//! let config: RedactionConfig = toml::from_str(r#"
//!     detectors = ["email", "api_key", "bearer_token"]
//! "#)?;
//! let redactor = Redactor::from_config(&config)?;
//! let memory = MemorySink::new();
//! let dispatcher = Dispatcher::builder()
//!     .sink(SinkOptions::new("memory"), memory.clone())
//!     .filter(Arc::new(redactor))
//!     .start()
//!     .await?;
//! let auditor = Auditor::new(dispatcher.clone()).with_agent("assistant");
//! let payload = serde_json::json!({
//!     "tool": "send_mail",
//!     "arguments": {"to": "alice@example.com", "api_key": "sk-live-0123456789abcdefghij"},
//! });
//! auditor.emit_wait(EventType::ToolCall, &payload, AckLevel::Durable).await?;
//! dispatcher.shutdown(Duration::from_secs(5)).await;
//! let stored = memory.records()[0].payload_value();
//! assert_eq!(stored["arguments"]["to"], "[REDACTED:email]");
//! assert_eq!(stored["arguments"]["api_key"], "[REDACTED:api_key]");
//! assert_eq!(stored["_redacted"], serde_json::json!(["api_key", "email"]));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Feature flags
//!
//! None.

mod config;
mod detect;
mod error;
mod names;
mod normalize;
mod redactor;

pub use config::{
    Action, DEFAULT_DETECTORS, DEFAULT_FIELDS, DEFAULT_KEY_ENV, Detector, RedactionConfig,
    RuleConfig,
};
pub use error::RedactError;
pub use redactor::{IdOutcome, MAX_DEPTH, MIN_KEY_BYTES, Redactor, UNSCANNABLE};
