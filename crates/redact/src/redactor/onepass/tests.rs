//! The one pass against the full path: on every payload it reads whole,
//! its answer is the full path's. Keys and assignment names are built from
//! every word the name matcher treats specially, in every case and with
//! every separator, under the default rules and under configurations with
//! custom field names, custom patterns and the card and e-mail detectors
//! (every configuration here has a sieve: no `iban`).
//!
//! Without the field triggers in the sieve the one pass would miss keys
//! such as `dbPassword`: `field_triggers_are_what_finds_secret_keys` and
//! the differential below fail then.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::super::Redactor;
use super::super::precheck::MAX_BRACKETS;
use super::{last_quote, too_many_brackets};
use crate::config::{Detector, RedactionConfig, RuleConfig};

/// Words of keys and names: secret words and their spellings (canonical
/// ones, joined ones, plurals, shortenings), the words of the contextual
/// rules, describing and usage words that exempt a key, and plain ones.
const WORDS: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "pwd",
    "pw",
    "pswd",
    "passphrase",
    "passcode",
    "pass",
    "word",
    "kennwort",
    "senha",
    "haslo",
    "mot",
    "de",
    "passe",
    "token",
    "tokens",
    "secret",
    "secrets",
    "credential",
    "credentials",
    "creds",
    "cred",
    "cookie",
    "cookies",
    "setcookie",
    "key",
    "keys",
    "api",
    "apikey",
    "apikeys",
    "access",
    "accesskey",
    "secretkey",
    "private",
    "privatekey",
    "privkey",
    "priv",
    "session",
    "sessionid",
    "sid",
    "sessid",
    "phpsessid",
    "sessionkey",
    "sig",
    "signature",
    "pin",
    "pincode",
    "pan",
    "card",
    "cardnumber",
    "cardno",
    "cc",
    "number",
    "num",
    "no",
    "nr",
    "credit",
    "creditcard",
    "cvv",
    "cvc",
    "cvv2",
    "otp",
    "totp",
    "connection",
    "string",
    "connstr",
    "conn",
    "str",
    "database",
    "url",
    "db",
    "uri",
    "mongo",
    "redis",
    "jdbc",
    "postgres",
    "seed",
    "phrase",
    "mnemonic",
    "recovery",
    "code",
    "codes",
    "security",
    "mfa",
    "verification",
    "verifier",
    "client",
    "assertion",
    "iban",
    "ssn",
    "social",
    "dsn",
    "jwt",
    "bearer",
    "authorization",
    "auth",
    "hmac",
    "ssh",
    "master",
    "account",
    "type",
    "length",
    "count",
    "expires",
    "at",
    "name",
    "file",
    "env",
    "max",
    "prompt",
    "completion",
    "total",
    "usage",
    "per",
    "id",
    "user",
    "text",
    "content",
    "tool",
    "note",
    "value",
    "x",
    "a1",
];

/// A name of one to four words, each in some case, joined by a separator
/// (none: camelCase when cased so), maybe numbered.
fn name() -> impl Strategy<Value = String> {
    let word = (prop::sample::select(WORDS), 0..4usize).prop_map(|(w, case)| match case {
        1 => w.to_uppercase(),
        2 => {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        _ => w.to_string(),
    });
    let sep = prop::sample::select(vec!["", "", "_", "-", ".", " ", "__", "-_", "/", "+"]);
    (
        prop::collection::vec((word, sep), 1..5),
        prop::option::of(0u8..10),
    )
        .prop_map(|(parts, n)| {
            let mut out: String = parts.into_iter().map(|(w, s)| format!("{w}{s}")).collect();
            if let Some(n) = n {
                out.push_str(&n.to_string());
            }
            out
        })
}

/// Text a value holds: prose with names in it, assignments in the
/// shapes text writes them, detector shapes, and nothing.
fn text() -> impl Strategy<Value = String> {
    let sep = prop::sample::select(vec![
        "=", ": ", ":", " = ", "\t:\t", "='", "': '", "=:", "==",
    ]);
    let shaped = prop::sample::select(vec![
        "sk-abcdefghijklmnopqrstuvwx",
        "Bearer abcdefgh12345678",
        "bAsIc dXNlcjpwYXNz",
        "postgres://u:hunter2@db",
        "alice@example.com",
        "4111 1111 1111 1111",
        "tasks-done basic plan, see https://example.com",
        "[REDACTED:password]",
        "",
    ]);
    (
        name(),
        sep,
        "[a-zA-Z0-9 .,]{0,12}",
        shaped,
        "[a-z ]{0,10}",
        0..4usize,
    )
        .prop_map(|(n, sep, value, shaped, prose, how)| match how {
            0 => format!("{prose}{n}{sep}{value}"),
            1 => format!("the {n} is {value} {shaped}"),
            2 => format!("{shaped} {prose}"),
            _ => format!("{n}{sep}{shaped}"),
        })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!(1024.5)),
    ]
}

