//! Where the reading side finds a log: a path means the JSONL files; a
//! URL whose scheme is registered here means a log kept elsewhere, read
//! as the same lines ([`LineStore`]) through the same reader and
//! integrity code. The built-in schemes are the SQL sink's (`sqlite:`,
//! `postgres://`, `postgresql://`, with the `sql` feature); a team's binary
//! registers its own the way it registers a sink type.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::io::{BufRead, Cursor};
//! use std::sync::Arc;
//! use agent_audit::jsonl::verify::{VerifyOptions, verify_store};
//! use agent_audit::sources::{LineStore, SourceRegistry};
//!
//! let registry = SourceRegistry::with_builtins();
//! // A path is not a URL of any registered scheme.
//! assert!(registry.resolve("audit-log.jsonl").is_none());
//! # #[cfg(feature = "sql")] {
//! let store = registry.resolve("postgres://audit:pw@db:5432/trail").unwrap()?;
//! assert_eq!(store.label(), "postgres://audit:***@db:5432/trail");
//! # }
//!
//! // A scheme of your own: here a store holding no line yet.
//! struct Archive;
//! impl LineStore for Archive {
//!     fn label(&self) -> &str { "archive:trail" }
//!     fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>> {
//!         Ok(Box::new(Cursor::new(Vec::new())))
//!     }
//! }
//! let registry = registry.register("archive:", |_| Ok(Arc::new(Archive) as Arc<dyn LineStore>));
//! let store = registry.resolve("ARCHIVE:trail").unwrap()?;
//! let report = verify_store(store.as_ref(), &VerifyOptions::default(), &mut |_| {})?;
//! assert_eq!(report.records, 0);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

pub use agent_audit_jsonl::store::LineStore;

/// Why a URL of a registered scheme could not become a store. Its text
/// never holds the URL's password: an opener masks it.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Turns a URL of its scheme into a store.
pub type Opener = Arc<dyn Fn(&str) -> Result<Arc<dyn LineStore>, SourceError> + Send + Sync>;

/// The URL schemes the reading side knows.
#[derive(Clone, Default)]
pub struct SourceRegistry {
    /// (scheme prefix, lowercase; opener), matched in order.
    schemes: Vec<(String, Opener)>,
}

impl fmt::Debug for SourceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.schemes()).finish()
    }
}

impl SourceRegistry {
    /// No scheme: every argument is a path.
    pub fn new() -> SourceRegistry {
        SourceRegistry::default()
    }

    /// The schemes this build has: the SQL sink's with the `sql` feature.
    pub fn with_builtins() -> SourceRegistry {
        #[allow(unused_mut)]
        let mut registry = SourceRegistry::new();
        #[cfg(feature = "sql")]
        for scheme in ["sqlite:", "postgres://", "postgresql://"] {
            registry = registry.register(scheme, |url| {
                agent_audit_sql::SqlLines::from_location(url)
                    .map(|s| Arc::new(s) as Arc<dyn LineStore>)
                    .map_err(Into::into)
            });
        }
        registry
    }

    /// Adds a scheme (the start of its URLs, `myq://`, matched without
    /// regard to case); one registered earlier with the same start wins.
    pub fn register(
        mut self,
        scheme: &str,
        open: impl Fn(&str) -> Result<Arc<dyn LineStore>, SourceError> + Send + Sync + 'static,
    ) -> SourceRegistry {
        self.schemes
            .push((scheme.to_ascii_lowercase(), Arc::new(open)));
        self
    }

    /// The registered schemes, in order.
    pub fn schemes(&self) -> impl Iterator<Item = &str> {
        self.schemes.iter().map(|(s, _)| s.as_str())
    }

    /// The store `arg` names when it starts with a registered scheme
    /// (`None`: it is a path), or why it cannot be opened.
    pub fn resolve(&self, arg: &str) -> Option<Result<Arc<dyn LineStore>, SourceError>> {
        let lower = arg.trim_start().to_ascii_lowercase();
        let (_, open) = self.schemes.iter().find(|(s, _)| lower.starts_with(s))?;
        Some(open(arg.trim()))
    }
}
