//! The cheap test that rules out most keys before they are split into
//! tokens.

/// Whether a key could hold a trigger ([`super::triggers()`]): every trigger of
/// two bytes is in a table of byte pairs, every longer one has its first
/// three bytes in a Bloom filter; a key none of whose positions hits
/// either is not split. A few instructions per byte.
#[derive(Debug)]
pub(crate) struct KeyFilter {
    two: Vec<u64>,
    three: Vec<u64>,
    /// A trigger of one byte: every key is a candidate.
    always: bool,
}

fn bit(table: &[u64], i: usize) -> bool {
    table.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set(table: &mut [u64], i: usize) {
    if let Some(w) = table.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

fn pair(a: u8, b: u8) -> usize {
    usize::from(a) << 8 | usize::from(b)
}

fn triple(a: u8, b: u8, c: u8) -> usize {
    let v = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
    (v.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

impl KeyFilter {
    pub fn new(triggers: &[String]) -> KeyFilter {
        let mut f = KeyFilter {
            two: vec![0; 65536 / 64],
            three: vec![0; 65536 / 64],
            always: false,
        };
        for t in triggers {
            // Only ASCII keys are filtered; others are always split.
            if !t.is_ascii() {
                continue;
            }
            let b = t.as_bytes();
            match b.len() {
                0 => {}
                1 => f.always = true,
                2 => set(&mut f.two, pair(b[0], b[1])),
                _ => set(&mut f.three, triple(b[0], b[1], b[2])),
            }
        }
        f
    }

    /// Whether the ASCII `key` may hold a trigger, any case.
    pub fn candidate(&self, key: &[u8]) -> bool {
        if self.always {
            return true;
        }
        let n = key.len();
        for i in 0..n.saturating_sub(1) {
            let a = key[i].to_ascii_lowercase();
            let b = key[i + 1].to_ascii_lowercase();
            if bit(&self.two, pair(a, b)) {
                return true;
            }
            if i + 2 < n && bit(&self.three, triple(a, b, key[i + 2].to_ascii_lowercase())) {
                return true;
            }
        }
        false
    }
}
