//! Each detector, field names, actions and configuration errors, through
//! the public API.

use std::ffi::OsString;

use agent_audit_redact::{Action, Detector, RedactError, RedactionConfig, Redactor, RuleConfig};
use serde_json::{Value, json};

mod common;
use common::rule;

const KEY: &str = "0123456789abcdef-test-key";

fn env(name: &str) -> Option<OsString> {
    (name == "AUDIT_REDACTION_KEY").then(|| OsString::from(KEY))
}

fn only(detector: Detector, action: Action) -> Redactor {
    let config = RedactionConfig {
        fields: vec![],
        detectors: vec![detector],
        action,
        ..RedactionConfig::none()
    };
    Redactor::from_config_with_env(&config, env).unwrap()
}

/// Redacts `{"v": text}` and returns the new `v` and the fired rules.
fn run(r: &Redactor, text: &str) -> (Value, Vec<String>) {
    let mut p = json!({ "v": text });
    let fired = r.redact(&mut p);
    (p.get("v").cloned().unwrap_or(Value::Null), fired)
}

fn masked(r: &Redactor, text: &str) -> String {
    run(r, text).0.as_str().unwrap().to_string()
}

#[test]
fn email() {
    let r = only(Detector::Email, Action::Mask);
    assert_eq!(
        masked(&r, "write to alice.smith+tag@example.co.uk now"),
        "write to [REDACTED:email] now"
    );
    assert_eq!(masked(&r, "jörg@müller.de"), "[REDACTED:email]");
    assert_eq!(
        masked(&r, "a@b.io, c@d.org"),
        "[REDACTED:email], [REDACTED:email]"
    );
    // Not e-mail addresses.
    for text in [
        "user at example dot com",
        "@handle",
        "foo@bar",
        "price: 5 @ 3.50",
        "a@b.c",
    ] {
        let (v, fired) = run(&r, text);
        assert_eq!(v, text, "{text}");
        assert!(fired.is_empty());
    }
}

#[test]
fn payment_card() {
    let r = only(Detector::PaymentCard, Action::Mask);
    assert_eq!(
        masked(&r, "card 4111 1111 1111 1111 exp 12/29"),
        "card [REDACTED:payment_card] exp 12/29"
    );
    assert_eq!(masked(&r, "5500-0000-0000-0004"), "[REDACTED:payment_card]");
    assert_eq!(
        masked(&r, "amex 378282246310005."),
        "amex [REDACTED:payment_card]."
    );
    // A number value holding a card is redacted too.
    let mut p = json!({"card": 4111111111111111u64});
    assert_eq!(r.redact(&mut p), ["payment_card"]);
    assert_eq!(p["card"], "[REDACTED:payment_card]");
    // Non-Luhn numbers, short numbers, long ids, phone numbers stay.
    for text in [
        "4111 1111 1111 1112",
        "order 1234567890123456",
        "call +49 30 1234 5678",
        "id 98765432109876543210987",
        "12345",
    ] {
        let (v, fired) = run(&r, text);
        assert_eq!(v, text, "{text}");
        assert!(fired.is_empty(), "{text}");
    }
}

#[test]
fn api_key_shapes() {
    let r = only(Detector::ApiKey, Action::Mask);
    for key in [
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
        "xoxb-1234567890-abcdefghijkl",
        "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
        "glpat-abcdefghij0123456789",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ] {
        assert_eq!(
            masked(&r, &format!("key={key};")),
            "key=[REDACTED:api_key];",
            "{key}"
        );
    }
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----";
    assert_eq!(masked(&r, &format!("x {pem} y")), "x [REDACTED:api_key] y");
    // A key cut off before its END line is hidden to the end.
    assert_eq!(
        masked(&r, "-----BEGIN PRIVATE KEY-----\nMIIE"),
        "[REDACTED:api_key]"
    );
    for text in [
        "task-management-system-overview",
        "sk-short",
        "AKIA is a prefix",
        "the ghp_ prefix",
        "risk-assessment-of-the-portfolio-in-q3",
    ] {
        let (v, fired) = run(&r, text);
        assert_eq!(v, text, "{text}");
        assert!(fired.is_empty(), "{text}");
    }
}

