//! Retrying a request to a server, the parts that need no I/O: reading the
//! server's `Retry-After`, the backoff between attempts, and whether a wait
//! still fits a deadline. Shared by the model client (`agent-audit-agents`)
//! and the OTLP exporter (`agent-audit-otlp`) so that both read a server's
//! answer the same way; the caller sleeps, on its own clock.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use agent_audit_core::retry;
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_450);
//! assert_eq!(retry::parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
//! assert_eq!(
//!     retry::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
//!     Some(Duration::from_secs(30))
//! );
//! let wait = retry::jitter(retry::backoff(Duration::from_millis(100), Duration::from_secs(8), 3));
//! assert!(wait >= Duration::from_millis(200) && wait <= Duration::from_millis(400));
//! ```

use std::time::{Duration, Instant, SystemTime};

use rand::Rng as _;

/// The delay a `Retry-After` value asks for, measured from `now`:
/// delta-seconds (fractional ones too: `0.5`, which some servers send) or
/// an HTTP date (a date already past is no delay). `None` for anything
/// else, negative or not finite numbers included.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && let Ok(secs) = value.parse::<f64>()
    {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The backoff ceiling before retry number `retry` (1-based): `initial`
/// doubled on each further retry, never above `max`.
pub fn backoff(initial: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// A wait of at least half `ceiling` and at most all of it, the rest
/// random: senders recovering together do not retry in step, and a retry
/// never comes at once.
pub fn jitter(ceiling: Duration) -> Duration {
    let half = ceiling / 2;
    let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rand::thread_rng().gen_range(0..=span))
}

/// Whether waiting `wait` from `now` still ends before `deadline`.
pub fn fits(now: Instant, wait: Duration, deadline: Instant) -> bool {
    now.checked_add(wait).is_some_and(|end| end < deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_as_seconds_fractions_and_dates() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        let later = now + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later), now).unwrap();
        assert!(
            d > Duration::from_secs(118) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["soon", "", "-1", "-0.5", "NaN", "inf", "1e3", "1e400"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_keeps_the_upper_half() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(300));
        assert_eq!(backoff(i, m, 1), Duration::from_millis(100));
        assert_eq!(backoff(i, m, 2), Duration::from_millis(200));
        assert_eq!(backoff(i, m, 3), Duration::from_millis(300));
        assert_eq!(backoff(i, m, u32::MAX), Duration::from_millis(300));
        assert!(backoff(i, Duration::MAX, 200) > Duration::from_secs(1 << 28));
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(200));
            assert!(j >= Duration::from_millis(100) && j <= Duration::from_millis(200));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        let _ = jitter(Duration::MAX);
    }

    #[test]
    fn a_wait_fits_only_when_it_ends_before_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(10);
        assert!(fits(now, Duration::from_secs(9), deadline));
        assert!(!fits(now, Duration::from_secs(10), deadline));
        assert!(!fits(now, Duration::MAX, deadline));
    }
}
