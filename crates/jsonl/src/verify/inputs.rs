//! Inputs: which files make up a log. One directory becomes its log's
//! files (rotated ones by seq, then the active one); files are taken in the
//! order given; a rotated file's name maps back to its log's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::files;

use super::VerifyError;

/// `<stem>.<seq>-<seq>.<ext>` maps to `<stem>.<ext>`, others to themselves.
pub fn log_name_of(file_name: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let strip = |base: &str| -> Option<String> {
        let (stem, range) = base.rsplit_once('.')?;
        let (a, b) = range.split_once('-')?;
        (digits(a) && digits(b) && !stem.is_empty()).then(|| stem.to_string())
    };
    if let Some((base, ext)) = file_name.rsplit_once('.')
        && let Some(stem) = strip(base)
    {
        return format!("{stem}.{ext}");
    }
    strip(file_name).unwrap_or_else(|| file_name.to_string())
}

/// Turns the inputs into the files to read, in chain order: one directory
/// becomes its log's files (rotated ones by seq, then the active one); files
/// are taken in the order given.
pub fn resolve_inputs<P: AsRef<Path>>(inputs: &[P]) -> Result<Vec<PathBuf>, VerifyError> {
    if inputs.is_empty() {
        return Err(VerifyError::NoInput);
    }
    let open_err = VerifyError::open;
    let mut out = Vec::new();
    for input in inputs {
        let path = input.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| open_err(path, e))?;
        if meta.is_dir() {
            if inputs.len() > 1 {
                return Err(VerifyError::DirectoryAmongFiles {
                    path: path.to_path_buf(),
                });
            }
            out = files_of_directory(path)?;
            break;
        }
        out.push(path.to_path_buf());
    }
    // Every file is opened once here as the reader will open it: a FIFO or
    // device among them is refused before anything reads (and hangs).
    for path in &out {
        files::open_regular_for_reading(path, files::Symlinks::Follow)
            .map_err(|e| open_err(path, e))?;
    }
    Ok(out)
}

fn files_of_directory(dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let mut logs: BTreeMap<String, ()> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|source| VerifyError::open(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| VerifyError::open(dir, source))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        // Keys, seq leases (`<log>.seq`) and dot files are not logs.
        if !is_file || name.starts_with('.') || name.ends_with(".pem") || name.ends_with(".seq") {
            continue;
        }
        logs.insert(log_name_of(&name), ());
    }
    let logs: Vec<String> = logs.into_keys().collect();
    match logs.as_slice() {
        [] => Err(VerifyError::EmptyDirectory {
            dir: dir.to_path_buf(),
        }),
        [one] => Ok(files::list(&dir.join(one))?
            .into_iter()
            .map(|f| f.path)
            .collect()),
        _ => Err(VerifyError::SeveralLogs {
            dir: dir.to_path_buf(),
            logs,
        }),
    }
}
