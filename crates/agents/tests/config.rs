//! The `[model]` section: parsing, errors that name the key, and the model
//! it builds (checked against a real server on loopback).

mod common;

use std::sync::Arc;

use agent_audit_agents::{
    ModelConfig, ModelConfigError, ModelError, Provider, build_model, build_model_with_env,
    tutorial,
};
use common::*;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    model: ModelConfig,
}

fn parse(text: &str) -> Result<ModelConfig, toml::de::Error> {
    toml::from_str::<File>(text).map(|f| f.model)
}

#[test]
fn a_full_section_parses() {
    let c = parse(
        r#"
        [model]
        provider = "openai"
        base_url = "http://127.0.0.1:11434/v1"
        model = "llama3.2"
        api_key_env = "MY_KEY"
        timeout_ms = 1500
        max_retries = 4
        "#,
    )
    .unwrap();
    assert_eq!(c.provider, Provider::Openai);
    assert_eq!(c.base_url.as_deref(), Some("http://127.0.0.1:11434/v1"));
    assert_eq!(c.model.as_deref(), Some("llama3.2"));
    assert_eq!(c.api_key_env.as_deref(), Some("MY_KEY"));
    assert_eq!((c.timeout_ms, c.max_retries), (Some(1500), Some(4)));
    assert_eq!(
        parse("[model]\nprovider = \"offline\"").unwrap(),
        ModelConfig::default()
    );
}

#[test]
fn unknown_keys_bad_values_and_a_missing_provider_are_errors_naming_the_key() {
    let e = parse("[model]\nprovider = \"openai\"\napi_key = \"sk-x\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("api_key") && e.contains("line 3"), "{e}");
    let e = parse("[model]\nprovider = \"anthropic\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("anthropic") && e.contains("provider"), "{e}");
    let e = parse("[model]\nprovider = \"openai\"\ntimeout_ms = \"fast\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("timeout_ms"), "{e}");
    let e = parse("[model]\nmodel = \"gpt-4o\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("provider"), "{e}");
}

#[test]
fn the_default_is_the_offline_model() {
    let m = build_model(&ModelConfig::default()).unwrap();
    assert!(m.is_offline());
    assert_eq!(m.name(), "offline");
}

#[test]
fn build_errors_name_what_is_wrong() {
    let no_env = |_: &str| None;
    let openai = |f: &dyn Fn(&mut ModelConfig)| {
        let mut c = ModelConfig {
            provider: Provider::Openai,
            model: Some("m".into()),
            ..Default::default()
        };
        f(&mut c);
        c
    };
    let err = |c: ModelConfig| build_model_with_env(&c, no_env).err().unwrap();
    assert!(matches!(
        err(openai(&|c| c.model = None)),
        ModelConfigError::MissingModel
    ));
    let e = err(openai(&|c| c.api_key_env = Some("TEAM_KEY".into())));
    assert!(matches!(&e, ModelConfigError::MissingApiKey { var } if var == "TEAM_KEY"));
    assert!(e.to_string().contains("TEAM_KEY"));
    assert!(matches!(
        err(openai(&|c| c.timeout_ms = Some(0))),
        ModelConfigError::OutOfRange {
            key: "timeout_ms",
            value: 0,
            ..
        }
    ));
    // Every number has an upper bound: an hour-long attempt, twenty retries.
    let e = err(openai(&|c| c.timeout_ms = Some(i64::MAX as u64)));
    assert!(
        matches!(
            e,
            ModelConfigError::OutOfRange {
                key: "timeout_ms",
                max: 3_600_000,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        err(openai(&|c| c.max_retries = Some(21))),
        ModelConfigError::OutOfRange {
            key: "max_retries",
            ..
        }
    ));
    assert!(build_model_with_env(&openai(&|c| c.max_retries = Some(20)), no_env).is_ok());
    let e = err(openai(&|c| c.base_url = Some("ftp://x/v1".into())));
    assert!(e.to_string().contains("ftp"), "{e}");
    let e = err(openai(&|c| {
        c.base_url = Some("http://user:pw@host/v1".into())
    }));
    assert!(!e.to_string().contains("pw"), "{e}");
    let e = err(ModelConfig {
        base_url: Some("http://x".into()),
        ..Default::default()
    });
    assert!(matches!(
        e,
        ModelConfigError::NotForOffline { key: "base_url" }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_client_uses_the_key_variable_the_retries_and_the_model_name() {
    let key = secret_key();
    let server = ChatServer::scripted(vec![
        Reply::error(500, "a", "server_error", Value::Null),
        Reply::error(500, "b", "server_error", Value::Null),
    ])
    .await;
    let config = ModelConfig {
        provider: Provider::Openai,
        base_url: Some(server.base_url()),
        model: Some("team-model".into()),
        api_key_env: Some("TEAM_KEY".into()),
        timeout_ms: Some(5000),
        max_retries: Some(1),
        max_response_bytes: None,
    };
    let k = key.clone();
    let model =
        build_model_with_env(&config, move |v| (v == "TEAM_KEY").then(|| k.clone())).unwrap();
    assert!(!model.is_offline());
    assert_eq!(model.name(), "team-model");
    assert!(!model.describe().contains(&key));
    let (dispatcher, sink) = memory_dispatcher().await;
    let result = tutorial::run(&request_auditor(&dispatcher, "r"), Arc::clone(&model), "hi").await;
    finish(&dispatcher).await;
    match result {
        Err(agent_audit_agents::AgentError::Model {
            source: ModelError::Server { attempts: 2, .. },
            ..
        }) => {}
        other => panic!("expected a server error after 2 attempts, got {other:?}"),
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "max_retries = 1");
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert_eq!(reqs[0].json()["model"], "team-model");
    assert!(!contains(&all_bytes(&sink.records()), &key));
}
