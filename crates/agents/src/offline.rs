//! The deterministic offline model: the default when no model is configured,
//! so the tutorial's flow runs anywhere, with no network and no key.
//!
//! It is not a language model and says so. Its rules, applied to the request:
//!
//! 1. If the conversation ends with tool results, it answers from them.
//! 2. Else it reads the last user message and calls every offered tool whose
//!    required arguments the message supplies: a property's value is taken
//!    from `name=value` / `name: value`, or from the token after a word of
//!    the property's name (`account 12345` for `account_id`); strings need a
//!    digit there (an id, not a word), integers and numbers must parse, enums
//!    must name one of their values. A tool without required arguments is
//!    called when the message contains the words of its name
//!    (`transfer_to_accounts` for "my account").
//! 3. Otherwise it answers plainly that it is the offline model.
//!
//! Its records name it `offline`.

use serde_json::{Map, Value};

use crate::model::{
    BoxFuture, ChatModel, ChatRequest, ChatResponse, Message, ModelError, ToolCall, ToolChoice,
    ToolSpec,
};

/// The deterministic offline model. See the module documentation for its rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineModel;

impl OfflineModel {
    /// The model.
    pub fn new() -> OfflineModel {
        OfflineModel
    }

    /// Its answer; pure and deterministic.
    pub fn respond(&self, request: &ChatRequest) -> ChatResponse {
        let trailing_results: Vec<(&str, &str)> = request
            .messages
            .iter()
            .rev()
            .map_while(|m| match m {
                Message::Tool {
                    tool_call_id,
                    content,
                } => Some((tool_call_id.as_str(), content.as_str())),
                _ => None,
            })
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !trailing_results.is_empty() {
            return self.stop(answer_from_results(&request.messages, &trailing_results));
        }
        let prompt = request
            .messages
            .iter()
            .rev()
            .find_map(|m| match m {
                Message::User { content } => Some(content.as_str()),
                _ => None,
            })
            .unwrap_or("");
        let allowed: Vec<&ToolSpec> = match &request.tool_choice {
            Some(ToolChoice::None) => Vec::new(),
            Some(ToolChoice::Function(name)) => {
                request.tools.iter().filter(|t| &t.name == name).collect()
            }
            _ => request.tools.iter().collect(),
        };
        let earlier_calls: usize = request
            .messages
            .iter()
            .map(|m| match m {
                Message::Assistant { tool_calls, .. } => tool_calls.len(),
                _ => 0,
            })
            .sum();
        let mut calls = Vec::new();
        for tool in allowed {
            if let Some(args) = arguments_from_prompt(tool, prompt) {
                calls.push(ToolCall {
                    id: format!("offline_call_{}", earlier_calls + calls.len() + 1),
                    name: tool.name.clone(),
                    arguments: Value::Object(args).to_string(),
                });
            }
        }
        if calls.is_empty() {
            let text = if prompt.trim().is_empty() {
                "This is the offline model (no model is configured). There is nothing to answer."
                    .to_string()
            } else {
                format!(
                    "This is the offline model (no model is configured): no tool matches \"{}\", and it cannot answer free text. Configure [model] to use a real one.",
                    prompt.trim()
                )
            };
            return self.stop(text);
        }
        ChatResponse {
            content: None,
            tool_calls: calls,
            finish_reason: Some("tool_calls".into()),
            usage: None,
            model: "offline".into(),
            id: None,
            attempts: 1,
        }
    }

    fn stop(&self, text: String) -> ChatResponse {
        ChatResponse {
            content: Some(text),
            tool_calls: Vec::new(),
            finish_reason: Some("stop".into()),
            usage: None,
            model: "offline".into(),
            id: None,
            attempts: 1,
        }
    }
}

impl ChatModel for OfflineModel {
    fn name(&self) -> &str {
        "offline"
    }

    /// As in `[model] provider = "offline"`.
    fn provider(&self) -> Option<&str> {
        Some("offline")
    }

    fn describe(&self) -> String {
        "the deterministic offline model (no model configured)".into()
    }

    fn is_offline(&self) -> bool {
        true
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(std::future::ready(Ok(self.respond(request))))
    }
}

