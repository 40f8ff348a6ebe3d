//! Records as text for people: the readable one-line form and the
//! terminal-safe escaping rules.
//!
//! One home for these rules, so the stdout sink, the review commands
//! (`show`, `tail`, `stats`, `timeline`, `report`) and `agent-audit run`'s
//! printed answer show a record alike and none of them can be made to
//! drive a terminal by what a model, a tool or a log file says:
//!
//! - [`format_pretty`] / [`format_pretty_stored`]: `time #seq agent
//!   event_type summary`, one line, escaped by [`sanitize`].
//! - [`summarize`]: a payload in a few words.
//! - [`sanitize`] (one line), [`sanitize_text`] (keeps newlines and tabs),
//!   [`json_text`] (JSON that stays valid JSON): escape what
//!   [`is_terminal_unsafe`] names.
//!
//! ```
//! use agent_audit_core::text::{sanitize_text, summarize};
//!
//! let payload = serde_json::json!({"tool": "get_account_balance", "arguments": {"account_id": "12345"}});
//! assert_eq!(summarize(&payload), r#"get_account_balance({"account_id":"12345"})"#);
//! // OSC 52 would write the clipboard; here it is shown, not obeyed.
//! assert_eq!(sanitize_text("ok\u{1b}]52;c;aGk=\u{7}"), "ok\\u{1b}]52;c;aGk=\\u{7}");
//! ```

use std::fmt::Write as _;

use crate::record::{Record, StoredRecord};
use serde_json::Value;

/// Words of a message or answer kept in a summary.
const WORDS: usize = 12;
/// Characters kept of a summary part (tool arguments, a long word).
const PART_CHARS: usize = 100;

const TOOL_KEYS: [&str; 4] = ["tool", "tool_name", "name", "function"];
const ARG_KEYS: [&str; 4] = ["arguments", "args", "input", "parameters"];
const RESULT_KEYS: [&str; 4] = ["result", "output", "content", "error"];
const TEXT_KEYS: [&str; 11] = [
    "text", "content", "message", "answer", "prompt", "response", "result", "output", "error",
    "reason", "summary",
];

/// Appends the pretty line of `record` (without newline) to `out`.
pub fn format_pretty(record: &Record, out: &mut Vec<u8>) {
    let payload = record.payload_value();
    format_parts(
        record.ts.as_str(),
        record.seq,
        record.agent.as_deref(),
        record.event_type.as_str(),
        &payload,
        out,
    );
}

/// Appends the pretty line of a record read back from a file (without
/// newline) to `out`: the same form as [`format_pretty`], so `agent-audit
/// show` prints what the stdout sink prints.
pub fn format_pretty_stored(record: &StoredRecord, out: &mut Vec<u8>) {
    format_parts(
        &record.ts,
        record.seq,
        record.agent.as_deref(),
        record.event_type.as_str(),
        &record.payload,
        out,
    );
}

fn format_parts(
    ts: &str,
    seq: u64,
    agent: Option<&str>,
    event_type: &str,
    payload: &Value,
    out: &mut Vec<u8>,
) {
    let mut line = String::with_capacity(160);
    push_short_time(&mut line, ts);
    let _ = write!(
        line,
        " #{seq:<5} {:<10} {:<17} ",
        agent.unwrap_or("-"),
        event_type
    );
    line.push_str(&summarize(payload));
    out.extend_from_slice(sanitize(line.trim_end()).as_bytes());
}

/// Appends `2026-11-25T23:32:22.123Z` for `2026-11-25T23:32:22.123456789Z`
/// (milliseconds are enough to read); other shapes are kept whole.
fn push_short_time(line: &mut String, ts: &str) {
    let b = ts.as_bytes();
    if b.len() > 24 && b[19] == b'.' && b[b.len() - 1] == b'Z' && ts.is_char_boundary(23) {
        line.push_str(&ts[..23]);
        line.push('Z');
    } else {
        line.push_str(ts);
    }
}

