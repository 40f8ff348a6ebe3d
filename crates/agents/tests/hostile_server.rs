//! A hostile Chat Completions server on loopback that sends the API key it
//! was given back in every form and every field it can: `\u`-escaped,
//! escaped twice (inside tool-call arguments, which are JSON in a JSON
//! string), upper-cased, percent-encoded, as HTML character references, in
//! hex, as base64 of `Bearer KEY`, split across two content parts, and in
//! the message of a 401, a 500 and a body that is not JSON. The key must
//! reach no record byte (the JSONL encoding of every record) and neither the
//! `Display` nor the `Debug` of the error the agent returns.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_audit_agents::{AgentError, ChatModel, tutorial};
use common::*;
use serde_json::{Value, json};

const PROMPT: &str = "What is the balance of account 12345?";

/// Every UTF-16 unit as `\uXXXX`: what a JSON encoder that escapes
/// everything writes, and what decodes back to the key.
fn u_escape(key: &str) -> String {
    key.encode_utf16().map(|u| format!("\\u{u:04x}")).collect()
}

fn percent(key: &str) -> String {
    key.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn html_refs(key: &str) -> String {
    key.chars().map(|c| format!("&#x{:x};", c as u32)).collect()
}

fn hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The key as a JSON string's inside (`"` and `\` escaped).
fn json_inner(key: &str) -> String {
    let s = serde_json::to_string(key).unwrap();
    s[1..s.len() - 1].to_string()
}

/// Every form of `key` that must not be in `bytes`; for the key as it is
/// and as JSON writes it, also any run of 16 bytes (a key cut short).
fn leaks(bytes: &[u8], key: &str) -> Vec<String> {
    let mut found = Vec::new();
    let whole = [
        ("the key", key.to_string()),
        ("the key JSON-encoded", json_inner(key)),
        ("the key \\u-escaped", u_escape(key)),
        ("the key \\u-escaped in JSON", json_inner(&u_escape(key))),
        ("the key upper-cased", key.to_uppercase()),
        (
            "the key upper-cased JSON-encoded",
            json_inner(&key.to_uppercase()),
        ),
        ("the key percent-encoded", percent(key)),
        ("the key as HTML references", html_refs(key)),
        ("the key in hex", hex(key)),
        (
            "base64 of `Bearer KEY`",
            base64(format!("Bearer {key}").as_bytes()),
        ),
    ];
    for (what, form) in &whole {
        if contains(bytes, form) {
            found.push(format!("{what} (whole)"));
        }
    }
    for (what, form) in &whole[..2] {
        let b = form.as_bytes();
        if b.len() > 16 && b.windows(16).any(|w| bytes.windows(16).any(|x| x == w)) {
            found.push(format!("{what} (a 16-byte run)"));
        }
    }
    found
}

/// Raw JSON text with `@U@` replaced by the `\u`-escaped key: a JSON
/// encoder would escape the backslashes, so the body is patched as text.
fn with_escaped(body: Value, key: &str) -> String {
    body.to_string().replace("@U@", &u_escape(key))
}

fn completion(message: Value, key: &str) -> Value {
    json!({
        "id": hex(key),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": key.to_uppercase(),
        "choices": [{"index": 0, "message": message, "finish_reason": base64(format!("Bearer {key}").as_bytes())}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
}

/// What the hostile server answers to request number `n` (0-based) of
/// scenario `scenario`, given the key it received.
fn hostile(scenario: &str, n: usize, key: &str) -> Reply {
    match (scenario, n) {
        ("success", 0) => {
            let args = format!(r#"{{"account_id":"12345","memo":"{}"}}"#, u_escape(key));
            let message = json!({
                "role": "assistant",
                "content": "checking @U@ now",
                "tool_calls": [
                    {"id": format!("call_{}", percent(key)), "type": "function",
                     "function": {"name": "get_account_balance", "arguments": args}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "@U@", "arguments": {"key": key}}}
                ]
            });
            Reply::raw(200, &with_escaped(completion(message, key), key))
        }
        ("success", _) => {
            let (a, b) = key.split_at(key.len() / 2);
            let message = json!({
                "role": "assistant",
                "content": [
                    {"type": "text", "text": a},
                    {"type": "text", "text": format!("{b} | @U@ | {} | {} | {}", percent(key), html_refs(key), key.to_uppercase())}
                ]
            });
            Reply::raw(200, &with_escaped(completion(message, key), key))
        }
        ("unauthorized", _) => Reply::raw(
            401,
            &with_escaped(
                json!({"error": {"message": "Incorrect API key provided: @U@ (Bearer @U@)", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
                key,
            ),
        ),
        ("server", _) => Reply::raw(
            500,
            &with_escaped(
                json!({"error": {"message": format!("upstream refused @U@ {}", base64(format!("Bearer {key}").as_bytes())), "type": "server_error", "code": 500}}),
                key,
            ),
        ),
        // Not JSON: the client quotes the start of the body in its error.
        _ => Reply::raw(
            200,
            &format!("{{\"choices\": [ oops @U@ {}", u_escape(key)).replace("@U@", &u_escape(key)),
        ),
    }
}

async fn run_against(
    key: &str,
    scenario: &'static str,
) -> (
    Result<String, AgentError>,
    Vec<Arc<agent_audit_core::Record>>,
    usize,
) {
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let server = ChatServer::with_handler(move |req| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let sent = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string();
        hostile(scenario, n, &sent)
    })
    .await;
    let (dispatcher, sink) = memory_dispatcher().await;
    let model: Arc<dyn ChatModel> = Arc::new(client(
        &server.base_url(),
        Some(key),
        1,
        Duration::from_secs(10),
    ));
    let auditor = request_auditor(&dispatcher, "req-hostile");
    let result = tutorial::run(&auditor, model, PROMPT).await;
    finish(&dispatcher).await;
    let requests = server.requests();
    // The key really went over the wire, so the server could echo it.
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some(format!("Bearer {key}").as_str())),
        "{requests:?}"
    );
    (result, sink.records(), requests.len())
}

/// Keys of several shapes: OpenAI's, plain hex, one with JSON- and
/// URL-special characters, and a short one such as a local server takes.
fn keys() -> Vec<String> {
    let long = secret_key();
    let hexonly = long.trim_start_matches("sk-test-").to_string();
    vec![
        long,
        hexonly.clone(),
        format!("k\"e\\y/%41&amp;+{}", &hexonly[..20]),
        format!("q7{}", &hexonly[..4]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_echoing_the_key_in_every_form_gets_it_into_no_record_and_no_error() {
    for key in keys() {
        let mut problems = Vec::new();
        for scenario in ["success", "unauthorized", "server", "not_json"] {
            let (result, records, requests) = run_against(&key, scenario).await;
            let texts = match &result {
                Ok(answer) => {
                    assert_eq!(scenario, "success", "{answer}");
                    vec![answer.clone()]
                }
                Err(e) => {
                    assert_ne!(scenario, "success", "{e}");
                    vec![e.to_string(), format!("{e:?}")]
                }
            };
            match scenario {
                "success" => {
                    assert_eq!(requests, 2);
                    let calls = of_type(&records, "tool_call");
                    assert!(!calls.is_empty(), "{:?}", events(&records));
                }
                "server" => assert_eq!(requests, 2, "one retry"),
                _ => assert_eq!(requests, 1),
            }
            if scenario != "success" {
                assert!(
                    events(&records).contains(&"model_error".to_string()),
                    "{scenario}: {:?}",
                    events(&records)
                );
            }
            for l in leaks(&all_bytes(&records), &key) {
                problems.push(format!("{scenario}: records hold {l}"));
            }
            for t in &texts {
                for l in leaks(t.as_bytes(), &key) {
                    problems.push(format!("{scenario}: the answer or error holds {l}: {t}"));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "key of {} chars:\n{}",
            key.len(),
            problems.join("\n")
        );
    }
}

/// One way a server can spell the key so that it looks the same, or
/// nearly, to a reader while no byte of it matches: invisible characters or
/// combining marks after every character, or letters and digits from the
/// compatibility forms.
type Disguise = (&'static str, fn(&str) -> String);

fn interleave(key: &str, marks: &[char]) -> String {
    key.chars()
        .enumerate()
        .flat_map(|(i, c)| [c, marks[i % marks.len()]])
        .collect()
}

/// `c` shifted into a block that spells A-Z, a-z and 0-9 in order.
fn styled(c: char, upper: u32, lower: u32, digit: Option<u32>) -> char {
    let shift = |base: u32, from: char| char::from_u32(base + (c as u32 - from as u32)).unwrap();
    match c {
        'A'..='Z' => shift(upper, 'A'),
        'a'..='z' => shift(lower, 'a'),
        '0'..='9' => digit.map_or(c, |d| shift(d, '0')),
        _ => c,
    }
}

fn disguises() -> Vec<Disguise> {
    vec![
        ("combining marks", |k| {
            interleave(k, &['\u{301}', '\u{20DD}', '\u{489}', '\u{93F}'])
        }),
        ("variation selectors", |k| {
            interleave(k, &['\u{FE0F}', '\u{E0100}', '\u{FE00}', '\u{E01EF}'])
        }),
        ("bidi marks", |k| {
            interleave(k, &['\u{200E}', '\u{200F}', '\u{61C}'])
        }),
        ("invisible operators", |k| {
            interleave(k, &['\u{2061}', '\u{2062}', '\u{2063}', '\u{2064}'])
        }),
        ("tag characters", |k| {
            k.chars()
                .flat_map(|c| [c, char::from_u32(0xE0000 + (c as u32 & 0x7F)).unwrap()])
                .chain(['\u{E007F}'])
                .collect()
        }),
        ("other default-ignorables", |k| {
            interleave(
                k,
                &[
                    '\u{3164}',
                    '\u{115F}',
                    '\u{180B}',
                    '\u{FFA0}',
                    '\u{1D173}',
                    '\u{34F}',
                    '\u{206A}',
                    '\u{FFF0}',
                ],
            )
        }),
        ("mathematical bold", |k| {
            k.chars()
                .map(|c| styled(c, 0x1D400, 0x1D41A, Some(0x1D7CE)))
                .collect()
        }),
        ("mathematical monospace", |k| {
            k.chars()
                .map(|c| styled(c, 0x1D670, 0x1D68A, Some(0x1D7F6)))
                .collect()
        }),
        ("enclosed letters and digits", |k| {
            k.chars()
                .map(|c| match c {
                    '0' => '\u{24EA}',
                    '1'..='9' => char::from_u32(0x2460 + (c as u32 - '1' as u32)).unwrap(),
                    c => styled(c, 0x24B6, 0x24D0, None),
                })
                .collect()
        }),
        ("mathematical bold with marks between", |k| {
            let bold: String = k
                .chars()
                .map(|c| styled(c, 0x1D400, 0x1D41A, Some(0x1D7CE)))
                .collect();
            interleave(&bold, &['\u{FE0F}', '\u{200E}', '\u{E0041}', '\u{301}'])
        }),
    ]
}

/// What a reader sees: the characters the disguises insert dropped, the
/// ones they substitute mapped back, and every other non-ASCII character
/// dropped too (so that nothing between the key's letters can hide it from
/// this check). Written independently of the client's normaliser.
fn as_read(text: &str) -> String {
    let mut back = std::collections::HashMap::new();
    for c in (0x20u8..0x7F).map(char::from) {
        for (_, disguise) in disguises() {
            let d: Vec<char> = disguise(&c.to_string()).chars().collect();
            // A substitution, not a character followed by an insertion.
            if let [d] = d[..]
                && d != c
            {
                back.insert(d, c);
            }
        }
    }
    text.chars()
        .filter_map(|c| {
            if c.is_ascii() {
                Some(c)
            } else {
                back.get(&c).copied()
            }
        })
        .collect()
}

/// What the server answers in scenario `scenario` to request `n`, the key
/// given disguised as `d`.
fn disguised(scenario: &str, n: usize, d: &str) -> Reply {
    match (scenario, n) {
        ("tool", 0) => {
            let args = json!({"account_id": "12345", "memo": d}).to_string();
            Reply::completion(
                Some(&format!("checking {d}")),
                &[("call_1", "get_account_balance", &args)],
            )
        }
        ("tool", _) => Reply::completion(Some(&format!("The key is {d}.")), &[]),
        _ => Reply::error(
            401,
            &format!("Incorrect API key provided: {d}"),
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_disguising_the_key_with_invisible_characters_marks_or_look_alikes_gets_none_of_it_through()
 {
    let mut problems = Vec::new();
    for key in keys() {
        for (name, disguise) in disguises() {
            for scenario in ["tool", "error"] {
                let counter = std::sync::atomic::AtomicUsize::new(0);
                let server = ChatServer::with_handler(move |req| {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let sent = req
                        .header("authorization")
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or("");
                    disguised(scenario, n, &disguise(sent))
                })
                .await;
                let (dispatcher, sink) = memory_dispatcher().await;
                let model: Arc<dyn ChatModel> = Arc::new(client(
                    &server.base_url(),
                    Some(&key),
                    0,
                    Duration::from_secs(10),
                ));
                let auditor = request_auditor(&dispatcher, "req-disguised");
                let result = tutorial::run(&auditor, model, PROMPT).await;
                finish(&dispatcher).await;
                let records = sink.records();
                let texts = match (&result, scenario) {
                    (Ok(answer), "tool") => {
                        assert_eq!(server.requests().len(), 2, "{name}");
                        assert!(
                            !of_type(&records, "tool_call").is_empty(),
                            "{name}: {:?}",
                            events(&records)
                        );
                        vec![answer.clone()]
                    }
                    (Err(e), "error") => vec![e.to_string(), format!("{e:?}")],
                    (other, _) => panic!("{name} {scenario}: {other:?}"),
                };
                let seen = as_read(&String::from_utf8_lossy(&all_bytes(&records)));
                for l in leaks(seen.as_bytes(), &key) {
                    problems.push(format!("{name} in {scenario}: records hold {l}"));
                }
                for t in &texts {
                    for l in leaks(as_read(t).as_bytes(), &key) {
                        problems.push(format!(
                            "{name} in {scenario}: the answer or error holds {l}: {t:?}"
                        ));
                    }
                }
            }
        }
        // The check itself sees through every disguise.
        for (name, disguise) in disguises() {
            assert_eq!(as_read(&disguise(&key)), key, "{name}");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
