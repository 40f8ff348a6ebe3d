//! `agent-audit verify`: checks a log's chain, seqs, syntax and signed
//! checkpoints, and names the first bad line and why.
//!
//! Exit codes: 0 intact, 1 tampered or damaged (the report names the file,
//! line and kind), 2 unreadable input (a missing file, an unset key
//! variable, a public key or checkpoints file that cannot be read).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use agent_audit::jsonl::integrity::chain_key_from_env;
use agent_audit::jsonl::keys::PublicKey;
use agent_audit::jsonl::verify::{self, VerifyOptions};
use agent_audit::text::{json_text, sanitize, sanitize_text};

use super::location;
use crate::error::CliError;

/// Arguments of `verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The log's files in chain order (oldest rotated file first, the
    /// active file last), or the directory holding them; or a SQL sink's
    /// database URL (`sqlite://audit.db`, `postgres://user@host/db`,
    /// `#table` for another table than audit_records), alone.
    #[arg(required = true, value_name = "FILE|DIR|URL")]
    paths: Vec<PathBuf>,
    /// Environment variable holding the chain key: verify an HMAC-SHA256
    /// chain (as written with `[integrity] key_env`).
    #[arg(long, value_name = "VAR")]
    key_env: Option<String>,
    /// Ed25519 public key (PEM, from `agent-audit keygen`): check every
    /// checkpoint's signature. Repeat for several keys.
    #[arg(long, value_name = "FILE")]
    public_key: Vec<PathBuf>,
    /// Checkpoints kept elsewhere (a JSONL file of checkpoint records, e.g.
    /// exported from the collector): detects truncation or a rewritten tail
    /// after the last one. Repeatable.
    #[arg(long, value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    /// The files are a later part of the log (older files were removed on
    /// purpose): do not require the first line to start the chain.
    #[arg(long)]
    partial: bool,
    /// The log's name as checkpoints carry it, if the files were renamed.
    #[arg(long, value_name = "NAME")]
    log_name: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Verifies the log and prints the report.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let json = args.json;
    match verify_log(args) {
        Ok(code) => Ok(code),
        Err(message) if json => {
            let out = serde_json::json!({"intact": null, "error": message});
            print_stdout(&json_text(&format!("{out}\n")))?;
            Ok(ExitCode::from(2))
        }
        // Unreadable input: exit 2.
        Err(message) => Err(CliError::Usage(message)),
    }
}

fn options(args: &Args) -> Result<VerifyOptions, String> {
    let key = match &args.key_env {
        Some(var) => Some(chain_key_from_env(var).map_err(|e| e.to_string())?),
        None => None,
    };
    let public_keys = args
        .public_key
        .iter()
        .map(PublicKey::load)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut checkpoints = Vec::new();
    for path in &args.checkpoints {
        checkpoints.extend(verify::load_checkpoints(path).map_err(|e| e.to_string())?);
    }
    Ok(VerifyOptions {
        key,
        public_keys,
        checkpoints,
        partial: args.partial,
        log_name: args.log_name.clone(),
    })
}

fn verify_log(args: Args) -> Result<ExitCode, String> {
    let options = options(&args)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = |p: &verify::Progress<'_>| {
        if let Some(bar) = &bar {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            if let Some(name) = p.file.file_name() {
                // A file's name is the file's to choose: shown by the rule.
                bar.set_message(sanitize(&name.to_string_lossy()));
            }
        }
    };
    let store = match args.paths.iter().find_map(|p| location::store_of(p)) {
        Some(_) if args.paths.len() > 1 => {
            return Err("a database URL is a whole log: give it alone".to_string());
        }
        Some(store) => Some(store.map_err(|e| e.to_string())?),
        None => None,
    };
    let result = match &store {
        Some(store) => verify::verify_store(store.as_ref(), &options, &mut progress),
        None => verify::verify(&args.paths, &options, &mut progress),
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result.map_err(|e| e.to_string())?;
    // The one place the report is rendered: it quotes paths and what lines
    // hold (a key, a serde message, a checkpoint's key_id or reason), so
    // it is printed by the rule every review command prints file content
    // by. Errors (exit 2) are printed through `show::note`.
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        s.push('\n');
        json_text(&s)
    } else {
        let mut text = report.to_string();
        // A table's "line" is a row's place in seq order: name the row by
        // its seq, which is what a query finds it by.
        if let (Some(store), Some(p)) = (&store, &report.problem) {
            let at = format!("{}:{}: ", store.label(), p.line);
            let row = match p.seq {
                Some(seq) => format!("{} row {} (seq {seq}): ", store.label(), p.line),
                None => format!("{} row {}: ", store.label(), p.line),
            };
            text = text.replacen(&at, &row, 1);
        }
        sanitize_text(&text)
    };
    print_stdout(&text).map_err(|e| e.to_string())?;
    Ok(if report.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A reader that went away (`| head`) is not a failure of the log.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Runtime(format!("writing to stdout: {e}"))),
    }
}
