//! Which records to keep: every condition set must hold.
//!
//! ```
//! use agent_audit_review::Filter;
//!
//! let filter = Filter::new()
//!     .request_id("req-1")
//!     .event_type("tool_call")
//!     .event_type("tool_result") // either type
//!     .agent("user_proxy")
//!     .user_id("u-42")
//!     .attribute("purpose", "support")
//!     .since("2026-11-25T23:00:00Z").unwrap()
//!     .until("2026-11-26T00:00:00+01:00").unwrap(); // offsets are converted to UTC
//! assert!(!filter.is_empty());
//! assert!(Filter::new().since("yesterday").is_err());
//! ```

use agent_audit_core::{StoredRecord, Timestamp};

use crate::error::ReviewError;

/// A conjunction of conditions on records. An empty filter keeps every
/// record; a condition with several values (two event types, two agents)
/// keeps a record matching any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only records of this request.
    pub request_id: Option<String>,
    /// Only records of this conversation.
    pub correlation_id: Option<String>,
    /// Only records of these event types.
    pub event_types: Vec<String>,
    /// Only records of these agents.
    pub agents: Vec<String>,
    /// Only records of this end user (`user_id`).
    pub user_id: Option<String>,
    /// Only records of this session (`session_id`).
    pub session_id: Option<String>,
    /// Only records carrying each of these attributes with this value (a
    /// number or boolean attribute matches its JSON text: `3`, `true`).
    pub attributes: Vec<(String, String)>,
    /// Only records at or after this time (inclusive).
    pub since: Option<Timestamp>,
    /// Only records at or before this time (inclusive).
    pub until: Option<Timestamp>,
}

/// Parses an RFC 3339 time given to `--since` or `--until`.
pub fn parse_time(flag: &'static str, value: &str) -> Result<Timestamp, ReviewError> {
    Timestamp::parse(value.trim()).ok_or_else(|| ReviewError::BadTime {
        flag,
        value: value.to_string(),
    })
}

impl Filter {
    /// A filter that keeps everything.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Keeps only records of `id`.
    pub fn request_id(mut self, id: impl Into<String>) -> Filter {
        self.request_id = Some(id.into());
        self
    }

    /// Keeps only records of the conversation `id`.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Filter {
        self.correlation_id = Some(id.into());
        self
    }

    /// Adds an event type to keep.
    pub fn event_type(mut self, name: impl Into<String>) -> Filter {
        self.event_types.push(name.into());
        self
    }

    /// Keeps only records of the end user `id`.
    pub fn user_id(mut self, id: impl Into<String>) -> Filter {
        self.user_id = Some(id.into());
        self
    }

    /// Keeps only records of the session `id`.
    pub fn session_id(mut self, id: impl Into<String>) -> Filter {
        self.session_id = Some(id.into());
        self
    }

    /// Keeps only records whose attribute `key` is `value`; several must
    /// all hold.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Filter {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// Adds an agent to keep.
    pub fn agent(mut self, name: impl Into<String>) -> Filter {
        self.agents.push(name.into());
        self
    }

    /// Keeps records at or after an RFC 3339 time.
    pub fn since(mut self, time: &str) -> Result<Filter, ReviewError> {
        self.since = Some(parse_time("since", time)?);
        self.check_range()?;
        Ok(self)
    }

    /// Keeps records at or before an RFC 3339 time.
    pub fn until(mut self, time: &str) -> Result<Filter, ReviewError> {
        self.until = Some(parse_time("until", time)?);
        self.check_range()?;
        Ok(self)
    }

    fn check_range(&self) -> Result<(), ReviewError> {
        match (&self.since, &self.until) {
            (Some(s), Some(u)) if s > u => Err(ReviewError::EmptyRange {
                since: s.as_str().to_string(),
                until: u.as_str().to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `record` satisfies every condition. A record whose `ts` does
    /// not parse fails any time condition.
    pub fn matches(&self, record: &StoredRecord) -> bool {
        if let Some(id) = &self.request_id
            && record.request_id.as_deref() != Some(id.as_str())
        {
            return false;
        }
        if let Some(id) = &self.correlation_id
            && record.correlation_id.as_deref() != Some(id.as_str())
        {
            return false;
        }
        for (want, got) in [
            (&self.user_id, &record.user_id),
            (&self.session_id, &record.session_id),
        ] {
            if let Some(id) = want
                && got.as_deref() != Some(id.as_str())
            {
                return false;
            }
        }
        for (key, value) in &self.attributes {
            let holds = match record.attributes.get(key) {
                Some(serde_json::Value::String(s)) => s == value,
                Some(other) => {
                    serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| v == *other)
                }
                None => false,
            };
            if !holds {
                return false;
            }
        }
        if !self.event_types.is_empty()
            && !self
                .event_types
                .iter()
                .any(|t| t == record.event_type.as_str())
        {
            return false;
        }
        if !self.agents.is_empty()
            && !record
                .agent
                .as_deref()
                .is_some_and(|a| self.agents.iter().any(|x| x == a))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(ts) = record.timestamp() else {
                return false;
            };
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts > u) {
                return false;
            }
        }
        true
    }
}
