//! `audit.toml`: configuration to a running [`Dispatcher`].
//!
//! ```toml
//! [service]
//! name = "bank-assistant"
//!
//! [[sinks]]
//! type = "jsonl"
//! path = "audit-log.jsonl"
//! fsync = "batch"        # never | interval | batch | every
//! required = true
//! overflow = "block"     # block | drop_newest | fail_closed
//! queue = 8192
//!
//! [[sinks]]
//! type = "stdout"
//! format = "pretty"      # pretty | json
//! ```
//!
//! Unknown keys, wrong types and unknown sink types are errors that name the
//! file, line and key. With no file, [`Config::default`] applies: a JSONL file
//! `audit-log.jsonl` in the working directory plus stdout.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use agent_audit_core::{Dispatcher, DispatcherBuilder, Overflow, SinkOptions, StartError};

/// Largest configuration file read; anything bigger is refused unread.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "AGENT_AUDIT_CONFIG";

/// A whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (`<default>` when built in).
    pub source: String,
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[[sinks]]`, in order.
    pub sinks: Vec<SinkConfig>,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[redaction]`; `None` means the secret-shaped defaults.
    #[cfg(feature = "redact")]
    pub redaction: Option<agent_audit_redact::RedactionConfig>,
    /// `[model]`.
    #[cfg(feature = "agents")]
    pub model: Option<agent_audit_agents::ModelConfig>,
    /// `[integrity]`: the chain key and signed checkpoints.
    #[cfg(feature = "jsonl")]
    pub integrity: Option<agent_audit_jsonl::integrity::IntegrityConfig>,
}

/// `[service]`: who is emitting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name, sent as OTLP `service.name`.
    #[serde(default = "default_service_name")]
    pub name: String,
    /// Service version, sent as OTLP `service.version`.
    #[serde(default)]
    pub version: Option<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            name: default_service_name(),
            version: None,
        }
    }
}

fn default_service_name() -> String {
    "agent-audit".to_string()
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest serialised record; bigger records are refused, never
    /// truncated. Default 1 MiB.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

/// Smallest `[limits] max_record_bytes`: below it ordinary records (about
/// 400 bytes with their ids) would be refused.
pub const MIN_RECORD_BYTES: usize = 4096;

/// Largest `[limits] max_record_bytes`: the longest line the JSONL reader
/// and verifier accept (16 MiB), so every record written can be read back.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

fn default_max_record_bytes() -> usize {
    1 << 20
}

/// One `[[sinks]]` entry: the keys every sink has, and its own options.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name (default: the type, numbered when repeated).
    pub name: String,
    /// Whether its failure fails `emit` (default: true for `jsonl`, false
    /// otherwise).
    pub required: bool,
    /// Queue-full policy (default `block`).
    pub overflow: Overflow,
    /// Queue capacity in records (default 8192).
    pub queue: usize,
    /// The type and its options.
    pub kind: SinkKind,
    /// Line of the entry in the file, for later errors.
    pub line: usize,
}

/// A sink type with its options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SinkKind {
    /// `type = "jsonl"`.
    #[cfg(feature = "jsonl")]
    Jsonl(agent_audit_jsonl::JsonlOptions),
    /// `type = "stdout"`.
    #[cfg(feature = "stdout")]
    Stdout(agent_audit_stdout::StdoutOptions),
    /// `type = "otlp"`.
    #[cfg(feature = "otlp")]
    Otlp(agent_audit_otlp::OtlpConfig),
}

impl SinkKind {
    /// The `type` value.
    pub fn type_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "jsonl")]
            SinkKind::Jsonl(_) => "jsonl",
            #[cfg(feature = "stdout")]
            SinkKind::Stdout(_) => "stdout",
            #[cfg(feature = "otlp")]
            SinkKind::Otlp(_) => "otlp",
        }
    }
}