/// A payload of keys named as above, values as above, nested.
fn payload() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec((name(), inner.clone()), 1..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            prop::collection::vec(inner, 1..3).prop_map(Value::Array),
        ]
    })
}

fn rule(name: &str, pattern: Option<&str>, fields: Option<&[&str]>) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        pattern: pattern.map(str::to_string),
        fields: fields.map(|f| f.iter().map(|s| s.to_string()).collect()),
        action: None,
    }
}

/// Configurations with a sieve: the defaults, custom field names (a
/// token the contextual rules make, names with separators inside), custom
/// patterns, the card and e-mail detectors, fields alone.
fn config(which: usize) -> RedactionConfig {
    let mut c = RedactionConfig::default();
    match which {
        0 => {}
        1 => {
            c.rules = vec![
                rule("num", None, Some(&["number"])),
                rule(
                    "custom",
                    None,
                    Some(&["my.key", "ab cd", "x_token_y", "ccv"]),
                ),
            ]
        }
        2 => c.rules = vec![rule("acct", Some(r"acct-[0-9]{4}"), None)],
        3 => {
            c.detectors = vec![
                Detector::Email,
                Detector::PaymentCard,
                Detector::ApiKey,
                Detector::BearerToken,
            ]
        }
        4 => c.detectors = vec![],
        _ => {
            c.fields = vec!["card".into(), "Client-Id".into()];
            c.rules = vec![rule("keyish", Some(r"(?i)key_[0-9]{3}"), None)];
        }
    }
    c
}

const CONFIGS: usize = 6;

/// One redactor per configuration, built once: a build costs milliseconds
/// in a test build.
fn redactors() -> &'static [Redactor] {
    static BUILT: std::sync::OnceLock<Vec<Redactor>> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        (0..CONFIGS)
            .map(|i| Redactor::from_config(&config(i)).expect("compiles"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_one_pass_answers_as_the_full_path(p in payload(), which in 0..CONFIGS) {
        let r = &redactors()[which];
        prop_assert!(r.sieve.is_some());
        let text = serde_json::to_string(&p).expect("serialises");
        if let Some(fast) = r.may_redact_in_one_pass(&text) {
            prop_assert_eq!(fast, r.may_redact_in_full(&text), "{}", text);
        }
    }
}

/// The generator reaches the one pass and both of its answers under each
/// configuration (the differential is not idle).
#[test]
fn the_differential_covers_both_answers() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = payload();
    for (i, r) in redactors().iter().enumerate() {
        let (mut yes, mut no, mut full) = (0, 0, 0);
        for _ in 0..300 {
            let p = strategy.new_tree(&mut runner).expect("a tree").current();
            let text = serde_json::to_string(&p).expect("serialises");
            match r.may_redact_in_one_pass(&text) {
                Some(true) => yes += 1,
                Some(false) => no += 1,
                None => full += 1,
            }
        }
        assert!(
            yes >= 30 && no >= 30,
            "config {i}: {yes} maybe, {no} no, {full} full"
        );
    }
}

