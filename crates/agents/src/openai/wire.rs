//! The Chat Completions wire format the client speaks: the request it
//! sends, the parts of a response it reads, and the useful parts of an
//! error body whatever its shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Message, ToolCall, ToolChoice, ToolSpec, Usage};

#[derive(Serialize)]
pub(super) struct WireRequest<'a> {
    pub(super) model: &'a str,
    pub(super) messages: &'a [Message],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) tools: &'a [ToolSpec],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<&'a ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_tokens: Option<u32>,
    pub(super) stream: bool,
}

#[derive(Deserialize)]
pub(super) struct WireResponse {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    pub(super) choices: Vec<WireChoice>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
}

#[derive(Deserialize)]
pub(super) struct WireChoice {
    pub(super) message: WireMessage,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireMessage {
    #[serde(default)]
    pub(super) content: Option<Value>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<ToolCall>>,
}

/// The useful parts of an error body, whatever its shape:
/// `{"error": {"message", "type", "param", "code"}}` with `code` a string or
/// an integer (llama.cpp), `{"error": "text"}` (Ollama), or plain text.
pub(super) struct ErrorInfo {
    pub(super) message: String,
    pub(super) kind: Option<String>,
    pub(super) code: Option<String>,
}

impl ErrorInfo {
    /// `value` is the body when it is JSON; `text` gives the body as text
    /// (scrubbed) for one that is not.
    pub(super) fn parse(value: Option<Value>, text: impl Fn() -> String) -> ErrorInfo {
        let error = value.as_ref().and_then(|v| v.get("error"));
        let as_text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        match error {
            Some(Value::Object(obj)) => ErrorInfo {
                message: obj
                    .get("message")
                    .and_then(as_text)
                    .unwrap_or_else(|| Value::Object(obj.clone()).to_string()),
                kind: obj.get("type").and_then(as_text),
                code: obj.get("code").and_then(as_text),
            },
            Some(Value::String(s)) => ErrorInfo {
                message: s.clone(),
                kind: None,
                code: None,
            },
            _ => {
                let preview: String = text().chars().take(300).collect();
                ErrorInfo {
                    message: if preview.is_empty() {
                        "(empty body)".into()
                    } else {
                        preview
                    },
                    kind: None,
                    code: None,
                }
            }
        }
    }

    pub(super) fn is_quota(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota")
            || self.kind.as_deref() == Some("insufficient_quota")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> ErrorInfo {
        ErrorInfo::parse(serde_json::from_str(text).ok(), || text.to_string())
    }

    #[test]
    fn error_bodies() {
        let e = parse_text(r#"{"error":{"message":"m","type":"t","param":null,"code":500}}"#);
        assert_eq!((e.message.as_str(), e.code.as_deref()), ("m", Some("500")));
        let e = parse_text(
            r#"{"error":{"message":"q","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert!(e.is_quota());
        assert_eq!(
            parse_text(r#"{"error":"model not found"}"#).message,
            "model not found"
        );
        assert_eq!(parse_text("Bad Gateway").message, "Bad Gateway");
    }
}