/// Sink types this build knows.
pub const SINK_TYPES: &[&str] = &[
    #[cfg(feature = "jsonl")]
    "jsonl",
    #[cfg(feature = "stdout")]
    "stdout",
    #[cfg(feature = "otlp")]
    "otlp",
];

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path}: configuration is {size} bytes; the limit is {max} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{path}:{line}: configuration is not UTF-8 text (binary file?)")]
    NotUtf8 {
        /// The file.
        path: String,
        /// First line with an invalid byte.
        line: usize,
    },
    /// The path names a directory, a FIFO, a device or a socket.
    #[error(
        "{path}: cannot read configuration: it is {kind}, not a regular file (a configuration is a regular file)"
    )]
    NotRegular {
        /// The file.
        path: String,
        /// What it is instead ("a FIFO (named pipe)", "a directory", ...).
        kind: &'static str,
    },
    /// A section whose values are well-formed but do not fit together.
    #[error("{path}: [{section}]: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The section.
        section: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A syntax error, unknown key, wrong type or bad value.
    #[error("{}", format_parse(path, *line, *column, key.as_deref(), message))]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The offending key, dotted (`sinks[1].fsync`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

fn format_parse(
    path: &str,
    line: usize,
    column: usize,
    key: Option<&str>,
    message: &str,
) -> String {
    match key {
        Some(k) => format!("{path}:{line}:{column}: key `{k}`: {message}"),
        None => format!("{path}:{line}:{column}: {message}"),
    }
}

/// Why the `[model]` section could not become a model.
#[cfg(feature = "agents")]
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ModelError {
    /// Configuration file.
    pub path: String,
    /// Cause, naming the key.
    #[source]
    pub source: agent_audit_agents::ModelConfigError,
}

#[cfg(feature = "agents")]
impl Config {
    /// The configured model, or the deterministic offline model when there
    /// is no `[model]` section.
    pub fn model(&self) -> Result<std::sync::Arc<dyn agent_audit_agents::ChatModel>, ModelError> {
        agent_audit_agents::build_model(&self.model.clone().unwrap_or_default()).map_err(|source| {
            ModelError {
                path: self.source.clone(),
                source,
            }
        })
    }
}

/// Why a configuration could not be turned into a running dispatcher.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A sink's options are unusable (a missing key file, say).
    #[error("{source_file}: sink `{sink}` (line {line}): {message}")]
    Sink {
        /// Configuration file.
        source_file: String,
        /// Sink name.
        sink: String,
        /// Line of its entry.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The redaction rules are unusable.
    #[cfg(feature = "redact")]
    #[error("{source_file}: [redaction]: {source}")]
    Redaction {
        /// Configuration file.
        source_file: String,
        /// Cause.
        #[source]
        source: agent_audit_redact::RedactError,
    },
    /// The chain key or signing key could not be loaded, or checkpoints
    /// could not start.
    #[cfg(feature = "jsonl")]
    #[error("{source_file}: [integrity]: {source}")]
    Integrity {
        /// Configuration file.
        source_file: String,
        /// Cause.
        #[source]
        source: agent_audit_jsonl::integrity::IntegrityError,
    },
    /// A sink failed to open, or the dispatcher could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    service: ServiceConfig,
    #[serde(default)]
    sinks: Option<Vec<toml::Spanned<toml::Table>>>,
    #[serde(default)]
    limits: LimitsConfig,
    #[cfg(feature = "redact")]
    #[serde(default)]
    redaction: Option<agent_audit_redact::RedactionConfig>,
    #[cfg(feature = "agents")]
    #[serde(default)]
    model: Option<agent_audit_agents::ModelConfig>,
    #[cfg(feature = "jsonl")]
    #[serde(default)]
    integrity: Option<agent_audit_jsonl::integrity::IntegrityConfig>,
}

