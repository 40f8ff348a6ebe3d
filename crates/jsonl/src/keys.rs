//! Ed25519 keys for signed checkpoints: generation, PEM files, key ids.
//!
//! The private key is a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`,
//! what `openssl genpkey -algorithm ed25519` writes) created with mode 0600;
//! the public key is an SPKI PEM file (`-----BEGIN PUBLIC KEY-----`). A
//! key's id is the first 16 hex digits of the SHA-256 of its 32 raw public
//! key bytes: checkpoints carry it so a verifier holding several public keys
//! (after a key rotation) knows which one to use.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_jsonl::keys::{self, PublicKey, Signer};
//!
//! # let dir = std::env::temp_dir().join(format!("agent-audit-keys-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let files = keys::generate_key_pair(&dir)?;
//! let signer = Signer::load(&files.private_key)?;
//! let public = PublicKey::load(&files.public_key)?;
//! assert_eq!(signer.key_id(), public.key_id());
//! let signature = signer.sign(b"message");
//! assert!(public.verify(b"message", &signature));
//! assert!(!public.verify(b"other message", &signature));
//! // Never overwrites a key.
//! assert!(keys::generate_key_pair(&dir).is_err());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::files::{self, Symlinks};

/// File name of the private key `agent-audit keygen` writes.
pub const PRIVATE_KEY_FILE: &str = "audit-signing-key.pem";
/// File name of the public key `agent-audit keygen` writes.
pub const PUBLIC_KEY_FILE: &str = "audit-signing-key.pub.pem";

/// Why a key could not be generated, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The file is not an Ed25519 private key in PKCS#8 PEM.
    #[error(
        "{path} is not an Ed25519 private key in PKCS#8 PEM (\"-----BEGIN PRIVATE KEY-----\", as `agent-audit keygen` writes): {reason}"
    )]
    BadPrivateKey {
        /// The file.
        path: PathBuf,
        /// What the decoder found.
        reason: String,
    },
    /// The file is not an Ed25519 public key in PEM.
    #[error(
        "{path} is not an Ed25519 public key in PEM (\"-----BEGIN PUBLIC KEY-----\", as `agent-audit keygen` writes): {reason}"
    )]
    BadPublicKey {
        /// The file.
        path: PathBuf,
        /// What the decoder found.
        reason: String,
    },
    /// The private key file can be read or written by group or others.
    #[error(
        "private key file {path} is accessible to group or others (mode {mode:04o}); whoever can read it can forge checkpoints: run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file already exists where a new one was to be written.
    #[error(
        "refusing to overwrite existing key file {path}; move it away or choose another --out directory"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Writing a key file or creating its directory failed.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Encoding the key as PEM failed.
    #[error("cannot encode the key as PEM: {reason}")]
    Encode {
        /// What the encoder said.
        reason: String,
    },
}

/// The id of an Ed25519 public key: the first 16 hex digits of the SHA-256
/// of its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// A checkpoint signing key (Ed25519). Its `Debug` output never shows the
/// key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Signer {
        Signer::from_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    fn from_key(key: SigningKey) -> Signer {
        let key_id = key_id(&key.verifying_key());
        Signer { key, key_id }
    }

    /// Reads a PKCS#8 PEM private key file. Refuses a file that group or
    /// others can access.
    pub fn load(path: impl AsRef<Path>) -> Result<Signer, KeyError> {
        let path = path.as_ref();
        let read_err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = files::open_regular_for_reading(path, Symlinks::Follow).map_err(read_err)?;
        // The mode of the file opened, not of whatever the path named
        // before (`fstat`).
        let meta = file.metadata().map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = read_text(&mut file).map_err(read_err)?;
        Signer::from_pem(&text).map_err(|reason| KeyError::BadPrivateKey {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Signer, String> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Signer::from_key)
            .map_err(|e| e.to_string())
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|z| z.as_str().to_string())
            .map_err(|e| KeyError::Encode {
                reason: e.to_string(),
            })
    }

    /// The key's id (see [`key_id`]).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_key(self.key.verifying_key())
    }

    /// Signs `message`; returns the 64-byte Ed25519 signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }
}

