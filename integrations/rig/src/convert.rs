//! rig's messages, turns and tool outcomes as the values agent-audit's
//! records carry.

use rig_core::effect::Outcome;
use rig_core::message::{AssistantContent, Message, ToolResultContent, UserContent};
use serde_json::{Map, Value, json};

use crate::records::ToolOutcome;

/// A user message's text (its text blocks joined by newlines).
pub(crate) fn user_text(message: &Message) -> String {
    match message {
        Message::System { content } => content.clone(),
        Message::User { content } => content
            .iter()
            .filter_map(|c| match c {
                UserContent::Text(t) => Some(t.text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Message::Assistant(a) => assistant_text(&a.content).unwrap_or_default(),
    }
}

pub(crate) fn assistant_text(content: &[AssistantContent]) -> Option<String> {
    let texts: Vec<&str> = content
        .iter()
        .filter_map(|c| match c {
            AssistantContent::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join(""))
}

/// Tool calls as agent-audit's `assistant_output` records them.
pub(crate) fn call_records(content: &[AssistantContent]) -> Vec<Value> {
    content
        .iter()
        .filter_map(|c| match c {
            AssistantContent::ToolCall(call) => Some(json!({
                "id": call.id.to_string(),
                "name": call.function.name.as_str(),
                "arguments": Value::Object(call.function.arguments.clone()),
            })),
            _ => None,
        })
        .collect()
}

fn tool_result_text(content: &[ToolResultContent]) -> String {
    content
        .iter()
        .map(|c| match c {
            ToolResultContent::Text(t) => t.text.clone(),
            ToolResultContent::Json { value } => value.to_string(),
            ToolResultContent::Image(_) => "[image]".to_string(),
        })
        .collect::<Vec<_>>()
        .join("")
}

/// rig's messages in the Chat Completions wire format agent-audit's
/// runtime records (`system`, `user`, `assistant` with `tool_calls`,
/// `tool`).
pub(crate) fn wire_messages(history: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(history.len());
    for message in history {
        match message {
            Message::System { content } => out.push(json!({"role": "system", "content": content})),
            Message::User { content } => {
                let mut texts = Vec::new();
                for c in content {
                    match c {
                        UserContent::Text(t) => texts.push(t.text.as_str()),
                        UserContent::ToolResult(r) => out.push(json!({
                            "role": "tool",
                            "tool_call_id": r.call.to_string(),
                            "content": tool_result_text(&r.content),
                        })),
                        _ => texts.push("[media]"),
                    }
                }
                if !texts.is_empty() {
                    out.push(json!({"role": "user", "content": texts.join("\n")}));
                }
            }
            Message::Assistant(a) => {
                let calls: Vec<Value> = a
                    .content
                    .iter()
                    .filter_map(|c| match c {
                        AssistantContent::ToolCall(call) => Some(json!({
                            "id": call.id.to_string(),
                            "type": "function",
                            "function": {
                                "name": call.function.name.as_str(),
                                "arguments": Value::Object(call.function.arguments.clone()).to_string(),
                            },
                        })),
                        _ => None,
                    })
                    .collect();
                let mut m = json!({"role": "assistant", "content": assistant_text(&a.content)});
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                out.push(m);
            }
        }
    }
    out
}

/// Tool arguments for a record: parsed when JSON, else the text as sent.
pub(crate) fn arguments_value(args: &str) -> Value {
    if args.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
}

pub(crate) fn tool_outcome(outcome: &Result<Outcome, rig_core::error::ErrorReport>) -> ToolOutcome {
    match outcome {
        Ok(Outcome::ToolResult { result }) => {
            if let Some(error) = result.error().or_else(|| result.refusal()) {
                let kind = if result.is_refused() {
                    "refused"
                } else {
                    match error.kind() {
                        rig_core::tool::ToolErrorKind::NotFound => "unknown_tool",
                        rig_core::tool::ToolErrorKind::InvalidArgs => "invalid_arguments",
                        _ => "failed",
                    }
                };
                ToolOutcome::Error {
                    kind,
                    error: error.message().to_string(),
                }
            } else if result.is_skipped() {
                ToolOutcome::Error {
                    kind: "skipped",
                    error: result
                        .output()
                        .as_text()
                        .unwrap_or("skipped by a hook")
                        .to_string(),
                }
            } else {
                let output = result.output();
                let value = match (output.as_json(), output.as_text()) {
                    (Some(v), _) => v.clone(),
                    (None, Some(t)) => {
                        serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string()))
                    }
                    _ => serde_json::to_value(output).unwrap_or(Value::Null),
                };
                ToolOutcome::Result(value)
            }
        }
        Ok(other) => ToolOutcome::Error {
            kind: "failed",
            error: format!("the tool answered with a {} outcome", other.family()),
        },
        Err(report) => ToolOutcome::Error {
            kind: "failed",
            error: report.message.clone(),
        },
    }
}
