//! `agent-audit stats FILE...`: the figures of a trail.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_audit_review::progress::Progress;
use agent_audit_review::{Source, SourceOptions, StatsBuilder};

use super::show::{FilterArgs, flush_out, review_err, write_out};
use crate::error::CliError;

/// Arguments of `stats`.
#[derive(clap::Args)]
pub struct Args {
    /// JSONL audit files; each is read after its rotated files, oldest
    /// first.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Read only the files named, not their rotated files.
    #[arg(long)]
    no_rotated: bool,
}

/// Prints records by type, agent and tool; model calls with latency
/// percentiles and tokens per model; tool calls with error rates and
/// durations; seq gaps, audit gaps, error records and unreadable lines.
/// Unreadable lines are counted in the figures, not fatal.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let filter = args.filter.to_filter()?;
    let source = Source::open(
        &args.files,
        SourceOptions {
            include_rotated: !args.no_rotated,
        },
    )
    .map_err(review_err)?;
    let mut progress = Progress::new(source.total_bytes(), "reading");
    let mut builder = StatsBuilder::new();
    let mut source = source;
    while let Some(item) = source.next() {
        match item {
            Ok(entry) if filter.matches(&entry.record) => builder.add(&entry),
            Ok(_) => {}
            Err(e) => builder.add_unreadable(&e),
        }
        progress.set(source.bytes_read());
    }
    progress.finish();
    let stats = builder.finish();
    let text = if args.json {
        let mut s = serde_json::to_string(&stats)
            .map_err(|e| CliError::Runtime(format!("encoding stats as JSON: {e}")))?;
        s.push('\n');
        s
    } else {
        stats.render_text()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if write_out(&mut out, text.as_bytes())? {
        flush_out(&mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}
