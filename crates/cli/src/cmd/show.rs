//! `agent-audit show FILE...`: records, readably, filtered.
//!
//! Also holds what the other reading commands share: the filter flags and
//! the mapping of review errors to exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_audit::text::{format_pretty_stored, sanitize_text};
use agent_audit_review::{Entry, Filter, ReviewError, Source, SourceOptions};

use crate::error::CliError;

/// Filter flags shared by `show`, `tail`, `stats`, `timeline` and
/// `report`; every flag given must hold.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only records of this request.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// Only records of this conversation (shared by every agent of it).
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Only records of this event type; repeat or separate with commas
    /// for several (`--event-type tool_call,tool_result`).
    #[arg(long, value_name = "T", value_delimiter = ',')]
    pub event_type: Vec<String>,
    /// Only records of this agent; repeat or separate with commas for
    /// several.
    #[arg(long, value_name = "A", value_delimiter = ',')]
    pub agent: Vec<String>,
    #[command(flatten)]
    pub who: WhoFilter,
    /// Only records at or after this RFC 3339 time (2026-11-25T23:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records at or before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// Who the records are for (`--user-id`, `--session-id`, `--attr`), in
/// [`FilterArgs`] and `timeline`'s pick; every flag given must hold.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WhoFilter {
    /// Only records of this end user (schema v2 `user_id`, as recorded:
    /// a pseudonym when redaction hashes it).
    #[arg(long, value_name = "ID")]
    pub user_id: Option<String>,
    /// Only records of this session (schema v2 `session_id`).
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Only records whose attribute KEY is VALUE (`--attr tenant=emea`);
    /// repeat for several, all of which must hold.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attr: Vec<String>,
}

impl WhoFilter {
    /// Narrows `f` to these records; a bad `--attr` is a usage error.
    pub fn narrow(&self, f: &mut Filter) -> Result<(), CliError> {
        f.user_id = self.user_id.clone();
        f.session_id = self.session_id.clone();
        for a in &self.attr {
            let (k, v) = parse_attr(a)?;
            f.attributes.push((k.to_string(), v.to_string()));
        }
        Ok(())
    }
}

impl FilterArgs {
    /// The filter these flags describe; a bad time is a usage error.
    pub fn to_filter(&self) -> Result<Filter, CliError> {
        let mut f = Filter::new();
        f.request_id = self.request_id.clone();
        f.correlation_id = self.correlation_id.clone();
        f.event_types = self.event_type.clone();
        f.agents = self.agent.clone();
        self.who.narrow(&mut f)?;
        if let Some(s) = &self.since {
            f = f.since(s).map_err(review_err)?;
        }
        if let Some(u) = &self.until {
            f = f.until(u).map_err(review_err)?;
        }
        Ok(f)
    }
}

/// `KEY=VALUE` of an `--attr` flag; a usage error naming the flag when
/// there is no `=` or no key. The error does not quote the argument: it
/// may be a value meant for the flag (`--attr "=$TOKEN"`, `--attr
/// "$TOKEN"`), and stderr is often kept in a CI log.
pub fn parse_attr(arg: &str) -> Result<(&str, &str), CliError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        Some(_) => Err(CliError::Usage(
            "--attr: the key before `=` is empty; expected KEY=VALUE (e.g. --attr purpose=support)"
                .into(),
        )),
        None => Err(CliError::Usage(format!(
            "--attr: an argument of {} bytes has no `=`; expected KEY=VALUE (e.g. --attr purpose=support)",
            arg.len()
        ))),
    }
}

/// Maps a review error to the CLI's: bad flags exit 2, the rest 1.
pub fn review_err(e: ReviewError) -> CliError {
    match e {
        ReviewError::BadTime { .. } | ReviewError::EmptyRange { .. } | ReviewError::NoFiles => {
            CliError::Usage(e.to_string())
        }
        other => CliError::Runtime(other.to_string()),
    }
}

/// Prints `message` on stderr as `agent-audit: {message}`, through
/// [`sanitize_text`]: what the reading commands say on stderr quotes paths
/// and file content (a file named with an escape sequence, a record key
/// holding one), and this is the rule every review command prints such
/// text by (control and bidi formatting characters shown as `\u{..}`).
pub fn note(message: &str) {
    errln!("agent-audit: {}", sanitize_text(message));
}

