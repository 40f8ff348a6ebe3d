//! The tutorial's app: a user proxy and a bank assistant with the tool
//! `get_account_balance(account_id)`. `agent-audit run` calls [`run`].

use std::sync::Arc;

use agent_audit_core::Auditor;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::ChatModel;
use crate::tool::{FnTool, Tool};
use crate::{AgentError, AssistantAgent, HumanInputMode, UserProxyAgent};

/// The tool's name.
pub const TOOL_NAME: &str = "get_account_balance";
/// The assistant's name in records.
pub const ASSISTANT: &str = "assistant";
/// The user proxy's name in records.
pub const USER_PROXY: &str = "user_proxy";
/// The assistant's system message.
pub const SYSTEM_MESSAGE: &str = "You are a helpful bank assistant. Use get_account_balance to look up an account's balance; never guess a balance.";

/// Arguments of `get_account_balance`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct BalanceArgs {
    /// The account's id, for example "12345".
    pub account_id: String,
}

/// What `get_account_balance` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    /// The account asked about.
    pub account_id: String,
    /// The balance, two decimals.
    pub balance: f64,
    /// ISO 4217 currency.
    pub currency: String,
}

/// A fake but deterministic balance: the same id always gives the same
/// amount (FNV-1a of the id, as cents below 100,000.00), so runs can be compared.
pub fn fake_balance(account_id: &str) -> Balance {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let cents = hash % 10_000_000;
    Balance {
        account_id: account_id.to_string(),
        balance: cents as f64 / 100.0,
        currency: "EUR".into(),
    }
}

/// The tool `get_account_balance(account_id)`.
pub fn balance_tool() -> Arc<dyn Tool> {
    FnTool::new(
        TOOL_NAME,
        "Returns the current balance of a bank account.",
        |args: BalanceArgs| async move {
            if args.account_id.trim().is_empty() {
                return Err("account_id is empty".to_string());
            }
            Ok(fake_balance(&args.account_id))
        },
    )
    .into_arc()
}

/// The tutorial's assistant on `model`.
pub fn assistant(model: Arc<dyn ChatModel>) -> AssistantAgent {
    AssistantAgent::new(ASSISTANT, model)
        .system_message(SYSTEM_MESSAGE)
        .tool(balance_tool())
}

/// The tutorial's user proxy: never asks a human, at most 5 automatic
/// replies in a row, ends at the first answer without tool calls.
pub fn user_proxy() -> UserProxyAgent {
    UserProxyAgent::new(USER_PROXY)
        .human_input_mode(HumanInputMode::Never)
        .max_consecutive_auto_reply(5)
}

/// Runs the tutorial's app for `prompt` and returns the answer.
///
/// The caller scopes `auditor` to the request (`auditor.for_request(..)`);
/// for "What is the balance of account 12345?" the records are, in order:
/// `user_request`, `assistant_input`, `assistant_output` (asking for the
/// tool), `tool_call`, `tool_result`, `assistant_input`, `assistant_output`,
/// `final_result`.
pub async fn run(
    auditor: &Auditor,
    model: Arc<dyn ChatModel>,
    prompt: &str,
) -> Result<String, AgentError> {
    let result = user_proxy()
        .initiate_chat(auditor, &assistant(model), prompt)
        .await?;
    Ok(result.answer)
}
