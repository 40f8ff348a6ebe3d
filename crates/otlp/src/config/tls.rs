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

pub(super) fn read_ca(origin: &str, path: PathBuf) -> Result<Vec<u8>, OtlpConfigError> {
    let pem = std::fs::read(&path).map_err(|e| OtlpConfigError::CaFile {
        path: path.clone(),
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(OtlpConfigError::CaFile {
            path,
            origin: origin.to_string(),
            reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".to_string(),
        });
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpConfig;
    use crate::config::test_support::{env, svc};

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
