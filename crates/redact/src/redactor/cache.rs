//! The pre-check's per-thread answers for keys it has seen: records of one
//! schema repeat their keys, so most keys are looked up, not split.

use crate::names::Tokens;

use super::Redactor;

type Cache = std::collections::HashMap<Box<str>, bool, KeyHashing>;

thread_local! {
    /// The pre-check's answers per key, for the redactor whose id is first:
    /// records of one schema repeat their keys, so most keys are looked up,
    /// not split. Bounded: cleared when full.
    static KEY_CACHE: std::cell::RefCell<(u64, Cache)> =
        std::cell::RefCell::new((0, Cache::with_hasher(KeyHashing::new())));
}

/// A multiply-rotate hash of short keys, seeded per thread: the std
/// SipHash cost more than the rest of a key's lookup (callgrind, about 600
/// instructions a record of the tutorial's), and the cache's bound (cleared
/// at [`KEY_CACHE_ENTRIES`]) with the random seed keeps keys chosen to
/// collide from costing more than a scan of that many entries.
#[derive(Clone, Copy)]
struct KeyHashing(u64);

impl KeyHashing {
    fn new() -> KeyHashing {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        KeyHashing(h.finish() | 1)
    }
}

impl std::hash::BuildHasher for KeyHashing {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

struct KeyHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        // The length tells `ab` from `ab\0`.
        self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, b: u8) {
        self.mix(u64::from(b));
    }

    fn finish(&self) -> u64 {
        // The table indexes by the low bits and tags by the high ones: fold
        // the well-mixed high half into both.
        self.0 ^ (self.0 >> 29)
    }
}

/// Entries in a thread's key cache before it is cleared.
const KEY_CACHE_ENTRIES: usize = 4096;
/// Longer keys are not cached.
const KEY_CACHE_KEY_BYTES: usize = 64;

impl Redactor {
    /// Whether some field rule matches `key`, through the thread's cache.
    pub(super) fn key_matches_cached(&self, key: &str, tokens: &mut Tokens) -> bool {
        if key.len() > KEY_CACHE_KEY_BYTES {
            return self.field_rule(key, tokens).is_some();
        }
        let cached = KEY_CACHE.with(|cell| {
            let mut cache = cell.try_borrow_mut().ok()?;
            if cache.0 != self.id {
                cache.0 = self.id;
                cache.1.clear();
            }
            cache.1.get(key).copied()
        });
        if let Some(hit) = cached {
            return hit;
        }
        let hit = self.field_rule(key, tokens).is_some();
        KEY_CACHE.with(|cell| {
            if let Ok(mut cache) = cell.try_borrow_mut()
                && cache.0 == self.id
            {
                if cache.1.len() >= KEY_CACHE_ENTRIES {
                    cache.1.clear();
                }
                cache.1.insert(Box::from(key), hit);
            }
        });
        hit
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::KeyHashing;

    fn hash(b: &KeyHashing, key: &str) -> u64 {
        b.hash_one(Box::<str>::from(key))
    }

    #[test]
    fn keys_that_differ_by_length_padding_or_one_byte_hash_apart() {
        let b = KeyHashing::new();
        let keys = [
            "",
            "a",
            "a\0",
            "ab",
            "account_id",
            "account_ie",
            "accounts_id",
            "12345678",
            "123456789",
        ];
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            assert!(seen.insert(hash(&b, k)), "{k:?} collided");
        }
        // The same key, the same hash within one table.
        assert_eq!(hash(&b, "account_id"), hash(&b, "account_id"));
    }
}
