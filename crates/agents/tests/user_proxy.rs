//! The user proxy: human input modes through a scripted input provider,
//! `max_consecutive_auto_reply`, and the termination test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::tutorial::{self, balance_tool};
use agent_audit_agents::{
    AssistantAgent, EndReason, HumanInputMode, OfflineModel, ScriptedInput, UserProxyAgent,
};
use common::*;
use serde_json::json;

const PROMPT: &str = "What is the balance of account 12345?";

fn assistant() -> AssistantAgent {
    tutorial::assistant(Arc::new(OfflineModel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_asks_before_running_tools_and_before_ending() {
    let (dispatcher, sink) = memory_dispatcher().await;
    let input = Arc::new(ScriptedInput::new(["", ""]));
    let result = UserProxyAgent::new("user_proxy")
        .human_input_mode(HumanInputMode::Always)
        .input(input.clone())
        .initiate_chat(&request_auditor(&dispatcher, "r"), &assistant(), PROMPT)
        .await
        .unwrap();
    finish(&dispatcher).await;
    assert_eq!(result.end, EndReason::Terminated);
    let prompts = input.prompts();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(prompts[0].contains("get_account_balance"), "{}", prompts[0]);
    assert_eq!(input.remaining(), 0);
    assert_eq!(of_type(&sink.records(), "tool_result").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_exit_stops_before_the_tool_runs() {
    let (dispatcher, sink) = memory_dispatcher().await;
    let result = UserProxyAgent::new("user_proxy")
        .human_input_mode(HumanInputMode::Always)
        .input(Arc::new(ScriptedInput::new(["exit"])))
        .initiate_chat(&request_auditor(&dispatcher, "r"), &assistant(), PROMPT)
        .await
        .unwrap();
    finish(&dispatcher).await;
    assert_eq!(result.end, EndReason::HumanExit);
    assert_eq!(
        events(&sink.records()),
        [
            "user_request",
            "assistant_input",
            "assistant_output",
            "final_result"
        ]
    );
    assert_eq!(
        of_type(&sink.records(), "final_result")[0]["end"],
        "human_exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_a_typed_reply_replaces_the_tool_run() {
    let (dispatcher, sink) = memory_dispatcher().await;
    let input = Arc::new(ScriptedInput::new(["No, use account 999 instead", "", ""]));
    let result = UserProxyAgent::new("user_proxy")
        .human_input_mode(HumanInputMode::Always)
        .input(input)
        .initiate_chat(&request_auditor(&dispatcher, "r"), &assistant(), PROMPT)
        .await
        .unwrap();
    finish(&dispatcher).await;
    let records = sink.records();
    let calls = of_type(&records, "tool_call");
    assert_eq!(
        calls.len(),
        1,
        "only the account the human named is looked up"
    );
    assert_eq!(calls[0]["arguments"], json!({"account_id": "999"}));
    let requests = of_type(&records, "user_request");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1]["source"], "human_input");
    assert_eq!(requests[1]["content"], "No, use account 999 instead");
    assert!(result.answer.contains("999"), "{}", result.answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_asks_only_at_the_end_and_can_go_on() {
    let (dispatcher, sink) = memory_dispatcher().await;
    let input = Arc::new(ScriptedInput::new(["And account 777?", ""]));
    let result = UserProxyAgent::new("user_proxy")
        .human_input_mode(HumanInputMode::Terminate)
        .input(input.clone())
        .initiate_chat(&request_auditor(&dispatcher, "r"), &assistant(), PROMPT)
        .await
        .unwrap();
    finish(&dispatcher).await;
    assert_eq!(input.prompts().len(), 2, "asked at each termination only");
    assert_eq!(result.end, EndReason::Terminated);
    assert!(result.answer.contains("777"), "{}", result.answer);
    let calls = of_type(&sink.records(), "tool_call");
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| c["arguments"]["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["12345", "777"]);
    assert_eq!(of_type(&sink.records(), "final_result").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_stops_after_max_consecutive_auto_replies() {
    // A model that asks for the tool forever.
    let server = ChatServer::with_handler(|_| {
        Reply::completion(
            None,
            &[("call_loop", "get_account_balance", r#"{"account_id":"1"}"#)],
        )
    })
    .await;
    let (dispatcher, sink) = memory_dispatcher().await;
    let model = Arc::new(client(&server.base_url(), None, 0, Duration::from_secs(10)));
    let assistant = AssistantAgent::new("assistant", model).tool(balance_tool());
    let result = UserProxyAgent::new("user_proxy")
        .max_consecutive_auto_reply(2)
        .initiate_chat(&request_auditor(&dispatcher, "r"), &assistant, "loop")
        .await
        .unwrap();
    finish(&dispatcher).await;
    assert_eq!(result.end, EndReason::MaxAutoReplies);
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        of_type(&sink.records(), "tool_call").len(),
        2,
        "the third request is not run"
    );
    assert_eq!(
        of_type(&sink.records(), "final_result")[0]["end"],
        "max_auto_replies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_termination_test_keeps_the_conversation_going() {
    let server = ChatServer::scripted(vec![
        Reply::completion(Some("Thinking about it."), &[]),
        Reply::completion(Some("All done. TERMINATE"), &[]),
    ])
    .await;
    let (dispatcher, sink) = memory_dispatcher().await;
    let model = Arc::new(client(&server.base_url(), None, 0, Duration::from_secs(10)));
    let assistant = AssistantAgent::new("assistant", model);
    let result = UserProxyAgent::new("user_proxy")
        .is_termination_msg(|r| {
            r.content
                .as_deref()
                .is_some_and(|c| c.ends_with("TERMINATE"))
        })
        .default_auto_reply("Go on.")
        .initiate_chat(
            &request_auditor(&dispatcher, "r"),
            &assistant,
            "plan my week",
        )
        .await
        .unwrap();
    finish(&dispatcher).await;
    assert_eq!(result.end, EndReason::Terminated);
    assert_eq!(result.answer, "All done. TERMINATE");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1].json()["messages"].as_array().unwrap().clone();
    assert_eq!(
        msgs.last().unwrap(),
        &json!({"role": "user", "content": "Go on."})
    );
    let auto = &of_type(&sink.records(), "agent_message")[0];
    assert_eq!(auto["content"], "Go on.");
    assert_eq!(auto["kind"], "auto_reply");
}
