//! One request as a tree of agent turns, model calls and tool calls,
//! rebuilt from the records' `span_id` and `parent_span_id`.
//!
//! Each span is an agent turn (the runtime opens one per turn, whose parent
//! is the turn that caused it). Inside a turn, records pair up into steps:
//!
//! - a **model call**: `assistant_input` up to the next `assistant_output`
//!   or `model_error` of the same span; its duration is the payload's
//!   `latency_ms` (what the runtime measured around the call), else the
//!   time between the two records;
//! - a **tool call**: `tool_call` up to the `tool_result` or `tool_error`
//!   with the same `call_id`; its duration is the payload's `duration_ms`,
//!   else the time between the records;
//! - any other record is a point **event** (`user_request`,
//!   `agent_message`, `final_result`, ...).
//!
//! A span whose parent is not among the request's spans is a root, so a
//! request that joined an application's trace still forms a tree. Records
//! without a span id form one root of their own. Spans and steps are kept
//! in an arena ([`Timeline::nodes`]) and walked without recursion, so a
//! conversation thousands of turns deep cannot overflow the stack.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_review::{Entry, Timeline};
//! # fn entry(seq: u64, ms: u32, event: &str, span: &str, parent: Option<&str>, agent: &str, payload: serde_json::Value) -> Entry {
//! #     let record = serde_json::from_value(serde_json::json!({
//! #         "v": 1, "seq": seq, "ts": format!("2026-11-25T23:32:22.{ms:03}000000Z"), "event_type": event,
//! #         "request_id": "r1", "correlation_id": "r1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
//! #         "span_id": span, "parent_span_id": parent, "agent": agent, "payload": payload, "prev": ""})).unwrap();
//! #     Entry { file: std::sync::Arc::from(std::path::Path::new("a.jsonl")), line: seq, offset: 0, log: 0, bytes: vec![], record }
//! # }
//! # use serde_json::json;
//! let entries = vec![
//!     entry(1, 0, "user_request", "00f067aa0ba902b7", None, "user_proxy", json!({"content": "balance of 12345?"})),
//!     entry(2, 1, "assistant_input", "a1a2a3a4a5a6a7a8", Some("00f067aa0ba902b7"), "assistant", json!({"model": "offline"})),
//!     entry(3, 5, "assistant_output", "a1a2a3a4a5a6a7a8", Some("00f067aa0ba902b7"), "assistant", json!({"model": "offline", "latency_ms": 3.5})),
//! ];
//! let timeline = Timeline::build("r1", &entries)?;
//! assert_eq!(timeline.roots.len(), 1);
//! let root = &timeline.nodes[timeline.roots[0]];
//! assert_eq!(root.agent.as_deref(), Some("user_proxy"));
//! let turn = &timeline.nodes[root.children[0]];
//! assert_eq!(turn.steps[0].seqs, [2, 3]);
//! assert_eq!(turn.steps[0].duration_ms, Some(3.5));
//! println!("{}", timeline.render_text());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use agent_audit_core::EventType;
use serde::Serialize;
use serde_json::Value;

use crate::error::ReviewError;
use crate::source::Entry;
use crate::text::{clip, fmt_ms, one_line};

/// What a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `assistant_input` .. `assistant_output` / `model_error`.
    ModelCall,
    /// `tool_call` .. `tool_result` / `tool_error`.
    ToolCall,
    /// A single record.
    Event,
}

/// A model call, a tool call or a single record inside a turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// What it is.
    pub kind: StepKind,
    /// Short name: `model offline`, `tool get_account_balance`, or the
    /// event type.
    pub label: String,
    /// One-line detail: the tool's arguments and result, the model's
    /// answer or requested calls, the event's summary.
    pub detail: String,
    /// Time of its first record (ns since the Unix epoch).
    pub start_ns: i128,
    /// Time of its last record.
    pub end_ns: i128,
    /// Measured duration from the payload (`latency_ms`, `duration_ms`) or
    /// the time between its records; `None` for events.
    pub duration_ms: Option<f64>,
    /// Seqs of its records, in order.
    pub seqs: Vec<u64>,
    /// Indices of its records in the slice given to [`Timeline::build`].
    pub entries: Vec<usize>,
    /// It ended in `model_error` or `tool_error`, or is itself an error
    /// record.
    pub error: bool,
    /// A call with no answer in the trail.
    pub unfinished: bool,
}

