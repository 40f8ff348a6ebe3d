//! The pre-check's one pass over a payload's text: a deterministic
//! automaton that reads each byte once and stops only where something
//! needs a closer look.
//!
//! It runs two Aho-Corasick automata in step, as one product automaton
//! built at start:
//!
//! - the **detector literals** (the screen's: prefixes of every pattern,
//!   `basic`, `://`, `@`…), matched in any ASCII case on the text as
//!   written;
//! - the **field triggers** (what a key or name must hold to match a field
//!   rule, [`crate::names::triggers`], and the suffix rule's names), matched
//!   on the text in the [`Stripped`](crate::names::Spelling::Stripped)
//!   spelling: `_` and `-` left out (the suffix rule ignores them, so
//!   `a_p_i_k_e_y` ends with `apikey`), letters lower-cased, every other
//!   byte a space.
//!
//! A field trigger arms the pass until the string it is in ends: every
//! `=` and `:` after it in the string reports ([`NAME_END`]), and so does a
//! `:` right after the string's closing quote or after spaces after it (a
//! key's end; serde_json writes no space there, a `RawValue` may). That is
//! where a key or an assignment's name that holds the trigger ends, and strings
//! hold no `"` in the text this pass reads (no backslash), so the
//! trigger's key or name always ends there. While armed the field
//! automaton rests (a trigger spanning a `"` lies in no key or name);
//! after the quote it starts again.
//!
//! A byte also reports when it ends a detector literal ([`DETECTOR`]), or
//! when the pass does not read it ([`BAIL`]: any non-ASCII byte, `\`, `%`
//! and `&`, which start escapes and encodings the normalised view
//! decodes, and a raw tab, line feed or carriage return, which only JSON
//! text serde_json did not write holds: another class for them would push
//! the default rules' table past 16 bits). Every detector literal's occurrence reports, overlapping ones
//! too, at its last byte. States that report are numbered last, so the
//! loop tests one comparison a byte.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::ControlFlow;

/// A multiply-rotate hash for the maps that build the automaton: their
/// keys are states and classes made from the configuration, never from a
/// payload, so SipHash's guard against chosen keys buys nothing, and it
/// cost several times as much.
#[derive(Default)]
struct Fast(u64);

impl Hasher for Fast {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut x = [0u8; 8];
            x.copy_from_slice(w);
            self.write_u64(u64::from_le_bytes(x));
        }
        for &b in words.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fast>>;

/// A detector literal ends at this byte.
pub(super) const DETECTOR: u8 = 1;
/// The byte is an `=` or `:` after a field trigger with no `"` between,
/// or a `:` right after the `"` that closes a string holding one (spaces
/// between allowed).
pub(super) const NAME_END: u8 = 2;
/// The byte is not read here; the caller must stop.
pub(super) const BAIL: u8 = 4;

/// Literals are cut to this many bytes: a prefix of a needed literal is
/// needed too, and shorter literals make fewer states.
const KEEP_BYTES: usize = 8;

/// More states than this, or more entries than [`MAX_ENTRIES`], and the
/// table would crowd the caches (the default rules take about 1,600
/// states of 39 classes); the pre-check then takes its other path.
const MAX_STATES: usize = 1 << 13;
const MAX_ENTRIES: usize = 1 << 19;

/// The product automaton, its states premultiplied by the number of byte
/// classes.
pub(super) struct Sieve {
    classes: [u8; 256],
    table: Table,
    /// The first (premultiplied) state that reports.
    special: u32,
    stride: u32,
    /// What each reporting state reports, by its premultiplied number less
    /// `special`.
    flags: Vec<u8>,
}

impl std::fmt::Debug for Sieve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sieve")
            .field(
                "states",
                &((self.special as usize + self.flags.len()) / self.stride as usize),
            )
            .field("classes", &self.stride)
            .finish()
    }
}

/// Whether the pass stops at `b`.
fn bails(b: u8) -> bool {
    !b.is_ascii() || matches!(b, b'\\' | b'%' | b'&' | b'\t' | b'\n' | b'\r')
}

/// How the field automaton reads `b`: `None` for a left-out `_` or `-`.
fn field_symbol(b: u8) -> Option<u8> {
    match b {
        b'_' | b'-' => None,
        _ if b.is_ascii_alphanumeric() => Some(b.to_ascii_lowercase()),
        _ => Some(b' '),
    }
}