impl Default for Config {
    /// A JSONL file `audit-log.jsonl` in the working directory (fsync per
    /// batch, required) plus readable lines on stdout.
    // Each push is feature-gated, which `vec![]` cannot express.
    #[allow(clippy::vec_init_then_push)]
    fn default() -> Self {
        let mut sinks = Vec::new();
        #[cfg(feature = "jsonl")]
        sinks.push(SinkConfig {
            name: "jsonl".into(),
            required: true,
            overflow: Overflow::Block,
            queue: 8192,
            kind: SinkKind::Jsonl(agent_audit_jsonl::JsonlOptions::new("audit-log.jsonl")),
            line: 0,
        });
        #[cfg(feature = "stdout")]
        sinks.push(SinkConfig {
            name: "stdout".into(),
            required: false,
            overflow: Overflow::Block,
            queue: 8192,
            kind: SinkKind::Stdout(agent_audit_stdout::StdoutOptions::default()),
            line: 0,
        });
        Config {
            source: "<default>".into(),
            service: ServiceConfig::default(),
            sinks,
            limits: LimitsConfig::default(),
            #[cfg(feature = "redact")]
            redaction: None,
            #[cfg(feature = "agents")]
            model: None,
            #[cfg(feature = "jsonl")]
            integrity: None,
        }
    }
}