/// Keys holding a secret name in the shapes the sieve finds only through
/// its field triggers (no detector literal in them): each is judged, and
/// the one pass says what the full path says.
#[test]
fn field_triggers_are_what_finds_secret_keys() {
    let r = Redactor::from_config(&RedactionConfig::default()).expect("defaults");
    for key in [
        "dbPassword",
        "DB_PWD",
        "a_p_i_k_e_y",
        "X-Auth-Token",
        "pass_word",
        "mot.de.passe",
        "DATABASE_URL",
        "cc/no",
        "clientSecret2",
        "accesstoken_value",
        "Session",
    ] {
        let text = serde_json::to_string(&json!({ "note": "hello", key: "v1" })).expect("json");
        assert_eq!(r.may_redact_in_one_pass(&text), Some(true), "{key}");
        assert!(r.may_redact_in_full(&text), "{key}");
    }
    for name in ["password", "db_pass", "X-Api-Key", "PRIVATE_KEY"] {
        let text = serde_json::to_string(&json!({ "log": format!("export {name}=s3cr3t") }))
            .expect("json");
        assert_eq!(r.may_redact_in_one_pass(&text), Some(true), "{name}");
    }
    // Describing and usage words exempt a key; prose mentions nothing.
    let clean = json!({
        "usage": {"prompt_tokens": 1, "max_tokens": 2, "token_type": "bearer"},
        "account_id": "12345",
        "text": "my password is not here, the token count: 4",
    });
    let text = serde_json::to_string(&clean).expect("json");
    assert_eq!(r.may_redact_in_one_pass(&text), Some(false));
    assert!(!r.may_redact_in_full(&text));
}

#[test]
fn text_the_pass_does_not_read_goes_the_full_path() {
    let r = Redactor::from_config(&RedactionConfig::default()).expect("defaults");
    for text in [
        r#"{"p":"pa%73sword=x"}"#,
        r#"{"p":"pass&#119;ord=x"}"#,
        r#"{"pass\u0077ord":"x"}"#,
        r#"{"args":"{\"password\":\"x\"}"}"#,
        "{\"ｐａｓｓｗｏｒｄ\":\"x\"}",
    ] {
        assert_eq!(r.may_redact_in_one_pass(text), None, "{text}");
        assert!(r.may_redact(text), "{text}");
    }
    // Deeper than MAX_DEPTH: maybe, before the pass.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(too_many_brackets(deep.as_bytes()));
    assert_eq!(r.may_redact_in_one_pass(&deep), Some(true));
}

#[test]
fn the_last_quote_is_found_from_the_end() {
    let texts: [&[u8]; 7] = [
        b"",
        b"\"",
        b"abc",
        b"\"0123456789abcdef",
        b"\x01\x22\x00\xff\x21\x23\x22\x00\x01\x22\x01\x00",
        b"\"aaaaaaaa!!!!!!!!########",
        b"\"\"\"\"\"\"\"\"\"\"",
    ];
    for t in texts {
        for end in 0..=t.len() {
            let plain = t[..end].iter().rposition(|&c| c == b'"');
            assert_eq!(last_quote(&t[..end]), plain, "{t:?} to {end}");
        }
    }
    // Every byte value beside a quote, at every place in a word.
    for v in 0..=255u8 {
        for at in 0..16 {
            let mut t = vec![v; 16];
            t[at] = b'"';
            assert_eq!(
                last_quote(&t),
                t.iter().rposition(|&c| c == b'"'),
                "{v} {at}"
            );
        }
    }
}

#[test]
fn brackets_are_counted_past_a_round() {
    let most = MAX_BRACKETS;
    let deep = |n: usize| "[".repeat(n) + &"x".repeat(300);
    assert!(!too_many_brackets(deep(most).as_bytes()));
    assert!(too_many_brackets(deep(most + 1).as_bytes()));
    assert!(too_many_brackets("{a".repeat(most + 1).as_bytes()));
    assert!(!too_many_brackets("{a".repeat(most).as_bytes()));
    assert!(too_many_brackets("[".repeat(600).as_bytes()));
    // The last bytes after the 32-byte rounds count when they matter.
    for len in most + 1..200 {
        for brackets in [most, most + 1] {
            let s: String = (0..len)
                .map(|i| if i >= len - brackets { '{' } else { 'x' })
                .collect();
            if brackets <= len {
                assert_eq!(
                    too_many_brackets(s.as_bytes()),
                    brackets > most,
                    "{len} {brackets}"
                );
            }
        }
    }
}
