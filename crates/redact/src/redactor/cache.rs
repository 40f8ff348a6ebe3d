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

/// A multiply-rotate hash of short keys, seeded per thread (see
/// [`KeyHasher::mix`] for why the multiply folds): the std
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
    /// A folded multiply (the full 128-bit product's halves xored), not a
    /// wrapping one: with a wrapping product, flipping the top bit of its
    /// input flips only the top bit of its output whatever the seed, and
    /// flipping the bit the rotation brings under it in the next word
    /// cancels that, so keys could be chosen to collide under every seed.
    /// The high half moves by a carry that depends on the seeded state.
    fn mix(&mut self, word: u64) {
        let p = u128::from(self.0.rotate_left(5) ^ word) * u128::from(K);
        self.0 = (p as u64) ^ ((p >> 64) as u64);
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

    fn hash_bytes(b: &KeyHashing, bytes: &[u8]) -> u64 {
        use std::hash::Hasher;
        let mut h = b.build_hasher();
        h.write(bytes);
        h.write_u8(0xff);
        h.finish()
    }

    #[test]
    fn a_top_bit_difference_does_not_cancel_whatever_the_seed() {
        // Flipping the top bit of a multiplication's input flips only the
        // top bit of a plain wrapping product, whatever the seed; a flip of
        // the bit the rotation then brings under it would cancel it, a
        // collision chosen without knowing the seed.
        let a = *b"abcdefghijklmnop";
        let mut b = a;
        b[7] ^= 0x80;
        b[8] ^= 0x10;
        let equal = (0..64)
            .filter(|_| {
                let k = KeyHashing::new();
                hash_bytes(&k, &a) == hash_bytes(&k, &b)
            })
            .count();
        assert_eq!(equal, 0, "collided under {equal} of 64 seeds");
    }

    #[test]
    fn key_families_shaped_to_collide_spread_over_the_table() {
        let b = KeyHashing::new();
        let mut keys = Vec::new();
        for pos in 0..16 {
            for c in b'0'..=b'z' {
                let mut k = *b"abcdefghijklmnop";
                k[pos] = c;
                keys.push(String::from_utf8(k.to_vec()).unwrap());
            }
        }
        for i in 0..2000 {
            keys.push(format!("field__{i:0>8}"));
            keys.push(format!("x{i:07}y"));
            keys.push(format!("password_{i}"));
            keys.push(format!("{}\u{e9}{i}", "k".repeat(i % 40)));
        }
        keys.sort();
        keys.dedup();
        // The table indexes by the low bits: 4096 slots for about 9,000
        // keys hold a handful each when the hash spreads them, hundreds
        // when a family lands together.
        let mut slots = vec![0u32; 4096];
        for k in &keys {
            slots[(hash(&b, k) & 4095) as usize] += 1;
        }
        let most = slots.iter().max().copied().unwrap_or(0);
        assert!(most < 40, "{most} of {} keys in one slot", keys.len());
    }
}