impl Config {
    /// Loads `explicit`, else the file named by `AGENT_AUDIT_CONFIG`, else
    /// the default.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(p) => Config::load(p),
            None => match std::env::var_os(CONFIG_ENV) {
                Some(p) if !p.is_empty() => Config::load(Path::new(&p)),
                _ => Ok(Config::default()),
            },
        }
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let read_err = |source| ConfigError::Read {
            path: name.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        // Opening a FIFO blocks until someone writes to it, and a device
        // yields whatever it likes: a configuration is a regular file.
        if !meta.is_file() {
            return Err(ConfigError::NotRegular {
                path: name,
                kind: file_kind(&meta.file_type()),
            });
        }
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: name,
                size: meta.len(),
                max: MAX_CONFIG_BYTES,
            });
        }
        // A device or a pipe reports no size (`/dev/zero` would never end):
        // read at most one byte past the limit, whatever the metadata said.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
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
        let mut config = Config::parse(&text, &name)?;
        // A key file named in the configuration is found beside it, not
        // wherever the process happens to run.
        #[cfg(feature = "jsonl")]
        if let (Some(integrity), Some(dir)) = (&mut config.integrity, path.parent()) {
            integrity.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Parses configuration text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        if let Some(pos) = text.find('\0') {
            let (line, _) = line_col(text, pos);
            return Err(ConfigError::NotUtf8 {
                path: source.into(),
                line,
            });
        }
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = path_string(e.path());
            let inner = e.into_inner();
            let (line, column) = inner.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Parse {
                path: source.into(),
                line,
                column,
                key,
                message: inner.message().trim().to_string(),
            }
        })?;
        let max = raw.limits.max_record_bytes;
        if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&max) {
            return Err(ConfigError::Parse {
                path: source.into(),
                line: key_line(text, 0..text.len(), "max_record_bytes"),
                column: 1,
                key: Some("limits.max_record_bytes".into()),
                message: format!(
                    "{max} is out of range: a record limit must be between {MIN_RECORD_BYTES} and {MAX_RECORD_BYTES} bytes (the longest line the log's reader and verifier accept)"
                ),
            });
        }
        let mut sinks = Vec::new();
        match raw.sinks {
            None => sinks = Config::default().sinks,
            Some(tables) if tables.is_empty() => {
                return Err(ConfigError::Parse {
                    path: source.into(),
                    line: key_line(text, 0..text.len(), "sinks"),
                    column: 1,
                    key: Some("sinks".into()),
                    message: "no sinks: an audit trail needs at least one, or records would go nowhere (remove `sinks` for the default JSONL file and stdout)".into(),
                });
            }
            Some(tables) => {
                for (i, table) in tables.into_iter().enumerate() {
                    sinks.push(parse_sink(text, source, i, table)?);
                }
            }
        }
        for i in 0..sinks.len() {
            if sinks[..i].iter().any(|s| s.name == sinks[i].name) {
                let base = sinks[i].name.clone();
                if sinks[i].name == sinks[i].kind.type_name() {
                    sinks[i].name = format!("{base}-{}", i + 1);
                } else {
                    return Err(ConfigError::Parse {
                        path: source.into(),
                        line: sinks[i].line,
                        column: 1,
                        key: Some(format!("sinks[{i}].name")),
                        message: format!("sink name `{base}` is used twice"),
                    });
                }
            }
        }
        #[cfg(feature = "jsonl")]
        if let Some(integrity) = &raw.integrity {
            integrity.validate().map_err(|e| match &e {
                agent_audit_jsonl::integrity::IntegrityError::InvalidValue { field, reason } => {
                    ConfigError::Parse {
                        path: source.into(),
                        line: key_line(text, section(text, "integrity"), field),
                        column: 1,
                        key: Some(format!("integrity.{field}")),
                        message: reason.clone(),
                    }
                }
                _ => ConfigError::Invalid {
                    path: source.into(),
                    section: "integrity",
                    message: e.to_string(),
                },
            })?;
        }
        #[cfg(feature = "agents")]
        if let Some(model) = &raw.model
            && let Err(e) = model.validate()
        {
            let key = match &e {
                agent_audit_agents::ModelConfigError::OutOfRange { key, .. } => Some(*key),
                _ => None,
            };
            return Err(ConfigError::Parse {
                path: source.into(),
                line: key.map_or(1, |k| key_line(text, section(text, "model"), k)),
                column: 1,
                key: key.map(|k| format!("model.{k}")),
                message: e.to_string().trim_start_matches("[model] ").to_string(),
            });
        }
        Ok(Config {
            source: source.into(),
            service: raw.service,
            sinks,
            limits: raw.limits,
            #[cfg(feature = "redact")]
            redaction: raw.redaction,
            #[cfg(feature = "agents")]
            model: raw.model,
            #[cfg(feature = "jsonl")]
            integrity: raw.integrity,
        })
    }

    /// Opens every sink and starts the dispatcher, with signed checkpoints
    /// when `[integrity] signing_key_file` is set (the last one is written
    /// by [`Dispatcher::shutdown`]).
    pub async fn start(&self) -> Result<Dispatcher, BuildError> {
        self.start_with(|b| b).await
    }

    /// Like [`Config::start`], letting `extend` add sinks of your own.
    pub async fn start_with(
        &self,
        extend: impl FnOnce(DispatcherBuilder) -> DispatcherBuilder,
    ) -> Result<Dispatcher, BuildError> {
        let (builder, head) = self.assemble()?;
        let dispatcher = extend(builder).start().await?;
        #[cfg(feature = "jsonl")]
        if let (Some(integrity), Some(head)) = (&self.integrity, head) {
            let auditor =
                agent_audit_core::Auditor::new(dispatcher.clone()).with_agent("agent-audit");
            let started = integrity
                .start_checkpointer(auditor, head)
                .map_err(|source| BuildError::Integrity {
                    source_file: self.source.clone(),
                    source,
                });
            let checkpointer = match started {
                Ok(c) => c,
                Err(e) => {
                    dispatcher.shutdown(std::time::Duration::from_secs(5)).await;
                    return Err(e);
                }
            };
            if let Some(checkpointer) = checkpointer {
                dispatcher.before_shutdown(move || async move {
                    // The emit error behind a failed final checkpoint is
                    // already counted and reported by the dispatcher; this
                    // says which record it was.
                    if let Err(e) = checkpointer.finish().await {
                        eprintln!("agent-audit: the final signed checkpoint was not written: {e}");
                    }
                });
            }
        }
        #[cfg(not(feature = "jsonl"))]
        let _ = head;
        Ok(dispatcher)
    }

    /// A dispatcher builder with every configured sink and the redaction
    /// filter, for callers that assemble the dispatcher themselves. Signed
    /// checkpoints need [`Config::start_with`] instead.
    pub fn builder(&self) -> Result<DispatcherBuilder, BuildError> {
        Ok(self.assemble()?.0)
    }

    fn assemble(&self) -> Result<(DispatcherBuilder, Option<Head>), BuildError> {
        let mut head = None;
        #[cfg(feature = "jsonl")]
        let mut leased = false;
        let mut b = Dispatcher::builder().max_record_bytes(self.limits.max_record_bytes);
        #[cfg(feature = "redact")]
        {
            let cfg = self.redaction.clone().unwrap_or_default();
            let redactor = agent_audit_redact::Redactor::from_config(&cfg).map_err(|source| {
                BuildError::Redaction {
                    source_file: self.source.clone(),
                    source,
                }
            })?;
            b = b.filter(std::sync::Arc::new(redactor));
        }
        for s in &self.sinks {
            #[allow(unused_mut)]
            let mut options = SinkOptions::new(s.name.clone())
                .queue(s.queue)
                .overflow(s.overflow)
                .required(s.required);
            let sink: Box<dyn agent_audit_core::Sink> = match &s.kind {
                #[cfg(feature = "jsonl")]
                SinkKind::Jsonl(o) => {
                    let mut o = o.clone();
                    if let Some(integrity) = &self.integrity {
                        integrity.apply_chain_key(&mut o).map_err(|source| {
                            BuildError::Integrity {
                                source_file: self.source.clone(),
                                source,
                            }
                        })?;
                    }
                    let o_path = o.path.clone();
                    let sink =
                        agent_audit_jsonl::JsonlSink::new(o).map_err(|e| sink_error(self, s, e))?;
                    let wanted = self
                        .integrity
                        .as_ref()
                        .and_then(|i| i.sink.as_deref())
                        .is_none_or(|name| name == s.name);
                    if head.is_none() && wanted {
                        head = Some(sink.head_handle());
                    }
                    // One lease is enough (it bounds the numbering, not a
                    // sink), beside a required log: a lease that cannot be
                    // stored refuses records, which only a required sink's
                    // failure may do.
                    if s.required
                        && !leased
                        && let Some(lease) = agent_audit_jsonl::FileLease::for_log(&o_path)
                    {
                        b = b.seq_lease(std::sync::Arc::new(lease));
                        leased = true;
                    }
                    Box::new(sink)
                }
                #[cfg(feature = "stdout")]
                SinkKind::Stdout(o) => Box::new(agent_audit_stdout::StdoutSink::stdout(o.clone())),
                #[cfg(feature = "otlp")]
                SinkKind::Otlp(o) => {
                    // One dispatcher batch feeds up to max_in_flight requests.
                    options = options.max_batch(o.max_batch());
                    let mut service = agent_audit_otlp::ServiceInfo::new(&self.service.name);
                    if let Some(v) = &self.service.version {
                        service = service.with_version(v);
                    }
                    Box::new(
                        agent_audit_otlp::OtlpSink::from_config(o, service)
                            .map_err(|e| sink_error(self, s, e))?,
                    )
                }
            };
            b = b.boxed_sink(options, sink);
        }
        Ok((b, head))
    }
}