#[test]
fn api_key_after_an_underscore() {
    let r = only(Detector::ApiKey, Action::Mask);
    assert_eq!(
        masked(&r, "call_sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z done"),
        "call[REDACTED:api_key] done"
    );
    assert_eq!(
        masked(&r, "id=x__sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
        "id=x_[REDACTED:api_key]"
    );
    for text in [
        "task-management-system-overview-and-more",
        "my_task-management-system-overview-and-more",
        "risk_assessment-of-the-portfolio-in-q3",
        "whisk-the-eggs-for-twenty-minutes-or-so",
    ] {
        let (v, fired) = run(&r, text);
        assert_eq!(v, text, "{text}");
        assert!(fired.is_empty(), "{text}");
    }
}

#[test]
fn bearer_token() {
    let r = only(Detector::BearerToken, Action::Mask);
    assert_eq!(
        masked(&r, "Authorization: Bearer abc.DEF-123_456~xyz=="),
        "Authorization: [REDACTED:bearer_token]"
    );
    assert_eq!(
        masked(&r, "bearer   abcdefgh12345678"),
        "[REDACTED:bearer_token]"
    );
    for text in ["the bearer of bad news", "Bearer short"] {
        let (v, fired) = run(&r, text);
        assert_eq!(v, text, "{text}");
        assert!(fired.is_empty(), "{text}");
    }
}

#[test]
fn iban() {
    let r = only(Detector::Iban, Action::Mask);
    assert_eq!(
        masked(&r, "pay to DE89 3704 0044 0532 0130 00 today"),
        "pay to [REDACTED:iban] today"
    );
    assert_eq!(masked(&r, "GB82WEST12345698765432"), "[REDACTED:iban]");
    for text in [
        "DE89 3704 0044 0532 0130 01",
        "ZZ89370400440532013000",
        "ISO AB12 standard",
    ] {
        let (v, fired) = run(&r, text);
        assert_eq!(v, text, "{text}");
        assert!(fired.is_empty(), "{text}");
    }
}

#[test]
fn default_config_redacts_secret_fields_and_shapes_but_not_personal_data() {
    let r = Redactor::from_config(&RedactionConfig::default()).unwrap();
    let mut p = json!({
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "X-Request-Id": "r-1"},
        "db": [{"Password": "hunter2", "user": "app"}],
        "oauth": {"access_token": "abc", "refreshToken": {"v": 1}, "max_tokens": 512},
        "note": "use sk-abcdefghijklmnopqrstuvwxyz0123 with Bearer abcdefgh12345678",
        "contact": "alice@example.com",
        "card": "4111 1111 1111 1111",
        "nothing": null,
        "token": null,
    });
    let fired = r.redact(&mut p);
    assert_eq!(
        fired,
        [
            "password",
            "authorization",
            "token",
            "api_key",
            "bearer_token"
        ]
    );
    assert_eq!(p["headers"]["Authorization"], "[REDACTED:authorization]");
    assert_eq!(p["headers"]["X-Request-Id"], "r-1");
    assert_eq!(p["db"][0]["Password"], "[REDACTED:password]");
    assert_eq!(p["db"][0]["user"], "app");
    assert_eq!(p["oauth"]["access_token"], "[REDACTED:token]");
    assert_eq!(p["oauth"]["refreshToken"], "[REDACTED:token]");
    assert_eq!(p["oauth"]["max_tokens"], 512);
    assert_eq!(
        p["note"],
        "use [REDACTED:api_key] with [REDACTED:bearer_token]"
    );
    // Personal-data detectors are opt-in.
    assert_eq!(p["contact"], "alice@example.com");
    assert_eq!(p["card"], "4111 1111 1111 1111");
    // A null secret stays null: nothing to hide.
    assert_eq!(p["token"], Value::Null);
}

