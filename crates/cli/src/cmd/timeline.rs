//! `agent-audit timeline --request-id ID FILE...`: one request as a tree of
//! agent turns, model calls and tool calls, with durations.

use std::process::ExitCode;

use agent_audit_review::progress::Progress;
use agent_audit_review::{Entry, Timeline};

use super::show::{BadLines, Inputs, flush_out, review_err, write_out};
use crate::error::CliError;
use agent_audit::text::json_text;

/// Arguments of `timeline`.
#[derive(clap::Args)]
pub struct Args {
    /// The request to draw.
    #[arg(long, value_name = "ID")]
    request_id: String,
    #[command(flatten)]
    inputs: Inputs,
    /// Print the tree as JSON (spans with their steps) instead of text.
    #[arg(long)]
    json: bool,
}

/// Reads the records of `request_id` from `files`, with a progress bar on
/// a terminal; unreadable lines are reported on stderr and skipped.
fn load_request(inputs: &Inputs, request_id: &str) -> Result<(Vec<Entry>, Vec<String>), CliError> {
    let mut source = inputs.open()?;
    let names = source
        .files()
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    let mut progress = Progress::new(source.total_bytes(), "reading");
    let mut entries = Vec::new();
    let mut bad = BadLines::new(" (skipped)");
    while let Some(item) = source.next() {
        match item {
            Ok(e) if e.record.request_id.as_deref() == Some(request_id) => entries.push(e),
            Ok(_) => {}
            Err(e) => bad.report(&e),
        }
        progress.set(source.bytes_read());
    }
    progress.finish();
    bad.print_rest();
    Ok((entries, names))
}

/// The request's records from `inputs` and their tree; a request with no
/// record is an error naming the files searched.
pub fn load_timeline(
    inputs: &Inputs,
    request_id: &str,
) -> Result<(Timeline, Vec<Entry>), CliError> {
    let (entries, files) = load_request(inputs, request_id)?;
    let timeline = Timeline::build(request_id, &entries).map_err(|e| match e {
        agent_audit_review::ReviewError::NoSuchRequest { request_id, .. } => {
            CliError::Runtime(format!(
                "request `{request_id}` has no records in {}",
                files.join(", ")
            ))
        }
        other => review_err(other),
    })?;
    Ok((timeline, entries))
}

/// Prints the request's tree.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (timeline, _) = load_timeline(&args.inputs, &args.request_id)?;
    let text = if args.json {
        let mut s = serde_json::to_string(&timeline)
            .map_err(|e| CliError::Runtime(format!("encoding the timeline as JSON: {e}")))?;
        s.push('\n');
        json_text(&s)
    } else {
        timeline.render_text()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if write_out(&mut out, text.as_bytes())? {
        flush_out(&mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}
