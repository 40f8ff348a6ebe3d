//! The hook through which redaction runs once, before fan-out.

/// Rewrites a payload before any sink sees it.
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
}
