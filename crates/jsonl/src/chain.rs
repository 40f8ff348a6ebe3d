//! The `prev` chain: each line carries the hash of the previous line's exact
//! bytes, so an edit, insertion, deletion or reordering breaks the chain.
//!
//! The hash covers a line's bytes without its terminating newline. The
//! first line of a new log (no earlier line anywhere, in any rotated file)
//! has `prev` = [`GENESIS`]. With a key the hash is HMAC-SHA256 under that
//! key, so someone able to rewrite the file cannot recompute the chain
//! without the key.
//!
//! ```
//! use agent_audit_jsonl::chain::{Chain, GENESIS};
//!
//! let mut chain = Chain::plain();
//! assert_eq!(chain.head(), GENESIS);
//! let line = br#"{"v":1,"seq":1}"#;
//! let h1 = chain.next(line).to_string();
//! assert_eq!(chain.head(), h1);
//! // A verifier recomputes the same value from the same bytes.
//! assert_eq!(Chain::plain().next(line), h1);
//! // A keyed chain gives a different value for the same line.
//! assert_ne!(Chain::keyed(b"secret").next(line), h1);
//! ```

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `prev` of the very first line of a log: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HEX: &[u8; 16] = b"0123456789abcdef";

#[derive(Clone)]
enum Mode {
    Plain,
    // The keyed state is computed once; cloning it per line is cheaper than
    // re-keying.
    Keyed(Arc<Hmac<Sha256>>),
}

/// A running chain: the algorithm (plain SHA-256 or HMAC-SHA256) and the
/// current head (the value the next line's `prev` must hold).
#[derive(Clone)]
pub struct Chain {
    mode: Mode,
    head: [u8; 64],
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Chain")
            .field("keyed", &self.is_keyed())
            .field("head", &self.head())
            .finish()
    }
}

impl Chain {
    /// A plain SHA-256 chain starting at [`GENESIS`].
    pub fn plain() -> Chain {
        Chain {
            mode: Mode::Plain,
            head: genesis(),
        }
    }

    /// An HMAC-SHA256 chain under `key`, starting at [`GENESIS`].
    pub fn keyed(key: &[u8]) -> Chain {
        // HMAC accepts keys of any length, so this cannot fail; the plain
        // fallback only keeps library code free of panics.
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mac) => Chain {
                mode: Mode::Keyed(Arc::new(mac)),
                head: genesis(),
            },
            Err(_) => Chain::plain(),
        }
    }

    /// Whether the chain is keyed (HMAC).
    pub fn is_keyed(&self) -> bool {
        matches!(self.mode, Mode::Keyed(_))
    }

    /// The current head: the `prev` value the next line must carry.
    pub fn head(&self) -> &str {
        // Only ASCII hex digits are ever stored in `head`.
        std::str::from_utf8(&self.head).unwrap_or(GENESIS)
    }

    /// Sets the head, e.g. to resume after the last line of an existing
    /// file. Returns false (and changes nothing) unless `head` is 64
    /// lowercase hex digits.
    pub fn set_head(&mut self, head: &str) -> bool {
        let ok = head.len() == 64
            && head
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            self.head.copy_from_slice(head.as_bytes());
        }
        ok
    }

    pub(crate) fn head_raw(&self) -> [u8; 64] {
        self.head
    }

    pub(crate) fn set_head_raw(&mut self, head: [u8; 64]) {
        self.head = head;
    }

    /// The chain value of `line` (its exact bytes, without the newline),
    /// without advancing.
    pub fn hash(&self, line: &[u8]) -> [u8; 32] {
        match &self.mode {
            Mode::Plain => Sha256::digest(line).into(),
            Mode::Keyed(mac) => {
                let mut mac = Hmac::<Sha256>::clone(mac);
                mac.update(line);
                mac.finalize().into_bytes().into()
            }
        }
    }

    /// Advances over `line` (exact bytes, without the newline) and returns
    /// the new head in hex: the `prev` of the line after it.
    pub fn next(&mut self, line: &[u8]) -> &str {
        self.advance(line);
        self.head()
    }

    /// [`Chain::next`] without returning the head (the writer's hot path).
    pub(crate) fn advance(&mut self, line: &[u8]) {
        let digest = self.hash(line);
        for (i, b) in digest.iter().enumerate() {
            self.head[2 * i] = HEX[(b >> 4) as usize];
            self.head[2 * i + 1] = HEX[(b & 15) as usize];
        }
    }
}

fn genesis() -> [u8; 64] {
    [b'0'; 64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_matches_sha256_of_the_exact_bytes() {
        // sha256("abc"), FIPS 180-2 test vector.
        let mut c = Chain::plain();
        assert_eq!(
            c.next(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keyed_matches_hmac_sha256() {
        // RFC 4231 test case 2.
        let mut c = Chain::keyed(b"Jefe");
        assert_eq!(
            c.next(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(c.is_keyed());
        assert!(!format!("{c:?}").contains("Jefe"));
    }

    #[test]
    fn set_head_rejects_non_hex() {
        let mut c = Chain::plain();
        assert!(!c.set_head("xyz"));
        assert!(!c.set_head(&"A".repeat(64)));
        assert_eq!(c.head(), GENESIS);
        assert!(c.set_head(&"ab".repeat(32)));
        assert_eq!(c.head(), "ab".repeat(32));
    }
}
