//! The pre-check's one pass (issue 15): on ASCII JSON text without a
//! backslash, `%` or `&`, `may_redact` reads the text once and judges only
//! the keys and assignment names that hold a field trigger. These
//! properties put secret field names where that pass must find them, in
//! every disguise a name can wear: any case, camelCase, joined words,
//! plurals and numbers, the canonical spellings (`pwd`, `creds`, `apikey`,
//! `pass_word`, `DATABASE_URL`, `cc/no`), `_`/`-` anywhere (the suffix
//! rule), custom field names, and the spellings that leave the one pass
//! for the full path (full-width letters, zero-width characters, percent
//! and entity encodings, `\u` escapes splitting a name, JSON text nested
//! in strings). Every configuration here has the one pass (no `iban`).
//! The promise: when `may_redact` says no, `redact` changes nothing.

use agent_audit_redact::{Detector, RedactionConfig, Redactor};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

mod common;
use common::{escaped_json, rule};

/// Words of secret names and of names that only look like them.
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
    "mot",
    "de",
    "passe",
    "token",
    "tokens",
    "secret",
    "secrets",
    "credential",
    "creds",
    "cred",
    "cookie",
    "cookies",
    "setcookie",
    "key",
    "keys",
    "api",
    "apikey",
    "access",
    "accesskey",
    "private",
    "privkey",
    "priv",
    "session",
    "sessionid",
    "sid",
    "phpsessid",
    "sig",
    "signature",
    "pin",
    "pan",
    "card",
    "cardno",
    "cc",
    "number",
    "num",
    "no",
    "credit",
    "creditcard",
    "cvv",
    "cvc",
    "otp",
    "totp",
    "connection",
    "string",
    "connstr",
    "conn",
    "database",
    "url",
    "db",
    "mongo",
    "redis",
    "seed",
    "phrase",
    "mnemonic",
    "recovery",
    "code",
    "mfa",
    "verification",
    "verifier",
    "client",
    "assertion",
    "iban",
    "ssn",
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
    "env",
    "max",
    "prompt",
    "completion",
    "total",
    "usage",
    "id",
    "user",
    "text",
    "value",
    "x",
];

/// A name of one to four words, each in some case, joined by a separator
/// or by nothing (camelCase when cased so), maybe plural, maybe numbered.
fn name() -> impl Strategy<Value = String> {
    let word =
        (prop::sample::select(WORDS), 0..4usize, any::<u64>()).prop_map(|(w, case, bits)| {
            w.chars()
                .enumerate()
                .map(|(i, c)| match case {
                    1 => c.to_ascii_uppercase(),
                    2 if i == 0 => c.to_ascii_uppercase(),
                    3 if bits >> (i % 64) & 1 == 1 => c.to_ascii_uppercase(),
                    _ => c,
                })
                .collect::<String>()
        });
    let sep = prop::sample::select(vec!["", "", "_", "-", ".", " ", "__", "_-", "/", ":"]);
    (
        prop::collection::vec((word, sep), 1..5),
        prop::sample::select(vec!["", "", "s", "2", "_1"]),
    )
        .prop_map(|(parts, end)| {
            let mut out: String = parts.into_iter().map(|(w, s)| format!("{w}{s}")).collect();
            out.push_str(end);
            out
        })
}

/// The name as the walk still reads it: as written, full-width, with a
/// zero-width space or a combining mark inside, a letter percent- or
/// entity-encoded, `_` between every letter (the suffix rule).
fn disguised(n: String) -> impl Strategy<Value = String> {
    (0..8usize, any::<u64>()).prop_map(move |(how, bits)| {
        let pick = |i: usize| bits >> (i % 64) & 1 == 1;
        n.chars()
            .enumerate()
            .map(|(i, c)| match how {
                1 if c.is_ascii_graphic() && pick(i) => {
                    char::from_u32(u32::from(c) - 0x21 + 0xFF01)
                        .map(String::from)
                        .unwrap_or_default()
                }
                2 if i > 0 && pick(i) => format!("\u{200B}{c}"),
                3 if c.is_ascii_lowercase() && pick(i) => format!("%{:02X}", u32::from(c)),
                4 if c.is_ascii_lowercase() && pick(i) => format!("&#{};", u32::from(c)),
                5 if c.is_ascii_alphanumeric() && pick(i) => format!("{c}\u{0301}"),
                6 if i > 0 => format!("_{c}"),
                _ => c.to_string(),
            })
            .collect()
    })
}

/// Where a name goes: an object key (value a string, a number or an
/// object), the name of an assignment in a string in every shape text
/// writes one, prose, or any of these in JSON text nested in a string.
fn placed(n: String) -> impl Strategy<Value = Value> {
    let sep = prop::sample::select(vec!["=", ": ", ":", " = ", "\t:\t", "='", "': '", "=\""]);
    (
        0..5usize,
        sep,
        "[a-zA-Z0-9 ]{1,10}",
        "[a-z ]{0,8}",
        0..3usize,
    )
        .prop_map(move |(place, sep, value, prose, nest)| {
            let mut v = match place {
                0 => json!({ n.clone(): value }),
                1 => json!({ n.clone(): 42, "n": [1, {"m": n.clone()}] }),
                2 => json!({ "log": format!("{prose}{n}{sep}{value}") }),
                3 => json!({ "note": format!("about the {n} {prose}") }),
                _ => json!({ n.clone(): { "inner": value } }),
            };
            for _ in 0..nest {
                v = json!({ "arguments": serde_json::to_string(&v).unwrap_or_default() });
            }
            json!({ "tool": "t", "call": v })
        })
}

