//! The collector's URL: parsed, refused when it carries a user or
//! password, and shown with anything secret hidden.

use super::resolve::{ALL, LOGS};
use super::{OtlpConfig, OtlpConfigError};

impl OtlpConfig {
    /// Refuses a user or password in the endpoint this configuration
    /// would use (the table's, else `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` of this process), so that a
    /// caller can report it as a configuration error before starting
    /// anything. [`OtlpConfig::resolve`] refuses it too.
    pub fn check_credentials(&self) -> Result<(), OtlpConfigError> {
        self.check_credentials_with_env(|k| std::env::var(k).ok())
    }

    /// [`OtlpConfig::check_credentials`], reading variables through `env`.
    pub fn check_credentials_with_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), OtlpConfigError> {
        let (origin, value) = match &self.endpoint {
            Some(e) => ("endpoint".to_string(), e.clone()),
            None => {
                let found = [format!("{LOGS}ENDPOINT"), format!("{ALL}ENDPOINT")]
                    .into_iter()
                    .find_map(|k| env(&k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)));
                match found {
                    Some(f) => f,
                    None => return Ok(()),
                }
            }
        };
        if has_userinfo(&value) {
            return Err(OtlpConfigError::Credentials {
                hint: headers_hint(&origin),
                origin,
            });
        }
        Ok(())
    }
}

/// Where credentials belong, for the error that refuses them in a URL.
pub(crate) fn headers_hint(origin: &str) -> &'static str {
    if origin.starts_with(LOGS) {
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS (e.g. authorization=Basic%20<base64>)"
    } else if origin.starts_with(ALL) {
        "OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Basic%20<base64>)"
    } else {
        "the sink's `headers` key (e.g. headers = { authorization = \"Basic <base64>\" })"
    }
}

