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

/// The W3C trace flags of a trace: bit 0 is "sampled".
///
/// Carried in the [`Scope`](crate::Scope) so that exporters can say on each
/// record whether the trace it belongs to is sampled; not a key of the
/// record schema.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// No flag set: the trace is not sampled.
    pub const NONE: TraceFlags = TraceFlags(0);
    /// The W3C "sampled" flag.
    pub const SAMPLED: TraceFlags = TraceFlags(1);

    /// Flags from their byte, as written in a `traceparent`.
    pub const fn new(bits: u8) -> TraceFlags {
        TraceFlags(bits)
    }

    /// The flags' byte, as carried by OTLP's `flags` field (bits 0-7).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether the "sampled" flag is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & 1 == 1
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

/// The application's trace context that records join: its trace id, its
/// current span (the parent of ours) and its trace flags.
///
/// Parsed from a W3C `traceparent` header value
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), or built from
/// ids the application already holds.
///
/// ```
/// use agent_audit_core::ids::TraceContext;
///
/// let cx: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
/// assert_eq!(cx.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(cx.flags().is_sampled());
/// assert_eq!(
///     cx.traceparent().as_deref(),
///     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
/// );
/// # Ok::<(), agent_audit_core::ids::TraceParentError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceContext {
    trace_id: TraceId,
    parent: Option<SpanId>,
    flags: TraceFlags,
}

impl TraceContext {
    /// A context in trace `trace_id` under span `parent` (none: records
    /// join the trace at its root) with `flags`.
    pub fn new(trace_id: TraceId, parent: Option<SpanId>, flags: TraceFlags) -> TraceContext {
        TraceContext {
            trace_id,
            parent,
            flags,
        }
    }

    /// The trace records join.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The application's span, parent of the spans records are written in.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.parent
    }

    /// The trace's flags.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The context as a version-00 `traceparent` header value, to pass on
    /// to a service called on the trace's behalf; none without a parent
    /// span, which a `traceparent` cannot express.
    pub fn traceparent(&self) -> Option<String> {
        let parent = self.parent?;
        Some(format!(
            "00-{}-{}-{:02x}",
            self.trace_id, parent, self.flags.0
        ))
    }
}

/// Ids the application holds, without flags: the trace counts as sampled,
/// as a trace whose records are all kept.
impl From<(TraceId, Option<SpanId>)> for TraceContext {
    fn from((trace_id, parent): (TraceId, Option<SpanId>)) -> TraceContext {
        TraceContext::new(trace_id, parent, TraceFlags::SAMPLED)
    }
}

impl From<(TraceId, SpanId)> for TraceContext {
    fn from((trace_id, parent): (TraceId, SpanId)) -> TraceContext {
        TraceContext::new(trace_id, Some(parent), TraceFlags::SAMPLED)
    }
}

/// What is wrong with a `traceparent` header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not four `-`-separated fields of 2, 32, 16 and 2 characters.
    #[error(
        "invalid traceparent `{got}`: expected `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`"
    )]
    Format {
        /// The value, cut to 64 characters.
        got: String,
    },
    /// The version is not two lowercase hex digits, is the forbidden
    /// `ff`, or is `00` with trailing data.
    #[error("invalid traceparent version `{got}`: expected `00`")]
    Version {
        /// The version field, cut to 8 characters.
        got: String,
    },
    /// The trace id field is not 32 lowercase hex digits or is all zero.
    #[error("invalid traceparent trace id: {0}")]
    TraceId(IdParseError),
    /// The parent id field is not 16 lowercase hex digits or is all zero.
    #[error("invalid traceparent parent id: {0}")]
    ParentId(IdParseError),
    /// The flags field is not two lowercase hex digits.
    #[error("invalid traceparent flags `{got}`: expected two lowercase hex digits")]
    Flags {
        /// The flags field, cut to 8 characters.
        got: String,
    },
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl FromStr for TraceContext {
    type Err = TraceParentError;

    /// Parses a W3C Trace Context level 1 `traceparent`. A later version
    /// (`01`..`fe`) is read by its first four fields, as the
    /// recommendation asks of version-00 parsers.
    fn from_str(s: &str) -> Result<TraceContext, TraceParentError> {
        let s = s.trim_matches([' ', '\t']);
        let format = || TraceParentError::Format { got: cut(s, 64) };
        let version = s.get(..2).ok_or_else(format)?;
        if !is_lower_hex(version) || version == "ff" {
            return Err(TraceParentError::Version {
                got: cut(version, 8),
            });
        }
        let head = match s.get(55..56) {
            None if s.len() == 55 => s,
            // Version 00 is exactly 55 characters; later versions may
            // append fields after a `-`.
            Some("-") if version != "00" => &s[..55],
            _ => return Err(format()),
        };
        let fields: Vec<&str> = head.split('-').collect();
        let [_, trace, parent, flags] = fields[..] else {
            return Err(format());
        };
        if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
            return Err(format());
        }
        let lower = |kind: &'static str, digits: usize, field: &str| {
            if is_lower_hex(field) {
                Ok(())
            } else {
                Err(IdParseError {
                    kind,
                    digits,
                    got: cut(field, 64),
                })
            }
        };
        lower("trace id", 32, trace).map_err(TraceParentError::TraceId)?;
        lower("span id", 16, parent).map_err(TraceParentError::ParentId)?;
        let trace_id = trace.parse().map_err(TraceParentError::TraceId)?;
        let parent = parent.parse().map_err(TraceParentError::ParentId)?;
        if !is_lower_hex(flags) {
            return Err(TraceParentError::Flags { got: cut(flags, 8) });
        }
        let bits = u8::from_str_radix(flags, 16)
            .map_err(|_| TraceParentError::Flags { got: cut(flags, 8) })?;
        Ok(TraceContext::new(trace_id, Some(parent), TraceFlags(bits)))
    }
}

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

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_gives_trace_parent_and_flags() {
        let cx: TraceContext = GOOD.parse().unwrap();
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            cx.parent_span_id().map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(cx.flags().is_sampled());
        assert_eq!(cx.traceparent().as_deref(), Some(GOOD));
        let unsampled: TraceContext = GOOD.replace("-01", "-00").parse().unwrap();
        assert_eq!(unsampled.flags(), TraceFlags::NONE);
        // A later version is read by its first four fields.
        let later: TraceContext = format!("cc{}-what-ever", &GOOD[2..]).parse().unwrap();
        assert_eq!(later.trace_id(), cx.trace_id());
    }

    #[test]
    fn a_bad_traceparent_is_refused_naming_what_is_wrong() {
        let cases: [(String, &str); 10] = [
            (GOOD.replace("00-4b", "ff-4b"), "version `ff`"),
            (GOOD.replace("00-4b", "0x-4b"), "version `0x`"),
            (format!("{GOOD}-extra"), "expected `00-<32 hex"),
            (GOOD[..54].to_string(), "expected `00-<32 hex"),
            (GOOD.replace('-', "_"), "expected `00-<32 hex"),
            (
                GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
                "trace id: invalid trace id: expected 32 hex digits, not all zero",
            ),
            (
                GOOD.replace("00f067aa0ba902b7", &"0".repeat(16)),
                "parent id: invalid span id: expected 16 hex digits, not all zero",
            ),
            (GOOD.replace("4bf9", "4BF9"), "trace id"),
            (GOOD.replace("00f0", "g0f0"), "parent id"),
            (GOOD.replace("-01", "-0G"), "flags `0G`"),
        ];
        for (value, want) in cases {
            let e = value.parse::<TraceContext>().unwrap_err();
            assert!(e.to_string().contains(want), "{value}: {e}");
        }
    }
}
