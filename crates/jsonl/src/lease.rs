//! The seq lease in a file beside the log (`audit-log.jsonl.seq`), so
//! that a process that dies with records delivered to other sinks (a
//! collector, stdout) but not yet to the log never numbers new records with
//! their seqs. See `agent_audit_core::lease` for the protocol.
//!
//! The file holds one line, `upto <20 digits>` (26 bytes). A store never
//! rewrites it in place: it writes the line to `<log>.seq.tmp` (created
//! 0600 with `O_EXCL | O_NOFOLLOW`), fsyncs it, renames it over the lease
//! and fsyncs the directory, all before the dispatcher numbers records up
//! to the new value. So the name always holds a whole line, the old one or
//! the new one, whatever stops the store (a full disk, a crash, a power
//! loss); a store that fails removes its temporary file, and a stale one a
//! crash left is removed by the next store (the log's lock makes this
//! process the only writer). It costs a rename and two fsyncs per store,
//! and the dispatcher stores once per half block (about 30 times per
//! million records at the default block).
//!
//! Reading never follows a symlink (`O_NOFOLLOW`) and refuses anything but
//! a regular file. An empty file, or a start of the line (possibly padded
//! with zeros), is what an earlier version's first store left when it was
//! cut short by a full disk or a crash: no record was numbered under it,
//! since the dispatcher numbers none before its store returns, so it reads
//! as no lease (numbering continues after the log's last record) and the
//! recovery is reported ([`SeqLease::take_notice`]). Anything else is an
//! error that names the file and what is wrong with it, never its bytes.
//! It is not part of the log (`verify` and the readers ignore it); deleting
//! it gives up the protection for one restart, nothing else.
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
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agent_audit_core::{LeaseError, SeqLease};

/// A seq lease kept in `<log path>.seq`.
#[derive(Debug)]
pub struct FileLease {
    path: PathBuf,
    /// Where a store writes the new line before renaming it over `path`.
    tmp: PathBuf,
    /// Serialises stores, which share `tmp`.
    storing: Mutex<()>,
    /// What the last load worked around, until taken.
    notice: Mutex<Option<String>>,
}

/// What is wrong with a lease file. Never carries the file's bytes: the
/// path could have been pointed at anything, and errors reach stderr and
/// the trail.
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("is a symbolic link; a lease is never read or written through one")]
    Symlink,
    #[error("is not a regular file")]
    NotRegular,
    #[error(
        "is not a seq lease ({what}; {len} bytes) and was not left by agent-audit's lease writer; find out what changed it, then delete it to continue after the log's last seq"
    )]
    Foreign { what: &'static str, len: usize },
    #[error("{doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err(doing: &'static str) -> impl FnOnce(io::Error) -> Problem {
    move |source| match source.raw_os_error() {
        Some(libc::ELOOP) => Problem::Symlink,
        _ => Problem::Io { doing, source },
    }
}

/// The line's length: `upto ` and 20 digits and a newline.
const LEN: usize = 26;

/// What a lease file holds.
#[derive(Debug, PartialEq)]
enum Content {
    Valid(u64),
    /// A start of a line its writer never finished.
    Torn,
    Foreign(&'static str),
}

/// Whether `b` may stand at position `i` of a lease line.
fn fits(i: usize, b: u8) -> bool {
    match i {
        0..5 => b == b"upto "[i],
        5..25 => b.is_ascii_digit(),
        _ => b == b'\n',
    }
}

fn classify(bytes: &[u8]) -> Content {
    if bytes.len() > LEN {
        return Content::Foreign("longer than one `upto` line");
    }
    // A file extended before its data reached the disk reads as zeros.
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let text = &bytes[..end];
    if !text.iter().enumerate().all(|(i, &b)| fits(i, b)) {
        return Content::Foreign("line 1 is not `upto <20 digits>`");
    }
    if text.len() < LEN {
        return Content::Torn;
    }
    if bytes.len() != text.len() {
        return Content::Foreign("line 1 is followed by other bytes");
    }
    match std::str::from_utf8(&text[5..25])
        .ok()
        .and_then(|d| d.parse().ok())
    {
        Some(upto) => Content::Valid(upto),
        None => Content::Foreign("the number is beyond the seq space"),
    }
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
        let path = log.with_file_name(&name);
        name.push(".tmp");
        Some(FileLease {
            tmp: log.with_file_name(name),
            path,
            storing: Mutex::new(()),
            notice: Mutex::new(None),
        })
    }

    /// Where the lease is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, problem: Problem) -> LeaseError {
        LeaseError::new(self.path.display().to_string(), problem)
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    fn read(&self) -> Result<Option<Vec<u8>>, Problem> {
        // O_NONBLOCK: opening a FIFO planted at the path must not wait for
        // a writer; it is refused below as not a regular file.
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("opening it")(e)),
        };
        if !file.metadata().map_err(io_err("reading it"))?.is_file() {
            return Err(Problem::NotRegular);
        }
        // One byte more than a line tells a longer file apart, without
        // reading a large one whole.
        let mut bytes = Vec::with_capacity(LEN + 1);
        file.take(LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("reading it"))?;
        Ok(Some(bytes))
    }

    fn write(&self, upto: u64) -> Result<(), Problem> {
        // rename(2) would replace a symlink, not follow it, but one planted
        // at the lease's name means someone is tampering with it: say so.
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => return Err(Problem::Symlink),
            Ok(m) if !m.is_file() => return Err(Problem::NotRegular),
            _ => {}
        }
        // Left by a store a crash interrupted (the log's lock makes this
        // process the only writer of the lease).
        match std::fs::remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing a stale temporary file")(e)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.tmp)
            .map_err(io_err("creating its temporary file"))?;
        let line = format!("upto {upto:020}\n");
        let written = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err("writing its temporary file"))
            .and_then(|()| {
                std::fs::rename(&self.tmp, &self.path)
                    .map_err(io_err("renaming its temporary file over it"))
            });
        if let Err(e) = written {
            drop(file);
            // A full disk must leave no half-written file behind, under
            // either name.
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        // The new name must survive a power loss too.
        File::open(self.dir())
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing its directory"))
    }
}

