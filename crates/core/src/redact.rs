//! The hook through which redaction runs once, before fan-out.

/// Rewrites a payload before any sink sees it.
pub trait PayloadFilter: Send + Sync + 'static {
    /// Rewrites `payload` in place and returns the names of the rules that
    /// fired (never the values they matched).
    fn apply(&self, payload: &mut serde_json::Value) -> Vec<String>;
}
