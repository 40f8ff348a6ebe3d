//! Identifiers: W3C trace and span ids, and request / correlation ids.
//!
//! All are random 128- or 64-bit values, so ids from different processes and
//! hosts never collide (AutoGen's are process-local counters).

use std::fmt;
use std::str::FromStr;

use rand::RngCore;

/// Error for an id that is not the right number of lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: expected {digits} hex digits, not all zero, got `{got}`")]
pub struct IdParseError {
    kind: &'static str,
    digits: usize,
    got: String,
}

fn parse_hex<const N: usize>(s: &str, kind: &'static str) -> Result<[u8; N], IdParseError> {
    let err = || IdParseError {
        kind,
        digits: N * 2,
        got: s.chars().take(64).collect(),
    };
    if s.len() != N * 2 {
        return Err(err());
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = hex_val(chunk[0]).ok_or_else(err)?;
        let lo = hex_val(chunk[1]).ok_or_else(err)?;
        out[i] = hi << 4 | lo;
    }
    if out.iter().all(|b| *b == 0) {
        return Err(err());
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        buf[2 * i] = DIGITS[(b >> 4) as usize];
        buf[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(&buf[..bytes.len() * 2]).map_err(|_| fmt::Error)?)
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut rng = rand::thread_rng();
    while out.iter().all(|b| *b == 0) {
        rng.fill_bytes(&mut out);
    }
    out
}

macro_rules! w3c_id {
    ($name:ident, $n:expr, $kind:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $n]);

        impl $name {
            /// A new random id.
            pub fn random() -> Self {
                $name(random_nonzero())
            }
            /// Appends the id's lowercase hex digits without allocating.
            pub(crate) fn push_hex(self, out: &mut Vec<u8>) {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let mut buf = [0u8; $n * 2];
                for (i, b) in self.0.iter().enumerate() {
                    buf[2 * i] = DIGITS[(b >> 4) as usize];
                    buf[2 * i + 1] = DIGITS[(b & 15) as usize];
                }
                out.extend_from_slice(&buf);
            }
            /// The id's bytes, as carried on the wire by OTLP.
            pub fn to_bytes(self) -> [u8; $n] {
                self.0
            }
            /// An id from its bytes; `None` for the invalid all-zero id.
            pub fn from_bytes(bytes: [u8; $n]) -> Option<Self> {
                (bytes.iter().any(|b| *b != 0)).then_some($name(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, IdParseError> {
                parse_hex::<$n>(s, $kind).map($name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

w3c_id!(
    TraceId,
    16,
    "trace id",
    "A W3C trace id: 16 random bytes, 32 hex digits."
);
w3c_id!(
    SpanId,
    8,
    "span id",
    "A W3C span id: 8 random bytes, 16 hex digits."
);

/// A new random request or correlation id in UUID v4 form.
pub fn new_request_id() -> String {
    let mut b: [u8; 16] = random_nonzero();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = format!("{}", TraceId(b));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let t = TraceId::random();
        let s = t.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<TraceId>().unwrap(), t);
        let sp = SpanId::random();
        assert_eq!(sp.to_string().parse::<SpanId>().unwrap(), sp);
    }

    #[test]
    fn bad_ids_are_rejected_with_what_was_expected() {
        let e = "00000000000000000000000000000000"
            .parse::<TraceId>()
            .unwrap_err();
        assert!(e.to_string().contains("32 hex digits"), "{e}");
        assert!("xyz".parse::<SpanId>().is_err());
    }

    #[test]
    fn request_ids_are_uuid_v4_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
