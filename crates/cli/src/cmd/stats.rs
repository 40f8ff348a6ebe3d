//! `agent-audit stats FILE...`: the figures of a trail.

use std::process::ExitCode;

use agent_audit_review::StatsBuilder;
use agent_audit_review::progress::Progress;

use super::show::{Args, flush_out, write_out};
use crate::error::CliError;
use agent_audit::text::json_text;

/// Prints records by type, agent and tool; model calls with latency
/// percentiles and tokens per model; tool calls with error rates and
/// durations; seq gaps, audit gaps, error records and unreadable lines.
/// Unreadable lines are counted in the figures, not fatal.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (filter, source) = args.open()?;
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
        json_text(&s)
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
