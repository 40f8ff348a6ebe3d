//! The resource attributes every exported record carries: `[service]`,
//! then `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, then what this
//! machine says.

use super::OtlpConfigError;
use super::headers::{list_entries, percent_decode};

/// The semantic conventions version the OTLP mapping follows (the GenAI
/// attributes, `service.*`, `host.name`), sent as the `schema_url` of the
/// resource and the scope.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";

/// The variable naming the service, over `service.name` in
/// [`RESOURCE_ATTRIBUTES_ENV`].
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";

/// The variable holding resource attributes as `key=value,key=value`.
pub const RESOURCE_ATTRIBUTES_ENV: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// The `service.*`, `host.name` and other resource attributes every
/// exported record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `service.name`, from the configuration's `[service]` table.
    pub name: String,
    /// `service.version`, omitted when `None`.
    pub version: Option<String>,
    /// `host.name`, omitted when `None`.
    pub host_name: Option<String>,
    /// Further resource attributes (`k8s.pod.name`, `deployment.environment`,
    /// ...), in the order given, none of them `service.name`,
    /// `service.version` or `host.name`.
    pub attributes: Vec<(String, String)>,
}

impl ServiceInfo {
    /// A service with this name, no version, and this machine's host name.
    pub fn new(name: impl Into<String>) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            version: None,
            host_name: detect_host_name(),
            attributes: Vec::new(),
        }
    }

    /// The resource as the OpenTelemetry conventions build it from the
    /// environment, with the configuration winning where it sets a key:
    /// `service.name` is `name` when the configuration sets it, else
    /// `OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `default_name`; `service.version`
    /// is `version`, else the variable's; `host.name` is the variable's,
    /// else this machine's; every other attribute of the variable is kept.
    /// A malformed `OTEL_RESOURCE_ATTRIBUTES` is an error naming the entry
    /// (the specification says to discard it, which would be silent).
    pub fn from_env(
        name: Option<&str>,
        version: Option<&str>,
        default_name: &str,
    ) -> Result<ServiceInfo, OtlpConfigError> {
        ServiceInfo::from_env_with(name, version, default_name, |k| std::env::var(k).ok())
    }

    /// [`ServiceInfo::from_env`], reading variables through `env`.
    pub fn from_env_with(
        name: Option<&str>,
        version: Option<&str>,
        default_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServiceInfo, OtlpConfigError> {
        let mut from_var = match env(RESOURCE_ATTRIBUTES_ENV) {
            Some(v) => parse_resource_attributes(RESOURCE_ATTRIBUTES_ENV, &v)?,
            None => Vec::new(),
        };
        let mut take = |key: &str| {
            let mut found = None;
            // The last occurrence wins, as in the SDKs.
            from_var.retain(|(k, v)| {
                if k == key {
                    found = Some(v.clone());
                    false
                } else {
                    true
                }
            });
            found
        };
        let var_name = take("service.name");
        let var_version = take("service.version");
        let var_host = take("host.name");
        let env_name = env(SERVICE_NAME_ENV)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let name = name
            .map(str::to_string)
            .or(env_name)
            .or(var_name)
            .unwrap_or_else(|| default_name.to_string());
        // The last occurrence of a key wins and takes its place (linear:
        // a long variable must not cost its square). `telemetry.sdk.*`
        // names the SDK that wrote the data, which a variable cannot say.
        let mut last = std::collections::HashMap::with_capacity(from_var.len());
        for (i, (k, _)) in from_var.iter().enumerate() {
            last.insert(k.clone(), i);
        }
        let attributes: Vec<(String, String)> = from_var
            .into_iter()
            .enumerate()
            .filter(|(i, (k, _))| last.get(k) == Some(i) && !k.starts_with("telemetry.sdk."))
            .map(|(_, kv)| kv)
            .collect();
        Ok(ServiceInfo {
            name,
            version: version.map(str::to_string).or(var_version),
            host_name: var_host.or_else(detect_host_name),
            attributes,
        })
    }

    /// Sets `service.version`.
    pub fn with_version(mut self, version: impl Into<String>) -> ServiceInfo {
        self.version = Some(version.into());
        self
    }

    /// Sets `host.name` (or omits it with `None`).
    pub fn with_host_name(mut self, host: Option<String>) -> ServiceInfo {
        self.host_name = host;
        self
    }

    /// Every resource attribute, `service.name` first.
    pub fn resource_attributes(&self) -> Vec<(&str, &str)> {
        let mut pairs = vec![("service.name", self.name.as_str())];
        if let Some(v) = &self.version {
            pairs.push(("service.version", v));
        }
        if let Some(h) = &self.host_name {
            pairs.push(("host.name", h));
        }
        pairs.extend(
            self.attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        pairs
    }
}

/// `key=value,key=value` with percent-encoded values (W3C Baggage style),
/// as the OpenTelemetry specification defines `OTEL_RESOURCE_ATTRIBUTES`.
fn parse_resource_attributes(
    origin: &str,
    value: &str,
) -> Result<Vec<(String, String)>, OtlpConfigError> {
    let mut out = Vec::new();
    for (entry, pair) in list_entries(value) {
        let err = |reason: &str| OtlpConfigError::ResourceAttributes {
            origin: origin.to_string(),
            entry,
            reason: reason.to_string(),
        };
        let Some((k, v)) = pair.split_once('=') else {
            return Err(err("no `=`"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(err("empty key"));
        }
        let v = percent_decode(v.trim()).ok_or_else(|| err("bad percent-encoding"))?;
        out.push((k.to_string(), v));
    }
    Ok(out)
}

fn detect_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::env;

    const ATTRS: &str = "service.name=from-attrs,k8s.pod.name=pod-1,deployment.environment=prod%20eu,host.name=node-7,service.version=9";

    #[test]
    fn otel_service_name_and_resource_attributes_fill_the_resource() {
        let s = ServiceInfo::from_env_with(
            None,
            None,
            "agent-audit",
            env(&[(RESOURCE_ATTRIBUTES_ENV, ATTRS)]),
        )
        .unwrap();
        assert_eq!(s.name, "from-attrs");
        assert_eq!(s.version.as_deref(), Some("9"));
        assert_eq!(s.host_name.as_deref(), Some("node-7"));
        assert_eq!(
            s.attributes,
            vec![
                ("k8s.pod.name".to_string(), "pod-1".to_string()),
                ("deployment.environment".to_string(), "prod eu".to_string()),
            ]
        );
        // OTEL_SERVICE_NAME beats service.name in the attributes.
        let vars = [
            (RESOURCE_ATTRIBUTES_ENV, ATTRS),
            (SERVICE_NAME_ENV, "from-var"),
        ];
        let s = ServiceInfo::from_env_with(None, None, "agent-audit", env(&vars)).unwrap();
        assert_eq!(s.name, "from-var");
        // [service] beats both, key by key; the other keys stay.
        let s = ServiceInfo::from_env_with(Some("table"), Some("1.2"), "agent-audit", env(&vars))
            .unwrap();
        assert_eq!(
            (s.name.as_str(), s.version.as_deref()),
            ("table", Some("1.2"))
        );
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(s.resource_attributes()[0], ("service.name", "table"));
        // Nothing set: the default name.
        let s = ServiceInfo::from_env_with(None, None, "agent-audit", env(&[])).unwrap();
        assert_eq!(s.name, "agent-audit");
        assert!(s.attributes.is_empty());
    }

    #[test]
    fn many_resource_attributes_the_last_of_a_key_wins_and_sdk_keys_are_ours() {
        let mut var: Vec<String> = (0..15_000).map(|i| format!("k{i}=a{i}")).collect();
        var.extend((0..15_000).step_by(2).map(|i| format!("k{i}=b{i}")));
        var.push("telemetry.sdk.name=spoof,telemetry.sdk.language=cobol".into());
        let var = var.join(",");
        let s =
            ServiceInfo::from_env_with(None, None, "x", env(&[(RESOURCE_ATTRIBUTES_ENV, &var)]))
                .unwrap();
        assert_eq!(s.attributes.len(), 15_000);
        let map: std::collections::HashMap<&str, &str> = s
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(map["k0"], "b0");
        assert_eq!(map["k1"], "a1");
        assert_eq!(map["k14998"], "b14998");
        assert_eq!(map["k14999"], "a14999");
        // The order: the last occurrence's place.
        assert_eq!(s.attributes[0].0, "k1");
        assert_eq!(s.attributes[14_999].0, "k14998");
        assert!(
            !s.resource_attributes()
                .iter()
                .any(|(k, _)| k.starts_with("telemetry.sdk.")),
            "a variable cannot name the SDK"
        );
    }

    #[test]
    fn a_malformed_resource_attribute_is_an_error_naming_the_entry() {
        for bad in ["a=1,b", "a=1,=2", "a=%zz"] {
            let e =
                ServiceInfo::from_env_with(None, None, "x", env(&[(RESOURCE_ATTRIBUTES_ENV, bad)]))
                    .unwrap_err()
                    .to_string();
            assert!(
                e.contains(RESOURCE_ATTRIBUTES_ENV) && e.contains('#'),
                "{e}"
            );
        }
    }
}
