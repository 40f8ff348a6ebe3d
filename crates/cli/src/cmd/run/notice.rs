//! Says on stderr, while `run` is going, that a sink cannot deliver and is
//! retrying, and until when; and again when it delivers (or gives up).
//!
//! A sink retrying inside its write (OTLP with a dead collector) holds the
//! agent for up to its retry budget, five minutes by default, with no
//! error to return yet; without this the operator sees a frozen process.
//! The libraries never print: the sink publishes `SinkHealth::retrying`
//! and this watcher, which belongs to the command, polls the dispatcher's
//! health and prints. Everything quoted from a sink (a collector's
//! message) goes through the terminal rule the rest of `run` uses.

use std::time::Duration;

use agent_audit::text::sanitize;
use agent_audit::{Dispatcher, Retrying, SinkHealth};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often health is read: a notice comes within this of the sink's
/// first failed attempt, cheaply (one lock per sink).
const POLL: Duration = Duration::from_millis(250);

/// The watcher while it runs; [`Watcher::stop`] ends it.
pub struct Watcher {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching `dispatcher`'s sinks, printing to stderr.
    pub fn start(dispatcher: Dispatcher) -> Watcher {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut notices = Notices::default();
            loop {
                for line in notices.observe(&dispatcher.health().sinks) {
                    errln!("{line}");
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
        Watcher { stop, task }
    }

    /// Stops the watcher and waits for it, so that no notice is printed
    /// after the command's final report.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// How long a sink may hold records without answering before `run` says
/// so. A sink retrying after a failure says so itself (`retrying`); this
/// covers a write that neither succeeds nor fails: a collector that
/// accepts the connection and never replies holds the agent for the
/// sink's whole timeout (up to ten minutes) with nothing failed yet.
const STALL: Duration = Duration::from_secs(3);

/// What each sink was last seen doing, to print only changes.
#[derive(Default)]
struct Notices {
    /// Per sink (by position): `Some(failed count)` while it was seen
    /// retrying, with its failure count then.
    retrying: Vec<Option<u64>>,
    /// Per sink: its answered count (delivered + failed + dropped), when
    /// that last changed or work arrived, and whether a stall was said.
    progress: Vec<Progress>,
}

#[derive(Default, Clone)]
struct Progress {
    answered: u64,
    waiting_since: Option<std::time::Instant>,
    said: bool,
}

impl Notices {
    /// The lines to print for the change from the last snapshot to `sinks`.
    fn observe(&mut self, sinks: &[SinkHealth]) -> Vec<String> {
        self.observe_at(sinks, std::time::Instant::now())
    }

    fn observe_at(&mut self, sinks: &[SinkHealth], now: std::time::Instant) -> Vec<String> {
        self.retrying.resize(sinks.len(), None);
        self.progress.resize(sinks.len(), Progress::default());
        let mut lines = Vec::new();
        for (p, s) in self.progress.iter_mut().zip(sinks) {
            let answered = s.delivered + s.failed + s.dropped;
            let waiting = s.queued + s.in_flight > 0;
            if answered != p.answered || !waiting {
                if p.said && answered != p.answered {
                    lines.push(format!(
                        "agent-audit: sink \"{}\" answers again",
                        sanitize(&s.name)
                    ));
                }
                *p = Progress {
                    answered,
                    waiting_since: waiting.then_some(now),
                    said: false,
                };
                continue;
            }
            let since = *p.waiting_since.get_or_insert(now);
            // A retrying sink has its own notice, which says more.
            if !p.said && s.retrying.is_none() && now.duration_since(since) >= STALL {
                p.said = true;
                let then = if s.required {
                    "the agent waits for it (a required sink) until it answers or its timeout ends"
                } else {
                    "its records wait until it answers or its timeout ends"
                };
                lines.push(format!(
                    "agent-audit: sink \"{}\" has not answered for {} s ({} record(s) waiting); {then}",
                    sanitize(&s.name),
                    now.duration_since(since).as_secs(),
                    s.queued + s.in_flight,
                ));
            }
        }
        for (seen, s) in self.retrying.iter_mut().zip(sinks) {
            match (&*seen, &s.retrying) {
                (None, Some(r)) => {
                    lines.push(retrying_line(s, r));
                    *seen = Some(s.failed);
                }
                (Some(failed_before), None) => {
                    lines.push(if s.failed > *failed_before {
                        format!(
                            "agent-audit: sink \"{}\" stopped retrying; {} record(s) were not delivered",
                            sanitize(&s.name),
                            s.failed - failed_before
                        )
                    } else {
                        format!("agent-audit: sink \"{}\" delivers again", sanitize(&s.name))
                    });
                    *seen = None;
                }
                _ => {}
            }
        }
        lines
    }
}

fn retrying_line(s: &SinkHealth, r: &Retrying) -> String {
    // To the second: the operator plans by it, nanoseconds are noise.
    let until = r
        .until
        .as_str()
        .get(..19)
        .map_or_else(|| r.until.as_str().to_string(), |whole| format!("{whole}Z"));
    let then = if s.required {
        "then the run fails because the sink is required"
    } else {
        "then its records count as lost and are named in audit_gap records on the other sinks"
    };
    format!(
        "agent-audit: sink \"{}\" cannot deliver ({}); retrying until {until} (retry budget {}), {then}",
        sanitize(&s.name),
        sanitize(&r.last_error),
        budget(r.budget_ms),
    )
}

fn budget(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_audit::{AckLevel, Timestamp};

    fn health(retrying: Option<Retrying>, failed: u64, required: bool) -> SinkHealth {
        SinkHealth {
            name: "otlp".into(),
            required,
            delivered: 0,
            failed,
            dropped: 0,
            queued: 3,
            in_flight: 0,
            max_level: AckLevel::Exported,
            last_error: None,
            notices: 0,
            last_notice: None,
            retrying,
        }
    }

    /// A collector that accepts the connection and never replies: no
    /// failure, no retry, records held. Said once after STALL, and again
    /// when the sink answers.
    #[test]
    fn a_sink_holding_records_without_answering_is_said_after_the_stall_time() {
        let mut n = Notices::default();
        let t0 = std::time::Instant::now();
        let mut h = health(None, 0, true);
        h.queued = 0;
        h.in_flight = 5;
        assert!(n.observe_at(std::slice::from_ref(&h), t0).is_empty());
        assert!(
            n.observe_at(std::slice::from_ref(&h), t0 + Duration::from_secs(1))
                .is_empty()
        );
        let lines = n.observe_at(std::slice::from_ref(&h), t0 + STALL);
        assert_eq!(
            lines,
            [
                "agent-audit: sink \"otlp\" has not answered for 3 s (5 record(s) waiting); the agent waits for it (a required sink) until it answers or its timeout ends"
            ]
        );
        assert!(
            n.observe_at(std::slice::from_ref(&h), t0 + STALL * 2)
                .is_empty(),
            "said once"
        );
        h.delivered = 5;
        h.in_flight = 0;
        assert_eq!(
            n.observe_at(std::slice::from_ref(&h), t0 + STALL * 3),
            ["agent-audit: sink \"otlp\" answers again"]
        );
        // An idle sink is never stalled, however long.
        assert!(
            n.observe_at(std::slice::from_ref(&h), t0 + STALL * 10)
                .is_empty()
        );
    }

    fn retrying(error: &str) -> Retrying {
        Retrying {
            since: Timestamp::parse("2026-12-04T22:35:00.5Z").unwrap(),
            until: Timestamp::parse("2026-12-04T22:40:00.5Z").unwrap(),
            budget_ms: 300_000,
            attempts: 2,
            last_error: error.into(),
        }
    }

    #[test]
    fn one_line_when_retrying_begins_and_one_when_it_ends() {
        let mut n = Notices::default();
        assert!(n.observe(&[health(None, 0, true)]).is_empty());
        let lines = n.observe(&[health(Some(retrying("connection refused")), 0, true)]);
        assert_eq!(
            lines,
            [
                "agent-audit: sink \"otlp\" cannot deliver (connection refused); retrying until 2026-12-04T22:40:00Z (retry budget 300 s), then the run fails because the sink is required"
            ]
        );
        // Still retrying, a newer error: nothing new to say.
        assert!(
            n.observe(&[health(Some(retrying("timed out")), 0, true)])
                .is_empty()
        );
        assert_eq!(
            n.observe(&[health(None, 0, true)]),
            ["agent-audit: sink \"otlp\" delivers again"]
        );
        n.observe(&[health(Some(retrying("x")), 0, false)]);
        assert_eq!(
            n.observe(&[health(None, 4, false)]),
            ["agent-audit: sink \"otlp\" stopped retrying; 4 record(s) were not delivered"]
        );
    }

    #[test]
    fn what_a_collector_said_cannot_drive_the_terminal() {
        let mut n = Notices::default();
        let lines = n.observe(&[health(
            Some(retrying(
                "HTTP 503: \u{1b}]52;c;cm0gLXJmIC8=\u{7}\u{1b}[2J\nfake line",
            )),
            0,
            false,
        )]);
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].chars().any(|c| c.is_control()), "{:?}", lines[0]);
        assert!(lines[0].contains("audit_gap"), "{}", lines[0]);
    }
}
