//! `agent-audit timeline --request-id ID FILE...`: one request as a tree of
//! agent turns, model calls and tool calls, with durations. The request
//! can instead be picked by who asked (`--user-id`, `--session-id`,
//! `--attr`): the last request whose records match.

use std::process::ExitCode;

use agent_audit_review::progress::Progress;
use agent_audit_review::{Entry, Filter, Timeline};

use super::show::{BadLines, Inputs, WhoFilter, flush_out, review_err, write_out};
use crate::error::CliError;
use agent_audit::text::json_text;

/// Which request: by id, or the last one matching who asked (or both).
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = true)]
#[command(
    mut_arg("request_id", |a| a.group("Pick")),
    mut_arg("user_id", |a| a.help("The last request of this end user (`user_id`)").group("Pick")),
    mut_arg("session_id", |a| a.help("The last request of this session (`session_id`)").group("Pick")),
    mut_arg("attr", |a| a.help("The last request whose records carry attribute KEY = VALUE; repeatable").group("Pick")),
)]
pub struct Pick {
    /// The request.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub who: WhoFilter,
}

impl Pick {
    fn filter(&self) -> Result<Filter, CliError> {
        let mut f = Filter::new();
        f.request_id = self.request_id.clone();
        self.who.narrow(&mut f)?;
        Ok(f)
    }

    /// How the pick reads in a message.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.request_id {
            parts.push(format!("request `{r}`"));
        }
        if let Some(u) = &self.who.user_id {
            parts.push(format!("user `{u}`"));
        }
        if let Some(s) = &self.who.session_id {
            parts.push(format!("session `{s}`"));
        }
        for a in &self.who.attr {
            parts.push(format!("attribute `{a}`"));
        }
        parts.join(", ")
    }
}

/// Arguments of `timeline`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pick: Pick,
    #[command(flatten)]
    inputs: Inputs,
    /// Print the tree as JSON (spans with their steps) instead of text.
    #[arg(long)]
    json: bool,
}

/// Reads the records of `request_id` from `files`, with a progress bar on
/// a terminal; unreadable lines are reported on stderr and skipped.
fn load_request(inputs: &Inputs, pick: &Pick) -> Result<(Vec<Entry>, Vec<String>), CliError> {
    let filter = pick.filter()?;
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
            Ok(e) if e.record.request_id.is_some() && filter.matches(&e.record) => entries.push(e),
            Ok(_) => {}
            Err(e) => bad.report(&e),
        }
        progress.set(source.bytes_read());
    }
    progress.finish();
    bad.print_rest();
    // Picked by who asked: the last matching request.
    if let Some(last) = entries.last().and_then(|e| e.record.request_id.clone()) {
        entries.retain(|e| e.record.request_id.as_deref() == Some(last.as_str()));
    }
    Ok((entries, names))
}

/// The request's records from `inputs` and their tree; a request with no
/// record is an error naming the files searched.
pub fn load_timeline(inputs: &Inputs, pick: &Pick) -> Result<(Timeline, Vec<Entry>), CliError> {
    let (entries, files) = load_request(inputs, pick)?;
    let none = || {
        CliError::Runtime(format!(
            "{} has no records in {}",
            pick.describe(),
            files.join(", ")
        ))
    };
    let request_id = entries
        .first()
        .and_then(|e| e.record.request_id.clone())
        .ok_or_else(none)?;
    let timeline = Timeline::build(&request_id, &entries).map_err(|e| match e {
        agent_audit_review::ReviewError::NoSuchRequest { .. } => none(),
        other => review_err(other),
    })?;
    Ok((timeline, entries))
}

/// Prints the request's tree.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (timeline, _) = load_timeline(&args.inputs, &args.pick)?;
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