fn answer_from_results(messages: &[Message], results: &[(&str, &str)]) -> String {
    let tool_name = |id: &str| {
        messages.iter().find_map(|m| match m {
            Message::Assistant { tool_calls, .. } => tool_calls
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.name.clone()),
            _ => None,
        })
    };
    let parts: Vec<String> = results
        .iter()
        .map(|(id, content)| {
            let name = tool_name(id).unwrap_or_else(|| "the tool".into());
            match serde_json::from_str::<Value>(content) {
                Ok(Value::Object(map)) if map.contains_key("error") => {
                    format!("{name} failed: {}.", render(&map["error"]))
                }
                Ok(Value::Object(map)) => {
                    let fields: Vec<String> = map
                        .iter()
                        .map(|(k, v)| format!("{} {}", k.replace('_', " "), render(v)))
                        .collect();
                    format!("{name} returned {}.", fields.join(", "))
                }
                Ok(other) => format!("{name} returned {}.", render(&other)),
                Err(_) => format!("{name} returned {content}."),
            }
        })
        .collect();
    parts.join(" ")
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const FILLER: &[&str] = &[
    "number", "no", "nr", "num", "id", "is", "of", "the", "a", "an", "#", "with", "for", "code",
];
const VERBS: &[&str] = &[
    "get", "set", "list", "transfer", "to", "check", "find", "lookup", "look", "fetch", "show",
    "query", "the", "of", "for", "and", "handoff", "hand", "over",
];

