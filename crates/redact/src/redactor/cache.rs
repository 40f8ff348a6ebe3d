//! The pre-check's per-thread answers for keys it has seen: records of one
//! schema repeat their keys, so most keys are looked up, not split.

use crate::names::Tokens;

use super::Redactor;

thread_local! {
    /// The pre-check's answers per key, for the redactor whose id is first:
    /// records of one schema repeat their keys, so most keys are looked up,
    /// not split. Bounded: cleared when full.
    static KEY_CACHE: std::cell::RefCell<(u64, std::collections::HashMap<Box<str>, bool>)> =
        std::cell::RefCell::new((0, std::collections::HashMap::new()));
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
