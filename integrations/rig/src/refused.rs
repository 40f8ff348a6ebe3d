//! Tool calls rig refuses without dispatching them (a tool the agent does
//! not have, one the tool choice does not allow, arguments that are not a
//! JSON object): agent-audit's runtime records each as a `tool_call` and a
//! `tool_error`, so the hook does too, after the answer that asked for it.

use agent_audit_core::EventType;
use rig_agent::agent::{InvalidToolCallContext, InvalidToolCallReason, RunId};
use rig_core::message::Message;
use serde_json::{Map, Value, json};

use crate::convert::{arguments_value, assistant_text, call_records};
use crate::records::ChatOutput;
use crate::state::{Inner, Refused, lock, millis};

/// What a hook learns of a refused call.
pub(crate) fn refused(context: &InvalidToolCallContext) -> Refused {
    let (kind, error) = match &context.reason {
        InvalidToolCallReason::UnknownTool => (
            "unknown_tool",
            format!("no tool named `{}`", context.tool_name),
        ),
        InvalidToolCallReason::DisallowedByToolChoice => (
            "disallowed",
            format!(
                "tool `{}` is not allowed by the tool choice",
                context.tool_name
            ),
        ),
        InvalidToolCallReason::MalformedArguments { error } => (
            "invalid_arguments",
            format!("arguments are not a JSON object: {error}"),
        ),
        _ => (
            "invalid",
            format!("rig refused tool `{}`", context.tool_name),
        ),
    };
    // The rejected answer is the last assistant message of the history.
    let answer = context.chat_history.iter().rev().find_map(|m| match m {
        Message::Assistant(a) => Some(json!({
            "content": assistant_text(&a.content),
            "tool_calls": call_records(&a.content),
        })),
        _ => None,
    });
    Refused {
        tool: context.tool_name.clone(),
        call_id: context
            .tool_call_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        arguments: context
            .args
            .as_deref()
            .map(arguments_value)
            .unwrap_or_else(|| Value::Object(Map::new())),
        kind,
        error,
        answer,
    }
}

impl Inner {
    /// A refusal while the model turn is still open waits for the turn's
    /// `assistant_output`; one after (arguments checked as the tools run)
    /// is recorded now.
    pub(crate) async fn refusal(&self, run: RunId, agent: &str, refusal: Refused) {
        let _ = self.run_auditor(run, agent);
        let now = {
            let mut runs = lock(&self.runs);
            match runs.get_mut(&run) {
                Some(state) if state.chat.is_some() => {
                    state.refused.push(refusal);
                    None
                }
                _ => Some(refusal),
            }
        };
        if let Some(refusal) = now {
            // A failure is kept in the hook's error; rig goes on with its
            // own policy for the call, which never runs.
            let _ = self.record_refused(run, vec![refusal]).await;
        }
    }

    /// Writes a `tool_call` and a `tool_error` for each refused call, each
    /// in an `execute_tool` span of its own under the run.
    pub(crate) async fn record_refused(
        &self,
        run: RunId,
        refused: Vec<Refused>,
    ) -> Result<(), String> {
        let Some((parent, agent)) = lock(&self.runs)
            .get(&run)
            .map(|s| (s.run.auditor().clone(), s.agent.clone()))
        else {
            return Ok(());
        };
        for r in refused {
            let mut step = parent
                .with_agent(&agent)
                .execute_undeclared_tool(&r.tool, &r.call_id);
            let auditor = step.auditor().clone();
            let call = json!({"tool": r.tool, "call_id": r.call_id, "arguments": r.arguments});
            self.emit(&auditor, EventType::ToolCall, "tool_call", &call)
                .await?;
            step.fail(r.kind);
            let error = json!({
                "tool": r.tool, "call_id": r.call_id, "arguments": r.arguments,
                "kind": r.kind, "error": r.error, "duration_ms": 0.0,
            });
            let emitted = self
                .emit(&auditor, EventType::ToolError, "tool_error", &error)
                .await;
            step.end();
            emitted?;
        }
        Ok(())
    }

    /// A model turn rig refused before it settled (it failed the run, or
    /// asked the model again): the model's answer as its `assistant_output`
    /// (what the refusal carried: no usage or response id reach a hook),
    /// then the refusals.
    pub(crate) async fn refused_turn(&self, run: RunId) -> Result<(), String> {
        let (chat, refused) = {
            let mut runs = lock(&self.runs);
            let Some(state) = runs.get_mut(&run) else {
                return Ok(());
            };
            if state.refused.is_empty() {
                return Ok(());
            }
            (state.chat.take(), std::mem::take(&mut state.refused))
        };
        if let Some(chat) = chat {
            let answer = refused
                .iter()
                .find_map(|r| r.answer.clone())
                .unwrap_or_else(|| json!({"content": null, "tool_calls": []}));
            let output = ChatOutput {
                content: answer["content"].clone(),
                tool_calls: answer["tool_calls"].clone(),
                model: Value::Null,
                response_id: Value::Null,
                finish_reason: Value::Null,
                usage: Value::Null,
                latency_ms: millis(chat.started.elapsed()),
            };
            self.chat_output(chat.step, output).await?;
        }
        self.record_refused(run, refused).await
    }
}
