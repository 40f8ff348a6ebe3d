//! Timestamps: RFC 3339 UTC with nanoseconds, formatted once per record.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant with its RFC 3339 text (`2026-11-25T23:32:22.123456789Z`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    nanos: i128,
    text: [u8; 30],
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        let nanos = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Timestamp::from_unix_nanos(nanos)
    }

    /// The instant `nanos` after the Unix epoch. Years outside 0..=9999 are
    /// clamped, since RFC 3339 cannot write them.
    pub fn from_unix_nanos(nanos: i128) -> Timestamp {
        const MIN: i128 = -62_167_219_200_000_000_000; // 0000-01-01
        const MAX: i128 = 253_402_300_799_999_999_999; // 9999-12-31T23:59:59.999999999
        let nanos = nanos.clamp(MIN, MAX);
        // 128-bit division is a library call; every time after 1970 fits
        // 64 bits, and this runs once per record.
        let (secs, sub) = match u64::try_from(nanos) {
            Ok(n) => ((n / 1_000_000_000) as i64, (n % 1_000_000_000) as u32),
            Err(_) => (
                nanos.div_euclid(1_000_000_000) as i64,
                nanos.rem_euclid(1_000_000_000) as u32,
            ),
        };
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        let mut text = *b"0000-00-00T00:00:00.000000000Z";
        put(&mut text[0..4], y as u32);
        put(&mut text[5..7], m);
        put(&mut text[8..10], d);
        put(&mut text[11..13], sod / 3600);
        put(&mut text[14..16], sod / 60 % 60);
        put(&mut text[17..19], sod % 60);
        put(&mut text[20..29], sub);
        Timestamp { nanos, text }
    }

    /// Parses RFC 3339 with any offset and precision.
    pub fn parse(s: &str) -> Option<Timestamp> {
        let t = ::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339)
            .ok()?;
        Some(Timestamp::from_unix_nanos(t.unix_timestamp_nanos()))
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i128 {
        self.nanos
    }

    /// The RFC 3339 text as bytes (always ASCII).
    pub fn as_bytes(&self) -> &[u8; 30] {
        &self.text
    }

    /// The RFC 3339 text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written into `text`.
        std::str::from_utf8(&self.text).unwrap_or("0000-00-00T00:00:00.000000000Z")
    }
}

/// Stamps the current time, formatting the date and time of day only when
/// the second changes: the order lock's holder stamps up to millions of
/// records a second, and converting each to a calendar date was about 2 %
/// of the emitting thread's samples (`perf` on `agent-audit bench`).
#[derive(Debug)]
pub(crate) struct Stamper {
    secs: u64,
    text: [u8; 30],
}

impl Stamper {
    pub(crate) fn new() -> Stamper {
        Stamper {
            secs: u64::MAX,
            text: *b"0000-00-00T00:00:00.000000000Z",
        }
    }

    /// The current time, as [`Timestamp::now`] gives it.
    pub(crate) fn now(&mut self) -> Timestamp {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => self.at(d.as_secs(), d.subsec_nanos()),
            Err(_) => Timestamp::now(),
        }
    }

    /// `secs` and `sub` nanoseconds after the epoch.
    fn at(&mut self, secs: u64, sub: u32) -> Timestamp {
        let nanos = i128::from(secs) * 1_000_000_000 + i128::from(sub);
        if secs != self.secs {
            let whole = Timestamp::from_unix_nanos(i128::from(secs) * 1_000_000_000);
            // Past year 9999 the text is clamped: never cached.
            if whole.nanos != i128::from(secs) * 1_000_000_000 {
                return Timestamp::from_unix_nanos(nanos);
            }
            self.secs = secs;
            self.text = whole.text;
        }
        let mut text = self.text;
        put(&mut text[20..29], sub);
        Timestamp { nanos, text }
    }
}

fn put(dst: &mut [u8], mut v: u32) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_time_crate() {
        for nanos in [
            0i128,
            1_764_113_542_123_456_789,
            951_782_400_000_000_001, // 2000-02-29
            -1,
            4_102_444_799_999_999_999,
        ] {
            let ours = Timestamp::from_unix_nanos(nanos);
            let theirs = ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            let back = Timestamp::parse(ours.as_str()).unwrap();
            assert_eq!(back.unix_nanos(), nanos, "{ours}");
            assert_eq!(
                ours.as_str()[..19],
                theirs
                    .format(&::time::format_description::well_known::Rfc3339)
                    .unwrap()[..19]
            );
        }
    }

    #[test]
    fn the_stamper_formats_like_from_unix_nanos() {
        let mut st = Stamper::new();
        for (secs, sub) in [
            (1_764_113_542u64, 123_456_789u32),
            (1_764_113_542, 5),
            (1_764_113_543, 999_999_999),
            (951_782_400, 1),
            (0, 0),
            (253_402_300_799, 999_999_999),
            (253_402_300_800, 0),
            (1_764_113_543, 7),
        ] {
            let nanos = i128::from(secs) * 1_000_000_000 + i128::from(sub);
            assert_eq!(
                st.at(secs, sub),
                Timestamp::from_unix_nanos(nanos),
                "{secs} {sub}"
            );
        }
        let now = st.now();
        assert!(now.unix_nanos() > 1_700_000_000_000_000_000);
    }

    #[test]
    fn parses_offsets_to_utc() {
        let t = Timestamp::parse("2026-11-25T23:00:00+01:00").unwrap();
        assert_eq!(t.as_str(), "2026-11-25T22:00:00.000000000Z");
        assert!(Timestamp::parse("yesterday").is_none());
    }
}