#[cfg(feature = "jsonl")]
type Head = agent_audit_jsonl::HeadHandle;
#[cfg(not(feature = "jsonl"))]
type Head = ();

fn sink_error(config: &Config, sink: &SinkConfig, e: impl fmt::Display) -> BuildError {
    BuildError::Sink {
        source_file: config.source.clone(),
        sink: sink.name.clone(),
        line: sink.line,
        message: e.to_string(),
    }
}

fn path_string(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    (s != "." && !s.is_empty()).then_some(s)
}

/// What a non-regular file is, for errors.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The bytes of the `[name]` table: from its header line to the next
/// header, or the whole text when it has no header of its own (an inline
/// table), so that [`key_line`] finds a key of that table rather than a
/// key of the same name elsewhere.
fn section(text: &str, name: &str) -> std::ops::Range<usize> {
    let header = format!("[{name}]");
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            if start.is_some() {
                return start.unwrap_or(0)..offset;
            }
            if t.trim_end()
                .split('#')
                .next()
                .is_some_and(|h| h.trim() == header)
            {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    start.unwrap_or(0)..text.len()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

/// The line of `key = ...` inside the table spanning `span`, else the
/// table's first line.
fn key_line(text: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let start = span.start.min(text.len());
    let end = span.end.min(text.len());
    let mut offset = start;
    for line in text[start..end].split_inclusive('\n') {
        let t = line.trim_start();
        let t = t.strip_prefix('"').unwrap_or(t);
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start_matches('"').trim_start().starts_with('=')
        {
            return line_col(text, offset).0;
        }
        offset += line.len();
    }
    line_col(text, start).0
}

fn parse_sink(
    text: &str,
    source: &str,
    index: usize,
    table: toml::Spanned<toml::Table>,
) -> Result<SinkConfig, ConfigError> {
    let span = table.span();
    let mut t = table.into_inner();
    let err = |key: &str, message: String| ConfigError::Parse {
        path: source.into(),
        line: key_line(text, span.clone(), key),
        column: 1,
        key: Some(format!("sinks[{index}].{key}")),
        message,
    };
    let ty = match t.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(err(
                "type",
                format!("expected a string, found {}", other.type_str()),
            ));
        }
        None => {
            return Err(ConfigError::Parse {
                path: source.into(),
                line: line_col(text, span.start).0,
                column: 1,
                key: Some(format!("sinks[{index}].type")),
                message: format!("missing `type` (one of {})", SINK_TYPES.join(", ")),
            });
        }
    };
    fn take<T: DeserializeOwned>(
        t: &mut toml::Table,
        key: &str,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Option<T>, ConfigError> {
        match t.remove(key) {
            None => Ok(None),
            Some(v) => v
                .try_into::<T>()
                .map(Some)
                .map_err(|e| err(key, e.message().trim().to_string())),
        }
    }
    let name: Option<String> = take(&mut t, "name", &err)?;
    let required: Option<bool> = take(&mut t, "required", &err)?;
    let overflow: Option<Overflow> = take(&mut t, "overflow", &err)?;
    let queue: Option<i64> = take(&mut t, "queue", &err)?;
    let queue = match queue {
        None => 8192,
        Some(q) if (1..=10_000_000).contains(&q) => q as usize,
        Some(q) => {
            return Err(err(
                "queue",
                format!("must be between 1 and 10000000, got {q}"),
            ));
        }
    };
    fn options<T: DeserializeOwned>(
        t: toml::Table,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(t)).map_err(|e| {
            let msg = e.inner().message().trim().to_string();
            let key = e.path().to_string();
            let key = if key == "." {
                unknown_field(&msg).unwrap_or_default()
            } else {
                key
            };
            err(&key, msg)
        })
    }
    let kind = match ty.as_str() {
        #[cfg(feature = "jsonl")]
        "jsonl" => {
            let o: agent_audit_jsonl::JsonlOptions = options(t, &err)?;
            if let Err(agent_audit_jsonl::JsonlError::InvalidOption { field, reason, .. }) =
                o.validate()
            {
                return Err(err(field, format!("{field} {reason}")));
            }
            SinkKind::Jsonl(o)
        }
        #[cfg(feature = "stdout")]
        "stdout" => SinkKind::Stdout(options(t, &err)?),
        #[cfg(feature = "otlp")]
        "otlp" => {
            let o: agent_audit_otlp::OtlpConfig = options(t, &err)?;
            // A configuration error (exit 2), before anything starts.
            o.check_credentials()
                .map_err(|e| err("endpoint", e.to_string()))?;
            if let Err(e @ agent_audit_otlp::OtlpConfigError::OutOfRange { key, .. }) = o.validate()
            {
                // `retry.max_elapsed_ms` sits on the `retry` line (an inline
                // table) or in a `[sinks.retry]` table below the sink's.
                let head = key.split('.').next().unwrap_or(key);
                return Err(ConfigError::Parse {
                    path: source.into(),
                    line: key_line(text, span.clone(), head),
                    column: 1,
                    key: Some(format!("sinks[{index}].{key}")),
                    message: e.to_string().trim_start_matches("otlp sink: ").to_string(),
                });
            }
            SinkKind::Otlp(o)
        }
        other => {
            return Err(err(
                "type",
                format!(
                    "unknown sink type `{other}` (this build knows {})",
                    SINK_TYPES.join(", ")
                ),
            ));
        }
    };
    Ok(SinkConfig {
        name: name.unwrap_or_else(|| ty.clone()),
        required: required.unwrap_or(ty == "jsonl"),
        overflow: overflow.unwrap_or_default(),
        queue,
        kind,
        line: line_col(text, span.start).0,
    })
}

/// The field named by serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

impl fmt::Display for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, required = {}, overflow = {:?}, queue = {})",
            self.name,
            self.kind.type_name(),
            self.required,
            self.overflow,
            self.queue
        )
    }
}