impl Step {
    /// Its seqs for display: `#4`, `#4-5` for consecutive records, else
    /// `#20,22` (another record came in between).
    pub fn seq_label(&self) -> String {
        let consecutive = self.seqs.windows(2).all(|w| w[1] == w[0] + 1);
        match (self.seqs.first(), self.seqs.last()) {
            (Some(a), Some(b)) if a != b && consecutive => format!("#{a}-{b}"),
            (Some(_), Some(_)) => {
                let all: Vec<String> = self.seqs.iter().map(u64::to_string).collect();
                format!("#{}", all.join(","))
            }
            _ => String::new(),
        }
    }
}

/// One span: an agent turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanNode {
    /// Its span id (`None` for the group of records without one).
    pub span_id: Option<String>,
    /// Its parent's span id as recorded.
    pub parent_span_id: Option<String>,
    /// The agent of its first record.
    pub agent: Option<String>,
    /// Earliest time of its records.
    pub start_ns: i128,
    /// Latest time of its records and its descendants'.
    pub end_ns: i128,
    /// Depth in the tree (roots are 0).
    pub depth: usize,
    /// Its steps, in order.
    pub steps: Vec<Step>,
    /// Indices of its child spans in [`Timeline::nodes`], by start time.
    pub children: Vec<usize>,
    /// Index of its parent in [`Timeline::nodes`].
    pub parent: Option<usize>,
}

/// A row of the tree in display order (see [`Timeline::rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Depth (a step is one deeper than its span).
    pub depth: usize,
    /// Tree-drawing prefix for a terminal (`│  └─ `).
    pub prefix: String,
    /// The span, and the step within it if this row is a step.
    pub node: usize,
    /// The step's index in the span's steps.
    pub step: Option<usize>,
}

/// A request's records as a tree. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// The request.
    pub request_id: String,
    /// Its conversation, from its first record.
    pub correlation_id: Option<String>,
    /// Number of records.
    pub records: usize,
    /// Earliest record time (ns since the Unix epoch).
    pub start_ns: i128,
    /// Latest record time.
    pub end_ns: i128,
    /// Every span.
    pub nodes: Vec<SpanNode>,
    /// Indices of the root spans, by start time.
    pub roots: Vec<usize>,
}

fn payload_str<'a>(p: &'a Value, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

fn payload_ms(p: &Value, key: &str) -> Option<f64> {
    p.get(key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0)
}

