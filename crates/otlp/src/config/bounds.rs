//! The range of every number an OTLP sink takes, checked before anything
//! starts.

use super::{OtlpConfig, OtlpConfigError};

/// The range of every number an OTLP sink takes, as `(key, min, max)`.
/// The upper bounds keep each size to what one process can hold (a
/// `batch_size * max_in_flight` batch is allocated; a trillion aborts the
/// process) and each time to what an operator means by it.
pub const BOUNDS: [(&str, u64, u64); 8] = [
    ("timeout_ms", 1, 600_000),
    ("batch_size", 1, 65_536),
    ("max_in_flight", 1, 64),
    ("linger_ms", 0, 60_000),
    ("max_request_bytes", 1024, 64 << 20),
    ("retry.initial_backoff_ms", 1, 60_000),
    ("retry.max_backoff_ms", 0, 600_000),
    ("retry.max_elapsed_ms", 0, 86_400_000),
];

impl OtlpConfig {
    /// Checks every number against [`BOUNDS`] without reading the
    /// environment or any file, so a configuration loader can refuse an
    /// absurd size with the key's line before anything starts.
    /// [`OtlpConfig::resolve`] checks the same.
    pub fn validate(&self) -> Result<(), OtlpConfigError> {
        let retry = self.retry.clone().unwrap_or_default();
        let values = [
            self.timeout_ms,
            self.batch_size.map(|n| n as u64),
            self.max_in_flight.map(|n| n as u64),
            self.linger_ms,
            self.max_request_bytes.map(|n| n as u64),
            Some(retry.initial_backoff_ms),
            Some(retry.max_backoff_ms),
            Some(retry.max_elapsed_ms),
        ];
        for ((key, min, max), value) in BOUNDS.into_iter().zip(values) {
            if let Some(value) = value.filter(|v| !(min..=max).contains(v)) {
                return Err(OtlpConfigError::OutOfRange {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{env, svc};

    #[test]
    fn every_number_is_accepted_up_to_its_bound_and_refused_one_past_it() {
        for (key, min, max) in BOUNDS {
            let table = |v: u64| match key.strip_prefix("retry.") {
                Some(k) => format!("retry = {{ {k} = {v} }}"),
                None => format!("{key} = {v}"),
            };
            let parse = |v: u64| -> OtlpConfig { toml::from_str(&table(v)).unwrap() };
            assert!(parse(max).validate().is_ok(), "{key} = {max}");
            assert!(parse(min).validate().is_ok(), "{key} = {min}");
            let e = parse(max + 1).validate().unwrap_err();
            assert!(
                matches!(e, OtlpConfigError::OutOfRange { key: k, value, .. } if k == key && value == max + 1),
                "{key}: {e:?}"
            );
            assert!(e.to_string().contains(&max.to_string()), "{e}");
            if min > 0 {
                assert!(parse(min - 1).validate().is_err(), "{key} = {}", min - 1);
            }
            // resolve() refuses what validate() refuses.
            assert!(parse(max + 1).resolve_with_env(svc(), env(&[])).is_err());
        }
        // The timeout variable has the table key's bound.
        let e = OtlpConfig::default()
            .resolve_with_env(svc(), env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "600001")]))
            .unwrap_err();
        assert!(matches!(e, OtlpConfigError::Timeout { .. }), "{e:?}");
    }
}