#[test]
fn hash_gives_stable_distinct_pseudonyms_and_normalises() {
    let r = only(Detector::PaymentCard, Action::Hash);
    let a = masked(&r, "4111 1111 1111 1111");
    let b = masked(&r, "4111-1111-1111-1111");
    let c = masked(&r, "5500 0000 0000 0004");
    assert!(a.starts_with("hmac:") && a.len() == 21, "{a}");
    assert!(a[5..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a, b, "one card written two ways is one pseudonym");
    assert_ne!(a, c);
    // Another key, another pseudonym.
    let other = Redactor::from_config_with_env(
        &RedactionConfig {
            fields: vec![],
            detectors: vec![Detector::PaymentCard],
            action: Action::Hash,
            ..RedactionConfig::none()
        },
        |_| Some(OsString::from("another-key-of-16-bytes")),
    )
    .unwrap();
    assert_ne!(masked(&other, "4111 1111 1111 1111"), a);
}

fn with_rules(rules: Vec<RuleConfig>) -> Result<Redactor, RedactError> {
    Redactor::from_config_with_env(
        &RedactionConfig {
            rules,
            ..RedactionConfig::none()
        },
        env,
    )
}

#[test]
fn custom_pattern_with_hash_and_field_rule_with_drop() {
    let r = with_rules(vec![
        rule(
            "account_id",
            Some(r"\b[0-9]{5}\b"),
            None,
            Some(Action::Hash),
        ),
        rule(
            "customer",
            None,
            Some(&["customer_name", "address"]),
            Some(Action::Drop),
        ),
    ])
    .unwrap();
    let mut p = json!({
        "arguments": {"account_id": "12345", "customer_name": "Alice", "Address": {"city": "Berlin"}},
        "text": "balance of 12345 and 12345 and 67890",
        "n": 12345,
    });
    let fired = r.redact(&mut p);
    assert_eq!(fired, ["account_id", "customer"]);
    let pseudo = p["arguments"]["account_id"].as_str().unwrap().to_string();
    assert!(pseudo.starts_with("hmac:"));
    assert_eq!(
        p["n"],
        Value::String(pseudo.clone()),
        "a number is scanned as its text"
    );
    let text = p["text"].as_str().unwrap();
    assert_eq!(text.matches(&pseudo).count(), 2, "{text}");
    assert!(!text.contains("12345") && !text.contains("67890"));
    assert_eq!(p["arguments"].as_object().unwrap().len(), 1, "{p}");
}

#[test]
fn drop_of_a_match_in_a_string_removes_the_whole_value() {
    let r = only(Detector::Email, Action::Drop);
    let mut p = json!({
        "to": "mail alice@example.com please",
        "cc": ["bob@example.org", "team"],
        "alice@example.com": 1,
        "keep": "nothing here",
    });
    assert_eq!(r.redact(&mut p), ["email"]);
    assert_eq!(p, json!({"cc": [null, "team"], "keep": "nothing here"}));
}

#[test]
fn keys_are_scanned_and_overlaps_take_the_strongest_action() {
    let r = only(Detector::Email, Action::Mask);
    let mut p = json!({"alice@example.com": {"role": "admin"}, "bob@example.com": 2});
    r.redact(&mut p);
    let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["[REDACTED:email]", "[REDACTED:email]#2"]);

    let r = Redactor::from_config_with_env(
        &RedactionConfig {
            detectors: vec![Detector::Email],
            action: Action::Hash,
            rules: vec![rule(
                "example_domain",
                Some(r"example\.com\b"),
                None,
                Some(Action::Mask),
            )],
            ..RedactionConfig::none()
        },
        env,
    )
    .unwrap();
    let mut p = json!({"v": "x alice@example.com y"});
    assert_eq!(r.redact(&mut p), ["example_domain", "email"]);
    assert_eq!(p["v"], "x [REDACTED:email] y");
}

#[test]
fn too_deep_is_masked_whole() {
    let r = Redactor::from_config(&RedactionConfig::default()).unwrap();
    let mut v = json!("secret at the bottom");
    for _ in 0..200 {
        v = json!({ "n": v });
    }
    let mut p = json!({ "deep": v });
    let fired = r.redact(&mut p);
    assert_eq!(fired, ["unscannable"]);
    assert!(!p.to_string().contains("secret at the bottom"));
}