impl SeqLease for FileLease {
    fn load(&self) -> Result<Option<u64>, LeaseError> {
        let Some(bytes) = self.read().map_err(|p| self.error(p))? else {
            return Ok(None);
        };
        match classify(&bytes) {
            Content::Valid(upto) => Ok(Some(upto)),
            Content::Torn => {
                let notice = format!(
                    "seq lease {} held {} bytes, the start of a line its writer never finished (a first store cut short by a full disk or a crash, before any record was numbered under it); read as no lease: numbering continues after the log's last record, and the next store replaces the file",
                    self.path.display(),
                    bytes.len()
                );
                *self.notice.lock().unwrap_or_else(|e| e.into_inner()) = Some(notice);
                Ok(None)
            }
            Content::Foreign(what) => Err(self.error(Problem::Foreign {
                what,
                len: bytes.len(),
            })),
        }
    }

    fn store(&self, upto: u64) -> Result<(), LeaseError> {
        let _one = self.storing.lock().unwrap_or_else(|e| e.into_inner());
        self.write(upto).map_err(|p| self.error(p))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn take_notice(&self) -> Option<String> {
        self.notice.lock().unwrap_or_else(|e| e.into_inner()).take()
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
    fn a_lease_torn_by_its_own_writer_reads_as_absent_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        let seq = dir.path().join("audit-log.jsonl.seq");
        // What a first store cut short leaves: nothing, a start of the
        // line, or a length with no data yet (zeros).
        let torn: [&[u8]; 5] = [
            b"",
            b"up",
            b"upto 0000000000000006",
            b"upto 0000000000000006553",
            &[0u8; 26],
        ];
        for bytes in torn {
            std::fs::write(&seq, bytes).unwrap();
            let lease = FileLease::for_log(&log).unwrap();
            assert_eq!(lease.load().unwrap(), None, "{bytes:?}");
            let notice = lease.take_notice().expect("the recovery is reported");
            assert!(
                notice.contains("audit-log.jsonl.seq") && notice.contains("log's last"),
                "{notice}"
            );
            assert_eq!(lease.take_notice(), None, "reported once");
            // The next store replaces it whole.
            lease.store(9).unwrap();
            assert_eq!(lease.load().unwrap(), Some(9));
        }
    }

    #[test]
    fn foreign_content_is_an_error_that_echoes_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        let seq = dir.path().join("audit-log.jsonl.seq");
        for bytes in [
            &b"SECRET-TOKEN-abcdef\n"[..],
            b"upto 1234567890123456789x\n",
            b"upto 99999999999999999999\n",
            b"upto 00000000000000000007\nSECRET",
            b"SECRET",
        ] {
            std::fs::write(&seq, bytes).unwrap();
            let e = FileLease::for_log(&log).unwrap().load().unwrap_err();
            let msg = format!("{e} / {e:?}");
            assert!(msg.contains("audit-log.jsonl.seq"), "{msg}");
            assert!(!msg.contains("SECRET") && !msg.contains("12345"), "{msg}");
        }
    }

    #[test]
    fn a_symlink_at_the_lease_path_is_not_followed_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        let target = dir.path().join("shadow");
        std::fs::write(&target, "root:SECRET-HASH:19000:0:99999:7:::\n").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("audit-log.jsonl.seq")).unwrap();
        let e = FileLease::for_log(&log).unwrap().load().unwrap_err();
        let msg = format!("{e} / {e:?}");
        assert!(
            msg.contains("audit-log.jsonl.seq") && msg.contains("symbolic link"),
            "{msg}"
        );
        assert!(!msg.contains("SECRET") && !msg.contains("root:"), "{msg}");
        // A lease that is a valid line elsewhere is not taken either.
        std::fs::write(&target, "upto 00000000000000000007\n").unwrap();
        assert!(FileLease::for_log(&log).unwrap().load().is_err());
    }

    #[test]
    fn a_fifo_at_the_lease_path_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        let seq = dir.path().join("audit-log.jsonl.seq");
        let made = std::process::Command::new("mkfifo")
            .arg(&seq)
            .status()
            .unwrap();
        assert!(made.success());
        let e = FileLease::for_log(&log).unwrap().load().unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_store_replaces_the_file_whole_and_leaves_no_temporary_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit-log.jsonl");
        let lease = FileLease::for_log(&log).unwrap();
        // A temporary file a crash left behind is not in the way.
        std::fs::write(dir.path().join("audit-log.jsonl.seq.tmp"), "upto").unwrap();
        lease.store(5).unwrap();
        let first = std::fs::metadata(lease.path()).unwrap().ino();
        lease.store(6).unwrap();
        // A new file renamed over the old one: never rewritten in place,
        // so no moment of the store leaves a torn lease under the name.
        assert_ne!(std::fs::metadata(lease.path()).unwrap().ino(), first);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["audit-log.jsonl.seq".to_string()]);
        let mode = std::fs::metadata(lease.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(lease.load().unwrap(), Some(6));
    }

    #[test]
    fn devices_keep_no_lease() {
        assert!(FileLease::for_log(Path::new("/dev/null")).is_none());
    }
}