/// An Aho-Corasick automaton over ASCII symbols, dense.
struct Aho {
    delta: Vec<u32>,
    accept: Vec<bool>,
}

impl Aho {
    fn new(literals: &[Vec<u8>]) -> Aho {
        let mut children: Vec<[u32; 128]> = vec![[0; 128]];
        let mut terminal = vec![false];
        for lit in literals {
            let mut s = 0usize;
            for &b in lit {
                let c = usize::from(b & 0x7f);
                if children[s][c] == 0 {
                    children.push([0; 128]);
                    terminal.push(false);
                    children[s][c] = (children.len() - 1) as u32;
                }
                s = children[s][c] as usize;
            }
            terminal[s] = true;
        }
        let n = children.len();
        let mut delta = vec![0u32; n * 128];
        let mut accept = terminal.clone();
        let mut fail = vec![0usize; n];
        // Breadth first: a state's failure target is shallower, so its
        // row is complete when the state's is filled.
        let mut queue = std::collections::VecDeque::new();
        for c in 0..128 {
            let child = children[0][c];
            delta[c] = child;
            if child != 0 {
                queue.push_back(child as usize);
            }
        }
        while let Some(s) = queue.pop_front() {
            accept[s] |= accept[fail[s]];
            for c in 0..128 {
                let child = children[s][c];
                if child == 0 {
                    delta[s * 128 + c] = delta[fail[s] * 128 + c];
                } else {
                    fail[child as usize] = delta[fail[s] * 128 + c] as usize;
                    delta[s * 128 + c] = child;
                    queue.push_back(child as usize);
                }
            }
        }
        Aho { delta, accept }
    }

    fn next(&self, s: u32, symbol: u8) -> u32 {
        self.delta[s as usize * 128 + usize::from(symbol & 0x7f)]
    }
}

/// Literals as the automaton needs them: cut, deduplicated, and without
/// those another one lies inside (an occurrence of the longer holds one
/// of the shorter, reported at a byte within it).
fn minimal(literals: impl Iterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = literals
        .map(|mut l| {
            l.truncate(KEEP_BYTES);
            l
        })
        .collect();
    out.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
    out.dedup();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for l in out {
        if !kept
            .iter()
            .any(|k| l.windows(k.len()).any(|w| w == k.as_slice()))
        {
            kept.push(l);
        }
    }
    kept
}

