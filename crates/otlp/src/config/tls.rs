//! TLS: the CA a collector's certificate must be signed by.

use std::path::PathBuf;

use serde::Deserialize;

use super::OtlpConfigError;

/// TLS options (the `tls` key of the sink table).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA that signed the collector's certificate. When set,
    /// only this CA is trusted; otherwise the bundled web PKI roots are.
    pub ca_file: Option<PathBuf>,
}

/// A CA bundle larger than this is refused: real bundles are a few
/// hundred KiB, and the file is read whole into memory.
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

pub(super) fn read_ca(origin: &str, path: PathBuf) -> Result<Vec<u8>, OtlpConfigError> {
    let fail = |reason: String| OtlpConfigError::CaFile {
        path: path.clone(),
        origin: origin.to_string(),
        reason,
    };
    let pem = read_bounded(&path, MAX_CA_FILE_BYTES).map_err(fail)?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(fail(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".to_string(),
        ));
    }
    Ok(pem)
}

/// The bytes of a regular file of at most `max` bytes. Opened with
/// O_NONBLOCK and checked on the descriptor, so a FIFO or a device put at
/// the path (`/dev/zero`, a pipe nobody writes) is refused instead of
/// hanging the start or filling memory.
fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "it is {}, not a regular file",
            agent_audit_core::file_kind(meta.file_type())
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "it is {} bytes; at most {max} are read",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the check: read no more than the bound.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("it grew past {max} bytes while being read"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpConfig;
    use crate::config::test_support::{env, svc};

    /// `ca_file = "/dev/zero"` used to read until memory ran out, and a
    /// FIFO hung the start.
    #[test]
    fn a_device_fifo_or_huge_file_as_ca_file_is_refused_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let huge = dir.path().join("huge.pem");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_CA_FILE_BYTES + 1)
            .unwrap();
        for (path, says) in [
            (PathBuf::from("/dev/zero"), "character device"),
            (fifo, "FIFO"),
            (huge, "at most"),
        ] {
            let e = read_ca("tls.ca_file", path.clone())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{}: {e}", path.display());
        }
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a cert").unwrap();
        let c = OtlpConfig {
            tls: Some(TlsConfig {
                ca_file: Some(p.clone()),
            }),
            ..Default::default()
        };
        let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("ca.pem") && e.to_string().contains("tls.ca_file"),
            "{e}"
        );
    }
}
