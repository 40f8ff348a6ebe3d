//! The pre-check's per-thread key cache (issue 15: a seeded multiply-rotate
//! hash instead of SipHash): a payload of 10,000 distinct keys, in families
//! shaped to collide in a weak hash (keys equal but for one byte at each
//! position of an 8-byte word, keys equal but for their last bytes, long
//! shared prefixes), is checked and redacted with the cache warm, and every
//! answer equals a fresh redactor's (whose cache starts empty).

use agent_audit_redact::{RedactionConfig, Redactor};
use serde_json::{Map, Value};

/// 10,000 distinct keys under 64 bytes (the cache's longest), some of
/// which name a secret field.
fn keys() -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    // One byte varies, at every position of a 16-byte key.
    for pos in 0..16 {
        for b in b'0'..=b'z' {
            let mut k = *b"abcdefghijklmnop";
            k[pos] = b;
            out.insert(String::from_utf8(k.to_vec()).unwrap());
        }
    }
    // Counters in the high bytes of each word, and secret-named ones.
    let mut i = 0u32;
    while out.len() < 10_000 {
        out.insert(match i % 4 {
            0 => format!("field__{i:0>8}"),
            1 => format!("x{i:07}y"),
            2 => format!("password_{i}"),
            _ => format!("{}\u{e9}{i}", "k".repeat((i % 40) as usize)),
        });
        i += 1;
    }
    out.into_iter().collect()
}

fn payload(keys: &[String]) -> String {
    let mut m = Map::new();
    for (i, k) in keys.iter().enumerate() {
        m.insert(k.clone(), Value::from(i as u64));
    }
    Value::Object(m).to_string()
}

fn fresh() -> Redactor {
    Redactor::from_config_with_env(&RedactionConfig::default(), |_| None).unwrap()
}

#[test]
fn ten_thousand_crafted_keys_give_a_fresh_redactors_answers() {
    let keys = keys();
    assert!(keys.len() >= 10_000, "{}", keys.len());
    let warm = std::sync::Arc::new(fresh());
    let one = |k: &String| format!("{{{}:1}}", Value::String(k.clone()));
    // The answers of a cache that never saw the key: each looked up once,
    // on a thread of its own (the cache is per thread).
    let cold: Vec<bool> = {
        let (warm, keys) = (warm.clone(), keys.clone());
        std::thread::spawn(move || keys.iter().map(|k| warm.may_redact(&one(k))).collect())
            .join()
            .unwrap()
    };
    // Here, each key twice: the second round answers from the cache
    // (filled, cleared at its bound and filled again).
    for round in 0..2 {
        for (k, want) in keys.iter().zip(&cold) {
            let got = warm.may_redact(&one(k));
            if round == 1 {
                assert_eq!(got, *want, "{k}");
            }
        }
    }
    let hits = cold.iter().filter(|h| **h).count();
    assert!(hits > 0 && hits < keys.len(), "{hits} keys fire");
    // A sample against redactors built afresh.
    for k in keys.iter().step_by(500) {
        assert_eq!(warm.may_redact(&one(k)), fresh().may_redact(&one(k)), "{k}");
    }
    // All in one payload: the pre-check, then the walk.
    let text = payload(&keys);
    assert_eq!(warm.may_redact(&text), fresh().may_redact(&text));
    let mut a: Value = serde_json::from_str(&text).unwrap();
    let mut b = a.clone();
    assert_eq!(warm.redact(&mut a), fresh().redact(&mut b));
    assert_eq!(a, b);
}