impl Sieve {
    /// The automaton for these detector literals (lower-case, matched in
    /// any ASCII case) and field triggers (in the stripped spelling), or
    /// `None` when a field trigger is a single byte (nearly every key
    /// would stop the pass) or the automaton would be too large.
    pub(super) fn build(detector: &[Vec<u8>], field: &[Vec<u8>]) -> Option<Sieve> {
        // A literal holding a byte the pass stops at is never completed
        // without stopping first.
        let readable = |l: &Vec<u8>| !l.is_empty() && !l.iter().any(|&b| bails(b));
        let detector = minimal(
            detector
                .iter()
                .filter(|l| readable(l))
                .map(|l| l.to_ascii_lowercase()),
        );
        let field = minimal(field.iter().filter(|l| readable(l)).cloned());
        if field.iter().any(|l| l.len() < 2) {
            return None;
        }
        debug_assert!(field.iter().flatten().all(|&b| field_symbol(b) == Some(b)));
        let d = Aho::new(&detector);
        let f = Aho::new(&field);

        // Byte classes: bytes that every part of the automaton reads alike.
        let in_detector: Vec<bool> = (0..128u8)
            .map(|b| detector.iter().flatten().any(|&x| x == b))
            .collect();
        let in_field: Vec<bool> = (0..128u8)
            .map(|b| field.iter().flatten().any(|&x| x == b))
            .collect();
        let mut classes = [0u8; 256];
        let mut reps: Vec<u8> = Vec::new();
        let mut seen: FastMap<(u16, u16, u8, bool), u8> = FastMap::default();
        for b in 0..=255u8 {
            let lower = b.to_ascii_lowercase();
            let dk = if b.is_ascii() && in_detector[usize::from(lower)] {
                u16::from(lower)
            } else {
                256
            };
            let fk = match field_symbol(b) {
                None => 257,
                Some(s) if s.is_ascii() && in_field[usize::from(s)] => u16::from(s),
                Some(_) => 256,
            };
            // Quotes, `=` and `:` each move the armed states their own way,
            // and a space keeps a closed string closed.
            let end = match b {
                b'"' => 1,
                b'=' => 2,
                b':' => 3,
                b' ' => 4,
                _ => 0,
            };
            let key = (dk, fk, end, bails(b));
            let next = reps.len();
            let class = *seen.entry(key).or_insert_with(|| {
                reps.push(b);
                next as u8
            });
            classes[usize::from(b)] = class;
        }
        let stride = reps.len();

        // The product, breadth first from both roots. A state is the pair
        // of automaton states (the field one `ARMED` after a trigger),
        // whether the byte before closed an armed string, and what the
        // byte into it reported; one bail state absorbs every byte after
        // a stop.
        type Key = (u32, u32, bool, u8);
        const ARMED: u32 = u32::MAX - 1;
        let bail_key: Key = (u32::MAX, u32::MAX, false, BAIL);
        let mut ids: FastMap<Key, usize> = FastMap::default();
        let mut keys: Vec<Key> = vec![(0, 0, false, 0), bail_key];
        ids.insert(keys[0], 0);
        ids.insert(bail_key, 1);
        let mut next: Vec<usize> = Vec::new();
        let mut at = 0;
        while at < keys.len() {
            let (s1, s2, closed, _) = keys[at];
            for &b in &reps {
                let key = if keys[at] == bail_key || bails(b) {
                    bail_key
                } else {
                    let t1 = d.next(s1, b.to_ascii_lowercase());
                    let mut flags = 0;
                    if d.accept[t1 as usize] {
                        flags |= DETECTOR;
                    }
                    // The field automaton from `from` over `b`: armed when
                    // a trigger ends.
                    let read = |from: u32| match field_symbol(b) {
                        None => from,
                        Some(s) => {
                            let t = f.next(from, s);
                            if f.accept[t as usize] { ARMED } else { t }
                        }
                    };
                    let (t2, closes) = match (s2, b) {
                        // The armed string ends: a key's if `:` follows.
                        (ARMED, b'"') => (read(0), true),
                        (ARMED, b'=' | b':') => {
                            flags |= NAME_END;
                            (ARMED, false)
                        }
                        (ARMED, _) => (ARMED, false),
                        // Spaces may stand between a key and its `:` in text
                        // serde_json did not write (a payload's RawValue):
                        // the string stays closed over them (other JSON
                        // whitespace bails).
                        (s2, _) => {
                            if closed && b == b':' {
                                flags |= NAME_END;
                            }
                            (read(s2), closed && b == b' ')
                        }
                    };
                    (t1, t2, closes, flags)
                };
                let id = match ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        if keys.len() >= MAX_STATES {
                            return None;
                        }
                        keys.push(key);
                        ids.insert(key, keys.len() - 1);
                        keys.len() - 1
                    }
                };
                next.push(id);
            }
            at += 1;
        }

        let flags: Vec<u8> = keys.iter().map(|k| k.3).collect();

        // Quiet states first (the start state first of all), reporting ones
        // after: one comparison tells.
        let n = flags.len();
        let quiet: Vec<usize> = (0..n).filter(|&i| flags[i] == 0).collect();
        let loud: Vec<usize> = (0..n).filter(|&i| flags[i] != 0).collect();
        let mut order = vec![0u32; n];
        for (new, &old) in quiet.iter().chain(loud.iter()).enumerate() {
            order[old] = u32::try_from(new * stride).ok()?;
        }
        if n * stride > MAX_ENTRIES {
            return None;
        }
        let mut entries = vec![0u32; n * stride];
        for old in 0..n {
            let row = order[old] as usize;
            for c in 0..stride {
                entries[row + c] = order[next[old * stride + c]];
            }
        }
        let table = if entries.len() <= 1 << 16 {
            let mut small = vec![0u16; SMALL];
            for (to, &e) in small.iter_mut().zip(&entries) {
                *to = u16::try_from(e).ok()?;
            }
            Table::Small(small.into_boxed_slice().try_into().ok()?)
        } else {
            // Padded to a power of two for the mask; the padding is never
            // reached (a state plus a class is an entry).
            let len = (entries.len() + 256).next_power_of_two();
            entries.resize(len, 0);
            Table::Large(entries)
        };
        Some(Sieve {
            classes,
            table,
            special: u32::try_from(quiet.len() * stride).ok()?,
            stride: u32::try_from(stride).ok()?,
            // By premultiplied state: no division when a state reports.
            flags: loud
                .iter()
                .flat_map(|&i| std::iter::once(flags[i]).chain(std::iter::repeat_n(0, stride - 1)))
                .collect(),
        })
    }

    /// Reads `text`, calling `event` with each reporting byte's offset and
    /// what it reports, until `event` breaks. After a [`BAIL`] every byte
    /// reports [`BAIL`]: callers break there.
    pub(super) fn scan<B>(
        &self,
        text: &[u8],
        mut event: impl FnMut(usize, u8) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let mut s = 0usize;
        let mut from = 0;
        loop {
            let found = match &self.table {
                Table::Small(t) => self.quiet_run(t, text, &mut s, from),
                Table::Large(t) => self.quiet_run_large(t, text, &mut s, from),
            };
            let Some(at) = found else {
                return ControlFlow::Continue(());
            };
            let index = s - self.special as usize;
            event(at, self.flags.get(index).copied().unwrap_or(BAIL))?;
            from = at + 1;
        }
    }

    /// Moves `s` over `text` from `from` to the first byte that reports
    /// (its offset) or the end (`None`). This loop is the pre-check's cost
    /// on most payloads: a byte, its class, a transition and one
    /// comparison, and no bounds check (a 16-bit state plus a class is
    /// below the table's length). Not inlined: on its own, the compiler
    /// keeps the table's address where one instruction can index it
    /// (measured: 6 instructions a byte instead of 7).
    #[inline(never)]
    fn quiet_run(
        &self,
        t: &[u16; SMALL],
        text: &[u8],
        s: &mut usize,
        from: usize,
    ) -> Option<usize> {
        let classes = &self.classes;
        // A state is below 2^16 (the table holds 16-bit entries): said so,
        // the compiler drops the bounds checks.
        let q = usize::from(u16::try_from(*s).unwrap_or(0));
        let step = |q: usize, b: u8| usize::from(t[q + usize::from(classes[usize::from(b)])]);
        eights(text, from, q, self.special as usize, step, s)
    }

    /// [`Sieve::quiet_run`] for a table too large for 16 bits: its length
    /// is a power of two, so a mask keeps every index in it (one more
    /// instruction a byte).
    #[inline(never)]
    fn quiet_run_large(&self, t: &[u32], text: &[u8], s: &mut usize, from: usize) -> Option<usize> {
        if t.is_empty() {
            return None;
        }
        let classes = &self.classes;
        let mask = t.len() - 1;
        let step = |q: usize, b: u8| t[(q + usize::from(classes[usize::from(b)])) & mask] as usize;
        eights(text, from, *s, self.special as usize, step, s)
    }
}

