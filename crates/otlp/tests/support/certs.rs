//! A private CA, a server certificate for 127.0.0.1 and a client
//! certificate, made at test time with the openssl command line tool
//! (`.ci/setup.d/openssl.sh`).

use std::path::{Path, PathBuf};

use super::collector::Tls;

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for the TLS tests and could not run: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and CSR `<name>.key`, `<name>.csr`, signed by `ca.pem` into
/// `<name>.pem` with the extensions `ext`.
fn issue(dir: &Path, name: &str, subject: &str, ext: &str) {
    let (key, csr, pem, cnf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.cnf"),
    );
    std::fs::write(dir.join(&cnf), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &cnf,
        ],
    );
}

/// A CA (`ca.pem`), and a server certificate for 127.0.0.1 signed by it.
pub fn make_ca_and_server_cert(dir: &Path) -> (PathBuf, Tls) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=agent-audit test CA",
        ],
    );
    issue(
        dir,
        "srv",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    (
        dir.join("ca.pem"),
        Tls {
            cert: std::fs::read(dir.join("srv.pem")).unwrap(),
            key: std::fs::read(dir.join("srv.key")).unwrap(),
            client_ca: None,
        },
    )
}

/// A client certificate `client.pem` with its key `client.key`, signed by
/// the CA [`make_ca_and_server_cert`] made in `dir`.
pub fn make_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    issue(
        dir,
        "client",
        "/CN=agent-audit test client",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    );
    (dir.join("client.pem"), dir.join("client.key"))
}
