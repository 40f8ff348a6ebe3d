//! Figures over a trail: records by type, agent and tool; model calls with
//! latency percentiles and token totals per model; tool calls with error
//! rates and durations; seq gaps, `audit_gap` records, error records and
//! unreadable lines.
//!
//! Built in one streaming pass ([`StatsBuilder`]), so a multi-gigabyte
//! trail needs memory only for the distinct ids and one `f64` per model
//! or tool call.
//!
//! Where the figures come from (the runtime's payload keys):
//!
//! | figure | records | payload keys |
//! |---|---|---|
//! | model calls, latency, tokens | `assistant_output` | `model`, `latency_ms`, `usage.{prompt,completion,total}_tokens` |
//! | model errors | `model_error` | `model`, `latency_ms` |
//! | tool calls | `tool_call` | `tool` |
//! | tool results, durations | `tool_result`, `tool_error` | `tool`, `duration_ms` |
//!
//! Percentiles use the nearest-rank method: p of n sorted values is the
//! value at 1-based rank `ceil(p / 100 * n)`, so every percentile is a
//! latency that was actually measured.
//!
//! ```
//! use agent_audit_review::stats::percentile;
//!
//! let sorted = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
//! assert_eq!(percentile(&sorted, 50.0), Some(5.0));
//! assert_eq!(percentile(&sorted, 95.0), Some(10.0));
//! assert_eq!(percentile(&[], 50.0), None);
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use agent_audit_core::EventType;
use agent_audit_jsonl::ReadError;
use serde::Serialize;
use serde_json::Value;

use crate::source::Entry;
use crate::text::{fmt_ms, one_line};

/// How many error records and unreadable lines [`Stats`] lists one by one
/// (all are counted).
pub const MAX_LISTED: usize = 100;

/// The value at nearest rank `ceil(p / 100 * n)` of `sorted` (ascending).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A distribution of milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Distribution {
    /// How many values.
    pub count: u64,
    /// Median (nearest rank).
    pub p50: Option<f64>,
    /// 95th percentile (nearest rank).
    pub p95: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Sum of the values.
    pub total: f64,
}

impl Distribution {
    fn from_values(mut values: Vec<f64>) -> Distribution {
        values.sort_by(f64::total_cmp);
        Distribution {
            count: values.len() as u64,
            p50: percentile(&values, 50.0),
            p95: percentile(&values, 95.0),
            p99: percentile(&values, 99.0),
            max: values.last().copied(),
            total: values.iter().sum(),
        }
    }
}

/// Figures of one model (by the `model` key of its records).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelStats {
    /// Calls that answered (`assistant_output`).
    pub calls: u64,
    /// Calls that failed (`model_error`).
    pub errors: u64,
    /// `errors / (calls + errors)`.
    pub error_rate: f64,
    /// Latency of the answered calls (`latency_ms`).
    pub latency_ms: Distribution,
    /// Sum of `usage.prompt_tokens`.
    pub prompt_tokens: u64,
    /// Sum of `usage.completion_tokens`.
    pub completion_tokens: u64,
    /// Sum of `usage.total_tokens`.
    pub total_tokens: u64,
}

/// Figures of one tool (by the `tool` key of its records).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ToolStats {
    /// `tool_call` records: calls about to run.
    pub calls: u64,
    /// `tool_result` records: calls that returned.
    pub results: u64,
    /// `tool_error` records: calls that failed or got invalid arguments.
    pub errors: u64,
    /// Calls with neither a result nor an error in the trail (the process
    /// stopped, or the trail was cut).
    pub unfinished: u64,
    /// `errors / (results + errors)`.
    pub error_rate: f64,
    /// Durations of results and errors (`duration_ms`).
    pub duration_ms: Distribution,
}

/// A hole in a log's seq numbers: records that were never written or were
/// removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeqGap {
    /// The file holding the record after the hole.
    pub file: String,
    /// Its line.
    pub line: u64,
    /// The seq before the hole.
    pub after: u64,
    /// The seq after the hole.
    pub next: u64,
    /// How many seqs are missing.
    pub missing: u64,
}