/// A short description of a payload: `tool(arguments)` for tool calls,
/// `tool -> first words` for results, the first words of a message,
/// `N messages; last: …` for model input, else compact JSON; followed by
/// `[redacted: rules]` when redaction fired.
pub fn summarize(payload: &Value) -> String {
    let mut s = String::new();
    let Value::Object(map) = payload else {
        return clip(&payload.to_string(), PART_CHARS);
    };
    if let Some(Value::Array(calls)) = map.get("tool_calls")
        && !calls.is_empty()
    {
        let parts: Vec<String> = calls.iter().take(3).map(tool_call_text).collect();
        s.push_str("calls ");
        s.push_str(&parts.join(", "));
        if calls.len() > 3 {
            let _ = write!(s, " (+{} more)", calls.len() - 3);
        }
    } else if let Some(tool) = first_str(map, &TOOL_KEYS) {
        s.push_str(&clip(tool, PART_CHARS));
        if let Some(args) = first_value(map, &ARG_KEYS) {
            s.push('(');
            s.push_str(&clip(&value_text(args), PART_CHARS));
            s.push(')');
        }
        if let Some(result) = first_value(map, &RESULT_KEYS) {
            s.push_str(" -> ");
            s.push_str(&words(&value_text(result)));
        }
    } else if let Some(text) = first_str(map, &TEXT_KEYS) {
        s.push_str(&words(text));
    } else if let Some(Value::Array(messages)) = map.get("messages") {
        let _ = write!(
            s,
            "{} message{}",
            messages.len(),
            if messages.len() == 1 { "" } else { "s" }
        );
        if let Some(last) = messages.last() {
            let text = match last {
                Value::Object(m) => first_str(m, &TEXT_KEYS).map(str::to_string),
                Value::String(t) => Some(t.clone()),
                _ => None,
            };
            if let Some(text) = text {
                s.push_str("; last: ");
                s.push_str(&words(&text));
            }
        }
    } else {
        let mut rest = map.clone();
        rest.remove("_redacted");
        s.push_str(&clip(&Value::Object(rest).to_string(), PART_CHARS));
    }
    if let Some(Value::Array(rules)) = map.get("_redacted") {
        let names: Vec<&str> = rules.iter().filter_map(Value::as_str).collect();
        if !names.is_empty() {
            let _ = write!(s, " [redacted: {}]", names.join(", "));
        }
    }
    s
}

fn tool_call_text(call: &Value) -> String {
    let Value::Object(m) = call else {
        return clip(&call.to_string(), PART_CHARS);
    };
    // OpenAI's shape nests name and arguments under `function`.
    let m = match m.get("function") {
        Some(Value::Object(f)) => f,
        _ => m,
    };
    let name = first_str(m, &TOOL_KEYS).unwrap_or("?");
    let args = first_value(m, &ARG_KEYS)
        .map(value_text)
        .unwrap_or_default();
    format!("{}({})", clip(name, PART_CHARS), clip(&args, PART_CHARS))
}

fn first_str<'a>(map: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
}

fn first_value<'a>(map: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| map.get(*k).filter(|v| !v.is_null()))
}

