//! Request headers (gRPC metadata): from the table or from
//! `OTEL_EXPORTER_OTLP_*HEADERS`, checked, and never shown with their
//! values.

use std::fmt;

use super::OtlpConfigError;

/// Header names with their values hidden, for Debug output.
pub(super) struct RedactedNames(pub(super) Vec<String>);

impl fmt::Debug for RedactedNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|k| (k, "<redacted>")))
            .finish()
    }
}

pub(super) fn check_header(
    origin: &str,
    name: &str,
    value: &str,
) -> Result<(String, String), OtlpConfigError> {
    let name = name.trim().to_ascii_lowercase();
    let err = |reason: &str| OtlpConfigError::Header {
        origin: origin.to_string(),
        name: name.clone(),
        reason: reason.to_string(),
    };
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
        || name.ends_with("-bin")
        || name.starts_with("grpc-")
    {
        return Err(err("not a usable header name"));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(err("the value holds characters a header cannot carry"));
    }
    Ok((name, value.to_string()))
}

/// Parses `key1=value1,key2=value2` (W3C Baggage style, values
/// percent-decoded) as the OTLP specification defines `..._HEADERS`.
pub(super) fn parse_env_headers(
    origin: &str,
    value: &str,
) -> Result<Vec<(String, String)>, OtlpConfigError> {
    let mut out = Vec::new();
    for (n, pair) in list_entries(value) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(OtlpConfigError::Header {
                origin: origin.to_string(),
                name: format!("#{n} (no `=`)"),
                reason: "expected key=value".to_string(),
            });
        };
        let v = percent_decode(v.trim()).ok_or_else(|| OtlpConfigError::Header {
            origin: origin.to_string(),
            name: k.trim().to_ascii_lowercase(),
            reason: "bad percent-encoding in the value".to_string(),
        })?;
        out.push(check_header(origin, k, &v)?);
    }
    Ok(out)
}

/// The entries of a `key=value,key=value` list that are not blank, each
/// with its place among all the entries (from 1).
pub(super) fn list_entries(value: &str) -> impl Iterator<Item = (usize, &str)> {
    value
        .split(',')
        .enumerate()
        .filter(|(_, pair)| !pair.trim().is_empty())
        .map(|(i, pair)| (i + 1, pair))
}

/// `s` with each `%XX` decoded (OTEL_EXPORTER_OTLP_HEADERS and
/// OTEL_RESOURCE_ATTRIBUTES values); `None` where a `%` is not followed by
/// two hex digits or the result is not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