/// A record reporting a failure (`*_error`, `audit_gap`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorRecord {
    /// Its file.
    pub file: String,
    /// Its line.
    pub line: u64,
    /// Its seq.
    pub seq: u64,
    /// Its time.
    pub ts: String,
    /// Its type.
    pub event_type: String,
    /// Its agent.
    pub agent: Option<String>,
    /// A one-line summary of its payload.
    pub summary: String,
}

/// Every figure `agent-audit stats` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Records read.
    pub records: u64,
    /// Time of the earliest record.
    pub first_ts: Option<String>,
    /// Time of the latest record.
    pub last_ts: Option<String>,
    /// Distinct request ids.
    pub requests: u64,
    /// Distinct correlation ids.
    pub conversations: u64,
    /// Records per event type.
    pub by_event_type: BTreeMap<String, u64>,
    /// Records per agent (`-` for none).
    pub by_agent: BTreeMap<String, u64>,
    /// Per end user (`user_id`, `-` for none).
    pub by_user: BTreeMap<String, crate::users::UserStats>,
    /// `tool_call` records per tool.
    pub by_tool: BTreeMap<String, u64>,
    /// Per model.
    pub models: BTreeMap<String, ModelStats>,
    /// Per tool.
    pub tools: BTreeMap<String, ToolStats>,
    /// How many holes in seq numbers were found, per log.
    pub seq_gap_count: u64,
    /// How many seqs those holes miss in all.
    pub seq_missing: u64,
    /// The first [`MAX_LISTED`] holes.
    pub seq_gaps: Vec<SeqGap>,
    /// Records whose seq is not above the previous record's of the same
    /// log (reordered or duplicated lines).
    pub seq_out_of_order: u64,
    /// `audit_gap` records (loss the writer itself reported).
    pub audit_gaps: u64,
    /// Error records (`*_error`, `audit_gap`) per type.
    pub errors_by_type: BTreeMap<String, u64>,
    /// The first [`MAX_LISTED`] error records.
    pub errors: Vec<ErrorRecord>,
    /// Lines that are not records, and files that could not be read.
    pub unreadable_lines: u64,
    /// The first [`MAX_LISTED`] of them, as messages naming file and line.
    pub unreadable: Vec<String>,
}

#[derive(Default)]
struct ModelAcc {
    calls: u64,
    errors: u64,
    latencies: Vec<f64>,
    prompt: u64,
    completion: u64,
    total: u64,
}

#[derive(Default)]
struct ToolAcc {
    calls: u64,
    results: u64,
    errors: u64,
    durations: Vec<f64>,
}

/// Accumulates [`Stats`] record by record.
///
/// ```
/// use agent_audit_review::StatsBuilder;
///
/// let mut builder = StatsBuilder::new();
/// // builder.add(&entry) for every entry of a Source, builder.add_unreadable(&e) for errors
/// let stats = builder.finish();
/// assert_eq!(stats.records, 0);
/// ```
#[derive(Default)]
pub struct StatsBuilder {
    records: u64,
    first: Option<(i128, String)>,
    last: Option<(i128, String)>,
    requests: HashSet<String>,
    conversations: HashSet<String>,
    by_event_type: BTreeMap<String, u64>,
    by_agent: BTreeMap<String, u64>,
    by_user: BTreeMap<String, crate::users::UserAcc>,
    by_tool: BTreeMap<String, u64>,
    models: BTreeMap<String, ModelAcc>,
    tools: BTreeMap<String, ToolAcc>,
    last_seq: HashMap<usize, u64>,
    seq_gap_count: u64,
    seq_missing: u64,
    seq_gaps: Vec<SeqGap>,
    seq_out_of_order: u64,
    audit_gaps: u64,
    errors_by_type: BTreeMap<String, u64>,
    errors: Vec<ErrorRecord>,
    unreadable_lines: u64,
    unreadable: Vec<String>,
}

