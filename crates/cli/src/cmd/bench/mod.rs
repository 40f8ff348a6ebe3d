//! `agent-audit bench`: size a deployment on your own disk, as pgbench or
//! redis-benchmark do.
//!
//! `--baseline` writes the same lines the plainest way first (beside the
//! JSONL sink's file, so on the same disk); `--durable-probe` measures the
//! wait of `emit_wait(.., Durable)` while the tasks emit, against bare
//! `fdatasync`s afterwards and against a plain writer's durable appends
//! under a flat-out load of its own (the loaded peer). After the run the
//! lines the JSONL file gained are read back: contiguous seqs and every
//! record there, or exit 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_audit::config::Config;
use agent_audit::jsonl::{FsyncPolicy, JsonlOptions};
use agent_audit::{Auditor, EventType};
use serde::Serialize;

use crate::error::CliError;

mod baseline;
mod measure;
mod output;
mod peer;
mod probe;

use baseline::Baseline;
use measure::SeqCheck;
use probe::DurableProbe;

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
    /// First write the same number of lines, of the same shape, with plain
    /// serde_json + BufWriter<File> beside the first JSONL sink's file (one
    /// fdatasync at the end if that sink syncs), and print both. Needs a
    /// JSONL sink.
    #[arg(long)]
    baseline: bool,
    /// While the tasks emit, a probe emits a tool_call with
    /// emit_wait(.., Durable) every 5 ms; after the run, 200 bare
    /// fdatasyncs on the same disk, then a loaded peer for as long as the
    /// run: a plain writer appending flat out to a scratch file beside the
    /// log while a probe appends a line through its lock + fdatasync every
    /// 5 ms. Prints p50/p99 of all three. Needs a JSONL sink with fsync
    /// other than "never".
    #[arg(long)]
    durable_probe: bool,
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

impl ToolCall<'static> {
    /// The bench's tool call with this id: the tasks', the baseline's and
    /// the probe's lines differ in nothing else.
    fn new(call_id: String, include_pending: bool) -> ToolCall<'static> {
        ToolCall {
            tool: "get_account_balance",
            call_id,
            arguments: Arguments {
                account_id: "12345",
                currency: "EUR",
                include_pending,
            },
            model: "offline",
        }
    }
}

