//! `agent-audit show`: records, readably, filtered.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_audit::jsonl::Reader;
use agent_audit::stdout::format_pretty_stored;

use crate::error::CliError;

/// Arguments of `show`.
#[derive(clap::Args)]
pub struct Args {
    /// JSONL audit file.
    file: PathBuf,
    /// Only records of this request.
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// Only records of this event type.
    #[arg(long, value_name = "T")]
    event_type: Option<String>,
    /// Print the records' JSON lines instead of readable lines.
    #[arg(long)]
    json: bool,
}

/// Prints matching records; a bad line is reported with its line number.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let reader = Reader::open(&args.file).map_err(|e| CliError::Runtime(e.to_string()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0usize;
    let mut buf = Vec::new();
    for item in reader {
        let line = match item {
            Ok(l) => l,
            Err(e) => {
                bad += 1;
                eprintln!("agent-audit: {e}");
                continue;
            }
        };
        let r = &line.record;
        if args
            .request_id
            .as_deref()
            .is_some_and(|id| r.request_id.as_deref() != Some(id))
        {
            continue;
        }
        if args
            .event_type
            .as_deref()
            .is_some_and(|t| r.event_type.as_str() != t)
        {
            continue;
        }
        buf.clear();
        if args.json {
            buf.extend_from_slice(&line.bytes);
        } else {
            format_pretty_stored(r, &mut buf);
        }
        buf.push(b'\n');
        if let Err(e) = out.write_all(&buf) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(CliError::Runtime(format!("writing to stdout: {e}")));
        }
    }
    if let Err(e) = out.flush()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(CliError::Runtime(format!("writing to stdout: {e}")));
    }
    if bad > 0 {
        return Err(CliError::Runtime(format!(
            "{}: {bad} line(s) could not be read (see above)",
            args.file.display()
        )));
    }
    Ok(ExitCode::SUCCESS)
}