/// One record as printed, into `buf`: its exact JSON line with `json`,
/// else the readable line; newline-terminated.
pub fn record_line(json: bool, entry: &Entry, buf: &mut Vec<u8>) {
    buf.clear();
    if json {
        buf.extend_from_slice(&entry.bytes);
    } else {
        format_pretty_stored(&entry.record, buf);
    }
    buf.push(b'\n');
}

/// How many unreadable lines a reading command prints in full.
pub const BAD_SHOWN: u64 = 20;

/// Lines that are not records, as the reading commands report them on
/// stderr: the first [`BAD_SHOWN`] in full, the rest only counted, so a
/// file of millions of junk lines gives a short report.
pub struct BadLines {
    total: u64,
    suffix: &'static str,
}

impl BadLines {
    /// Reports with `suffix` after each line's message.
    pub fn new(suffix: &'static str) -> BadLines {
        BadLines { total: 0, suffix }
    }

    /// One more unreadable line.
    pub fn report(&mut self, e: &dyn std::fmt::Display) {
        self.total += 1;
        if self.total <= BAD_SHOWN {
            note(&format!("{e}{}", self.suffix));
        }
    }

    /// Lines counted elsewhere and not shown.
    pub fn add_unshown(&mut self, n: u64) {
        self.total += n;
    }

    /// Says on stderr how many were not shown, if any.
    pub fn print_rest(&self) {
        if self.total > BAD_SHOWN {
            errln!(
                "agent-audit: {} more line(s) that are not records were not shown (`agent-audit verify` names the first problem)",
                self.total - BAD_SHOWN
            );
        }
    }

    /// The error a command ends with when there were any.
    pub fn error(&self) -> Option<CliError> {
        (self.total > 0).then(|| {
            CliError::Runtime(format!(
                "{} line(s) could not be read as records (see above)",
                self.total
            ))
        })
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends the command quietly.
pub fn write_out(out: &mut impl Write, bytes: &[u8]) -> Result<bool, CliError> {
    match out.write_all(bytes) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::Runtime(format!("writing to stdout: {e}"))),
    }
}

/// Flushes stdout, tolerating a closed pipe.
pub fn flush_out(out: &mut impl Write) -> Result<(), CliError> {
    match out.flush() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Runtime(format!("writing to stdout: {e}"))),
    }
}

/// The logs a reading command takes.
#[derive(clap::Args)]
pub struct Inputs {
    /// JSONL audit files; each is read after its rotated files
    /// (`audit-log.000000000001-000000004096.jsonl`), oldest first. Or a
    /// SQL sink's database URL (`sqlite://audit.db`,
    /// `postgres://user@host/db`, `#table` for another table).
    #[arg(required = true, value_name = "FILE|URL")]
    files: Vec<PathBuf>,
    /// Read only the files named, not their rotated files.
    #[arg(long)]
    no_rotated: bool,
}

impl Inputs {
    /// Opens the files (with their rotated files unless `--no-rotated`).
    pub fn open(&self) -> Result<Source, CliError> {
        Source::open_inputs(
            &super::location::inputs(&self.files)?,
            SourceOptions {
                include_rotated: !self.no_rotated,
            },
        )
        .map_err(review_err)
    }
}

/// Arguments of the commands that read the matching records of some files
/// (`show`, `stats`): the files, the filter, and `--json`, whose help each
/// command words for itself (`mut_arg` in main.rs).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inputs: Inputs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The filter, checked, and the files, opened: a bad filter is
    /// reported before any file is read.
    pub fn open(&self) -> Result<(Filter, Source), CliError> {
        let filter = self.filter.to_filter()?;
        Ok((filter, self.inputs.open()?))
    }
}

/// Prints matching records, one aligned line each (time, seq, agent,
/// type, summary); a line that is not a record is reported on stderr with
/// its file and line, and the command then exits 1.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (filter, source) = args.open()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = BadLines::new("");
    let mut buf = Vec::new();
    for item in source {
        let entry = match item {
            Ok(e) => e,
            Err(e) => {
                bad.report(&e);
                continue;
            }
        };
        if !filter.matches(&entry.record) {
            continue;
        }
        record_line(args.json, &entry, &mut buf);
        if !write_out(&mut out, &buf)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    flush_out(&mut out)?;
    bad.print_rest();
    match bad.error() {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
