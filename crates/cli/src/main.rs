//! `agent-audit`: run an audited agent; read, filter, verify and summarise
//! audit logs.
//!
//! Exit codes: 0 success, 1 a runtime or audit failure, 2 bad usage or
//! configuration.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
mod cmd;
mod error;

#[derive(Parser)]
#[command(name = "agent-audit", version, about = "Audit trails for LLM agents", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tutorial's audited agent on a prompt.
    Run(cmd::run::Args),
    /// Print records readably, filtered.
    #[command(mut_arg("json", |a| a.help("Print the records' exact JSON lines instead of readable lines")))]
    Show(cmd::show::Args),
    /// Print the last records and follow the file, across rotation.
    Tail(cmd::tail::Args),
    /// Summarise records: counts, model latency and tokens, tool errors, gaps.
    #[command(mut_arg("json", |a| a.help("Print one JSON object instead of tables")))]
    Stats(cmd::show::Args),
    /// One request as a tree of agent turns, model calls and tool calls.
    Timeline(cmd::timeline::Args),
    /// One request as a self-contained HTML report.
    Report(cmd::report::Args),
    /// Check the hash chain, seq continuity and checkpoint signatures.
    Verify(cmd::verify::Args),
    /// Write an Ed25519 key pair for signed checkpoints.
    Keygen(cmd::keygen::Args),
    /// Push records through the configured sinks and report throughput.
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version: our own text, to stdout.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap quotes the arguments it could not use: escape them, as
            // every other message that quotes input is.
            errln!(
                "{}",
                agent_audit::text::sanitize_text(&e.render().to_string()).trim_end()
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            errln!("agent-audit: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(a) => cmd::run::run(a).await,
            Command::Show(a) => cmd::show::run(a),
            Command::Tail(a) => cmd::tail::run(a),
            Command::Stats(a) => cmd::stats::run(a),
            Command::Timeline(a) => cmd::timeline::run(a),
            Command::Report(a) => cmd::report::run(a),
            Command::Verify(a) => cmd::verify::run(a),
            Command::Keygen(a) => cmd::keygen::run(a),
            Command::Bench(a) => cmd::bench::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // An error quotes paths and file content (a log named with an
            // escape sequence, a record key holding one): shown by the rule
            // every review command prints such text by.
            cmd::show::note(&e.to_string());
            ExitCode::from(e.exit_code())
        }
    }
}
