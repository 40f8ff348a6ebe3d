//! The user proxy: starts the conversation, speaks for the user (the
//! human when its mode says so, an automatic reply otherwise), runs the
//! tools the model asks for through the tool runner (`turn`) and ends the
//! conversation with `final_result`.
//!
//! Every step is audited through the [`Auditor`] given to
//! [`UserProxyAgent::initiate_chat`], in the GenAI spans of the
//! conversation (`invoke_agent`, `chat`, `execute_tool`: see
//! [`UserProxyAgent::initiate_chat_with`]): every record carries its
//! step's span id, names its agent, and all share the auditor's request
//! and correlation ids.

use std::sync::Arc;

use agent_audit_core::otel::GenAiStep;
use agent_audit_core::{Auditor, EventType};
use serde::Serialize;
use serde_json::json;

use crate::assistant::AssistantAgent;
use crate::error::{AgentError, emit};
use crate::input::{InputProvider, TerminalInput};
use crate::model::{ChatResponse, Message, ToolCall};
use crate::payload;

/// When the user proxy asks the human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HumanInputMode {
    /// Never: the proxy replies automatically and stops at termination or
    /// after `max_consecutive_auto_reply` automatic replies.
    #[default]
    Never,
    /// At termination (or when the auto-reply limit is reached) the human
    /// may go on with a new message or stop (empty line or `exit`).
    Terminate,
    /// Before every reply: an empty line lets the proxy reply automatically
    /// (run the requested tools), `exit` stops, any other text is sent
    /// instead (requested tools are then not run).
    Always,
}

/// How a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// The termination test matched and nobody asked to go on.
    Terminated,
    /// `max_consecutive_auto_reply` automatic replies in a row.
    MaxAutoReplies,
    /// The human said `exit` or input ended.
    HumanExit,
}

/// The outcome of a conversation.
#[derive(Debug, Clone)]
pub struct ChatResult {
    /// The last answer of an assistant (empty if none gave text).
    pub answer: String,
    /// The agent that gave it.
    pub answered_by: String,
    /// Every message exchanged, in order (system messages excluded).
    pub messages: Vec<Message>,
    /// Why it ended.
    pub end: EndReason,
}

type TerminationTest = Arc<dyn Fn(&ChatResponse) -> bool + Send + Sync>;

/// Speaks for the user: starts the conversation, runs the tools the model
/// asks for (audit before act), asks the human when its mode says so, and
/// ends the conversation.
#[derive(Clone)]
pub struct UserProxyAgent {
    name: String,
    mode: HumanInputMode,
    max_consecutive_auto_reply: u32,
    is_termination: TerminationTest,
    input: Arc<dyn InputProvider>,
    default_auto_reply: String,
}

impl std::fmt::Debug for UserProxyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserProxyAgent")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field(
                "max_consecutive_auto_reply",
                &self.max_consecutive_auto_reply,
            )
            .finish()
    }
}

impl UserProxyAgent {
    /// A proxy named `name`: mode `never`, at most 10 automatic replies in a
    /// row, terminating on the first answer without tool calls, reading the
    /// terminal when asked.
    pub fn new(name: impl Into<String>) -> UserProxyAgent {
        UserProxyAgent {
            name: name.into(),
            mode: HumanInputMode::Never,
            max_consecutive_auto_reply: 10,
            is_termination: Arc::new(|r: &ChatResponse| r.tool_calls.is_empty()),
            input: Arc::new(TerminalInput),
            default_auto_reply: "Continue.".into(),
        }
    }

    /// When to ask the human.
    pub fn human_input_mode(mut self, mode: HumanInputMode) -> Self {
        self.mode = mode;
        self
    }

    /// Automatic replies in a row before the proxy stops (or asks, in mode
    /// `terminate`). Running requested tools counts as one reply.
    pub fn max_consecutive_auto_reply(mut self, n: u32) -> Self {
        self.max_consecutive_auto_reply = n;
        self
    }

    /// The termination test, applied to every assistant answer without tool
    /// calls; for example `|r| r.content.as_deref().is_some_and(|c| c.contains("TERMINATE"))`.
    pub fn is_termination_msg(
        mut self,
        test: impl Fn(&ChatResponse) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.is_termination = Arc::new(test);
        self
    }

    /// Where human input comes from.
    pub fn input(mut self, input: Arc<dyn InputProvider>) -> Self {
        self.input = input;
        self
    }