/// A checkpoint verification key (Ed25519 public key).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    key_id: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl PublicKey {
    fn from_key(key: VerifyingKey) -> PublicKey {
        let key_id = key_id(&key);
        PublicKey { key, key_id }
    }

    /// Reads an SPKI PEM public key file.
    pub fn load(path: impl AsRef<Path>) -> Result<PublicKey, KeyError> {
        let path = path.as_ref();
        let text = files::open_regular_for_reading(path, Symlinks::Follow)
            .and_then(|mut f| read_text(&mut f))
            .map_err(|source| KeyError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        PublicKey::from_pem(&text).map_err(|reason| KeyError::BadPublicKey {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses an SPKI PEM public key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, String> {
        VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey::from_key)
            .map_err(|e| e.to_string())
    }

    /// The key as SPKI PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                reason: e.to_string(),
            })
    }

    /// The key's id (see [`key_id`]).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    /// Uses strict verification (no malleable or small-order signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.key.verify_strict(message, &sig).is_ok()
    }
}

/// The longest key file read: a PEM key is a few hundred bytes, and a
/// larger file is not one (nor read whole into memory).
const MAX_KEY_FILE: u64 = 64 << 10;

/// A key file's text, at most [`MAX_KEY_FILE`] bytes.
fn read_text(file: &mut std::fs::File) -> io::Result<String> {
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_KEY_FILE} bytes: not a PEM key"),
        ));
    }
    Ok(text)
}

/// Where [`generate_key_pair`] wrote a key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairFiles {
    /// The private key, PKCS#8 PEM, mode 0600.
    pub private_key: PathBuf,
    /// The public key, SPKI PEM, mode 0644.
    pub public_key: PathBuf,
    /// The key's id, as checkpoints will carry it.
    pub key_id: String,
}

/// Generates a key pair into `dir` ([`PRIVATE_KEY_FILE`] with mode 0600 and
/// [`PUBLIC_KEY_FILE`] with mode 0644), creating `dir` with mode 0700 if it
/// does not exist. Never overwrites: if either file exists, nothing is
/// written and [`KeyError::Exists`] names it.
pub fn generate_key_pair(dir: impl AsRef<Path>) -> Result<KeyPairFiles, KeyError> {
    let dir = dir.as_ref();
    let private_key = dir.join(PRIVATE_KEY_FILE);
    let public_key = dir.join(PUBLIC_KEY_FILE);
    for p in [&private_key, &public_key] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| KeyError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let signer = Signer::generate();
    let private_pem = signer.to_pem()?;
    let public_pem = signer.public_key().to_pem()?;
    write_new(&private_key, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public_key, public_pem.as_bytes(), 0o644) {
        // A lone private key without its public half is useless and would
        // block the next attempt.
        let _ = std::fs::remove_file(&private_key);
        return Err(e);
    }
    Ok(KeyPairFiles {
        private_key,
        public_key,
        key_id: signer.key_id().to_string(),
    })
}

/// Creates `path` (failing if it exists, never through a symlink) with
/// `mode`, writes `bytes` and syncs.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                err(source)
            }
        })?;
    // The umask may have narrowed the mode; it never widens it, but set it
    // exactly so the public key is readable as documented.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_ids_match() {
        let s = Signer::generate();
        let s2 = Signer::from_pem(&s.to_pem().unwrap()).unwrap();
        assert_eq!(s.key_id(), s2.key_id());
        let p = PublicKey::from_pem(&s.public_key().to_pem().unwrap()).unwrap();
        assert_eq!(p, s.public_key());
        assert_eq!(p.key_id().len(), 16);
        assert!(!format!("{s:?}").contains("BEGIN"));
        assert!(
            Signer::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn a_fifo_as_a_key_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("sk.pem");
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status();
        assert!(made.unwrap().success(), "mkfifo");
        let check = |e: KeyError| match e {
            KeyError::Read { path, source } => {
                assert_eq!(path, fifo);
                assert_eq!(
                    files::NotRegularFile::of(&source).map(|n| n.kind),
                    Some("a FIFO (named pipe)")
                );
            }
            other => panic!("{other:?}"),
        };
        check(Signer::load(&fifo).unwrap_err());
        check(PublicKey::load(&fifo).unwrap_err());
    }

    #[test]
    fn another_key_does_not_verify() {
        let a = Signer::generate();
        let b = Signer::generate();
        let sig = a.sign(b"m");
        assert!(a.public_key().verify(b"m", &sig));
        assert!(!b.public_key().verify(b"m", &sig));
        assert_ne!(a.key_id(), b.key_id());
    }
}
