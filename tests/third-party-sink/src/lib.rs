//! A spool directory sink, written as a team outside agent-audit would
//! write one: each batch becomes one file of record lines, named by its
//! first and last seq, made durable by fsync and an atomic rename, for
//! another process to ship and delete. It depends on the facade only,
//! registers its type (`type = "spool"`) and is proved by the conformance
//! suite in `tests/`.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use agent_audit::config::{
    BuiltSink, OptionError, RegistryError, SinkBuildError, SinkContext, SinkRegistry, SinkType,
};
use agent_audit::{AckLevel, Batch, Sink, SinkError, SinkOpen, StoredRecord};

/// The options of `type = "spool"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolOptions {
    /// The spool directory, created if absent.
    pub dir: PathBuf,
    /// Most records in one file.
    #[serde(default = "default_per_file")]
    pub per_file: usize,
}

fn default_per_file() -> usize {
    500
}

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file system call failed on this path.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a spool file is not a record.
    #[error("spool {path}:{line}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes each batch as one durable file in the spool directory.
pub struct SpoolSink {
    options: SpoolOptions,
    notices: Vec<String>,
}

impl SpoolSink {
    /// A sink over `options.dir`; nothing is touched before `open`.
    pub fn new(options: SpoolOptions) -> SpoolSink {
        SpoolSink {
            options,
            notices: Vec::new(),
        }
    }

    fn put(&self, batch: &Batch<'_>) -> Result<(), SpoolError> {
        let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) else {
            return Ok(());
        };
        let dir = &self.options.dir;
        let name = format!("{:020}-{:020}.jsonl", first.seq, last.seq);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut out = Vec::new();
        for r in batch.records {
            r.encode_line("", &mut out);
            out.push(b'\n');
        }
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&out).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        let path = dir.join(name);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }
}

/// The spool's finished files, oldest first, with the last seq of each.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let last = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(_, last)| last.parse::<u64>().ok());
        if let Some(last) = last {
            out.push((last, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Every record in the spool, in seq order (what the shipper would read).
pub fn read_spool(dir: &Path) -> Result<Vec<StoredRecord>, SpoolError> {
    let mut records = Vec::new();
    for (_, path) in files(dir)? {
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        for (i, line) in text.lines().enumerate() {
            let record = serde_json::from_str(line).map_err(|source| SpoolError::Parse {
                path: path.clone(),
                line: i + 1,
                source,
            })?;
            records.push(record);
        }
    }
    Ok(records)
}

impl Sink for SpoolSink {
    fn max_level(&self) -> AckLevel {
        AckLevel::Durable
    }

    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        let dir = self.options.dir.clone();
        fs::create_dir_all(&dir)
            .map_err(io(&dir))
            .map_err(SinkError::permanent)?;
        // A file a crash left unrenamed was never acknowledged: removed,
        // and said so.
        let entries = fs::read_dir(&dir)
            .map_err(io(&dir))
            .map_err(SinkError::permanent)?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path)
                    .map_err(io(&path))
                    .map_err(SinkError::permanent)?;
                self.notices
                    .push(format!("removed unfinished spool file {}", path.display()));
            }
        }
        let last_seq = files(&dir)
            .map_err(SinkError::permanent)?
            .last()
            .map(|(seq, _)| *seq);
        Ok(SinkOpen {
            last_seq,
            notices: std::mem::take(&mut self.notices),
        })
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        // A failed rename or fsync may leave the file in place: counted
        // failed, never retried, so no record is spooled twice.
        self.put(batch).map_err(SinkError::permanent)?;
        Ok(AckLevel::Durable)
    }

    fn max_batch(&self) -> Option<usize> {
        Some(self.options.per_file)
    }
}

/// `type = "spool"` for `audit.toml`.
pub struct SpoolType;

impl SinkType for SpoolType {
    type Options = SpoolOptions;

    fn name(&self) -> &str {
        "spool"
    }

    fn validate(&self, o: &SpoolOptions) -> Result<(), OptionError> {
        if o.dir.as_os_str().is_empty() {
            return Err(OptionError::new("dir", "must name a directory"));
        }
        if !(1..=100_000).contains(&o.per_file) {
            return Err(OptionError::new(
                "per_file",
                format!("must be 1 to 100000, got {}", o.per_file),
            ));
        }
        Ok(())
    }

    fn required_by_default(&self) -> bool {
        true
    }

    fn build(
        &self,
        o: &SpoolOptions,
        _: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        Ok(BuiltSink::new(SpoolSink::new(o.clone())))
    }
}

/// The built-in sink types and `spool`.
pub fn registry() -> Result<SinkRegistry, RegistryError> {
    SinkRegistry::with_builtins().register(SpoolType)
}