pub(crate) fn parse_url(origin: &str, value: &str) -> Result<reqwest::Url, OtlpConfigError> {
    // Checked on the text before parsing, so that a URL the parser rejects
    // is refused for its credentials too instead of quoted.
    if has_userinfo(value) {
        return Err(OtlpConfigError::Credentials {
            origin: origin.to_string(),
            hint: headers_hint(origin),
        });
    }
    let err = |reason: String| OtlpConfigError::Endpoint {
        origin: origin.to_string(),
        value: redact_endpoint(value),
        reason,
    };
    // The parser's message never quotes the input.
    let url = reqwest::Url::parse(value.trim()).map_err(|e| err(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OtlpConfigError::Credentials {
            origin: origin.to_string(),
            hint: headers_hint(origin),
        });
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(err(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("no host".to_string()));
    }
    Ok(url)
}

/// Where what follows `scheme://` starts (0 when there is no scheme).
fn after_scheme(value: &str) -> usize {
    // Only a real scheme at the start counts (RFC 3986: a letter, then
    // letters, digits, `+`, `-`, `.`): taking the first `://` anywhere let
    // `http:user:pw@host/a://b` hide its `@` before the later `://`.
    let Some(i) = value.find("://") else {
        return 0;
    };
    let scheme = &value[..i];
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid { i + 3 } else { 0 }
}

/// `@`, and the look-alikes a URL parser or a reader may take for one.
fn is_at(c: char) -> bool {
    matches!(c, '@' | '\u{FF20}' | '\u{FE6B}')
}

/// Whether `value` may carry a user or password: any `@` after the scheme.
/// Wider than the URL grammar on purpose: a password holding `/`, `?` or
/// `#` makes a parser end the authority early, and the text must still be
/// caught (an `@` elsewhere in an OTLP endpoint has no use).
pub(crate) fn has_userinfo(value: &str) -> bool {
    value[after_scheme(value)..].contains(is_at)
}

/// `value` as it may be shown: everything up to the last `@` after the
/// scheme (a user and password, which are refused anyway) and the query
/// and fragment (which may carry an API key) replaced by `***`. Works on
/// text that is not a valid URL too, since that is what errors quote.
pub(crate) fn redact_endpoint(value: &str) -> String {
    let value = value.trim();
    let start = after_scheme(value);
    let mut out = String::with_capacity(value.len());
    out.push_str(&value[..start]);
    let mut rest = &value[start..];
    if let Some(at) = rest.rfind(is_at) {
        out.push_str("***");
        rest = &rest[at..];
    }
    // `;` starts path parameters, which can carry a token as a query can.
    match rest.find(['?', '#', ';']) {
        Some(i) => {
            out.push_str(&rest[..=i]);
            out.push_str("***");
        }
        None => out.push_str(rest),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use crate::config::test_support::{env, svc};

    const USER: &str = "alice-the-user";
    const PASSWORD: &str = "hunter2-pass";

    fn assert_no_credentials(text: &str) {
        assert!(
            !text.contains(USER) && !text.contains(PASSWORD),
            "credentials leaked: {text}"
        );
    }

    #[test]
    fn credentials_in_the_table_endpoint_are_refused_without_being_quoted() {
        for endpoint in [
            format!("http://{USER}:{PASSWORD}@127.0.0.1:4318"),
            format!("https://{USER}:{PASSWORD}@collector.example/v1/logs?x=1"),
            format!("http://{USER}@127.0.0.1:4317"),
            format!("http://:{PASSWORD}@127.0.0.1:4317"),
            // The parser rejects these; they must still not be quoted.
            format!("http://{USER}:{PASSWORD}@"),
            format!("http://{USER}:{PASSWORD}@exa mple:99999"),
            // A `/` in the password ends a parser's authority early.
            format!("http://{USER}:{PASSWORD}/x@127.0.0.1:4317"),
            // No `//` after the scheme, and a later `://` that used to be
            // taken for the scheme's end (attack review).
            format!("http:{USER}:{PASSWORD}@127.0.0.1:99999/a://b"),
            format!("http:\\{USER}:{PASSWORD}@127.0.0.1:99999/?://"),
            // A full-width at sign.
            format!("http://{USER}:{PASSWORD}\u{FF20}127.0.0.1:9"),
        ] {
            for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
                let c = OtlpConfig {
                    endpoint: Some(endpoint.clone()),
                    protocol: Some(protocol),
                    ..Default::default()
                };
                let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
                assert!(
                    matches!(&e, OtlpConfigError::Credentials { origin, .. } if origin == "endpoint"),
                    "{endpoint}: {e:?}"
                );
                let text = e.to_string();
                assert!(
                    text.contains("endpoint") && text.contains("`headers`"),
                    "{text}"
                );
                assert_no_credentials(&text);
                assert_no_credentials(&format!("{e:?}"));
                assert_no_credentials(&format!("{c:?}"));
            }
        }
    }

    /// Path parameters can carry a token as a query can.
    #[test]
    fn shown_endpoints_hide_path_parameters() {
        let shown = redact_endpoint("http://127.0.0.1:4318/v1/logs;token=SECRET");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn credentials_in_the_endpoint_variables_are_refused_without_being_quoted() {
        let url = format!("http://{USER}:{PASSWORD}@col:4318");
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        ] {
            let e = OtlpConfig::default()
                .resolve_with_env(svc(), env(&[(var, &url)]))
                .unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(&e, OtlpConfigError::Credentials { origin, .. } if origin == var),
                "{e:?}"
            );
            let headers_var = var.replace("ENDPOINT", "HEADERS");
            assert!(text.contains(var) && text.contains(&headers_var), "{text}");
            assert_no_credentials(&text);
            assert_no_credentials(&format!("{e:?}"));
        }
    }

    #[test]
    fn check_credentials_sees_what_resolve_would_use() {
        let url = format!("http://{USER}:{PASSWORD}@col:4318");
        let table = OtlpConfig {
            endpoint: Some(url.clone()),
            ..Default::default()
        };
        let e = table.check_credentials_with_env(env(&[])).unwrap_err();
        assert_no_credentials(&e.to_string());
        // The table's endpoint wins, so a variable with credentials is
        // not used and not refused.
        let clean = OtlpConfig {
            endpoint: Some("http://col:4318".into()),
            ..Default::default()
        };
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str())];
        assert!(clean.check_credentials_with_env(env(&vars)).is_ok());
        let e = OtlpConfig::default()
            .check_credentials_with_env(env(&vars))
            .unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
        assert_no_credentials(&e.to_string());
    }

    #[test]
    fn shown_endpoints_hide_queries_fragments_and_userinfo() {
        assert_eq!(
            redact_endpoint("https://col:4318/v1/logs?api_key=k3y#frag"),
            "https://col:4318/v1/logs?***"
        );
        assert_eq!(
            redact_endpoint("http://u:p@col:4317"),
            "http://***@col:4317"
        );
        assert_eq!(redact_endpoint("http://col#k3y"), "http://col#***");
        assert_eq!(redact_endpoint("http://col:4317/"), "http://col:4317/");
        // An invalid endpoint is quoted with its query hidden.
        let c = OtlpConfig {
            endpoint: Some("ftp://col/?token=k3y".into()),
            ..Default::default()
        };
        let e = c.resolve_with_env(svc(), env(&[])).unwrap_err();
        assert!(!e.to_string().contains("k3y"), "{e}");
        // A query is allowed, and never shown by Debug.
        let c = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4318/v1/logs?token=k3y".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("k3y"), "{c:?}");
        let s = c.resolve_with_env(svc(), env(&[])).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4318/v1/logs?token=k3y");
        assert!(!format!("{s:?}").contains("k3y"), "{s:?}");
    }
}
