//! A conversation of several agents: a triage agent hands the user over to
//! a specialist, all under one correlation id, each turn its own span.

use std::sync::Arc;

use agent_audit_core::Auditor;

use crate::model::ChatModel;
use crate::tutorial::{balance_tool, user_proxy};
use crate::{AgentError, AssistantAgent, ChatResult};

/// The triage agent's name.
pub const TRIAGE: &str = "triage";
/// The accounts specialist's name.
pub const ACCOUNTS: &str = "accounts";
/// The cards specialist's name.
pub const CARDS: &str = "cards";

/// The triage agent: it answers nothing itself and hands over.
pub fn triage(model: Arc<dyn ChatModel>) -> AssistantAgent {
    AssistantAgent::new(TRIAGE, model)
        .system_message(
            "You route bank customers. Hand questions about accounts and balances to the accounts specialist, questions about cards to the cards specialist.",
        )
        .handoff(ACCOUNTS, "Hand the customer to the accounts specialist (accounts, balances).")
        .handoff(CARDS, "Hand the customer to the cards specialist (lost or blocked cards).")
}

/// The accounts specialist, with `get_account_balance`.
pub fn accounts(model: Arc<dyn ChatModel>) -> AssistantAgent {
    AssistantAgent::new(ACCOUNTS, model)
        .system_message(
            "You are the accounts specialist. Use get_account_balance; never guess a balance.",
        )
        .tool(balance_tool())
}

/// The cards specialist.
pub fn cards(model: Arc<dyn ChatModel>) -> AssistantAgent {
    AssistantAgent::new(CARDS, model).system_message("You are the cards specialist.")
}

/// Runs triage -> specialist for `prompt`; the user proxy runs the tools.
pub async fn run(
    auditor: &Auditor,
    model: Arc<dyn ChatModel>,
    prompt: &str,
) -> Result<ChatResult, AgentError> {
    let triage = triage(model.clone());
    let accounts = accounts(model.clone());
    let cards = cards(model);
    user_proxy()
        .initiate_chat_with(auditor, &triage, &[&accounts, &cards], prompt)
        .await
}
