//! Finding the configuration file and reading it: only a regular file, at
//! most [`MAX_CONFIG_BYTES`], UTF-8 text.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use agent_audit_core::file_kind;

use super::{Config, ConfigError, SinkRegistry};

/// Largest configuration file read; anything bigger is refused unread.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "AGENT_AUDIT_CONFIG";

impl Config {
    /// Loads `explicit`, else the file named by `AGENT_AUDIT_CONFIG`, else
    /// the default.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Config::discover_with(&SinkRegistry::with_builtins(), explicit)
    }

    /// Like [`Config::discover`], with the sink types in `registry`.
    pub fn discover_with(
        registry: &SinkRegistry,
        explicit: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        match explicit {
            Some(p) => Config::load_with(registry, p),
            None => match std::env::var_os(CONFIG_ENV) {
                Some(p) if !p.is_empty() => Config::load_with(registry, Path::new(&p)),
                _ => Ok(Config::default()),
            },
        }
    }

    /// Reads and parses a file, with the built-in sink types.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(&SinkRegistry::with_builtins(), path)
    }

    /// Reads and parses a file whose `[[sinks]]` may name any type in
    /// `registry`.
    pub fn load_with(registry: &SinkRegistry, path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let read_err = |source| ConfigError::Read {
            path: name.clone(),
            source,
        };
        let (file, size) = open_regular(path, &name)?;
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: name,
                size,
                max: MAX_CONFIG_BYTES,
            });
        }
        // The file may grow after the fstat: read at most one byte past the
        // limit, whatever the metadata said.
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: name,
                size: bytes.len() as u64,
                max: MAX_CONFIG_BYTES,
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
                return Err(ConfigError::NotUtf8 { path: name, line });
            }
        };
        #[allow(unused_mut)]
        let mut config = Config::parse_with(registry, &text, &name)?;
        // A key file named in the configuration is found beside it, not
        // wherever the process happens to run.
        #[cfg(feature = "jsonl")]
        if let (Some(integrity), Some(dir)) = (&mut config.integrity, path.parent()) {
            integrity.resolve_paths(dir);
        }
        Ok(config)
    }
}

/// Opens the configuration for reading, with its size, only if it is a
/// regular file: opening a FIFO blocks until someone writes to it, and a
/// device yields whatever it likes (`/dev/zero` never ends).
///
/// The open is non-blocking (`O_NONBLOCK`), so a FIFO cannot hang it, and
/// the type is taken from the opened descriptor (`fstat`), so nothing can
/// be swapped in between a check and the open. A symbolic link is followed,
/// as a configuration linked from elsewhere always was; what it points to
/// must be a regular file. `O_NONBLOCK` stays set on the file returned,
/// where Linux ignores it: reads of a regular file block as usual.
fn open_regular(path: &Path, name: &str) -> Result<(File, u64), ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: name.to_string(),
        source,
    };
    let not_regular = |t| ConfigError::NotRegular {
        path: name.to_string(),
        kind: file_kind(t),
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        // open(2) of a UNIX socket, or of a device with nothing behind it:
        // say what the path is rather than "No such device or address".
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) => {
            return Err(match std::fs::metadata(path) {
                Ok(meta) if !meta.is_file() => not_regular(meta.file_type()),
                _ => read_err(e),
            });
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    Ok((file, meta.len()))
}