fn args_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl Timeline {
    /// Builds the tree of request `request_id` from the records of
    /// `entries` that belong to it (others are ignored). Fails when none do.
    pub fn build(request_id: &str, entries: &[Entry]) -> Result<Timeline, ReviewError> {
        let mine: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.record.request_id.as_deref() == Some(request_id))
            .map(|(i, _)| i)
            .collect();
        if mine.is_empty() {
            let mut files: Vec<String> = Vec::new();
            for e in entries {
                let f = e.file.display().to_string();
                if !files.contains(&f) {
                    files.push(f);
                }
            }
            return Err(ReviewError::NoSuchRequest {
                request_id: request_id.to_string(),
                files: if files.is_empty() {
                    "the files read".to_string()
                } else {
                    files.join(", ")
                },
            });
        }
        // A record whose time does not parse sits at the previous record's.
        let mut times = Vec::with_capacity(mine.len());
        let mut last = None;
        for &i in &mine {
            let t = entries[i].unix_nanos().or(last).unwrap_or(0);
            last = Some(t);
            times.push(t);
        }
        let first_record = &entries[mine[0]].record;
        let mut timeline = Timeline {
            request_id: request_id.to_string(),
            correlation_id: first_record.correlation_id.clone(),
            records: mine.len(),
            start_ns: times.iter().copied().min().unwrap_or(0),
            end_ns: times.iter().copied().max().unwrap_or(0),
            nodes: Vec::new(),
            roots: Vec::new(),
        };

        // One node per span, in order of first appearance.
        let mut by_span: HashMap<Option<&str>, usize> = HashMap::new();
        let mut open_model: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut open_tool: HashMap<String, (usize, usize)> = HashMap::new();
        for (k, &i) in mine.iter().enumerate() {
            let r = &entries[i].record;
            let t = times[k];
            let key = r.span_id.as_deref();
            let node = *by_span.entry(key).or_insert_with(|| {
                timeline.nodes.push(SpanNode {
                    span_id: r.span_id.clone(),
                    parent_span_id: r.parent_span_id.clone(),
                    agent: r.agent.clone(),
                    start_ns: t,
                    end_ns: t,
                    depth: 0,
                    steps: Vec::new(),
                    children: Vec::new(),
                    parent: None,
                });
                timeline.nodes.len() - 1
            });
            let n = &mut timeline.nodes[node];
            n.start_ns = n.start_ns.min(t);
            n.end_ns = n.end_ns.max(t);
            let p = &r.payload;
            let summary = agent_audit_core::text::summarize(p);
            let event = Step {
                kind: StepKind::Event,
                label: r.event_type.as_str().to_string(),
                detail: summary.clone(),
                start_ns: t,
                end_ns: t,
                duration_ms: None,
                seqs: vec![r.seq],
                entries: vec![i],
                error: r.event_type.is_error(),
                unfinished: false,
            };
            match &r.event_type {
                EventType::AssistantInput => {
                    let model = payload_str(p, "model").unwrap_or("?");
                    n.steps.push(Step {
                        kind: StepKind::ModelCall,
                        label: format!("model {model}"),
                        detail: String::new(),
                        unfinished: true,
                        ..event
                    });
                    open_model.entry(node).or_default().push(n.steps.len() - 1);
                }
                EventType::AssistantOutput | EventType::ModelError => {
                    let error = r.event_type == EventType::ModelError;
                    let detail = if error {
                        format!(
                            "error: {}",
                            payload_str(p, "message")
                                .map(str::to_string)
                                .unwrap_or(summary)
                        )
                    } else {
                        summary
                    };
                    match open_model.get_mut(&node).and_then(Vec::pop) {
                        Some(s) => {
                            let step = &mut n.steps[s];
                            step.end_ns = t;
                            step.seqs.push(r.seq);
                            step.entries.push(i);
                            step.error = error;
                            step.unfinished = false;
                            step.detail = detail;
                            step.duration_ms = payload_ms(p, "latency_ms")
                                .or(Some((t - step.start_ns) as f64 / 1e6));
                            if let Some(m) = payload_str(p, "model") {
                                step.label = format!("model {m}");
                            }
                        }
                        None => n.steps.push(Step {
                            kind: StepKind::ModelCall,
                            label: format!("model {}", payload_str(p, "model").unwrap_or("?")),
                            detail,
                            duration_ms: payload_ms(p, "latency_ms"),
                            error,
                            ..event
                        }),
                    }
                }
                EventType::ToolCall => {
                    let tool = payload_str(p, "tool").unwrap_or("?");
                    n.steps.push(Step {
                        kind: StepKind::ToolCall,
                        label: format!("tool {tool}"),
                        detail: format!("({})", clip(&args_text(p.get("arguments")), 100)),
                        unfinished: true,
                        ..event
                    });
                    if let Some(id) = payload_str(p, "call_id") {
                        open_tool.insert(id.to_string(), (node, n.steps.len() - 1));
                    }
                }
                EventType::ToolResult | EventType::ToolError => {
                    let error = r.event_type == EventType::ToolError;
                    let outcome = if error {
                        format!(
                            "error: {}",
                            payload_str(p, "error")
                                .map(str::to_string)
                                .unwrap_or_else(|| summary.clone())
                        )
                    } else {
                        clip(&args_text(p.get("result")), 100)
                    };
                    let opened = payload_str(p, "call_id").and_then(|id| open_tool.remove(id));
                    match opened {
                        Some((on, s)) => {
                            let step = &mut timeline.nodes[on].steps[s];
                            step.end_ns = t;
                            step.seqs.push(r.seq);
                            step.entries.push(i);
                            step.error = error;
                            step.unfinished = false;
                            step.detail = format!("{} -> {outcome}", step.detail);
                            step.duration_ms = payload_ms(p, "duration_ms")
                                .or(Some((t - step.start_ns) as f64 / 1e6));
                        }
                        None => {
                            let tool = payload_str(p, "tool").unwrap_or("?");
                            timeline.nodes[node].steps.push(Step {
                                kind: StepKind::ToolCall,
                                label: format!("tool {tool}"),
                                detail: format!("-> {outcome}"),
                                duration_ms: payload_ms(p, "duration_ms"),
                                error,
                                ..event
                            });
                        }
                    }
                }
                _ => n.steps.push(event),
            }
        }

        timeline.link();
        Ok(timeline)
    }

    /// Sets parents, children, depths, roots and each span's end over its
    /// descendants, without recursion; parent cycles (only a forged file
    /// has them) are broken at the earliest span of the cycle.
    fn link(&mut self) {
        let index: HashMap<String, usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.span_id.clone().map(|s| (s, i)))
            .collect();
        for i in 0..self.nodes.len() {
            let parent = self.nodes[i]
                .parent_span_id
                .as_ref()
                .and_then(|p| index.get(p).copied())
                .filter(|&p| p != i);
            self.nodes[i].parent = parent;
        }
        // Break cycles: follow parents; a walk that returns to a node seen in
        // the same walk is a cycle.
        let mut state = vec![0u8; self.nodes.len()]; // 0 new, 1 on path, 2 done
        for i in 0..self.nodes.len() {
            let mut path: Vec<usize> = Vec::new();
            let mut cur = Some(i);
            while let Some(c) = cur {
                match state[c] {
                    2 => break,
                    1 => {
                        // `c` is on the current path: cut the cycle at its
                        // earliest span.
                        let start = path.iter().position(|&x| x == c).unwrap_or(0);
                        let cut = path[start..]
                            .iter()
                            .copied()
                            .min_by_key(|&x| (self.nodes[x].start_ns, x))
                            .unwrap_or(c);
                        self.nodes[cut].parent = None;
                        break;
                    }
                    _ => {
                        state[c] = 1;
                        path.push(c);
                        cur = self.nodes[c].parent;
                    }
                }
            }
            for p in path {
                state[p] = 2;
            }
        }
        for i in 0..self.nodes.len() {
            match self.nodes[i].parent {
                Some(p) => self.nodes[p].children.push(i),
                None => self.roots.push(i),
            }
        }
        let starts: Vec<i128> = self.nodes.iter().map(|n| n.start_ns).collect();
        for n in &mut self.nodes {
            n.children.sort_by_key(|&c| (starts[c], c));
        }
        self.roots.sort_by_key(|&c| (starts[c], c));
        // Depths top-down, then ends bottom-up (reverse of a pre-order).
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(usize, usize)> = self.roots.iter().rev().map(|&r| (r, 0)).collect();
        while let Some((n, depth)) = stack.pop() {
            self.nodes[n].depth = depth;
            order.push(n);
            for &c in self.nodes[n].children.iter().rev() {
                stack.push((c, depth + 1));
            }
        }
        for &n in order.iter().rev() {
            if let Some(p) = self.nodes[n].parent {
                let end = self.nodes[n].end_ns;
                let pe = &mut self.nodes[p].end_ns;
                *pe = (*pe).max(end);
            }
        }
    }

    /// Total time from the first to the last record, in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e6
    }

    /// Every span and step in display order: a span, then its steps and
    /// child spans interleaved by start time.
    pub fn rows(&self) -> Vec<Row> {
        enum Item {
            Node(usize),
            Step(usize, usize),
        }
        let mut rows = Vec::new();
        // (item, depth, prefix for the item's own line, prefix for its children)
        let mut stack: Vec<(Item, usize, String, String)> = Vec::new();
        for (k, &r) in self.roots.iter().enumerate().rev() {
            let last = k + 1 == self.roots.len();
            let (own, rest) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            stack.push((Item::Node(r), 0, own.to_string(), rest.to_string()));
        }
        while let Some((item, depth, own, rest)) = stack.pop() {
            match item {
                Item::Step(n, s) => rows.push(Row {
                    depth,
                    prefix: own,
                    node: n,
                    step: Some(s),
                }),
                Item::Node(n) => {
                    rows.push(Row {
                        depth,
                        prefix: own,
                        node: n,
                        step: None,
                    });
                    let node = &self.nodes[n];
                    let mut items: Vec<(i128, u8, usize, Item)> = node
                        .steps
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (s.start_ns, 0, i, Item::Step(n, i)))
                        .collect();
                    items.extend(
                        node.children
                            .iter()
                            .enumerate()
                            .map(|(i, &c)| (self.nodes[c].start_ns, 1, i, Item::Node(c))),
                    );
                    items.sort_by_key(|(t, kind, i, _)| (*t, *kind, *i));
                    let count = items.len();
                    for (k, (_, _, _, item)) in items.into_iter().enumerate().rev() {
                        let last = k + 1 == count;
                        let (own, more) = if last {
                            ("└─ ", "   ")
                        } else {
                            ("├─ ", "│  ")
                        };
                        stack.push((
                            item,
                            depth + 1,
                            format!("{rest}{own}"),
                            format!("{rest}{more}"),
                        ));
                    }
                }
            }
        }
        rows
    }

    /// A one-line description of a row's span or step (without prefix).
    pub fn row_text(&self, row: &Row) -> String {
        let node = &self.nodes[row.node];
        let offset = |t: i128| fmt_ms((t - self.start_ns) as f64 / 1e6);
        match row.step {
            None => {
                let span = node
                    .span_id
                    .as_deref()
                    .map_or_else(|| "no span id".to_string(), |s| format!("span {s}"));
                format!(
                    "{}  turn  +{}  {}  ({span})",
                    one_line(node.agent.as_deref().unwrap_or("-")),
                    offset(node.start_ns),
                    fmt_ms((node.end_ns - node.start_ns) as f64 / 1e6),
                )
            }
            Some(s) => {
                let step = &node.steps[s];
                let mut t = format!("{} {}", step.seq_label(), one_line(&step.label));
                if let Some(ms) = step.duration_ms {
                    let _ = write!(t, "  {}", fmt_ms(ms));
                }
                if !step.detail.is_empty() {
                    let _ = write!(t, "  {}", one_line(&step.detail));
                }
                if step.unfinished {
                    t.push_str("  [no answer in the trail]");
                } else if step.error {
                    t.push_str("  [error]");
                }
                t
            }
        }
    }

    /// The tree for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let start = agent_audit_core::Timestamp::from_unix_nanos(self.start_ns);
        let _ = writeln!(
            out,
            "request {} (conversation {}): {} records over {}, from {}",
            one_line(&self.request_id),
            one_line(self.correlation_id.as_deref().unwrap_or("-")),
            self.records,
            fmt_ms(self.duration_ms()),
            start.as_str()
        );
        for row in self.rows() {
            let _ = writeln!(out, "{}{}", row.prefix, self.row_text(&row));
        }
        out
    }
}
