//! The pre-check's per-thread answers for keys it has seen: records of one
//! schema repeat their keys, so most keys are looked up, not split.

use crate::names::Tokens;

use super::Redactor;
use super::precheck::with_scratch;

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

/// Keys up to this many bytes have a slot in the thread's front cache.
const FRONT_KEY_BYTES: usize = 32;
/// Slots of the front cache.
const FRONT_SLOTS: usize = 64;

/// A short key as up to four words that together hold each of its bytes,
/// with its length: two keys are equal when these are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ShortKey {
    words: [u64; 4],
    len: usize,
}

impl ShortKey {
    fn new(key: &str) -> Option<ShortKey> {
        let b = key.as_bytes();
        let word = |w: &[u8; 8]| u64::from_le_bytes(*w);
        // Overlapping words cover every byte, and with the length they
        // tell any two keys apart.
        let words = match b.len() {
            0..8 => {
                let mut w = [0u8; 8];
                w[..b.len()].copy_from_slice(b);
                [word(&w), 0, 0, 0]
            }
            8..=16 => [word(b.first_chunk()?), word(b.last_chunk()?), 0, 0],
            17..=FRONT_KEY_BYTES => {
                let (head, tail) = (b.first_chunk::<16>()?, b.last_chunk::<16>()?);
                [
                    word(head.first_chunk()?),
                    word(head.last_chunk()?),
                    word(tail.first_chunk()?),
                    word(tail.last_chunk()?),
                ]
            }
            _ => return None,
        };
        Some(ShortKey {
            words,
            len: b.len(),
        })
    }

    /// The slot the key lives in. Unseeded: keys chosen to share a slot
    /// only push each other out, to the map behind it.
    fn slot(&self) -> usize {
        let [a, b, c, d] = self.words;
        let x = a ^ b.rotate_left(17) ^ c.rotate_left(31) ^ d.rotate_left(47) ^ self.len as u64;
        (x.wrapping_mul(K) >> 58) as usize % FRONT_SLOTS
    }
}

/// The last answers for short keys, one per slot: a lookup is a few
/// words compared, no hashing of the map's kind, no probing.
struct Front {
    id: u64,
    slots: [Option<(ShortKey, bool)>; FRONT_SLOTS],
}

thread_local! {
    /// In front of [`KEY_CACHE`]: the pre-check judges the same few keys
    /// (`account_id`, `prompt_tokens`) record after record.
    static FRONT: std::cell::RefCell<Front> = const {
        std::cell::RefCell::new(Front { id: 0, slots: [None; FRONT_SLOTS] })
    };
}

impl Redactor {
    /// Whether some field rule matches `key`, through the thread's caches
    /// (splitting the key in the thread's scratch tokens when neither
    /// knows it).
    pub(super) fn key_matches_cached(&self, key: &str) -> bool {
        let short = ShortKey::new(key);
        if let Some(short) = short {
            let known = FRONT.with(|cell| {
                let front = cell.try_borrow().ok()?;
                if front.id != self.id {
                    return None;
                }
                match front.slots[short.slot()] {
                    Some((k, hit)) if k == short => Some(hit),
                    _ => None,
                }
            });
            if let Some(hit) = known {
                return hit;
            }
        }
        let hit = with_scratch(|tokens| self.key_matches_mapped(key, tokens));
        if let Some(short) = short {
            FRONT.with(|cell| {
                if let Ok(mut front) = cell.try_borrow_mut() {
                    if front.id != self.id {
                        front.id = self.id;
                        front.slots = [None; FRONT_SLOTS];
                    }
                    front.slots[short.slot()] = Some((short, hit));
                }
            });
        }
        hit
    }

    /// Whether some field rule matches `key`, through the thread's map.
    fn key_matches_mapped(&self, key: &str, tokens: &mut Tokens) -> bool {
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

    use super::{FRONT_KEY_BYTES, KeyHashing, ShortKey};

    /// Every length a short key can have, each byte changed in turn, and
    /// a trailing zero byte: no two distinct keys share their words.
    #[test]
    fn short_keys_are_equal_only_when_the_keys_are() {
        let mut seen = std::collections::HashMap::new();
        for len in 0..=FRONT_KEY_BYTES {
            let base: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let mut keys = vec![base.clone(), format!("{base}\0")];
            for pos in 0..len {
                let mut k = base.clone().into_bytes();
                k[pos] = b'#';
                keys.push(String::from_utf8(k).unwrap());
            }
            for k in keys {
                let Some(short) = ShortKey::new(&k) else {
                    assert!(k.len() > FRONT_KEY_BYTES, "{k:?}");
                    continue;
                };
                assert_eq!(Some(short), ShortKey::new(&k.clone()));
                let words = (short.words, short.len);
                if let Some(other) = seen.insert(words, k.clone()) {
                    assert_eq!(other, k, "two keys share a slot's words");
                }
            }
        }
        assert!(ShortKey::new(&"x".repeat(FRONT_KEY_BYTES + 1)).is_none());
    }

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
