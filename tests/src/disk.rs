//! A real full disk: a small tmpfs of its own, mounted for a test and
//! unmounted when it ends.
//!
//! `ENOSPC` part way through a write, and space coming back when a file is
//! cut back or deleted, are what a disk really does; `/dev/full` (a device,
//! which the JSONL sink refuses as a log path) and a file size limit only
//! imitate it. Mounting needs root, like the other fault tests: when the
//! mount fails the test fails and says why, it is never skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; dropped, it is unmounted (lazily, so a file still open
/// in a leaked writer cannot keep the mount alive).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes on a new temporary directory.
    ///
    /// # Panics
    ///
    /// When `mount` cannot run or fails (not root, no tmpfs): the message
    /// says which.
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("mount not runnable: {e}"));
        assert!(
            out.status.success(),
            "mount -t tmpfs {} failed (the fault tests run as root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    /// A tmpfs of 64 KiB with every free byte already taken: the first
    /// write to any file on it fails with `ENOSPC`.
    pub fn full() -> Tmpfs {
        let disk = Tmpfs::mount(64 * 1024);
        disk.fill("filler");
        disk
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills every free byte with the file `name`; deleting it frees them
    /// again.
    ///
    /// # Panics
    ///
    /// On any write error other than `ENOSPC`.
    pub fn fill(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let block = vec![0u8; 4096];
        // Whole pages first, then single bytes for the last partial page.
        for chunk in [&block[..], &block[..1]] {
            loop {
                match f.write(chunk) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
