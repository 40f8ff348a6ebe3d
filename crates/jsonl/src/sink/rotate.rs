//! Rotation: the full file renamed to its seq range and a fresh one
//! started; and following the path when the file was moved away or
//! deleted under the sink.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt as _;

use crate::error::JsonlError;
use crate::files;
use crate::options::FsyncPolicy;

use super::{Active, JsonlSink, Mark, open_active, sync_dir};

impl JsonlSink {
    /// Renames the full file to its seq range and starts a fresh one.
    pub(super) fn rotate(&mut self) -> Result<(), JsonlError> {
        let path = self.options.path.clone();
        let Some(active) = self.active.as_ref() else {
            return Err(self.not_open());
        };
        let (Some(first), Some(last)) = (active.first_seq, active.last_seq) else {
            return Ok(());
        };
        if self.options.fsync != FsyncPolicy::Never && active.unsynced {
            self.sync()?;
        }
        let to = files::rotated_name(&path, first, last);
        let rename_err = |source| JsonlError::Rename {
            from: path.clone(),
            to: to.clone(),
            source,
        };
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(rename_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file with the rotated name already exists; not overwriting it",
            )));
        }
        std::fs::rename(&path, &to).map_err(rename_err)?;
        self.published.rotated();
        // From here on the old file is complete under its new name.
        self.active = None;
        self.committed = Mark {
            len: 0,
            head: self.committed.head,
            first_seq: None,
            last_seq: None,
            first_ts: None,
        };
        let (file, regular) = open_active(&path, true).map_err(|e| match e {
            JsonlError::Open { path, source } if source.kind() == io::ErrorKind::AlreadyExists => {
                JsonlError::Open {
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "another process created the file during rotation",
                    ),
                    path,
                }
            }
            e => e,
        })?;
        self.active = Some(Active::empty(file, regular, 0));
        if self.options.fsync != FsyncPolicy::Never {
            sync_dir(&path)?;
        }
        Ok(())
    }

    /// Makes sure the next line goes to the file at the configured path.
    ///
    /// logrotate (without `copytruncate`), an operator's `mv` or `rm`, or a
    /// cleanup job can move or delete the active file while it is open;
    /// writing on through the old descriptor would send records to a file
    /// nobody reads, or to no name at all. Before each write the open
    /// file's device and inode are compared with the path's; on a mismatch
    /// the path is opened again (created 0600, `O_NOFOLLOW`, locked), the
    /// chain continues from the last line written (the new file's first
    /// `prev` is the old file's last hash) and a notice says what happened.
    /// The published [`HeadHandle`] keeps that head (it is what the new
    /// file continues from) and counts a new file, so a checkpointer signs
    /// again as after a rotation. Bytes someone left at the path without a
    /// final newline get one, so the next record is a line of its own.
    pub(super) fn follow_path(&mut self) -> Result<(), JsonlError> {
        let path = self.options.path.clone();
        let Some(active) = self.active.as_ref() else {
            return Err(self.not_open());
        };
        if !active.regular {
            return Ok(());
        }
        let open_err = |source| JsonlError::Open {
            path: path.clone(),
            source,
        };
        let held = active.file.metadata().map_err(open_err)?;
        let at_path = match std::fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(open_err(source)),
        };
        if at_path
            .as_ref()
            .is_some_and(|m| m.dev() == held.dev() && m.ino() == held.ino())
        {
            return Ok(());
        }
        let what = if held.nlink() == 0 {
            "was deleted while open"
        } else if at_path.is_none() {
            "was moved away while open (nothing is at the path now)"
        } else {
            "was moved away while open and another file is at the path now"
        };
        let last = active
            .last_seq
            .map_or_else(|| "no record yet".to_string(), |s| format!("last seq {s}"));
        // Drop the old descriptor (and its lock) only once the new file is
        // open and locked, so a failure leaves the sink as it was.
        let (mut file, regular) = open_active(&path, false)?;
        let mut len = file.metadata().map_err(open_err)?.len();
        let mut ended = String::new();
        if len > 0 && regular {
            // Bytes someone else left without a final newline: end their line
            // (kept as it is) so the next record starts a line of its own
            // instead of being glued to them and lost to every reader.
            let mut last = [0u8; 1];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut last, len - 1).map_err(
                |source| JsonlError::ReadTail {
                    path: path.clone(),
                    source,
                },
            )?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|source| JsonlError::Write {
                    path: path.clone(),
                    source,
                })?;
                len += 1;
                ended = "; its last line lacked a newline, which was added".to_string();
            }
        }
        if self.options.fsync != FsyncPolicy::Never {
            sync_dir(&path)?;
        }
        self.active = Some(Active::empty(file, regular, len));
        self.committed = Mark {
            len,
            head: self.chain.head_raw(),
            first_seq: None,
            last_seq: None,
            first_ts: None,
        };
        let found = if len == 0 {
            String::new()
        } else {
            format!(
                " (it already held {len} bytes not written by this sink; they are left as they are{ended})"
            )
        };
        self.notices.push(format!(
            "audit log {} {what} ({last} in the old file); reopened {}{found} and continued the chain from its last line (prev {})",
            path.display(),
            path.display(),
            self.chain.head()
        ));
        // A new file under the log's name, as after a rotation: a
        // checkpointer signs the head again once the next lines are in.
        // The head itself does not move: the new file continues from it.
        self.published.rotated();
        Ok(())
    }
}
