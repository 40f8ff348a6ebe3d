//! `agent-audit bench`: size a deployment on your own disk, as pgbench or
//! redis-benchmark do.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agent_audit::config::Config;
use agent_audit::{Auditor, EventType};
use serde::Serialize;

use crate::error::CliError;

/// Arguments of `bench`.
#[derive(clap::Args)]
#[command(
    mut_arg("user_id", |a| a.help("A user id on every record (schema v2), as `run --user-id`")),
    mut_arg("session_id", |a| a.help("A session id on every record, as `run --session-id`")),
    mut_arg("attr", |a| a.help("An attribute on every record, as `run --attr`; repeatable (compare a run with three against one without)")),
)]
pub struct Args {
    /// Configuration file (else $AGENT_AUDIT_CONFIG, else the default).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How many records to push.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    records: u64,
    /// Concurrent emitting tasks.
    #[arg(long, default_value_t = 1, value_name = "N")]
    tasks: u64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    who: super::run::WhoArgs,
}

/// A tutorial-sized tool call (about 400 bytes as a line).
#[derive(Serialize)]
struct ToolCall<'a> {
    tool: &'a str,
    call_id: String,
    arguments: Arguments<'a>,
    model: &'a str,
}

#[derive(Serialize)]
struct Arguments<'a> {
    account_id: &'a str,
    currency: &'a str,
    include_pending: bool,
}

#[derive(Serialize)]
struct BenchResult {
    records: u64,
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    emit_p50_us: f64,
    emit_p99_us: f64,
    lost: u64,
    peak_rss_bytes: u64,
    sinks: Vec<String>,
}

/// Pushes the records, drains, and prints the figures.
pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    if args.records == 0 || args.tasks == 0 {
        return Err(CliError::Usage(
            "--records and --tasks must be at least 1".into(),
        ));
    }
    let who = super::run::Who::parse(&args.who)?;
    let config = Config::discover(args.config.as_deref())?;
    let bytes_before = file_bytes(&config).unwrap_or(0);
    // [telemetry] as `run` starts it, so that a configuration with it is
    // measured as it runs: the providers and the health metrics; records
    // open no span.
    let mut telemetry = config.start_telemetry().await?;
    let dispatcher = config.start().await?;
    if let Some(t) = &mut telemetry {
        t.observe_health(&dispatcher);
    }
    let auditor = match who.scope(Auditor::new(dispatcher.clone())) {
        Ok(a) => a,
        Err(e) => {
            dispatcher.shutdown(Duration::from_secs(10)).await;
            return Err(e);
        }
    };
    let auditor = auditor.for_request(Some("bench")).with_agent("bench");
    let per_task = args.records / args.tasks;
    let extra = args.records % args.tasks;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..args.tasks {
        let a = auditor.clone();
        let n = per_task + u64::from(t < extra);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n as usize);
            let mut bytes = 0u64;
            for i in 0..n {
                let call = ToolCall {
                    tool: "get_account_balance",
                    call_id: format!("call_{t}_{i:012}"),
                    arguments: Arguments {
                        account_id: "12345",
                        currency: "EUR",
                        include_pending: i % 2 == 0,
                    },
                    model: "offline",
                };
                let t0 = Instant::now();
                a.emit(EventType::ToolCall, &call).await?;
                lat.push(t0.elapsed().as_nanos() as u64);
                bytes += 400;
            }
            Ok::<_, agent_audit::EmitError>((lat, bytes))
        }));
    }
    let mut lat = Vec::with_capacity(args.records as usize);
    for h in handles {
        let (l, _) = h
            .await
            .map_err(|e| CliError::Runtime(format!("bench task failed: {e}")))??;
        lat.extend(l);
    }
    let report = dispatcher.shutdown(Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(t) = telemetry {
        let report = t.shutdown(Duration::from_secs(10)).await;
        if !report.is_clean() {
            err!(
                "agent-audit: telemetry could not export everything (the audit records are not affected):\n{report}"
            );
        }
    }
    let written_bytes = file_bytes(&config).map(|after| after.saturating_sub(bytes_before));
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    let lost: u64 = report
        .sinks
        .iter()
        .map(|s| s.health.dropped + s.health.failed + s.undelivered)
        .sum();
    let result = BenchResult {
        records: args.records,
        seconds,
        records_per_sec: args.records as f64 / seconds,
        mb_per_sec: written_bytes.unwrap_or(args.records * 400) as f64 / seconds / 1e6,
        emit_p50_us: pct(0.50),
        emit_p99_us: pct(0.99),
        lost,
        peak_rss_bytes: peak_rss_bytes(),
        sinks: config.sinks.iter().map(|s| s.to_string()).collect(),
    };
    if args.json {
        let line = serde_json::to_string(&result).map_err(|e| CliError::Runtime(e.to_string()))?;
        outln!("{line}");
    } else {
        outln!("records          {}", result.records);
        outln!("sinks            {}", result.sinks.join("; "));
        outln!("elapsed          {:.3} s", result.seconds);
        outln!("records/s        {:.0}", result.records_per_sec);
        outln!("MB/s             {:.1}", result.mb_per_sec);
        outln!("emit p50         {:.2} us", result.emit_p50_us);
        outln!("emit p99         {:.2} us", result.emit_p99_us);
        outln!("records lost     {}", result.lost);
        outln!(
            "peak RSS         {:.1} MiB",
            result.peak_rss_bytes as f64 / 1048576.0
        );
    }
    if lost > 0 {
        err!("agent-audit: records were lost:\n{report}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes the JSONL sinks hold, for an honest MB/s.
fn file_bytes(config: &Config) -> Option<u64> {
    let mut total = None;
    for s in &config.sinks {
        if let Some(o) = s.options::<agent_audit::jsonl::JsonlOptions>() {
            let len = std::fs::metadata(&o.path).ok()?.len();
            *total.get_or_insert(0) += len;
        }
    }
    total
}

/// Peak resident set size of this process (VmHWM), 0 where unknown.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