/// Configurations with the one pass: the defaults, custom field names
/// (one the contextual rules make, one with a one-letter token, names
/// with `.` and a space inside), custom patterns, other detectors, fields
/// alone, custom fields alone.
fn configs() -> &'static [Redactor] {
    static BUILT: std::sync::OnceLock<Vec<Redactor>> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let mut out = Vec::new();
        let mut push = |c: RedactionConfig| out.push(Redactor::from_config(&c).unwrap());
        push(RedactionConfig::default());
        push(RedactionConfig {
            rules: vec![
                rule("num", None, Some(&["number"]), None),
                rule(
                    "mine",
                    None,
                    Some(&["x_api_key", "my.key", "ab cd", "ccv"]),
                    None,
                ),
            ],
            ..RedactionConfig::default()
        });
        push(RedactionConfig {
            rules: vec![rule("acct", Some(r"acct-[0-9]{4}"), None, None)],
            ..RedactionConfig::default()
        });
        push(RedactionConfig {
            detectors: vec![
                Detector::Email,
                Detector::PaymentCard,
                Detector::BearerToken,
            ],
            ..RedactionConfig::default()
        });
        push(RedactionConfig {
            detectors: vec![],
            ..RedactionConfig::default()
        });
        push(RedactionConfig {
            fields: vec![],
            detectors: vec![],
            rules: vec![rule(
                "own",
                None,
                Some(&["Client-Id", "card", "session"]),
                None,
            )],
            ..RedactionConfig::default()
        });
        out
    })
}

fn assert_promise_kept(r: &Redactor, payload: &Value, bits: u64) -> Result<(), TestCaseError> {
    let mut p = payload.clone();
    let fired = r.redact(&mut p);
    if !fired.is_empty() || &p != payload {
        let compact = serde_json::to_string(payload).unwrap();
        prop_assert!(r.may_redact(&compact), "leak: {fired:?} fire in {compact}");
        let escaped = escaped_json(payload, bits);
        prop_assert_eq!(&serde_json::from_str::<Value>(&escaped).unwrap(), payload);
        prop_assert!(r.may_redact(&escaped), "leak: {fired:?} fire in {escaped}");
    }
    Ok(())
}

fn case() -> impl Strategy<Value = (Value, usize, u64)> {
    (
        name().prop_flat_map(disguised).prop_flat_map(placed),
        0..6usize,
        any::<u64>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Names in every disguise, in keys, assignments, prose and nested
    /// JSON text, under each configuration with the one pass.
    #[test]
    fn one_pass_keeps_the_promise_for_names((payload, which, bits) in case()) {
        assert_promise_kept(&configs()[which], &payload, bits)?;
    }

    /// Several names in one payload beside clean keys: a clean key before
    /// or after must not hide a secret one.
    #[test]
    fn one_pass_keeps_the_promise_among_other_keys(
        names in prop::collection::vec(name().prop_flat_map(disguised), 1..5),
        which in 0..6usize,
        bits in any::<u64>(),
    ) {
        let mut m = Map::new();
        m.insert("content".into(), json!("What is the balance of my account 12345?"));
        for (i, n) in names.iter().enumerate() {
            m.insert(n.clone(), json!(format!("v{i}")));
            m.insert(format!("note{i}"), json!(format!("{n}=hunter{i} and more")));
        }
        m.insert("usage".into(), json!({"prompt_tokens": 1, "total_tokens": 2}));
        assert_promise_kept(&configs()[which], &Value::Object(m), bits)?;
    }
}

/// The generators are not idle: under the defaults a good share of the
/// generated payloads make a field rule fire, and a good share do not.
#[test]
fn name_cases_fire_and_stay_clean() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let r = &configs()[0];
    let (mut fired, mut total) = (0, 0);
    for _ in 0..400 {
        let (payload, _, _) = strategy.new_tree(&mut runner).unwrap().current();
        let mut p = payload.clone();
        total += 1;
        if !r.redact(&mut p).is_empty() {
            fired += 1;
        }
    }
    assert!(
        fired * 4 >= total && fired * 4 <= total * 3,
        "{fired} of {total} fire"
    );
}

/// The shapes by hand, each firing under the defaults and passed by the
/// pre-check, and clean look-alikes the pre-check clears.
#[test]
fn one_pass_by_hand() {
    let r = Redactor::from_config(&RedactionConfig::default()).unwrap();
    for payload in [
        json!({"dbPassword": "x"}),
        json!({"a_p_i_k_e_y": "x"}),
        json!({"X-AUTH-TOKEN": "x"}),
        json!({"mot.de.passe": "x"}),
        json!({"DATABASE_URL": "postgres://h/db"}),
        json!({"cc/no": "4111"}),
        json!({"creds2": "x"}),
        json!({"accesstoken_value": "x"}),
        json!({"my key password": "x"}),
        json!({"log": "export OPENAI_API_KEY=abc123"}),
        json!({"log": "db_pass: hunter2"}),
        json!({"log": "login with PWD='hunter2'"}),
        json!({"log": "note: Authorization = Basic dXNlcjpwYXNz"}),
    ] {
        let text = serde_json::to_string(&payload).unwrap();
        assert!(r.may_redact(&text), "{text}");
        assert!(!r.redact(&mut payload.clone()).is_empty(), "{text}");
    }
    for payload in [
        json!({"account_id": "12345", "usage": {"prompt_tokens": 112, "total_tokens": 130}}),
        json!({"token_type": "bearer", "password_policy": "strong", "secret_name": "prod"}),
        json!({"text": "the password policy is strict", "max_tokens": 512}),
        json!({"text": "pass the token along", "tool": "get_account_balance"}),
    ] {
        let text = serde_json::to_string(&payload).unwrap();
        assert!(!r.may_redact(&text), "{text}");
        assert!(r.redact(&mut payload.clone()).is_empty(), "{text}");
    }
}