#[test]
fn configuration_errors_name_the_rule_or_variable() {
    let e = with_rules(vec![rule("broken", Some("(unclosed"), None, None)]).unwrap_err();
    assert!(
        matches!(&e, RedactError::BadPattern { rule, .. } if rule == "broken"),
        "{e}"
    );
    assert!(e.to_string().contains("`broken`"), "{e}");

    let e = with_rules(vec![rule("both", Some("x"), Some(&["f"]), None)]).unwrap_err();
    assert!(
        matches!(&e, RedactError::RuleShape { rule, .. } if rule == "both"),
        "{e}"
    );
    let e = with_rules(vec![rule("neither", None, None, None)]).unwrap_err();
    assert!(matches!(&e, RedactError::RuleShape { .. }), "{e}");
    let e = with_rules(vec![rule("email", Some("x"), None, None)]).unwrap_err();
    assert!(matches!(&e, RedactError::BadName { .. }), "{e}");
    let e = with_rules(vec![rule("a]b", Some("x"), None, None)]).unwrap_err();
    assert!(matches!(&e, RedactError::BadName { .. }), "{e}");

    let config = RedactionConfig {
        key_env: Some("MY_REDACTION_KEY".into()),
        rules: vec![rule(
            "account_id",
            Some("[0-9]{5}"),
            None,
            Some(Action::Hash),
        )],
        ..RedactionConfig::default()
    };
    let e = Redactor::from_config_with_env(&config, |_| None).unwrap_err();
    assert!(
        matches!(&e, RedactError::MissingKey { var, rules } if var == "MY_REDACTION_KEY" && rules == &["account_id"])
    );
    assert!(e.to_string().contains("MY_REDACTION_KEY"), "{e}");
    let e = Redactor::from_config_with_env(&config, |_| Some("short".into())).unwrap_err();
    assert!(matches!(e, RedactError::KeyTooShort { len: 5, .. }), "{e}");
    // The real environment: the variable is not set in the test process.
    let e = Redactor::from_config(&RedactionConfig {
        key_env: Some("AGENT_AUDIT_TEST_UNSET_VARIABLE".into()),
        action: Action::Hash,
        ..RedactionConfig::default()
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("AGENT_AUDIT_TEST_UNSET_VARIABLE"),
        "{e}"
    );
}

#[test]
fn toml_keys_of_issue_5_and_defaults() {
    let c: RedactionConfig = toml::from_str(
        r#"
        fields = ["api_key", "password", "authorization", "token", "secret"]
        detectors = ["email", "payment_card", "api_key", "bearer_token", "iban"]
        action = "mask"
        key_env = "AUDIT_REDACTION_KEY"

        [[rules]]
        name = "account_id"
        pattern = "\\b[0-9]{5}\\b"
        action = "hash"

        [[rules]]
        name = "customer"
        fields = ["customer_name"]
        "#,
    )
    .unwrap();
    assert_eq!(c.detectors, Detector::ALL);
    assert_eq!(c.rules[0].action, Some(Action::Hash));
    assert_eq!(c.rules[1].action, None);
    Redactor::from_config_with_env(&c, env).unwrap();

    // Keys left out take their defaults one by one.
    let c: RedactionConfig = toml::from_str(r#"action = "drop""#).unwrap();
    assert_eq!(c.fields, RedactionConfig::default().fields);
    assert_eq!(c.detectors, [Detector::ApiKey, Detector::BearerToken]);
    assert_eq!(c.action, Action::Drop);
    assert_eq!(c.key_env(), "AUDIT_REDACTION_KEY");
    // Turning everything off is explicit.
    let c: RedactionConfig = toml::from_str("fields = []\ndetectors = []").unwrap();
    assert!(Redactor::from_config(&c).unwrap().is_empty());

    for bad in [
        "detector = [\"email\"]",
        "detectors = [\"phone\"]",
        "action = \"encrypt\"",
        "[[rules]]\nname = \"x\"\npattern = \"y\"\nreplace = \"z\"",
    ] {
        let e = toml::from_str::<RedactionConfig>(bad)
            .unwrap_err()
            .to_string();
        let word = ["detector", "phone", "encrypt", "replace"]
            .into_iter()
            .find(|w| bad.contains(w))
            .unwrap();
        assert!(e.contains(word), "{bad}: {e}");
    }
}

#[test]
fn may_redact_rules_out_clean_text_and_never_a_firing_one() {
    let r = Redactor::from_config(&RedactionConfig::all_detectors()).unwrap();
    let clean = json!({"tool": "get_account_balance", "arguments": {"account_id": "12345"}, "tokens": 12, "text": "line\none \"quoted\""});
    assert!(!r.may_redact(&clean.to_string()));
    for firing in [
        json!({"Client-Secret": 1}),
        json!({"a": "x\tBearer abcdefgh12345678"}),
        json!({"a": "\"alice@example.com\""}),
        json!({"n": 4111111111111111u64}),
        json!({"alice@example.com": true}),
    ] {
        let text = firing.to_string();
        assert!(r.may_redact(&text), "{text}");
        assert!(!r.redact(&mut firing.clone()).is_empty(), "{text}");
    }
    // Deeper than MAX_DEPTH: it cannot tell from the text, so it says maybe.
    let mut deep = json!(1);
    for _ in 0..=agent_audit_redact::MAX_DEPTH {
        deep = json!([deep]);
    }
    assert!(r.may_redact(&json!({ "d": deep }).to_string()));
    // An anchored custom pattern matches a whole string, never inside the
    // JSON text, so every payload is a maybe.
    let anchored = with_rules(vec![rule("whole", Some("^[0-9]{5}$"), None, None)]).unwrap();
    assert!(anchored.may_redact(r#"{"a":"nothing"}"#));
    let mut p = json!({"a": "12345"});
    assert_eq!(anchored.redact(&mut p), ["whole"]);
    // Nothing configured: nothing to do.
    let none = Redactor::from_config(&RedactionConfig::none()).unwrap();
    assert!(!none.may_redact(r#"{"password":"x"}"#));
}

/// The scheme's name is case-insensitive (RFC 9110): `bAsIc` credentials
/// are as secret as `Basic` ones. The scanner looked for `asic` and `ASIC`
/// only, so mixed case went through whole (issue 15 attack, left alone
/// then as a detector gap).
#[test]
fn basic_credentials_in_any_case_are_redacted() {
    let r = Redactor::from_config(&RedactionConfig::default()).unwrap();
    for scheme in ["Basic", "basic", "BASIC", "bAsIc", "BaSiC", "basiC"] {
        // No `Authorization:` name in front: the scheme alone says it.
        let text = format!("replay with {scheme} dXNlcjpwYXNz against https://h");
        let mut p = json!({ "command": text });
        let payload = serde_json::to_string(&p).unwrap();
        assert!(
            r.may_redact(&payload),
            "{scheme}: the pre-check let it through"
        );
        let fired = r.redact(&mut p);
        assert_eq!(fired, ["bearer_token"], "{scheme}");
        let out = p["command"].as_str().unwrap();
        assert!(!out.contains("dXNlcjpwYXNz"), "{scheme}: {out}");
    }
    // Prose stays.
    let mut p = json!({ "note": "Basic settings: see BASICS.md" });
    assert!(r.redact(&mut p).is_empty());
}

/// A secret word joined to the word before it and followed by another
/// (`accesstoken_value`): the splitter dropped `token`, `secret`,
/// `credential` and `authorization` (their own canonical form) when it
/// split them off, so such keys went through whole unless they ended with
/// the word (the suffix rule).
#[test]
fn joined_secret_words_before_another_word_are_redacted() {
    let r = Redactor::from_config(&RedactionConfig::default()).unwrap();
    let mut p = json!({
        "accesstoken_value": "a1",
        "clientsecret_hash": "c1",
        "dbcredential_blob": "d1",
        "xauthorization_header": "x1",
        "accesstoken_expires_at": 3600,
        "clientsecret_name": "prod",
    });
    let payload = serde_json::to_string(&p).unwrap();
    assert!(r.may_redact(&payload));
    let fired = r.redact(&mut p);
    assert_eq!(fired, ["authorization", "token", "secret", "credential"]);
    for k in [
        "accesstoken_value",
        "clientsecret_hash",
        "dbcredential_blob",
        "xauthorization_header",
    ] {
        assert!(p[k].as_str().unwrap().starts_with("[REDACTED:"), "{k}");
    }
    // Describing words still exempt them.
    assert_eq!(p["accesstoken_expires_at"], 3600);
    assert_eq!(p["clientsecret_name"], "prod");
}

/// `cc` before `no`, `num` or `number` is a card number whatever lies
/// between (`cc/no`, `cc:num`, `CC+Number`): the key filter knew only
/// `_`, `-`, `.` and a space there, so other separators went unsplit and
/// through whole.
#[test]
fn cc_numbers_under_any_separator_are_card_numbers() {
    let r = Redactor::from_config(&RedactionConfig::default()).unwrap();
    for key in ["cc_no", "cc/no", "cc:num", "CC+Number", "cc#no", "ccNum"] {
        let mut p = json!({ key: "4111 1111 1111 1111" });
        let payload = serde_json::to_string(&p).unwrap();
        assert!(r.may_redact(&payload), "{key}");
        assert_eq!(r.redact(&mut p), ["card_number"], "{key}");
    }
    // Not a card: `cc` alone, or before another word.
    let mut p = json!({"cc": "alice@example.com", "cc/list": "x", "accent": 1});
    assert!(r.redact(&mut p).is_empty());
}
