//! # agent-audit-review
//!
//! Reading an audit trail back the way an incident reviewer needs it: the
//! records of one or several JSONL logs (each with its rotated files, in
//! chain order) with the file and line of each, filters that combine, the
//! figures of a trail ([`Stats`]: records by type, agent and tool, model
//! latency percentiles and tokens per model, tool error rates and
//! durations, seq gaps and errors), one request as a tree of agent turns,
//! model calls and tool calls rebuilt from span ids ([`Timeline`]), a
//! self-contained HTML report of that request ([`html`]), and following a
//! live log across rotation ([`follow`]). The `agent-audit` CLI's `show`,
//! `tail`, `stats`, `timeline` and `report` commands are thin layers over
//! this crate.
//!
//! Records are shown as they are stored: nothing here changes a value, so
//! what redaction replaced stays replaced.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use agent_audit::agents::{ModelConfig, build_model, tutorial};
//! use agent_audit::jsonl::{JsonlOptions, JsonlSink};
//! use agent_audit::{Auditor, Dispatcher, SinkOptions};
//! use agent_audit_review::{Filter, SourceOptions, StatsBuilder, Source, Timeline, html, load};
//!
//! // A trail written by the real runtime (offline model, JSONL sink).
//! # let dir = tempfile::tempdir()?;
//! let path = dir.path().join("audit-log.jsonl");
//! let dispatcher = Dispatcher::builder()
//!     .sink(SinkOptions::new("jsonl"), JsonlSink::new(JsonlOptions::new(&path))?)
//!     .start()
//!     .await?;
//! let auditor = Auditor::new(dispatcher.clone()).for_request(Some("req-1"));
//! tutorial::run(&auditor, build_model(&ModelConfig::default())?, "What is the balance of account 12345?").await?;
//! dispatcher.shutdown(Duration::from_secs(5)).await;
//!
//! // Filter: the tool's records of that request.
//! let filter = Filter::new().request_id("req-1").event_type("tool_call").event_type("tool_result");
//! let tools = load(&[&path], SourceOptions::default(), |r| filter.matches(r))?;
//! assert_eq!(tools.entries.len(), 2);
//!
//! // Stats, in one streaming pass.
//! let mut stats = StatsBuilder::new();
//! for item in Source::open(&[&path], SourceOptions::default())? {
//!     match item {
//!         Ok(entry) => stats.add(&entry),
//!         Err(bad_line) => stats.add_unreadable(&bad_line),
//!     }
//! }
//! let stats = stats.finish();
//! assert_eq!(stats.records, 8);
//! assert_eq!(stats.tools["get_account_balance"].calls, 1);
//! assert_eq!(stats.models["offline"].calls, 2);
//!
//! // The request as a tree, and as an HTML page.
//! let all = load(&[&path], SourceOptions::default(), |r| r.request_id.as_deref() == Some("req-1"))?;
//! let timeline = Timeline::build("req-1", &all.entries)?;
//! print!("{}", timeline.render_text());
//! let page = html::render(&timeline, &all.entries);
//! html::write_report(&dir.path().join("req-1.html"), &page)?;
//! # Ok(()) }
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Feature flags
//!
//! - `progress`: `progress::Progress`, an indicatif bar on stderr shown
//!   only on a terminal and only once work has taken a second.

mod error;
pub mod filter;
pub mod follow;
pub mod html;
#[cfg(feature = "progress")]
pub mod progress;
pub mod source;
pub mod stats;
pub mod text;
pub mod timeline;
pub mod users;

pub use error::ReviewError;

/// The Rust examples of the documentation, compiled and run as doc tests
/// so that a documented example cannot silently stop working.
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../../../docs/integrating.md")]
    pub struct Integrating;
    #[doc = include_str!("../../../docs/architecture.md")]
    pub struct Architecture;
    #[doc = include_str!("../../../docs/schema.md")]
    pub struct Schema;
    #[doc = include_str!("../../../docs/configuration.md")]
    pub struct Configuration;
    #[doc = include_str!("../../../docs/operations.md")]
    pub struct Operations;
    #[doc = include_str!("../../../docs/integrity.md")]
    pub struct Integrity;
    #[doc = include_str!("../../../README.md")]
    pub struct Readme;
}
pub use filter::{Filter, parse_time};
pub use follow::{FollowEvent, Follower, StartAt};
pub use source::{Entry, Loaded, Source, SourceFile, SourceOptions, load};
pub use stats::{Stats, StatsBuilder};
pub use timeline::{Row, SpanNode, Step, StepKind, Timeline};
