//! Tutorial-shaped agent turns per second on the offline model, with the
//! runtime's GenAI spans and metrics on (the OpenTelemetry SDK: a batch
//! span processor whose exporter discards, a meter provider with a
//! periodic reader) and off (no provider installed: the API's no-op),
//! in the same run, rounds interleaved (issue 13's goal: spans and
//! metrics cost at most 15 % of turns per second).
//!
//! `cargo bench -p agent-audit-agents --bench telemetry [-- TURNS [ROUNDS]]`
//!
//! A turn is `for_request` + `tutorial::run` ("What is the balance of
//! account 12345?": 8 records, 4 spans, 2 model calls) into a memory sink.
//! Also shown: spans alone and metrics alone (the other through the API's
//! no-op provider), and spans and metrics with `capture_content` (no
//! redaction rules), for what putting content on spans adds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_audit_agents::{OfflineModel, tutorial};
use agent_audit_core::otel::{Telemetry, TelemetryOptions};
use agent_audit_core::{Auditor, Dispatcher, MemorySink, SinkOptions};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

/// Exports nothing: the cost measured is ours and the SDK's, not a wire's.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    SpansOnly,
    MetricsOnly,
    On,
    OnWithContent,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Off => "off (no provider)",
            Mode::SpansOnly => "spans only",
            Mode::MetricsOnly => "metrics only",
            Mode::On => "spans + metrics",
            Mode::OnWithContent => "spans + metrics + content",
        }
    }
}

async fn round(turns: u32, telemetry: Option<Telemetry>) -> f64 {
    let sink = MemorySink::new();
    let dispatcher = Dispatcher::builder()
        .sink(SinkOptions::new("memory"), sink.clone())
        .start()
        .await
        .expect("memory dispatcher");
    let mut root = Auditor::new(dispatcher.clone());
    if let Some(t) = telemetry {
        root = root.with_telemetry(t);
    }
    let model = Arc::new(OfflineModel);
    let started = Instant::now();
    for i in 0..turns {
        let request = root.for_request(None);
        let answer = tutorial::run(
            &request,
            model.clone(),
            "What is the balance of account 12345?",
        )
        .await
        .expect("turn");
        assert!(answer.contains("12345"), "turn {i}: {answer}");
    }
    let seconds = started.elapsed().as_secs_f64();
    dispatcher.shutdown(Duration::from_secs(30)).await;
    assert_eq!(sink.records().len(), turns as usize * 8);
    f64::from(turns) / seconds
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let turns: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    // One mode only (its index), to count its instructions under
    // `perf stat` apart from the others.
    let only: Option<usize> = args.next().and_then(|a| a.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_periodic_exporter(InMemoryMetricExporter::default())
        .build();
    let telemetry = |capture| {
        Telemetry::new(
            &tracer_provider,
            &meter_provider,
            TelemetryOptions::default().capture_content(capture),
        )
    };
    let no_tracer = opentelemetry::trace::noop::NoopTracerProvider::new();
    let no_meter = opentelemetry::metrics::NoopMeterProvider::new();
    let options = TelemetryOptions::default;
    let modes = [
        Mode::Off,
        Mode::SpansOnly,
        Mode::MetricsOnly,
        Mode::On,
        Mode::OnWithContent,
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    // A warm-up round of each, not counted; the order turns each round,
    // so that no mode always runs first.
    for round_no in 0..=rounds {
        for k in 0..modes.len() {
            let i = (k + round_no) % modes.len();
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let mode = &modes[i];
            let t = match mode {
                Mode::Off => None,
                Mode::SpansOnly => Some(Telemetry::new(&tracer_provider, &no_meter, options())),
                Mode::MetricsOnly => Some(Telemetry::new(&no_tracer, &meter_provider, options())),
                Mode::On => Some(telemetry(false)),
                Mode::OnWithContent => Some(telemetry(true)),
            };
            let rate = rt.block_on(round(turns, t));
            if round_no > 0 {
                rates[i].push(rate);
            }
        }
    }
    println!("tutorial turns/s, offline model, {turns} turns x {rounds} rounds (median):");
    let off = if rates[0].is_empty() {
        f64::NAN
    } else {
        median(&mut rates[0])
    };
    for (i, mode) in modes.iter().enumerate() {
        if rates[i].is_empty() {
            continue;
        }
        let m = median(&mut rates[i]);
        let cost = if *mode == Mode::Off {
            String::new()
        } else {
            format!("  cost {:.1} %", (1.0 - m / off) * 100.0)
        };
        println!("  {:<28} {m:>9.0}{cost}", mode.label());
    }
    let _ = tracer_provider.shutdown();
    let _ = meter_provider.shutdown();
}
