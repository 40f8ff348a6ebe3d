//! The hook through which redaction runs once, before fan-out.

/// Rewrites a payload, and the ids a scope carries, before any sink sees
/// them.
///
/// Only [`PayloadFilter::apply`] is required. [`PayloadFilter::may_apply`]
/// is a speed hint, and [`PayloadFilter::apply_id`] keeps ids as they are
/// unless a filter overrides it.
pub trait PayloadFilter: Send + Sync + 'static {
    /// Rewrites `payload` in place and returns the names of the rules that
    /// fired (never the values they matched).
    fn apply(&self, payload: &mut serde_json::Value) -> Vec<String>;

    /// Whether [`PayloadFilter::apply`] could change the payload whose
    /// compact JSON text (as `serde_json` writes it) is `payload_json`.
    /// Returning `false` lets the emitter keep that text and skip the
    /// `serde_json::Value` round trip, which costs more than most filters;
    /// it must never be `false` when `apply` would fire. The default is
    /// `true`: always apply.
    fn may_apply(&self, payload_json: &str) -> bool {
        let _ = payload_json;
        true
    }

    /// Rewrites one of a record's ids, `field` naming it (`request_id`,
    /// `correlation_id`). The `Auditor` calls it once, when the id enters
    /// its scope, so the cost is per request, not per record: an
    /// application that builds ids from user data (an e-mail address as
    /// the correlation id) gets them redacted like payload values.
    fn apply_id(&self, field: &str, id: &str) -> IdRewrite {
        let _ = (field, id);
        IdRewrite::Keep
    }
}

/// What [`PayloadFilter::apply_id`] decided for an id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdRewrite {
    /// Keep the id as given.
    Keep,
    /// Record this id instead (a mask or a pseudonym).
    Replace(String),
    /// The id must not be recorded: the `Auditor` uses a fresh random id
    /// instead, so the request's records still join each other.
    Drop,
}
