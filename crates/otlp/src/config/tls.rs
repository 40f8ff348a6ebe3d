//! TLS: the CA a collector's certificate must be signed by, and the
//! client certificate and key a collector that requires mTLS checks.

use std::fmt;
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
    /// PEM file of the client certificate (chain) presented to a collector
    /// that requires mutual TLS. Needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key. Its content never
    /// appears in an error or in Debug output.
    pub client_key_file: Option<PathBuf>,
}

/// A client certificate and its private key, read from their PEM files,
/// for a collector that requires mutual TLS.
#[derive(Clone)]
pub struct ClientIdentity {
    /// PEM of the certificate (chain).
    pub cert_pem: Vec<u8>,
    /// PEM of the private key. Never shown.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &self.cert_pem.len())
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A client certificate or key file larger than this is refused: a chain
/// is a few KiB.
pub const MAX_CLIENT_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the client certificate and key named by `cert` and `key` (each
/// with the key or variable it came from), which go together: one without
/// the other is refused. An error names the file, where it came from and
/// what is wrong, never a byte of the key.
pub fn read_client_identity(
    cert: Option<(String, PathBuf)>,
    key: Option<(String, PathBuf)>,
) -> Result<Option<ClientIdentity>, OtlpConfigError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some((origin, path)), None) | (None, Some((origin, path))) => {
            return Err(OtlpConfigError::ClientIdentity {
                path,
                reason: format!(
                    "{origin} is set without its pair: a client certificate needs both client_cert_file and client_key_file (or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY)"
                ),
                origin,
            });
        }
        (Some(c), Some(k)) => (c, k),
    };
    let fail =
        |(origin, path): &(String, PathBuf), reason: String| OtlpConfigError::ClientIdentity {
            path: path.clone(),
            origin: origin.clone(),
            reason,
        };
    let cert_pem = read_bounded(&cert.1, MAX_CLIENT_FILE_BYTES).map_err(|r| fail(&cert, r))?;
    if !contains(&cert_pem, b"-----BEGIN CERTIFICATE-----") {
        return Err(fail(
            &cert,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".to_string(),
        ));
    }
    let key_pem = read_bounded(&key.1, MAX_CLIENT_FILE_BYTES).map_err(|r| fail(&key, r))?;
    // Only the marker is looked for: the key's bytes are never quoted.
    if !contains(&key_pem, b"PRIVATE KEY-----") {
        return Err(fail(
            &key,
            "no PEM private key (-----BEGIN ... PRIVATE KEY-----) in the file".to_string(),
        ));
    }
    Ok(Some(ClientIdentity { cert_pem, key_pem }))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
    if !contains(&pem, b"-----BEGIN CERTIFICATE-----") {
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
pub(crate) fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
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
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("ca.pem") && e.to_string().contains("tls.ca_file"),
            "{e}"
        );
    }

    #[test]
    fn a_client_key_is_never_quoted_and_the_pair_goes_together() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client.key");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(&key, "sekrit-key-material-that-is-not-pem").unwrap();
        let c = |p: &PathBuf| Some(("tls.client_cert_file".to_string(), p.clone()));
        let k = |p: &PathBuf| Some(("tls.client_key_file".to_string(), p.clone()));
        let e = read_client_identity(c(&cert), k(&key))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("client.key") && e.contains("tls.client_key_file"),
            "{e}"
        );
        assert!(!e.contains("sekrit"), "{e}");
        let e = read_client_identity(c(&cert), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without its pair"), "{e}");
        let e = read_client_identity(None, k(&key)).unwrap_err().to_string();
        assert!(e.contains("tls.client_key_file"), "{e}");
        let e = read_client_identity(c(&PathBuf::from("/dev/zero")), k(&key))
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nsekrit\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let id = read_client_identity(c(&cert), k(&key)).unwrap().unwrap();
        assert!(!format!("{id:?}").contains("sekrit"));
    }
}
