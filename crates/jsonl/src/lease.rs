//! The seq lease in a file beside the log (`audit-log.jsonl.seq`), so
//! that a process that dies with records delivered to other sinks (a
//! collector, stdout) but not yet to the log never numbers new records with
//! their seqs. See `agent_audit_core::lease` for the protocol.
//!
//! The file holds one line, `upto <20 digits>`, rewritten in place at a
//! fixed offset and `fdatasync`ed before the dispatcher numbers records up
//! to it: 26 bytes, inside one disk sector, so a power loss leaves the old
//! value or the new one. Created 0600 and never through a symlink, like the
//! log. It is not part of the log (`verify` and the readers ignore it);
//! deleting it gives up the protection for one restart, nothing else.
//!
//! ```
//! use agent_audit_core::SeqLease;
//! use agent_audit_jsonl::FileLease;
//!
//! let dir = tempfile::tempdir()?;
//! let lease = FileLease::for_log(&dir.path().join("audit-log.jsonl")).expect("a regular file");
//! assert_eq!(lease.load()?, None);
//! lease.store(65_536)?;
//! assert_eq!(lease.load()?, Some(65_536));
//! assert_eq!(
//!     std::fs::read_to_string(dir.path().join("audit-log.jsonl.seq"))?,
//!     "upto 00000000000000065536\n"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agent_audit_core::{LeaseError, SeqLease};

/// A seq lease kept in `<log path>.seq`.
#[derive(Debug)]
pub struct FileLease {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl FileLease {
    /// The lease for the log at `log`, or `None` when `log` is not a
    /// regular file (a device such as `/dev/null` keeps no numbering).
    pub fn for_log(log: &Path) -> Option<FileLease> {
        match std::fs::symlink_metadata(log) {
            Ok(m) if !m.is_file() => return None,
            _ => {}
        }
        let mut name = log.file_name()?.to_os_string();
        name.push(".seq");
        Some(FileLease {
            path: log.with_file_name(name),
            file: Mutex::new(None),
        })
    }

    /// Where the lease is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LeaseError {
        LeaseError::new(self.path.display().to_string(), source)
    }

    fn open(&self) -> Result<(File, bool), LeaseError> {
        let existed = self.path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|e| self.error(e))?;
        Ok((file, !existed))
    }
}

const LEN: usize = 26;

impl SeqLease for FileLease {
    fn load(&self) -> Result<Option<u64>, LeaseError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let parsed = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.strip_suffix('\n'))
            .and_then(|t| t.strip_prefix("upto "))
            .filter(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok());
        match parsed {
            Some(upto) => Ok(Some(upto)),
            None => Err(self.error(format!(
                "line 1 is not `upto <20 digits>` ({} bytes: {:?}); if the file was damaged, delete it to continue after the log's last seq",
                text.len(),
                String::from_utf8_lossy(&text[..text.len().min(40)])
            ))),
        }
    }

    fn store(&self, upto: u64) -> Result<(), LeaseError> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| self.error("an earlier store panicked"))?;
        if guard.is_none() {
            let (file, created) = self.open()?;
            if created {
                // The new name must survive a power loss too.
                let dir = match self.path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| self.error(e))?;
            }
            *guard = Some(file);
        }
        let Some(file) = guard.as_ref() else {
            return Err(self.error("not open"));
        };
        let line = format!("upto {upto:020}\n");
        file.write_all_at(line.as_bytes(), 0)
            .and_then(|()| file.set_len(LEN as u64))
            .and_then(|()| file.sync_data())
            .map_err(|e| {
                // Reopen next time: the handle may be what failed.
                *guard = None;
                self.error(e)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stores_durably_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        let lease = FileLease::for_log(&log).unwrap();
        assert_eq!(lease.path(), dir.path().join("audit-log.jsonl.seq"));
        lease.store(u64::MAX).unwrap();
        lease.store(7).unwrap();
        assert_eq!(lease.load().unwrap(), Some(7));
        // A second handle (the next process) reads the same value.
        assert_eq!(FileLease::for_log(&log).unwrap().load().unwrap(), Some(7));
        let mode = std::fs::metadata(lease.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_lease_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        std::fs::write(dir.path().join("audit-log.jsonl.seq"), "upto 12x\n").unwrap();
        let e = FileLease::for_log(&log).unwrap().load().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("audit-log.jsonl.seq") && msg.contains("delete it"),
            "{msg}"
        );
    }

    #[test]
    fn a_symlink_at_the_lease_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("audit-log.jsonl.seq")).unwrap();
        let e = FileLease::for_log(&log).unwrap().store(1).unwrap_err();
        assert!(e.to_string().contains("audit-log.jsonl.seq"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }

    #[test]
    fn devices_keep_no_lease() {
        assert!(FileLease::for_log(Path::new("/dev/null")).is_none());
    }
}
