//! The checkpoint payload: what a checkpoint says, its canonical message,
//! signing and verifying it (see the [module docs](super)).

use std::fmt;

use agent_audit_core::Timestamp;
use serde::{Deserialize, Serialize};

use super::{ALGORITHM, MESSAGE_VERSION, MESSAGE_VERSION_ORIGIN};
use crate::keys::{PublicKey, Signer};

/// The chain's hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChainAlgorithm {
    /// Plain SHA-256 of the previous line.
    #[serde(rename = "sha256")]
    Sha256,
    /// HMAC-SHA256 of the previous line under the chain key.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl ChainAlgorithm {
    /// The name written in payloads and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainAlgorithm::Sha256 => "sha256",
            ChainAlgorithm::HmacSha256 => "hmac-sha256",
        }
    }

    /// The algorithm of a chain that is (or is not) keyed.
    pub fn of(keyed: bool) -> ChainAlgorithm {
        if keyed {
            ChainAlgorithm::HmacSha256
        } else {
            ChainAlgorithm::Sha256
        }
    }
}

impl fmt::Display for ChainAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a checkpoint was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckpointReason {
    /// `checkpoint_every` records since the last one.
    Count,
    /// `checkpoint_interval_secs` passed with records uncovered.
    Interval,
    /// The sink started a new file: it rotated (by size or age), or
    /// reopened its path after the file was moved away or deleted.
    Rotation,
    /// [`Checkpointer::finish`](super::Checkpointer::finish).
    Shutdown,
    /// [`Checkpointer::checkpoint_now`](super::Checkpointer::checkpoint_now) or a direct [`CheckpointPayload::sign_with_origin`].
    Manual,
}

impl CheckpointReason {
    /// The name written in the payload.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointReason::Count => "count",
            CheckpointReason::Interval => "interval",
            CheckpointReason::Rotation => "rotation",
            CheckpointReason::Shutdown => "shutdown",
            CheckpointReason::Manual => "manual",
        }
    }
}

/// Which log a checkpoint speaks for, whatever its files are called: the
/// seq and chain value of the log's first line (the one whose `prev` is the
/// genesis value). A file renamed keeps it; a log rewritten from its first
/// line on no longer has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The first line's seq.
    pub seq: u64,
    /// Its chain value (64 lowercase hex digits).
    pub head: String,
}

/// The payload of a `checkpoint` record. See the [module docs](super).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPayload {
    /// The log's name (its active file's name when signed): a label; the
    /// log's identity is `origin`.
    pub log: String,
    /// The log's first line, when the writer knew it (it does unless the
    /// log's first files were removed before it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The chain's hash function.
    pub chain: ChainAlgorithm,
    /// Coverage starts after this seq.
    pub from_seq: u64,
    /// The seq of the last line covered.
    pub upto_seq: u64,
    /// Lines with a seq in `(from_seq, upto_seq]`.
    pub records: u64,
    /// The chain value of line `upto_seq`.
    pub head: String,
    /// Why it was emitted.
    pub reason: CheckpointReason,
    /// When it was signed (RFC 3339 UTC).
    pub signed_at: String,
    /// `ed25519`.
    pub alg: String,
    /// Id of the signing key.
    pub key_id: String,
    /// Hex Ed25519 signature of [`CheckpointPayload::canonical_message`].
    pub signature: String,
}

/// Why a checkpoint's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// `alg` is not `ed25519`.
    #[error("unsupported signature algorithm {0:?} (only \"ed25519\")")]
    Algorithm(String),
    /// Signed by a key whose id differs from the public key's.
    #[error("signed by key {found}, not by the given public key {expected}")]
    OtherKey {
        /// Id in the checkpoint.
        found: String,
        /// Id of the public key given.
        expected: String,
    },
    /// `signature` is not 128 hex digits.
    #[error("signature is not 128 hex digits")]
    Malformed,
    /// The signature does not verify: the payload was changed after
    /// signing, or it was never signed by this key.
    #[error("signature does not verify: the checkpoint was altered after signing, or forged")]
    Invalid,
}

impl CheckpointPayload {
    /// Builds and signs a checkpoint of the log that began at `origin`,
    /// stamped now.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_with_origin(
        signer: &Signer,
        log: &str,
        origin: Option<Origin>,
        chain: ChainAlgorithm,
        from_seq: u64,
        upto_seq: u64,
        records: u64,
        head: &str,
        reason: CheckpointReason,
    ) -> CheckpointPayload {
        let mut cp = CheckpointPayload {
            log: log.to_string(),
            origin,
            chain,
            from_seq,
            upto_seq,
            records,
            head: head.to_string(),
            reason,
            signed_at: Timestamp::now().as_str().to_string(),
            alg: ALGORITHM.to_string(),
            key_id: signer.key_id().to_string(),
            signature: String::new(),
        };
        cp.signature = hex::encode(signer.sign(&cp.canonical_message()));
        cp
    }

    /// The bytes the signature covers. See the [module docs](super).
    pub fn canonical_message(&self) -> Vec<u8> {
        // A JSON string literal has no raw newline, so the quoted name
        // cannot fake a following line.
        let log = serde_json::to_string(&self.log).unwrap_or_default();
        // Without an origin, the message of the first version, so that
        // checkpoints signed before origins existed still verify.
        let (version, origin) = match &self.origin {
            Some(o) => (
                MESSAGE_VERSION_ORIGIN,
                format!("origin_seq={}\norigin_head={}\n", o.seq, o.head),
            ),
            None => (MESSAGE_VERSION, String::new()),
        };
        format!(
            "{version}\nlog={log}\n{origin}chain={}\nfrom_seq={}\nupto_seq={}\nrecords={}\nhead={}\nreason={}\nsigned_at={}\nalg={}\nkey_id={}\n",
            self.chain,
            self.from_seq,
            self.upto_seq,
            self.records,
            self.head,
            self.reason.as_str(),
            self.signed_at,
            self.alg,
            self.key_id,
        )
        .into_bytes()
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), SignatureError> {
        if self.alg != ALGORITHM {
            return Err(SignatureError::Algorithm(self.alg.clone()));
        }
        if self.key_id != key.key_id() {
            return Err(SignatureError::OtherKey {
                found: self.key_id.clone(),
                expected: key.key_id().to_string(),
            });
        }
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).map_err(|_| SignatureError::Malformed)?;
        if key.verify(&self.canonical_message(), &sig) {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// Reads a checkpoint payload from a record's payload value. Fails with
    /// a reason naming the key at fault.
    pub fn from_value(value: &serde_json::Value) -> Result<CheckpointPayload, String> {
        if let Some(rules) = value.get("_redacted") {
            return Err(format!(
                "redaction rules {rules} rewrote it, so its signature cannot hold; checkpoints must not be redacted"
            ));
        }
        CheckpointPayload::deserialize(value).map_err(|e| e.to_string())
    }
}
