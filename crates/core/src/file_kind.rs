//! What a path that is not a regular file is, in words, for the errors
//! that refuse it. One wording for every crate that opens what an operator
//! names (the JSONL sink and its tools, the facade's configuration loader);
//! it describes a file type the caller already read, so core still does no
//! I/O.

/// What a file of type `t` is, for an error that refuses it because it is
/// not a regular file: `a FIFO (named pipe)`, `a character device`,
/// `a block device`, `a socket`, `a directory`, `a symbolic link`, or
/// `not a regular file`.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let dir = std::env::temp_dir();
/// let t = std::fs::metadata(&dir)?.file_type();
/// assert_eq!(agent_audit_core::file_kind(t), "a directory");
/// # Ok(()) }
/// ```
pub fn file_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        } else if t.is_char_device() {
            return "a character device";
        } else if t.is_block_device() {
            return "a block device";
        } else if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::file_kind;

    #[test]
    fn each_kind_is_named() {
        let dir = std::env::temp_dir();
        let kind =
            |p: &std::path::Path| file_kind(std::fs::symlink_metadata(p).unwrap().file_type());
        assert_eq!(kind(&dir), "a directory");
        assert_eq!(
            kind(std::path::Path::new("/dev/null")),
            "a character device"
        );
        assert_eq!(kind(std::path::Path::new("/proc/self")), "a symbolic link");
    }
}
