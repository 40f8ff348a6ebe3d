//! Errors found while building a [`crate::Redactor`]: each is a
//! configuration error at start, so redaction never runs half-configured.

/// Why a [`crate::RedactionConfig`] could not become a [`crate::Redactor`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedactError {
    /// A rule's `pattern` is not a valid regex (or too large).
    #[error("redaction rule `{rule}`: invalid pattern: {source}")]
    BadPattern {
        /// Rule name.
        rule: String,
        /// What the regex parser said.
        #[source]
        source: Box<regex::Error>,
    },
    /// A rule has neither or both of `pattern` and `fields`, or an empty
    /// `fields` list.
    #[error("redaction rule `{rule}`: {problem}")]
    RuleShape {
        /// Rule name.
        rule: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A rule name is empty, uses characters other than letters, digits,
    /// `_`, `-` and `.`, or is used twice (detector names included).
    #[error("redaction rule name `{rule}`: {problem}")]
    BadName {
        /// The name as given.
        rule: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A field name has no letter or digit.
    #[error("redaction field name `{field}` has no letter or digit")]
    BadField {
        /// The name as given.
        field: String,
    },
    /// Some rule uses `hash` but the key variable is unset or empty.
    #[error(
        "redaction: rules {rules:?} use action \"hash\" but environment variable {var} is not set (set it to a secret of at least 16 bytes, or change key_env)"
    )]
    MissingKey {
        /// The variable (`key_env`).
        var: String,
        /// The rules that hash.
        rules: Vec<String>,
    },
    /// The key is too short to keep pseudonyms from being brute-forced.
    #[error(
        "redaction: the key in environment variable {var} has {len} bytes; at least {min} are required"
    )]
    KeyTooShort {
        /// The variable (`key_env`).
        var: String,
        /// Its length in bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
}