/// Strings as they are (a tool's arguments are often a JSON string already),
/// anything else as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first [`WORDS`] words on one line, with `…` when cut.
fn words(text: &str) -> String {
    let mut it = text.split_whitespace();
    let kept: Vec<&str> = it.by_ref().take(WORDS).collect();
    let joined = kept.join(" ");
    let cut = it.next().is_some();
    let mut out = clip(&joined, PART_CHARS);
    if cut && !out.ends_with('…') {
        out.push('…');
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Escapes characters that would let a payload move the cursor, clear the
/// screen or reorder text on a terminal (see [`is_terminal_unsafe`]), as
/// `\u{..}`. Newlines and tabs are escaped too: the result is one line.
pub fn sanitize(line: &str) -> String {
    escape_unsafe(line, |_| false)
}

/// [`sanitize`] for text of several lines (a model's answer): the same
/// rule, except that `\n` and `\t` are kept, since they only move to the
/// next line or column. `\r` is escaped: it would let a line overwrite
/// what was printed before it.
pub fn sanitize_text(text: &str) -> String {
    escape_unsafe(text, |c| c == '\n' || c == '\t')
}

/// The rule [`sanitize`], [`sanitize_text`] and the HTML report share: C0
/// and C1 control characters and DEL (ESC starts CSI and OSC sequences,
/// and U+009B and U+009D are CSI and OSC on their own: clear screen, window
/// title, clipboard writes), the bidirectional formatting characters of
/// [`is_bidi_control`], and the line and paragraph separators U+2028 and
/// U+2029.
pub fn is_terminal_unsafe(c: char) -> bool {
    // U+2028 and U+2029 are not controls, but break a line in many
    // terminals and viewers: one record could pass for two.
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// The Unicode bidirectional formatting characters, which reorder the text
/// around them when it is displayed (U+202E shows `txt.exe` as `exe.txt`):
/// the embeddings and overrides U+202A..U+202E, the isolates
/// U+2066..U+2069, and the marks U+200E, U+200F and U+061C.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c as u32,
        0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C
    )
}

/// JSON text as printed: every character [`is_terminal_unsafe`] deems
/// unsafe that serde_json leaves raw (DEL, the C1 controls such as the
/// one-byte CSI U+009B, the bidi formatting characters) becomes a JSON
/// `\uXXXX` escape, so the JSON means the same and cannot drive a
/// terminal. A raw newline in serde_json's output is only ever layout
/// (inside strings it is escaped), so it stays.
pub fn json_text(json: &str) -> String {
    let escape = |c: char| c != '\n' && is_terminal_unsafe(c);
    if !json.chars().any(escape) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escape(c) {
            // Every such character is in the BMP: one `\uXXXX`.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn escape_unsafe(text: &str, keep: impl Fn(char) -> bool) -> String {
    let escape = |c: char| is_terminal_unsafe(c) && !keep(c);
    if !text.chars().any(escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_call_shows_name_and_arguments() {
        let s = summarize(
            &json!({"tool": "get_account_balance", "arguments": {"account_id": "12345"}}),
        );
        assert_eq!(s, r#"get_account_balance({"account_id":"12345"})"#);
    }

    #[test]
    fn tool_result_shows_first_words() {
        let s = summarize(
            &json!({"tool": "get_account_balance", "call_id": "c1", "result": "Balance for 12345 is 1,024.50 EUR"}),
        );
        assert_eq!(
            s,
            "get_account_balance -> Balance for 12345 is 1,024.50 EUR"
        );
    }

    #[test]
    fn model_tool_calls_in_openai_shape() {
        let s = summarize(
            &json!({"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_account_balance", "arguments": "{\"account_id\":\"12345\"}"}}]}),
        );
        assert_eq!(s, r#"calls get_account_balance({"account_id":"12345"})"#);
    }

    #[test]
    fn long_message_is_cut_to_first_words() {
        let s = summarize(
            &json!({"text": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"}),
        );
        assert_eq!(
            s,
            "one two three four five six seven eight nine ten eleven twelve…"
        );
    }

    #[test]
    fn messages_show_count_and_last() {
        let s = summarize(
            &json!({"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "What is my balance?\nAccount 12345"}]}),
        );
        assert_eq!(s, "2 messages; last: What is my balance? Account 12345");
    }

    #[test]
    fn redacted_rules_are_listed_and_fallback_is_json() {
        let s = summarize(&json!({"n": 1, "_redacted": ["email", "api_key"]}));
        assert_eq!(s, r#"{"n":1} [redacted: email, api_key]"#);
    }

    #[test]
    fn terminal_escapes_are_neutralised() {
        let mut out = Vec::new();
        format_parts(
            "2026-11-25T23:32:22.123456789Z",
            7,
            Some("evil\u{1b}[2J"),
            "final_result",
            &json!({"answer": "ok\u{1b}]0;pwned\u{7} \u{202e}txt.exe"}),
            &mut out,
        );
        let line = String::from_utf8(out).unwrap();
        assert!(!line.chars().any(is_terminal_unsafe), "{line:?}");
        assert!(
            line.starts_with("2026-11-25T23:32:22.123Z #7     evil\\u{1b}[2J"),
            "{line}"
        );
        assert!(line.contains("\\u{202e}txt.exe"), "{line}");
    }

    #[test]
    fn text_keeps_newlines_and_tabs_and_escapes_the_rest() {
        let answer = "line 1\n\tline 2\r\u{1b}]52;c;aGk=\u{7}\u{9b}2J\u{200f}\u{61c}\u{2067}";
        assert_eq!(
            sanitize_text(answer),
            "line 1\n\tline 2\\u{d}\\u{1b}]52;c;aGk=\\u{7}\\u{9b}2J\\u{200f}\\u{61c}\\u{2067}"
        );
        assert_eq!(sanitize("a\nb"), "a\\u{a}b");
        assert_eq!(sanitize_text("a\u{2028}b\u{2029}"), "a\\u{2028}b\\u{2029}");
    }

    #[test]
    fn json_text_stays_json_and_escapes_what_serde_json_leaves_raw() {
        let raw = serde_json::to_string_pretty(&json!({"k": "a\u{9b}2J\u{7f}\u{202e}b"})).unwrap();
        let shown = json_text(&raw);
        assert!(
            !shown.chars().any(|c| c != '\n' && is_terminal_unsafe(c)),
            "{shown:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["k"], "a\u{9b}2J\u{7f}\u{202e}b");
    }
}