/// The first JSONL sink: where the baseline and the fdatasyncs write and
/// whose file is checked.
fn first_jsonl(config: &Config) -> Option<&JsonlOptions> {
    config
        .sinks
        .iter()
        .find_map(|s| s.options::<JsonlOptions>())
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
    let jsonl = first_jsonl(&config).cloned();
    if args.baseline && jsonl.is_none() {
        return Err(CliError::Usage(
            "--baseline writes beside the JSONL sink's file, on the same disk: the configuration has no [[sinks]] with type = \"jsonl\"".into(),
        ));
    }
    if args.durable_probe {
        match &jsonl {
            None => {
                return Err(CliError::Usage(
                    "--durable-probe needs a [[sinks]] with type = \"jsonl\" and fsync = \"batch\" (or \"every\"/\"interval\"): the configuration has no JSONL sink".into(),
                ));
            }
            Some(o) if o.fsync == FsyncPolicy::Never => {
                return Err(CliError::Usage(format!(
                    "--durable-probe needs fsync = \"batch\" (or \"every\"/\"interval\") on the JSONL sink: with fsync = \"never\" no record of {} ever becomes Durable",
                    o.path.display()
                )));
            }
            Some(_) => {}
        }
    }
    let shape = Arc::new(shape(&args, &who, &config));
    let baseline = match (&jsonl, args.baseline) {
        (Some(o), true) => Some(run_baseline(o, &args, shape.clone()).await?),
        _ => None,
    };
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
    // After the sink opened (and repaired a torn tail, if any): from here
    // on the file holds only what this run writes.
    let mark = jsonl.as_ref().and_then(|o| measure::Mark::of(&o.path));
    let per_task = args.records / args.tasks;
    let extra = args.records % args.tasks;
    let cpu0 = measure::cpu_seconds();
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..args.tasks {
        let a = auditor.clone();
        let n = per_task + u64::from(t < extra);
        handles.push(tokio::spawn(async move {
            let mut lat = measure::Histogram::new();
            for i in 0..n {
                let call = ToolCall::new(format!("call_{t}_{i:012}"), i % 2 == 0);
                let t0 = Instant::now();
                a.emit(EventType::ToolCall, &call).await?;
                lat.record(t0.elapsed().as_nanos() as u64);
            }
            Ok::<_, agent_audit::EmitError>(lat)
        }));
    }
    let probe = args
        .durable_probe
        .then(|| probe::Probe::start(auditor.clone()));
    let mut lat = measure::Histogram::new();
    for h in handles {
        let l = h
            .await
            .map_err(|e| CliError::Runtime(format!("bench task failed: {e}")))??;
        lat.merge(&l);
    }
    let waits = match probe {
        Some(p) => Some(p.stop().await?),
        None => None,
    };
    let report = dispatcher.shutdown(Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = measure::cpu_seconds() - cpu0;
    if let Some(t) = telemetry {
        let report = t.shutdown(Duration::from_secs(10)).await;
        if !report.is_clean() {
            err!(
                "agent-audit: telemetry could not export everything (the audit records are not affected):\n{report}"
            );
        }
    }
    // Outside the timed window, on an idle disk: the figure Durable is
    // compared with.
    let durable_probe = match (waits, &jsonl) {
        (Some(w), Some(o)) => {
            let path = o.path.clone();
            let syncs = tokio::task::spawn_blocking(move || probe::bare_fdatasync(&path))
                .await
                .map_err(|e| CliError::Runtime(format!("fdatasync probe failed: {e}")))?
                .map_err(|e| {
                    CliError::Runtime(format!("fdatasync probe beside {}: {e}", o.path.display()))
                })?;
            // After the bare fdatasyncs, so that they still find the disk
            // quiet; for as long as our run, so under as long a load.
            let path = o.path.clone();
            let shape = shape.clone();
            let peer = tokio::task::spawn_blocking(move || {
                peer::run(&path, Duration::from_secs_f64(seconds), &shape)
            })
            .await
            .map_err(|e| CliError::Runtime(format!("loaded peer failed: {e}")))?
            .map_err(|e| {
                CliError::Runtime(format!("loaded peer beside {}: {e}", o.path.display()))
            })?;
            Some(probe::figures(w, syncs, peer))
        }
        _ => None,
    };
    let probes = durable_probe.as_ref().map_or(0, |p| p.samples);
    let (seq_check, seq_check_skipped) = match (&jsonl, &mark) {
        (Some(o), Some(m)) => {
            let path = o.path.clone();
            let m = *m;
            let expected = args.records + probes;
            match tokio::task::spawn_blocking(move || measure::check_seq(&path, &m, expected))
                .await
                .map_err(|e| CliError::Runtime(format!("seq check failed: {e}")))?
            {
                Ok(c) => (Some(c), None),
                Err(why) => (None, Some(why)),
            }
        }
        (Some(o), None) => (
            None,
            Some(format!("{} could not be read", o.path.display())),
        ),
        (None, _) => (None, Some("no JSONL sink".to_string())),
    };
    let written_bytes = file_bytes(&config).map(|after| after.saturating_sub(bytes_before));
    let lost: u64 = report
        .sinks
        .iter()
        .map(|s| s.health.dropped + s.health.failed + s.undelivered)
        .sum();
    let records_per_sec = args.records as f64 / seconds;
    let result = BenchResult {
        records: args.records,
        tasks: args.tasks,
        seconds,
        records_per_sec,
        mb_per_sec: written_bytes.unwrap_or(args.records * 400) as f64 / seconds / 1e6,
        bytes_per_line: seq_check
            .as_ref()
            .filter(|c| c.lines > 0)
            .map(|c| c.bytes as f64 / c.lines as f64),
        cpu_us_per_record: cpu * 1e6 / args.records as f64,
        emit_p50_us: lat.quantile_us(0.50),
        emit_p99_us: lat.quantile_us(0.99),
        lost,
        peak_rss_bytes: measure::peak_rss_bytes(),
        sinks: config.sinks.iter().map(|s| s.to_string()).collect(),
        x_baseline: baseline
            .as_ref()
            .map(|b| records_per_sec / b.records_per_sec),
        baseline,
        durable_probe,
        seq_check,
        seq_check_skipped,
    };
    if args.json {
        let line = serde_json::to_string(&result).map_err(|e| CliError::Runtime(e.to_string()))?;
        outln!("{line}");
    } else {
        output::print_text(&result)?;
    }
    let mut failed = false;
    if lost > 0 {
        err!("agent-audit: records were lost:\n{report}");
        failed = true;
    }
    if let Some(c) = result.seq_check.as_ref().filter(|c| !c.ok()) {
        errln!(
            "agent-audit: the JSONL file does not hold the run whole: {} tool_call lines of {} emitted, seqs {}",
            c.tool_calls,
            c.expected_tool_calls,
            if c.contiguous {
                "contiguous"
            } else {
                "with gaps or out of order"
            }
        );
        failed = true;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// This run's records' user, session and attributes, for the lines the
/// baseline and the loaded peer write.
fn shape(args: &Args, who: &super::run::Who<'_>, config: &Config) -> baseline::Shape {
    let mut attributes = config.attributes.to_json_map();
    for (k, v) in &who.attrs {
        attributes.insert((*k).to_string(), serde_json::Value::from(*v));
    }
    baseline::Shape {
        user_id: args.who.user_id.clone(),
        session_id: args.who.session_id.clone(),
        attributes,
    }
}

/// `--baseline`, on a blocking thread: the lines shaped as this run's
/// records, synced once at the end if the sink syncs at all.
async fn run_baseline(
    o: &JsonlOptions,
    args: &Args,
    shape: Arc<baseline::Shape>,
) -> Result<Baseline, CliError> {
    let path = o.path.clone();
    let records = args.records;
    let sync = o.fsync != FsyncPolicy::Never;
    tokio::task::spawn_blocking(move || baseline::run(&path, records, &shape, sync))
        .await
        .map_err(|e| CliError::Runtime(format!("baseline failed: {e}")))?
        .map_err(|e| CliError::Runtime(format!("baseline beside {}: {e}", o.path.display())))
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

#[derive(Serialize)]
struct BenchResult {
    records: u64,
    tasks: u64,
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// Mean line length the run added to the JSONL file.
    bytes_per_line: Option<f64>,
    /// User + system CPU of the process over the timed window, per record.
    cpu_us_per_record: f64,
    emit_p50_us: f64,
    emit_p99_us: f64,
    lost: u64,
    peak_rss_bytes: u64,
    sinks: Vec<String>,
    /// The lines the run added to the first JSONL sink's file.
    seq_check: Option<SeqCheck>,
    /// Why the file could not be checked.
    seq_check_skipped: Option<String>,
    baseline: Option<Baseline>,
    /// Our records/s over the baseline's.
    x_baseline: Option<f64>,
    durable_probe: Option<DurableProbe>,
}
