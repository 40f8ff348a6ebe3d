//! `agent-audit report --request-id ID --html OUT FILE...`: one
//! self-contained HTML page of a request (waterfall timeline, every record
//! expandable), for a ticket or an auditor.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_audit_review::html;

use super::show::{Inputs, note, review_err};
use super::timeline::{Pick, load_timeline};
use crate::error::CliError;

/// Arguments of `report`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pick: Pick,
    /// Where to write the HTML file (replaced if it exists).
    #[arg(long, value_name = "OUT")]
    html: PathBuf,
    #[command(flatten)]
    inputs: Inputs,
}

/// Writes the report and says where on stderr.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (timeline, entries) = load_timeline(&args.inputs, &args.pick)?;
    let page = html::render(&timeline, &entries);
    html::write_report(&args.html, &page).map_err(review_err)?;
    note(&format!(
        "wrote {} ({} records of request {})",
        args.html.display(),
        timeline.records,
        timeline.request_id
    ));
    Ok(ExitCode::SUCCESS)
}
