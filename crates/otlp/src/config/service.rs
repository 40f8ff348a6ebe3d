//! The resource attributes every exported record carries.

/// The `service.*` and `host.name` resource attributes every exported
/// record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `service.name`, from the configuration's `[service]` table.
    pub name: String,
    /// `service.version`, omitted when `None`.
    pub version: Option<String>,
    /// `host.name`, omitted when `None`.
    pub host_name: Option<String>,
}

impl ServiceInfo {
    /// A service with this name, no version, and this machine's host name.
    pub fn new(name: impl Into<String>) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            version: None,
            host_name: detect_host_name(),
        }
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
}

fn detect_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
