//! The GenAI client metrics and the audit pipeline's health as metrics.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, ObservableCounter, ObservableGauge};

use super::Telemetry;
use crate::dispatcher::{Dispatcher, WeakDispatcher};
use crate::{AckLevel, SinkHealth};

/// The metric names, and the attribute naming a sink.
pub mod names {
    /// GenAI client operation duration (histogram, seconds), one point per model call.
    pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// GenAI token usage (histogram, `{token}`), `gen_ai.token.type` input or output.
    pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Records that reached a sink: delivered, failed, dropped or still
    /// queued or in flight (counter, per sink).
    pub const RECORDS_EMITTED: &str = "agent_audit.records.emitted";
    /// Records a sink acknowledged (counter, per sink).
    pub const RECORDS_DELIVERED: &str = "agent_audit.records.delivered";
    /// Records dropped or refused at a full queue (counter, per sink).
    pub const RECORDS_DROPPED: &str = "agent_audit.records.dropped";
    /// Records whose write failed (counter, per sink).
    pub const RECORDS_FAILED: &str = "agent_audit.records.failed";
    /// Records waiting in a sink's queue (gauge, per sink).
    pub const QUEUE_DEPTH: &str = "agent_audit.queue.depth";
    /// Records handed to a sink's write and not answered yet (gauge, per sink).
    pub const IN_FLIGHT: &str = "agent_audit.records.in_flight";
    /// How long the runtime waited for a record's acknowledgement before
    /// acting (histogram, seconds; attribute `agent_audit.ack.level`).
    pub const ACK_DURATION: &str = "agent_audit.ack.duration";
    /// The attribute naming the sink of a health metric.
    pub const SINK: &str = "agent_audit.sink";
}

/// Bucket boundaries the conventions advise for the duration histogram.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Bucket boundaries the conventions advise for the token histogram.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

pub(crate) struct Instruments {
    duration: Histogram<f64>,
    tokens: Histogram<u64>,
    ack: Histogram<f64>,
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Instruments {
        Instruments {
            duration: meter
                .f64_histogram(names::OPERATION_DURATION)
                .with_unit("s")
                .with_description("GenAI operation duration.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            tokens: meter
                .u64_histogram(names::TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used.")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            ack: meter
                .f64_histogram(names::ACK_DURATION)
                .with_unit("s")
                .with_description("Time the agent runtime waited for an audit record's acknowledgement before acting.")
                .with_boundaries(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .build(),
        }
    }

    pub(crate) fn duration(&self, seconds: f64, attrs: &[KeyValue]) {
        self.duration.record(seconds, attrs);
    }

    pub(crate) fn tokens(&self, tokens: u64, kind: &'static str, attrs: &[KeyValue]) {
        let mut all = Vec::with_capacity(attrs.len() + 1);
        all.extend_from_slice(attrs);
        all.push(KeyValue::new("gen_ai.token.type", kind));
        self.tokens.record(tokens, &all);
    }

    pub(crate) fn ack_wait(&self, seconds: f64, level: AckLevel) {
        self.ack.record(
            seconds,
            &[KeyValue::new("agent_audit.ack.level", level.to_string())],
        );
    }
}

/// The audit pipeline's health as observable instruments; reported while
/// this is kept and the dispatcher lives (the callbacks hold it weakly,
/// so they do not keep it from being dropped).
pub struct HealthMetrics {
    _counters: Vec<ObservableCounter<u64>>,
    _gauges: Vec<ObservableGauge<u64>>,
}

impl std::fmt::Debug for HealthMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMetrics").finish_non_exhaustive()
    }
}

type Read = fn(&SinkHealth) -> u64;

fn observe(
    weak: &WeakDispatcher,
    read: Read,
) -> impl Fn(&dyn opentelemetry::metrics::AsyncInstrument<u64>) + Send + Sync + 'static {
    let weak = weak.clone();
    move |observer| {
        let Some(dispatcher) = weak.upgrade() else {
            return;
        };
        for sink in dispatcher.health().sinks {
            observer.observe(
                read(&sink),
                &[KeyValue::new(names::SINK, sink.name.clone())],
            );
        }
    }
}

impl Telemetry {
    /// Reports `dispatcher`'s health on this telemetry's meter, per sink
    /// (attribute `agent_audit.sink`): records emitted, delivered, dropped
    /// and failed (counters), queue depth and records in flight (gauges).
    /// Keep the returned value for as long as they should be reported.
    pub fn observe_health(&self, dispatcher: &Dispatcher) -> HealthMetrics {
        let weak = dispatcher.downgrade();
        let meter = self.meter();
        let counters: [(&'static str, &'static str, Read); 4] = [
            (
                names::RECORDS_EMITTED,
                "Records that reached the sink (delivered, failed, dropped, queued or in flight).",
                |s| s.delivered + s.failed + s.dropped + s.queued + s.in_flight,
            ),
            (
                names::RECORDS_DELIVERED,
                "Records the sink acknowledged.",
                |s| s.delivered,
            ),
            (
                names::RECORDS_DROPPED,
                "Records dropped or refused at a full queue.",
                |s| s.dropped,
            ),
            (names::RECORDS_FAILED, "Records whose write failed.", |s| {
                s.failed
            }),
        ];
        let gauges: [(&'static str, &'static str, Read); 2] = [
            (
                names::QUEUE_DEPTH,
                "Records waiting in the sink's queue.",
                |s| s.queued,
            ),
            (
                names::IN_FLIGHT,
                "Records handed to the sink and not answered yet.",
                |s| s.in_flight,
            ),
        ];
        HealthMetrics {
            _counters: counters
                .into_iter()
                .map(|(name, description, read)| {
                    meter
                        .u64_observable_counter(name)
                        .with_unit("{record}")
                        .with_description(description)
                        .with_callback(observe(&weak, read))
                        .build()
                })
                .collect(),
            _gauges: gauges
                .into_iter()
                .map(|(name, description, read)| {
                    meter
                        .u64_observable_gauge(name)
                        .with_unit("{record}")
                        .with_description(description)
                        .with_callback(observe(&weak, read))
                        .build()
                })
                .collect(),
        }
    }
}