fn words_of(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in name.chars() {
        if c == '_' || c == '-' || c == ' ' {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        } else if c.is_uppercase() && !current.is_empty() {
            words.push(std::mem::take(&mut current));
            current.extend(c.to_lowercase());
        } else {
            current.extend(c.to_lowercase());
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn stem(word: &str) -> &str {
    word.strip_suffix("'s")
        .or_else(|| {
            if word.len() > 3 {
                word.strip_suffix('s')
            } else {
                None
            }
        })
        .unwrap_or(word)
}

fn tokens(prompt: &str) -> Vec<String> {
    prompt
        .split(|c: char| c.is_whitespace() || ",;?!()\"'`=:".contains(c))
        .map(|t| t.trim_matches(|c: char| c == '.' || c == '#'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn arguments_from_prompt(tool: &ToolSpec, prompt: &str) -> Option<Map<String, Value>> {
    let params = &tool.parameters;
    let required: Vec<&str> = params
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = params.get("properties").and_then(Value::as_object);
    let toks = tokens(prompt);
    let lower: Vec<String> = toks.iter().map(|t| t.to_lowercase()).collect();
    if required.is_empty() {
        let words: Vec<String> = words_of(&tool.name)
            .into_iter()
            .filter(|w| !VERBS.contains(&w.as_str()))
            .collect();
        let present = !words.is_empty()
            && words
                .iter()
                .all(|w| lower.iter().any(|t| stem(t) == stem(w)));
        return present.then(Map::new);
    }
    let mut args = Map::new();
    let empty = Map::new();
    for (name, schema) in props.unwrap_or(&empty) {
        if let Some(v) = value_for(name, schema, prompt, &toks, &lower) {
            args.insert(name.clone(), v);
        }
    }
    required
        .iter()
        .all(|r| args.contains_key(*r))
        .then_some(args)
}

fn value_for(
    name: &str,
    schema: &Value,
    prompt: &str,
    toks: &[String],
    lower: &[String],
) -> Option<Value> {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec!["string"],
    };
    if let Some(Value::Array(options)) = schema.get("enum") {
        return options.iter().find_map(|o| {
            let s = o.as_str()?;
            lower
                .iter()
                .any(|t| t == &s.to_lowercase())
                .then(|| o.clone())
        });
    }
    let convert = |raw: &str, explicit: bool| -> Option<Value> {
        for t in &types {
            match *t {
                "integer" => {
                    if let Ok(n) = raw.parse::<i64>() {
                        return Some(Value::from(n));
                    }
                }
                "number" => {
                    if let Ok(n) = raw.parse::<f64>()
                        && let Some(num) = serde_json::Number::from_f64(n)
                    {
                        return Some(Value::Number(num));
                    }
                }
                "boolean" => match raw.to_lowercase().as_str() {
                    "true" | "yes" => return Some(Value::Bool(true)),
                    "false" | "no" => return Some(Value::Bool(false)),
                    _ => {}
                },
                "string" if explicit || raw.chars().any(|c| c.is_ascii_digit()) => {
                    return Some(Value::String(raw.to_string()));
                }
                _ => {}
            }
        }
        None
    };
    // Explicit `name=value` or `name: value`.
    let lower_prompt = prompt.to_lowercase();
    let key = name.to_lowercase();
    let mut from = 0;
    while let Some(at) = lower_prompt[from..].find(&key) {
        let after = from + at + key.len();
        let rest = prompt[after..].trim_start();
        if let Some(rest) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')) {
            let raw: String = rest
                .trim_start()
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| !c.is_whitespace() && !",;\"'?!)".contains(*c))
                .collect();
            let raw = raw.trim_end_matches('.');
            if !raw.is_empty()
                && let Some(v) = convert(raw, true)
            {
                return Some(v);
            }
        }
        from = after;
    }
    // A word of the property's name, then the value within a few tokens.
    let mut keywords: Vec<String> = words_of(name)
        .into_iter()
        .filter(|w| !FILLER.contains(&w.as_str()))
        .collect();
    if keywords.is_empty() {
        keywords = words_of(name);
    }
    for (i, t) in lower.iter().enumerate() {
        if !keywords.iter().any(|k| stem(t) == stem(k)) {
            continue;
        }
        for (j, candidate) in toks.iter().enumerate().skip(i + 1).take(3) {
            if FILLER.contains(&lower[j].as_str()) {
                continue;
            }
            if let Some(v) = convert(candidate, false) {
                return Some(v);
            }
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn balance_tool() -> ToolSpec {
        ToolSpec {
            name: "get_account_balance".into(),
            description: "balance".into(),
            parameters: json!({
                "type": "object",
                "properties": {"account_id": {"type": "string"}},
                "required": ["account_id"]
            }),
        }
    }

    fn ask(prompt: &str, tools: Vec<ToolSpec>) -> ChatResponse {
        OfflineModel.respond(&ChatRequest {
            messages: vec![Message::system("s"), Message::user(prompt)],
            tools,
            ..Default::default()
        })
    }

    #[test]
    fn tutorial_prompt_calls_the_tool() {
        let r = ask(
            "What is the balance of account 12345?",
            vec![balance_tool()],
        );
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].name, "get_account_balance");
        assert_eq!(
            r.tool_calls[0].parsed_arguments().unwrap(),
            json!({"account_id": "12345"})
        );
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.model, "offline");
    }

    #[test]
    fn other_phrasings() {
        let id = |p: &str| {
            ask(p, vec![balance_tool()])
                .tool_calls
                .first()
                .map(|c| c.parsed_arguments().unwrap()["account_id"].clone())
        };
        assert_eq!(id("account_id=AC-77 please"), Some(json!("AC-77")));
        assert_eq!(id("Balance for account number 991."), Some(json!("991")));
        assert_eq!(id("account_id: \"abc\""), Some(json!("abc")));
        assert_eq!(id("What is my account balance?"), None);
        assert_eq!(id("Hello"), None);
    }

    #[test]
    fn plain_answer_without_matching_tool() {
        let r = ask("Hello there", vec![balance_tool()]);
        assert!(r.tool_calls.is_empty());
        assert!(r.content.unwrap().contains("offline model"));
    }

    #[test]
    fn answers_from_tool_results() {
        let call = ToolCall {
            id: "offline_call_1".into(),
            name: "get_account_balance".into(),
            arguments: r#"{"account_id":"12345"}"#.into(),
        };
        let r = OfflineModel.respond(&ChatRequest {
            messages: vec![
                Message::user("What is the balance of account 12345?"),
                Message::Assistant {
                    content: None,
                    tool_calls: vec![call],
                },
                Message::tool("offline_call_1", r#"{"account_id":"12345","balance":10.5}"#),
            ],
            tools: vec![balance_tool()],
            ..Default::default()
        });
        assert!(r.tool_calls.is_empty());
        assert_eq!(
            r.content.as_deref(),
            Some("get_account_balance returned account id 12345, balance 10.5.")
        );
    }

    #[test]
    fn zero_argument_tool_needs_its_words() {
        let t = ToolSpec {
            name: "transfer_to_accounts".into(),
            description: "".into(),
            parameters: json!({"type": "object", "properties": {}}),
        };
        assert_eq!(ask("my account 1", vec![t.clone()]).tool_calls.len(), 1);
        assert_eq!(ask("my card", vec![t]).tool_calls.len(), 0);
    }
}
