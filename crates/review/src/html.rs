//! A self-contained HTML report of one request: the timeline drawn as a
//! waterfall, and every record with its payload expandable.
//!
//! The file has no external asset and makes no request: styles and the
//! few lines of script are inline, and a Content-Security-Policy
//! (`default-src 'none'`) forbids the browser from loading anything else,
//! so it can be mailed, attached to a ticket and opened offline. Values are
//! shown as they are stored: what redaction replaced stays replaced, and
//! each record's exact line is there beside its pretty-printed payload.
//! Everything taken from the records is HTML-escaped, control and bidi
//! formatting characters are shown as `<U+XXXX>` markers instead of
//! taking effect, and no record data enters the script. The file is
//! created 0600 (see [`write_report`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_audit_review::{Entry, Timeline, html};
//! # let record = serde_json::from_value(serde_json::json!({
//! #     "v": 1, "seq": 1, "ts": "2026-11-25T23:32:22.000000000Z", "event_type": "user_request",
//! #     "request_id": "r1", "correlation_id": "r1", "trace_id": null, "span_id": "00f067aa0ba902b7",
//! #     "parent_span_id": null, "agent": "user_proxy", "payload": {"content": "<b>hi</b>"}, "prev": ""}))?;
//! # let entries = vec![Entry { file: std::sync::Arc::from(std::path::Path::new("a.jsonl")), line: 1, offset: 0, log: 0, bytes: b"{}".to_vec(), record }];
//! let timeline = Timeline::build("r1", &entries)?;
//! let page = html::render(&timeline, &entries);
//! assert!(page.contains(r#"data-seq="1""#));
//! assert!(page.contains("&lt;b&gt;hi&lt;/b&gt;")); // escaped, never markup
//! assert!(!page.contains("http://") && !page.contains("https://"));
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::error::ReviewError;
use crate::source::Entry;
use crate::text::{fmt_ms, html_escape, pretty_json};
use crate::timeline::{StepKind, Timeline};