fn str_key<'a>(payload: &'a Value, key: &str) -> Option<&'a str> {
    payload.get(key).and_then(Value::as_str)
}

fn num_key(payload: &Value, key: &str) -> Option<f64> {
    payload
        .get(key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

fn rate(errors: u64, ok: u64) -> f64 {
    if errors + ok == 0 {
        0.0
    } else {
        errors as f64 / (errors + ok) as f64
    }
}

impl StatsBuilder {
    /// An empty builder.
    pub fn new() -> StatsBuilder {
        StatsBuilder::default()
    }

    /// Counts one record.
    pub fn add(&mut self, entry: &Entry) {
        let r = &entry.record;
        self.records += 1;
        if let Some(t) = r.timestamp() {
            let n = t.unix_nanos();
            if self.first.as_ref().is_none_or(|(f, _)| n < *f) {
                self.first = Some((n, r.ts.clone()));
            }
            if self.last.as_ref().is_none_or(|(l, _)| n > *l) {
                self.last = Some((n, r.ts.clone()));
            }
        }
        if let Some(id) = &r.request_id
            && !self.requests.contains(id)
        {
            self.requests.insert(id.clone());
        }
        if let Some(id) = &r.correlation_id
            && !self.conversations.contains(id)
        {
            self.conversations.insert(id.clone());
        }
        let event = r.event_type.as_str();
        bump(&mut self.by_event_type, event);
        bump(&mut self.by_agent, r.agent.as_deref().unwrap_or("-"));
        crate::users::add(&mut self.by_user, r);

        match self.last_seq.insert(entry.log, r.seq) {
            Some(prev) if r.seq > prev + 1 => {
                self.seq_gap_count += 1;
                self.seq_missing += r.seq - prev - 1;
                if self.seq_gaps.len() < MAX_LISTED {
                    self.seq_gaps.push(SeqGap {
                        file: entry.file.display().to_string(),
                        line: entry.line,
                        after: prev,
                        next: r.seq,
                        missing: r.seq - prev - 1,
                    });
                }
            }
            Some(prev) if r.seq <= prev => self.seq_out_of_order += 1,
            _ => {}
        }

        let p = &r.payload;
        let model = || str_key(p, "model").unwrap_or("(unnamed)").to_string();
        let tool = || str_key(p, "tool").unwrap_or("(unnamed)").to_string();
        match &r.event_type {
            EventType::AssistantOutput => {
                let m = self.models.entry(model()).or_default();
                m.calls += 1;
                if let Some(ms) = num_key(p, "latency_ms") {
                    m.latencies.push(ms);
                }
                if let Some(usage) = p.get("usage") {
                    let tokens = |k| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
                    m.prompt += tokens("prompt_tokens");
                    m.completion += tokens("completion_tokens");
                    m.total += tokens("total_tokens");
                }
            }
            EventType::ModelError => self.models.entry(model()).or_default().errors += 1,
            EventType::ToolCall => {
                let name = tool();
                bump(&mut self.by_tool, &name);
                self.tools.entry(name).or_default().calls += 1;
            }
            EventType::ToolResult | EventType::ToolError => {
                let t = self.tools.entry(tool()).or_default();
                if r.event_type == EventType::ToolResult {
                    t.results += 1;
                } else {
                    t.errors += 1;
                }
                if let Some(ms) = num_key(p, "duration_ms") {
                    t.durations.push(ms);
                }
            }
            _ => {}
        }
        if r.event_type == EventType::AuditGap {
            self.audit_gaps += 1;
        }
        if r.event_type.is_error() {
            bump(&mut self.errors_by_type, event);
            if self.errors.len() < MAX_LISTED {
                self.errors.push(ErrorRecord {
                    file: entry.file.display().to_string(),
                    line: entry.line,
                    seq: r.seq,
                    ts: r.ts.clone(),
                    event_type: event.to_string(),
                    agent: r.agent.clone(),
                    summary: agent_audit_core::text::summarize(p),
                });
            }
        }
    }

    /// Counts one line that could not be read.
    pub fn add_unreadable(&mut self, error: &ReadError) {
        self.unreadable_lines += 1;
        if self.unreadable.len() < MAX_LISTED {
            self.unreadable.push(error.to_string());
        }
    }

    /// The figures.
    pub fn finish(self) -> Stats {
        let models = self
            .models
            .into_iter()
            .map(|(name, m)| {
                let s = ModelStats {
                    calls: m.calls,
                    errors: m.errors,
                    error_rate: rate(m.errors, m.calls),
                    latency_ms: Distribution::from_values(m.latencies),
                    prompt_tokens: m.prompt,
                    completion_tokens: m.completion,
                    total_tokens: m.total,
                };
                (name, s)
            })
            .collect();
        let tools = self
            .tools
            .into_iter()
            .map(|(name, t)| {
                let s = ToolStats {
                    calls: t.calls,
                    results: t.results,
                    errors: t.errors,
                    unfinished: t.calls.saturating_sub(t.results + t.errors),
                    error_rate: rate(t.errors, t.results),
                    duration_ms: Distribution::from_values(t.durations),
                };
                (name, s)
            })
            .collect();
        Stats {
            records: self.records,
            first_ts: self.first.map(|(_, s)| s),
            last_ts: self.last.map(|(_, s)| s),
            requests: self.requests.len() as u64,
            conversations: self.conversations.len() as u64,
            by_event_type: self.by_event_type,
            by_agent: self.by_agent,
            by_user: crate::users::finish(self.by_user),
            by_tool: self.by_tool,
            models,
            tools,
            seq_gap_count: self.seq_gap_count,
            seq_missing: self.seq_missing,
            seq_gaps: self.seq_gaps,
            seq_out_of_order: self.seq_out_of_order,
            audit_gaps: self.audit_gaps,
            errors_by_type: self.errors_by_type,
            errors: self.errors,
            unreadable_lines: self.unreadable_lines,
            unreadable: self.unreadable,
        }
    }
}

/// `… and N more` under a list cut at [`MAX_LISTED`].
fn more(out: &mut String, total: u64, listed: usize) {
    if total > listed as u64 {
        let _ = writeln!(
            out,
            "    … and {} more (the first {MAX_LISTED} are listed)",
            total - listed as u64
        );
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), fmt_ms)
}

fn pct(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// Left-aligned first column, right-aligned others, two spaces apart.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("  ");
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

impl Stats {
    /// The figures as aligned tables for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} records, {} requests, {} conversations",
            self.records, self.requests, self.conversations
        );
        if let (Some(first), Some(last)) = (&self.first_ts, &self.last_ts) {
            let _ = writeln!(out, "from {first} to {last}");
        }
        let counts = |out: &mut String, title: &str, key: &str, map: &BTreeMap<String, u64>| {
            if map.is_empty() {
                return;
            }
            let _ = writeln!(out, "\n{title}");
            let mut rows: Vec<(&String, &u64)> = map.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|(k, v)| vec![one_line(k), v.to_string()])
                .collect();
            table(out, &[key, "records"], &rows);
        };
        counts(
            &mut out,
            "Records by event type",
            "event_type",
            &self.by_event_type,
        );
        counts(&mut out, "Records by agent", "agent", &self.by_agent);
        if !self.by_user.is_empty() {
            let _ = writeln!(out, "\nRecords by user");
            let header = ["user", "records", "requests", "sessions", "errors"];
            let rows = crate::users::rows(&self.by_user, MAX_LISTED);
            table(&mut out, &header, &rows);
            if self.by_user.len() > rows.len() {
                let _ = writeln!(
                    out,
                    "    … and {} more users (the {MAX_LISTED} with the most records are listed)",
                    self.by_user.len() - rows.len()
                );
            }
        }
        counts(&mut out, "Tool calls by tool", "tool", &self.by_tool);
        if !self.models.is_empty() {
            let _ = writeln!(out, "\nModel calls");
            let rows: Vec<Vec<String>> = self
                .models
                .iter()
                .map(|(name, m)| {
                    vec![
                        one_line(name),
                        m.calls.to_string(),
                        m.errors.to_string(),
                        opt_ms(m.latency_ms.p50),
                        opt_ms(m.latency_ms.p95),
                        opt_ms(m.latency_ms.p99),
                        m.prompt_tokens.to_string(),
                        m.completion_tokens.to_string(),
                        m.total_tokens.to_string(),
                    ]
                })
                .collect();
            table(
                &mut out,
                &[
                    "model",
                    "calls",
                    "errors",
                    "p50",
                    "p95",
                    "p99",
                    "prompt tok",
                    "completion tok",
                    "total tok",
                ],
                &rows,
            );
        }
        if !self.tools.is_empty() {
            let _ = writeln!(out, "\nTool calls");
            let rows: Vec<Vec<String>> = self
                .tools
                .iter()
                .map(|(name, t)| {
                    vec![
                        one_line(name),
                        t.calls.to_string(),
                        t.results.to_string(),
                        t.errors.to_string(),
                        t.unfinished.to_string(),
                        pct(t.error_rate),
                        opt_ms(t.duration_ms.p50),
                        opt_ms(t.duration_ms.p95),
                        opt_ms(t.duration_ms.p99),
                    ]
                })
                .collect();
            table(
                &mut out,
                &[
                    "tool",
                    "calls",
                    "ok",
                    "errors",
                    "unfinished",
                    "error rate",
                    "p50",
                    "p95",
                    "p99",
                ],
                &rows,
            );
        }
        let _ = writeln!(out, "\nGaps and errors");
        if self.seq_gaps.is_empty() && self.seq_out_of_order == 0 && self.audit_gaps == 0 {
            let _ = writeln!(out, "  seq: contiguous, no audit_gap record");
        } else {
            if self.seq_gap_count > 0 {
                let _ = writeln!(
                    out,
                    "  {} seq gap(s), {} seq(s) missing:",
                    self.seq_gap_count, self.seq_missing
                );
            }
            for g in &self.seq_gaps {
                let _ = writeln!(
                    out,
                    "    seq gap: {} missing after seq {} (next is {} at {}:{})",
                    g.missing,
                    g.after,
                    g.next,
                    one_line(&g.file),
                    g.line
                );
            }
            more(&mut out, self.seq_gap_count, self.seq_gaps.len());
            if self.seq_out_of_order > 0 {
                let _ = writeln!(
                    out,
                    "  {} record(s) with a seq not above the previous one (reordered or duplicated lines)",
                    self.seq_out_of_order
                );
            }
            if self.audit_gaps > 0 {
                let _ = writeln!(
                    out,
                    "  {} audit_gap record(s): the writer reported loss",
                    self.audit_gaps
                );
            }
        }
        if self.errors_by_type.is_empty() {
            let _ = writeln!(out, "  no error records");
        } else {
            let by: Vec<String> = self
                .errors_by_type
                .iter()
                .map(|(k, v)| format!("{} {v}", one_line(k)))
                .collect();
            let _ = writeln!(out, "  error records: {}", by.join(", "));
            for e in &self.errors {
                let _ = writeln!(
                    out,
                    "    {}:{} #{} {} {} {}",
                    one_line(&e.file),
                    e.line,
                    e.seq,
                    one_line(&e.event_type),
                    one_line(e.agent.as_deref().unwrap_or("-")),
                    one_line(&e.summary)
                );
            }
            more(
                &mut out,
                self.errors_by_type.values().sum(),
                self.errors.len(),
            );
        }
        if self.unreadable_lines == 0 {
            let _ = writeln!(out, "  every line is a record");
        } else {
            let _ = writeln!(out, "  {} unreadable line(s):", self.unreadable_lines);
            for u in &self.unreadable {
                let _ = writeln!(out, "    {}", one_line(u));
            }
            more(&mut out, self.unreadable_lines, self.unreadable.len());
        }
        out
    }
}
