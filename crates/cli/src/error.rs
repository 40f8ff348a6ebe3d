//! The CLI's error and its exit codes.

use agent_audit::config::{BuildError, ConfigError, ModelError};

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration: exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `[model]` section that cannot become a model: exit 2.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A `[telemetry]` section (or its variables) that cannot start: exit 2.
    #[error(transparent)]
    Telemetry(#[from] agent_audit::telemetry::TelemetryError),
    /// Bad usage: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A sink could not be opened or the dispatcher not started: exit 1.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Auditing failed while running: exit 1.
    #[error(transparent)]
    Emit(#[from] agent_audit::EmitError),
    /// Any other runtime failure: exit 1.
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_)
            | CliError::Model(_)
            | CliError::Usage(_)
            | CliError::Telemetry(_) => 2,
            _ => 1,
        }
    }
}