/// Runs `step` from state `q` over `text` from `from`, eight bytes a
/// round, to the first state at or past `special` (its offset) or the end
/// (`None`), leaving the state in `out`.
#[inline(always)]
fn eights(
    text: &[u8],
    from: usize,
    mut q: usize,
    special: usize,
    step: impl Fn(usize, u8) -> usize,
    out: &mut usize,
) -> Option<usize> {
    let rest = text.get(from..).unwrap_or_default();
    let mut at = from;
    let found = 'run: {
        let mut rounds = rest.chunks_exact(8);
        for eight in &mut rounds {
            // Unrolled by the compiler.
            for (k, &b) in eight.iter().enumerate() {
                q = step(q, b);
                if q >= special {
                    break 'run Some(at + k);
                }
            }
            at += 8;
        }
        for (k, &b) in rounds.remainder().iter().enumerate() {
            q = step(q, b);
            if q >= special {
                break 'run Some(at + k);
            }
        }
        None
    };
    *out = q;
    found
}

/// Entries of a small table: any 16-bit state plus any class.
const SMALL: usize = (1 << 16) + (1 << 8);

/// The transitions, premultiplied: 16 bits when they fit (the default
/// rules' take about 64,000 entries: a few more custom field names take
/// the large one), in a table long enough for any 16-bit state plus any
/// class, so that indexing needs no check; else 32 bits in a table whose
/// length is a power of two.
enum Table {
    Small(Box<[u16; SMALL]>),
    Large(Vec<u32>),
}

#[cfg(test)]
mod tests;