    /// What the proxy says when it replies automatically to an answer that
    /// did not end the conversation.
    pub fn default_auto_reply(mut self, reply: impl Into<String>) -> Self {
        self.default_auto_reply = reply.into();
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a conversation with `assistant`: `message` is the user's
    /// request. Returns the final answer, or the error that stopped it.
    pub async fn initiate_chat(
        &self,
        auditor: &Auditor,
        assistant: &AssistantAgent,
        message: &str,
    ) -> Result<ChatResult, AgentError> {
        self.initiate_chat_with(auditor, assistant, &[], message)
            .await
    }

    /// Like [`UserProxyAgent::initiate_chat`], with further agents the
    /// assistants may hand the conversation to (see
    /// [`AssistantAgent::handoff`]). The agent taking over sees the user's
    /// messages, not the previous agent's tool traffic.
    ///
    /// The conversation is an `invoke_agent {entry}` span, opened from
    /// `auditor` (see [`Auditor::invoke_agent`]: on a request's handle it
    /// takes the request span's place, so give each conversation a handle
    /// of its own); each model call is a `chat` span and each tool call an
    /// `execute_tool` span under it, and an agent taking over runs in an
    /// `invoke_agent` span under the one that handed over.
    pub async fn initiate_chat_with(
        &self,
        auditor: &Auditor,
        entry: &AssistantAgent,
        others: &[&AssistantAgent],
        message: &str,
    ) -> Result<ChatResult, AgentError> {
        let model = entry.model();
        let mut run = auditor.invoke_agent(entry.name(), model.provider(), Some(model.name()));
        if run.captures_content() {
            run.capture_content(
                "gen_ai.input.messages",
                &payload::semconv_messages(&[Message::user(message)]),
            );
        }
        let result = self.converse(&run, entry, others, message).await;
        match &result {
            Ok(done) if run.captures_content() => {
                run.capture_content(
                    "gen_ai.output.messages",
                    &payload::semconv_messages(&[Message::Assistant {
                        content: Some(done.answer.clone()),
                        tool_calls: Vec::new(),
                    }]),
                );
            }
            Ok(_) => {}
            Err(e) => run.fail(e.error_type()),
        }
        run.end();
        result
    }

    /// The conversation inside the entry agent's `run` span.
    async fn converse(
        &self,
        run: &GenAiStep,
        entry: &AssistantAgent,
        others: &[&AssistantAgent],
        message: &str,
    ) -> Result<ChatResult, AgentError> {
        let first = run.auditor().with_agent(&self.name);
        emit(
            &first,
            EventType::UserRequest,
            &payload::UserRequest {
                content: message,
                recipient: entry.name(),
                source: None,
            },
        )
        .await?;
        let mut transcript = vec![Message::user(message)];
        let mut context = transcript.clone();
        let mut active = entry;
        // The runs of the agents that took over; they end with the
        // conversation.
        let mut handed: Vec<GenAiStep> = Vec::new();
        let mut current = run.auditor().clone();
        let mut auto_replies: u32 = 0;
        loop {
            let turn = current.with_agent(active.name());
            let response = active.generate_reply(&turn, &context).await?;
            let reply_message = response.to_message();
            transcript.push(reply_message.clone());
            context.push(reply_message);

            if let Some(next) = self
                .hand_over(&turn, active, entry, others, &response, &mut transcript)
                .await?
            {
                active = next;
                context = transcript
                    .iter()
                    .filter(|m| matches!(m, Message::User { .. }))
                    .cloned()
                    .collect();
                let model = next.model();
                let step = turn.invoke_agent(next.name(), model.provider(), Some(model.name()));
                current = step.auditor().clone();
                handed.push(step);
                continue;
            }

            let proxy_turn = current.with_agent(&self.name);
            let calls = &response.tool_calls;
            // With tool calls the conversation goes on (the tools run)
            // unless the human stops it; without, it may end. Terminated
            // wins over the reply limit when both hold.
            let end = if !calls.is_empty() {
                None
            } else if (self.is_termination)(&response) {
                Some(EndReason::Terminated)
            } else if auto_replies >= self.max_consecutive_auto_reply {
                Some(EndReason::MaxAutoReplies)
            } else {
                None
            };
            let prompt = match self.mode {
                HumanInputMode::Always if !calls.is_empty() => {
                    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
                    Some(format!(
                        "{} asks to run {}. Press enter to run, type a reply to send instead, or `exit`:",
                        active.name(),
                        names.join(", ")
                    ))
                }
                HumanInputMode::Always | HumanInputMode::Terminate
                    if calls.is_empty()
                        && (self.mode == HumanInputMode::Always || end.is_some()) =>
                {
                    Some(format!(
                        "Reply to {} (empty line to {}, `exit` to stop):",
                        active.name(),
                        if end.is_some() { "stop" } else { "auto-reply" }
                    ))
                }
                _ => None,
            };
            if let Some(prompt) = prompt {
                // Tool calls the human answers instead are told they did
                // not run.
                let conversation = (&mut transcript, &mut context);
                match self
                    .ask_human(&prompt, &proxy_turn, active, calls, conversation)
                    .await?
                {
                    Asked::Ended(result) => return Ok(result),
                    Asked::Replied => {
                        auto_replies = 0;
                        continue;
                    }
                    Asked::Nothing => {}
                }
            }
            if !calls.is_empty() {
                // Asked before running (mode `always`), the human has the
                // last word; otherwise the reply limit holds here too.
                if self.mode != HumanInputMode::Always
                    && auto_replies >= self.max_consecutive_auto_reply
                {
                    return self
                        .finish(
                            &proxy_turn,
                            &transcript,
                            EndReason::MaxAutoReplies,
                            active.name(),
                        )
                        .await;
                }
                for call in calls {
                    let content = self.run_tool(&proxy_turn, active, call).await?;
                    let m = Message::tool(call.id.clone(), content);
                    transcript.push(m.clone());
                    context.push(m);
                }
                auto_replies += 1;
                continue;
            }
            if let Some(end) = end {
                return self
                    .finish(&proxy_turn, &transcript, end, active.name())
                    .await;
            }
            // Automatic reply to an answer that did not end the conversation.
            emit(
                &proxy_turn,
                EventType::AgentMessage,
                &payload::AgentMessage {
                    from: &self.name,
                    to: active.name(),
                    kind: "auto_reply",
                    content: Some(&self.default_auto_reply),
                    reason: None,
                },
            )
            .await?;
            let m = Message::user(self.default_auto_reply.clone());
            transcript.push(m.clone());
            context.push(m);
            auto_replies += 1;
        }
    }

    /// Asks the human with `prompt`, in `proxy_turn`: `exit` (or the end
    /// of input) ends the conversation, text becomes the next user message
    /// (the tool calls in `unanswered` are then answered as not run), an
    /// empty line leaves the proxy to go on by itself.
    async fn ask_human(
        &self,
        prompt: &str,
        proxy_turn: &Auditor,
        active: &AssistantAgent,
        unanswered: &[ToolCall],
        (transcript, context): (&mut Vec<Message>, &mut Vec<Message>),
    ) -> Result<Asked, AgentError> {
        match self.ask(prompt).await? {
            Human::Exit => {
                let end = EndReason::HumanExit;
                let result = self
                    .finish(proxy_turn, transcript, end, active.name())
                    .await?;
                Ok(Asked::Ended(result))
            }
            Human::Text(text) => {
                for call in unanswered {
                    let m = Message::tool(
                        call.id.clone(),
                        json!({"error": "not run: the user replied instead"}).to_string(),
                    );
                    transcript.push(m.clone());
                    context.push(m);
                }
                self.human_message(proxy_turn, active, &text, transcript, context)
                    .await?;
                Ok(Asked::Replied)
            }
            Human::Empty => Ok(Asked::Nothing),
        }
    }

    async fn ask(&self, prompt: &str) -> Result<Human, AgentError> {
        let line = self
            .input
            .read_line(prompt)
            .await
            .map_err(|source| AgentError::Input {
                agent: self.name.clone(),
                source,
            })?;
        Ok(match line {
            None => Human::Exit,
            Some(l) if l.trim().eq_ignore_ascii_case("exit") => Human::Exit,
            Some(l) if l.trim().is_empty() => Human::Empty,
            Some(l) => Human::Text(l),
        })
    }

    async fn human_message(
        &self,
        turn: &Auditor,
        to: &AssistantAgent,
        text: &str,
        transcript: &mut Vec<Message>,
        context: &mut Vec<Message>,
    ) -> Result<(), AgentError> {
        emit(
            turn,
            EventType::UserRequest,
            &payload::UserRequest {
                content: text,
                recipient: to.name(),
                source: Some("human_input"),
            },
        )
        .await?;
        transcript.push(Message::user(text));
        context.push(Message::user(text));
        Ok(())
    }

    async fn finish(
        &self,
        turn: &Auditor,
        transcript: &[Message],
        end: EndReason,
        answered_by: &str,
    ) -> Result<ChatResult, AgentError> {
        let answer = transcript
            .iter()
            .rev()
            .find_map(|m| match m {
                Message::Assistant {
                    content: Some(c), ..
                } => Some(c.clone()),
                _ => None,
            })
            .unwrap_or_default();
        emit(
            turn,
            EventType::FinalResult,
            &payload::FinalResult {
                answer: &answer,
                answered_by,
                end,
            },
        )
        .await?;
        Ok(ChatResult {
            answer,
            answered_by: answered_by.to_string(),
            messages: transcript.to_vec(),
            end,
        })
    }
}

/// What asking the human led to.
enum Asked {
    /// The conversation ended (the human said `exit`).
    Ended(ChatResult),
    /// The human's text is the next user message.
    Replied,
    /// An empty line: the proxy goes on by itself.
    Nothing,
}

enum Human {
    Exit,
    Empty,
    Text(String),
}
