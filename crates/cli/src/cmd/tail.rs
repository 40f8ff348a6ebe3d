//! `agent-audit tail [-f] FILE`: the last records, and with `-f` every
//! record appended after, across rotation (like `tail -F`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent_audit_review::{FollowEvent, Follower, StartAt};

use super::show::{BadLines, FilterArgs, flush_out, note, record_line, review_err, write_out};
use crate::error::CliError;

/// Arguments of `tail`.
#[derive(clap::Args)]
pub struct Args {
    /// The active JSONL audit file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Keep printing records as they are appended; when the file is
    /// rotated or replaced, read the old one to its end, then the new one.
    /// Stop with Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// How many of the last records to print first.
    #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
    lines: usize,
    /// Print the records' exact JSON lines instead of readable lines.
    #[arg(long)]
    json: bool,
    /// Only records matching these (of the last N, and of those appended).
    #[command(flatten)]
    filter: FilterArgs,
    /// With -f, how often to look for new records, in milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    interval_ms: u64,
}

/// Prints the last records; with `-f`, follows until interrupted or until
/// stdout closes.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let filter = args.filter.to_filter()?;
    let mut follower = Follower::open(&args.file, StartAt::Last(args.lines)).map_err(review_err)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut bad = BadLines::new("");
    let mut omitted = 0;
    let mut buf = Vec::new();
    loop {
        let events = follower.poll().map_err(review_err)?;
        for event in events {
            match event {
                FollowEvent::Record(entry) if !filter.matches(&entry.record) => {}
                FollowEvent::Record(entry) => {
                    record_line(args.json, &entry, &mut buf);
                    if !write_out(&mut out, &buf)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                FollowEvent::Bad(e) => bad.report(&e),
                FollowEvent::Rotated { caught_up } => {
                    for p in caught_up {
                        note(&format!("read rotated file {}", p.display()));
                    }
                    note(&format!(
                        "{} was rotated; following the new file",
                        args.file.display()
                    ));
                }
                FollowEvent::Truncated { len } => note(&format!(
                    "{} was truncated to {len} bytes; reading it from the start",
                    args.file.display()
                )),
            }
        }
        // Lines past the follower's per-poll limit were only counted.
        let now = follower.bad_lines_omitted();
        bad.add_unshown(now - omitted);
        omitted = now;
        flush_out(&mut out)?;
        if !args.follow {
            break;
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
    if let Some((line, offset)) = follower.overlong_line() {
        // Not an error yet: the line may still be being written.
        note(&format!(
            "{}:{line}: the last line (from byte {offset}) is longer than {} bytes and has no newline yet; it is not a record",
            args.file.display(),
            agent_audit::jsonl::DEFAULT_MAX_LINE
        ));
    }
    bad.print_rest();
    match bad.error() {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
