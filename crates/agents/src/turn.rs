//! The tool runner: what the user proxy does with the tool calls of one
//! assistant answer. A tool runs only once its `tool_call` record is
//! Durable on every required sink (audit before act); a
//! `transfer_to_<agent>` call hands the conversation over instead.

use std::time::Instant;

use agent_audit_core::{AckLevel, Auditor, EventType};
use serde_json::{Value, json};

use crate::assistant::AssistantAgent;
use crate::error::{AgentError, emit};
use crate::model::{ChatResponse, Message, ToolCall};
use crate::payload;
use crate::tool::ToolError;
use crate::user_proxy::UserProxyAgent;

impl UserProxyAgent {
    /// Runs one requested tool under audit before act and returns the tool
    /// message content for the model. Tool failures and invalid arguments
    /// become `tool_error` records and an error message to the model; only
    /// an audit failure stops the conversation.
    pub(crate) async fn run_tool(
        &self,
        turn: &Auditor,
        assistant: &AssistantAgent,
        call: &ToolCall,
    ) -> Result<String, AgentError> {
        // The span is named after the tool only when the assistant declared
        // it: the model chose the name.
        let mut step = if assistant.find_tool(&call.name).is_some() {
            turn.execute_tool(&call.name, &call.id)
        } else {
            turn.execute_undeclared_tool(&call.name, &call.id)
        };
        let turn = &step.auditor().clone();
        let arguments = match audit_before_act(turn, self.name(), call).await {
            Ok(arguments) => arguments,
            Err(e) => {
                step.fail(e.error_type());
                return Err(e);
            }
        };
        step.capture_content("gen_ai.tool.call.arguments", &arguments);
        let started = Instant::now();
        let outcome = match assistant.find_tool(&call.name) {
            None => Err(ToolError::UnknownTool {
                tool: call.name.clone(),
            }),
            Some(tool) => match call.parsed_arguments() {
                Err(e) => Err(ToolError::InvalidArguments {
                    tool: call.name.clone(),
                    message: format!("arguments are not valid JSON: {e}"),
                }),
                Ok(args) => match tool.validate(&args) {
                    Err(violations) => Err(ToolError::InvalidArguments {
                        tool: call.name.clone(),
                        message: violations
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    }),
                    Ok(()) => tool.call(args).await,
                },
            },
        };
        let duration_ms = payload::millis(started.elapsed());
        match outcome {
            Ok(result) => {
                step.capture_content("gen_ai.tool.call.result", &result);
                emit(
                    turn,
                    EventType::ToolResult,
                    &payload::ToolResultRecord {
                        tool: &call.name,
                        call_id: &call.id,
                        result: &result,
                        duration_ms,
                    },
                )
                .await?;
                Ok(match result {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            Err(error) => {
                step.fail(error.kind());
                emit(
                    turn,
                    EventType::ToolError,
                    &payload::ToolErrorRecord {
                        tool: &call.name,
                        call_id: &call.id,
                        arguments: &arguments,
                        kind: error.kind(),
                        error: error.to_string(),
                        duration_ms,
                    },
                )
                .await?;
                Ok(json!({"error": error.to_string()}).to_string())
            }
        }
    }

    /// Handles a `transfer_to_<agent>` call of the active assistant, inside
    /// that assistant's turn: the hand-over is the assistant's act, so its
    /// records carry its name and span, and the next agent's turn is its
    /// child. Returns the agent taking over.
    pub(crate) async fn hand_over<'a>(
        &self,
        turn: &Auditor,
        active: &AssistantAgent,
        entry: &'a AssistantAgent,
        others: &[&'a AssistantAgent],
        response: &ChatResponse,
        transcript: &mut Vec<Message>,
    ) -> Result<Option<&'a AssistantAgent>, AgentError> {
        let Some((call, handoff)) = response
            .tool_calls
            .iter()
            .find_map(|c| active.find_handoff(&c.name).map(|h| (c, h)))
        else {
            return Ok(None);
        };
        let Some(target) = std::iter::once(entry)
            .chain(others.iter().copied())
            .find(|a| a.name() == handoff.agent)
        else {
            // Not a participant: the proxy treats the call as an unknown
            // tool, which the model hears about in a tool message.
            return Ok(None);
        };
        let step = turn
            .with_agent(active.name())
            .execute_tool(&call.name, &call.id);
        let turn = step.auditor().clone();
        audit_before_act(&turn, active.name(), call).await?;
        let reason = call
            .parsed_arguments()
            .ok()
            .and_then(|a| a.get("reason").and_then(Value::as_str).map(str::to_string));
        emit(
            &turn,
            EventType::AgentMessage,
            &payload::AgentMessage {
                from: active.name(),
                to: target.name(),
                kind: "handoff",
                content: None,
                reason: reason.as_deref(),
            },
        )
        .await?;
        let result = json!({"handed_over_to": target.name()});
        emit(
            &turn,
            EventType::ToolResult,
            &payload::ToolResultRecord {
                tool: &call.name,
                call_id: &call.id,
                result: &result,
                duration_ms: 0.0,
            },
        )
        .await?;
        transcript.push(Message::tool(call.id.clone(), result.to_string()));
        for other in response.tool_calls.iter().filter(|c| c.id != call.id) {
            transcript.push(Message::tool(
                other.id.clone(),
                json!({"error": "not run: the conversation was handed over"}).to_string(),
            ));
        }
        Ok(Some(target))
    }
}

/// Writes the `tool_call` record of `call` and waits until it is Durable on
/// every required sink: the act (running the tool, handing over) comes
/// only after. Returns the arguments as recorded.
async fn audit_before_act(
    turn: &Auditor,
    agent: &str,
    call: &ToolCall,
) -> Result<Value, AgentError> {
    let arguments = call.arguments_for_record();
    let waited = Instant::now();
    let receipt = turn
        .emit_wait(
            EventType::ToolCall,
            &payload::ToolCallRecord {
                tool: &call.name,
                call_id: &call.id,
                arguments: &arguments,
            },
            AckLevel::Durable,
        )
        .await
        .map_err(|source| AgentError::AuditBeforeAct {
            agent: agent.to_string(),
            tool: call.name.clone(),
            call_id: call.id.clone(),
            source,
        });
    turn.telemetry()
        .record_ack_wait(waited.elapsed().as_secs_f64(), AckLevel::Durable);
    receipt?;
    Ok(arguments)
}
