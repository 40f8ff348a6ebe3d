//! Where a reading command's log is. A path means the JSONL files, as
//! always; a URL of a registered scheme means a log kept elsewhere whose
//! rows are read as the same lines, through the same reader and the same
//! integrity code: the SQL sink's table (`sqlite://audit.db`,
//! `postgres://user@host:5432/db`; `#other_table` after the URL for a
//! table other than `audit_records`). A string that starts with a
//! registered scheme is always the URL, even when a file of that name
//! exists (a file must not stand in for the database unnoticed): a file
//! named like one is read as `./sqlite:/...`.
//!
//! The URL's password never reaches an output: a store is named by its
//! label (the URL masked), and its errors mask it too. Prefer a URL
//! without a password (a `.pgpass` file, `PGPASSWORD`): a command line is
//! visible to other users of the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_audit::jsonl::store::LineStore;
use agent_audit::sources::SourceRegistry;
use agent_audit_review::source::Input;

use crate::error::CliError;

/// The store `arg` names, if it is a URL of a registered scheme
/// ([`SourceRegistry::with_builtins`]: the SQL sink's), whether or not a
/// file of that name exists.
pub fn store_of(arg: &Path) -> Option<Result<Arc<dyn LineStore>, CliError>> {
    let text = arg.to_str()?;
    let resolved = SourceRegistry::with_builtins().resolve(text)?;
    Some(resolved.map_err(|e| CliError::Usage(e.to_string())))
}

/// The inputs of a reading command: stores for URLs, paths otherwise.
pub fn inputs(args: &[PathBuf]) -> Result<Vec<Input>, CliError> {
    args.iter()
        .map(|arg| match store_of(arg) {
            Some(store) => store.map(Input::Store),
            None => Ok(Input::Path(arg.clone())),
        })
        .collect()
}