const STYLE: &str = r#"
:root { --fg:#1d2330; --muted:#5d6677; --line:#e3e6ec; --bg:#ffffff; --panel:#f6f7f9;
  --span:#64748b; --model:#2563eb; --tool:#059669; --event:#9ca3af; --error:#dc2626; --open:#d97706; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
header, section { padding: 16px 24px; }
header { background: var(--panel); border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 0 0 12px; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.legend { display: flex; gap: 16px; color: var(--muted); margin-bottom: 8px; font-size: 12.5px; }
.legend i { display: inline-block; width: 12px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.wf { border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.row { display: grid; grid-template-columns: minmax(260px, 38%) 1fr 90px; align-items: center; min-height: 24px;
  border-top: 1px solid var(--line); color: inherit; text-decoration: none; }
.row:first-child { border-top: 0; }
.row:hover { background: #eef2ff; }
.row .name { padding: 2px 8px 2px calc(8px + var(--d) * 16px); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.row.span .name { font-weight: 600; }
.row .track { position: relative; height: 24px; border-left: 1px solid var(--line); border-right: 1px solid var(--line);
  background-image: linear-gradient(to right, var(--line) 1px, transparent 1px); background-size: 25% 100%; }
.row .bar { position: absolute; top: 6px; height: 12px; border-radius: 3px; min-width: 3px; }
.row.span .bar { background: var(--span); opacity: .35; top: 8px; height: 8px; }
.row.model_call .bar { background: var(--model); }
.row.tool_call .bar { background: var(--tool); }
.row.event .bar { background: var(--event); width: 8px !important; height: 8px; top: 8px; transform: translateX(-4px) rotate(45deg); border-radius: 1px; }
.row.error .bar { background: var(--error); }
.row.unfinished .bar { background: repeating-linear-gradient(45deg, var(--open), var(--open) 4px, #fde68a 4px, #fde68a 8px); }
.row .dur { text-align: right; padding-right: 8px; color: var(--muted); font-variant-numeric: tabular-nums; }
.axis { display: grid; grid-template-columns: minmax(260px, 38%) 1fr 90px; color: var(--muted); font-size: 12px; }
.axis .ticks { display: flex; justify-content: space-between; padding: 0 2px; }
.tools { margin-bottom: 8px; }
button { font: inherit; padding: 3px 10px; border: 1px solid var(--line); background: var(--panel); border-radius: 4px; cursor: pointer; }
details.record { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; background: var(--bg); }
details.record > summary { cursor: pointer; padding: 6px 10px; display: grid; grid-template-columns: 56px 270px 110px 150px 1fr; gap: 8px; align-items: baseline; list-style-position: inside; }
details.record > summary > span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
details.record[open] > summary { border-bottom: 1px solid var(--line); background: var(--panel); }
details.record.error > summary .type { color: var(--error); font-weight: 600; }
details.record.target { outline: 2px solid var(--model); }
.rec-body { padding: 8px 12px; }
.rec-body dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 8px; font-size: 12.5px; }
.rec-body dt { color: var(--muted); }
.rec-body dd { margin: 0; overflow-wrap: anywhere; }
pre { margin: 0; padding: 8px; background: var(--panel); border-radius: 4px; white-space: pre-wrap; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; background: #fef3c7; color: #92400e; font-size: 12px; margin-left: 6px; }
footer { padding: 16px 24px; color: var(--muted); font-size: 12px; }
"#;

// Only toggles elements already in the page; no record data, no network.
const SCRIPT: &str = r#"
(function () {
  function open(id) {
    var el = document.getElementById(id);
    if (!el) return;
    document.querySelectorAll('details.record.target').forEach(function (d) { d.classList.remove('target'); });
    el.open = true; el.classList.add('target');
    el.scrollIntoView({block: 'center'});
  }
  document.querySelectorAll('a.row').forEach(function (a) {
    a.addEventListener('click', function (e) { e.preventDefault(); open(a.getAttribute('href').slice(1)); });
  });
  document.getElementById('expand-all').addEventListener('click', function () {
    document.querySelectorAll('details.record').forEach(function (d) { d.open = true; });
  });
  document.getElementById('collapse-all').addEventListener('click', function () {
    document.querySelectorAll('details.record').forEach(function (d) { d.open = false; });
  });
  if (location.hash) open(location.hash.slice(1));
})();
"#;

/// HTML-escapes `text` after replacing each character of the terminal rule
/// ([`agent_audit_core::text::is_terminal_unsafe`]: control characters and
/// bidi formatting) by a visible `<U+XXXX>` marker. A browser applies bidi
/// overrides and isolates too (U+202E shows `invoice_txt.exe` as
/// `invoice_exe.txt`), so a reviewer must see them rather than their
/// effect. Newlines and tabs are kept: the pretty-printed payload is laid
/// out with them.
fn esc(text: &str) -> String {
    if !text
        .chars()
        .any(|c| agent_audit_core::text::is_terminal_unsafe(c) && c != '\n' && c != '\t')
    {
        return html_escape(text);
    }
    let mut marked = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if agent_audit_core::text::is_terminal_unsafe(c) && c != '\n' && c != '\t' {
            let _ = write!(marked, "<U+{:04X}>", c as u32);
        } else {
            marked.push(c);
        }
    }
    html_escape(&marked)
}

fn pct(v: f64) -> String {
    format!("{:.3}", v.clamp(0.0, 100.0))
}

/// The payload's exact text, from the record's line, so keys keep their
/// order and numbers their spelling; `None` if the line does not parse.
fn raw_payload(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        payload: &'a serde_json::value::RawValue,
    }
    serde_json::from_slice::<Line<'_>>(bytes)
        .ok()
        .map(|l| l.payload.get().to_string())
}

/// The report page for `timeline`, whose records are the entries of
/// `entries` that belong to its request (the slice given to
/// [`Timeline::build`]).
pub fn render(timeline: &Timeline, entries: &[Entry]) -> String {
    let mine: Vec<(usize, &Entry)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.record.request_id.as_deref() == Some(timeline.request_id.as_str()))
        .collect();
    // Anchor of each record: its position in the page.
    let mut anchor = vec![usize::MAX; entries.len()];
    for (k, (i, _)) in mine.iter().enumerate() {
        anchor[*i] = k;
    }
    let start = agent_audit_core::Timestamp::from_unix_nanos(timeline.start_ns);
    let end = agent_audit_core::Timestamp::from_unix_nanos(timeline.end_ns);
    let span_ns = (timeline.end_ns - timeline.start_ns).max(1) as f64;
    let rid = esc(&timeline.request_id);

    let mut h = String::with_capacity(16 * 1024 + mine.len() * 2048);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<title>agent-audit: request {rid}</title>");
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head>\n<body>");

    // Header.
    let _ = writeln!(
        h,
        "<header>\n<h1>Request <code id=\"request-id\">{rid}</code></h1>\n<dl class=\"meta\">"
    );
    let meta = |h: &mut String, k: &str, v: &str| {
        let _ = writeln!(h, "<dt>{k}</dt><dd>{v}</dd>");
    };
    meta(
        &mut h,
        "conversation",
        &format!(
            "<code>{}</code>",
            esc(timeline.correlation_id.as_deref().unwrap_or("-"))
        ),
    );
    // Who asked (schema v2): the user, session and attributes the
    // request's records carry; v1 records carry none.
    let who = mine
        .iter()
        .map(|(_, e)| &e.record)
        .find(|r| r.user_id.is_some() || r.session_id.is_some() || !r.attributes.is_empty());
    let code = |v: Option<&str>| format!("<code>{}</code>", esc(v.unwrap_or("-")));
    meta(
        &mut h,
        "user",
        &format!(
            "<span id=\"user-id\">{}</span>",
            code(who.and_then(|r| r.user_id.as_deref()))
        ),
    );
    meta(
        &mut h,
        "session",
        &code(who.and_then(|r| r.session_id.as_deref())),
    );
    if let Some(r) = who.filter(|r| !r.attributes.is_empty()) {
        let attrs: Vec<String> = r
            .attributes
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                format!("<code>{}={}</code>", esc(k), esc(&v))
            })
            .collect();
        meta(&mut h, "attributes", &attrs.join(" "));
    }
    meta(
        &mut h,
        "records",
        &format!("<span id=\"record-count\">{}</span>", mine.len()),
    );
    meta(&mut h, "duration", &fmt_ms(timeline.duration_ms()));
    meta(
        &mut h,
        "from",
        &format!(
            "<code>{}</code> to <code>{}</code>",
            start.as_str(),
            end.as_str()
        ),
    );
    let mut files: Vec<String> = Vec::new();
    for (_, e) in &mine {
        let f = format!("<code>{}</code>", esc(&e.file.display().to_string()));
        if !files.contains(&f) {
            files.push(f);
        }
    }
    meta(&mut h, "files", &files.join(", "));
    h.push_str("</dl>\n</header>\n");

    // Waterfall.
    h.push_str("<section id=\"timeline\">\n<h2>Timeline</h2>\n");
    h.push_str("<div class=\"legend\"><span><i style=\"background:var(--span);opacity:.35\"></i>agent turn</span><span><i style=\"background:var(--model)\"></i>model call</span><span><i style=\"background:var(--tool)\"></i>tool call</span><span><i style=\"background:var(--event)\"></i>event</span><span><i style=\"background:var(--error)\"></i>error</span><span><i style=\"background:var(--open)\"></i>no answer</span></div>\n");
    let total = timeline.duration_ms();
    let _ = writeln!(
        h,
        "<div class=\"axis\"><div></div><div class=\"ticks\"><span>0</span><span>{}</span><span>{}</span><span>{}</span><span>{}</span></div><div></div></div>",
        fmt_ms(total * 0.25),
        fmt_ms(total * 0.5),
        fmt_ms(total * 0.75),
        fmt_ms(total)
    );
    h.push_str("<div class=\"wf\">\n");
    for row in timeline.rows() {
        let node = &timeline.nodes[row.node];
        match row.step {
            None => {
                let left = (node.start_ns - timeline.start_ns) as f64 / span_ns * 100.0;
                let width = (node.end_ns - node.start_ns) as f64 / span_ns * 100.0;
                let title = format!(
                    "span {} parent {}",
                    node.span_id.as_deref().unwrap_or("-"),
                    node.parent_span_id.as_deref().unwrap_or("-")
                );
                let _ = writeln!(
                    h,
                    "<div class=\"row span\" style=\"--d:{}\" data-span=\"{}\" title=\"{}\"><div class=\"name\">{} <span class=\"mono\" style=\"color:var(--muted);font-weight:400\">turn</span></div><div class=\"track\"><div class=\"bar\" style=\"left:{}%;width:{}%\"></div></div><div class=\"dur\">{}</div></div>",
                    row.depth,
                    esc(node.span_id.as_deref().unwrap_or("")),
                    esc(&title),
                    esc(node.agent.as_deref().unwrap_or("-")),
                    pct(left),
                    pct(width),
                    fmt_ms((node.end_ns - node.start_ns) as f64 / 1e6)
                );
            }
            Some(s) => {
                let step = &node.steps[s];
                let class = match step.kind {
                    StepKind::ModelCall => "model_call",
                    StepKind::ToolCall => "tool_call",
                    StepKind::Event => "event",
                };
                let mut classes = format!("row step {class}");
                if step.error {
                    classes.push_str(" error");
                }
                if step.unfinished {
                    classes.push_str(" unfinished");
                }
                let left = (step.start_ns - timeline.start_ns) as f64 / span_ns * 100.0;
                let width = (step.end_ns - step.start_ns) as f64 / span_ns * 100.0;
                let target = step
                    .entries
                    .first()
                    .map(|&i| anchor[i])
                    .filter(|&a| a != usize::MAX)
                    .unwrap_or(0);
                let seqs: Vec<String> = step.seqs.iter().map(u64::to_string).collect();
                let label = step.seq_label();
                let dur = step.duration_ms.map(fmt_ms).unwrap_or_default();
                let _ = writeln!(
                    h,
                    "<a class=\"{classes}\" href=\"#rec-{target}\" style=\"--d:{}\" data-seqs=\"{}\" title=\"{}\"><div class=\"name\"><span class=\"mono\">{label}</span> {}</div><div class=\"track\"><div class=\"bar\" style=\"left:{}%;width:{}%\"></div></div><div class=\"dur\">{dur}</div></a>",
                    row.depth,
                    seqs.join(" "),
                    esc(&step.detail),
                    esc(&step.label),
                    pct(left),
                    pct(width),
                );
            }
        }
    }
    h.push_str("</div>\n</section>\n");

    // Records.
    let _ = writeln!(
        h,
        "<section id=\"records\">\n<h2>Records ({})</h2>\n<div class=\"tools\"><button id=\"expand-all\" type=\"button\">Expand all</button> <button id=\"collapse-all\" type=\"button\">Collapse all</button></div>",
        mine.len()
    );
    for (k, (_, e)) in mine.iter().enumerate() {
        let r = &e.record;
        let event = r.event_type.as_str();
        let summary = agent_audit_core::text::summarize(&r.payload);
        let redacted = match r.payload.get("_redacted") {
            Some(Value::Array(rules)) if !rules.is_empty() => {
                let names: Vec<&str> = rules.iter().filter_map(Value::as_str).collect();
                format!(
                    "<span class=\"badge\">redacted: {}</span>",
                    esc(&names.join(", "))
                )
            }
            _ => String::new(),
        };
        let pretty = match raw_payload(&e.bytes) {
            Some(raw) => pretty_json(&raw),
            None => {
                serde_json::to_string_pretty(&r.payload).unwrap_or_else(|_| r.payload.to_string())
            }
        };
        let exact = String::from_utf8_lossy(&e.bytes);
        let _ = writeln!(
            h,
            "<details class=\"record{}\" id=\"rec-{k}\" data-seq=\"{}\" data-event-type=\"{}\"><summary><span class=\"seq mono\">#{}</span><span class=\"ts mono\">{}</span><span class=\"agent\">{}</span><span class=\"type mono\">{}</span><span class=\"sum\">{}{redacted}</span></summary>",
            if r.event_type.is_error() {
                " error"
            } else {
                ""
            },
            r.seq,
            esc(event),
            r.seq,
            esc(&r.ts),
            esc(r.agent.as_deref().unwrap_or("-")),
            esc(event),
            esc(&summary),
        );
        h.push_str("<div class=\"rec-body\"><dl>");
        let field = |h: &mut String, k: &str, v: Option<&str>| {
            let _ = write!(
                h,
                "<dt>{k}</dt><dd class=\"mono\">{}</dd>",
                esc(v.unwrap_or("-"))
            );
        };
        field(
            &mut h,
            "file",
            Some(&format!("{}:{}", e.file.display(), e.line)),
        );
        field(&mut h, "trace_id", r.trace_id.as_deref());
        field(&mut h, "span_id", r.span_id.as_deref());
        field(&mut h, "parent_span_id", r.parent_span_id.as_deref());
        field(&mut h, "correlation_id", r.correlation_id.as_deref());
        field(&mut h, "prev", Some(&r.prev));
        let _ = writeln!(
            h,
            "</dl><pre class=\"payload\">{}</pre><details class=\"raw\"><summary>exact line</summary><pre class=\"line\">{}</pre></details></div></details>",
            esc(&pretty),
            esc(&exact)
        );
    }
    h.push_str("</section>\n");
    let _ = writeln!(
        h,
        "<footer>Generated by agent-audit {} at {}. Values are shown as stored; redacted values stay redacted.</footer>",
        env!("CARGO_PKG_VERSION"),
        agent_audit_core::Timestamp::now().as_str()
    );
    let _ = writeln!(h, "<script>{SCRIPT}</script>\n</body>\n</html>");
    h
}

/// Writes `html` to `path` through a temporary file in the same directory
/// and a rename, so a reader never sees half a report.
///
/// The report holds what the trail holds, so it is created 0600 whatever
/// the umask, as the logs are. The temporary file is created exclusively
/// (`O_CREAT | O_EXCL`, which never follows a symlink), and a symlink at
/// `path` is refused rather than replaced: the caller named a file, and a
/// link there was put by someone.
pub fn write_report(path: &Path, html: &str) -> Result<(), ReviewError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| ReviewError::Write {
        path: path.to_path_buf(),
        source,
    };
    // The report replaces the entry at `path` by rename: over a device,
    // FIFO or socket (`--html /dev/null` as root) that would destroy the
    // node, and through a symlink it would write where the link points.
    // Only an absent path or a regular file may be replaced.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is a symbolic link; refusing to write a report through it (give the real path)",
            )));
        }
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "it is {}; a report replaces only a regular file",
                    agent_audit_core::file_kind(meta.file_type())
                ),
            )));
        }
        _ => {}
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    let result = (|| {
        file.write_all(html.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // Only the file this call created exclusively is removed.
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}
