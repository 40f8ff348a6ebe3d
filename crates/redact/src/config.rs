//! The `[redaction]` section of `audit.toml`.

use serde::Deserialize;

/// Environment variable read for the `hash` key when `key_env` is not set.
pub const DEFAULT_KEY_ENV: &str = "AUDIT_REDACTION_KEY";

/// Field names redacted when `fields` is not given: the built-in secret
/// names. Each matches keys by their parts (see
/// [`RedactionConfig::fields`]): `password` covers `pwd`, `db_pass`,
/// `newPassword`; `token` covers `access_tokens`, `refresh_token`,
/// `X-Auth-Token` but not `max_tokens` or `prompt_tokens`; `secret` covers
/// `client_secret` and `aws_secret_access_key`.
pub const DEFAULT_FIELDS: [&str; 41] = [
    "api_key",
    "password",
    "authorization",
    "token",
    "secret",
    "credential",
    "private_key",
    "access_key",
    "signing_key",
    "encryption_key",
    "master_key",
    "ssh_key",
    "hmac_key",
    "account_key",
    "subscription_key",
    "session_id",
    "session_key",
    "cookie",
    "bearer",
    "jwt",
    "otp",
    "connection_string",
    "dsn",
    "card_number",
    "credit_card",
    "cvv",
    "ssn",
    "social_security_number",
    "iban",
    "mnemonic",
    "seed_phrase",
    "recovery_code",
    "pin",
    "pan",
    "security_code",
    "mfa_code",
    "verification_code",
    "session",
    "signature",
    "client_assertion",
    "code_verifier",
];

/// Detectors on when `detectors` is not given: the secret-shaped ones.
/// The personal-data detectors (`email`, `payment_card`, `iban`) are opt-in.
pub const DEFAULT_DETECTORS: [Detector; 2] = [Detector::ApiKey, Detector::BearerToken];

/// The `[redaction]` section.
///
/// Every key is optional and falls back to its default on its own, so
/// `[redaction]` with only `action = "hash"` keeps the default fields and
/// detectors; `fields = []` and `detectors = []` turn those off. Without the
/// section at all, use [`RedactionConfig::default`]: the secret-shaped
/// defaults. Unknown keys are an error.
///
/// ```toml
/// [redaction]
/// fields = ["api_key", "password", "authorization", "token", "secret"]  # default: DEFAULT_FIELDS
/// detectors = ["email", "payment_card", "api_key", "bearer_token", "iban"]
/// action = "mask"                  # default action: mask | hash | drop
/// key_env = "AUDIT_REDACTION_KEY"  # key for hash
///
/// [[redaction.rules]]
/// name = "account_id"
/// pattern = "\\b[0-9]{5}\\b"
/// action = "hash"
///
/// [[redaction.rules]]
/// name = "customer"
/// fields = ["customer_name", "address"]
/// action = "drop"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// Field names whose whole value is redacted, at any depth, matched by
    /// their parts: key and name are split into tokens (at `_`, `-`, `.`,
    /// spaces and other non-alphanumerics, and at camelCase boundaries),
    /// lower-cased and put in canonical form (`pwd`/`passwd` → `password`,
    /// `tokens` → `token`, `apikey` → `api` `key`, `clientsecret` →
    /// `client` `secret`…), and the key matches when the name's tokens
    /// occur in it in order: `secret` covers `aws_secret_access_key`,
    /// `api_key` covers `X-API-Key`. A key that, lower-cased without `_`
    /// and `-`, ends with the name also matches (the rule before tokens).
    /// For the built-in names ([`DEFAULT_FIELDS`]) a key whose other tokens
    /// describe the secret is not matched (`token_count`, `max_tokens`,
    /// `prompt_tokens`, `password_length`, `auth_type`, `secret_name`).
    /// The rule name reported is the configured name.
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
    /// Built-in detectors run over every string (and number) value and
    /// every object key.
    #[serde(default = "default_detectors")]
    pub detectors: Vec<Detector>,
    /// Action of `fields` and `detectors`, and of rules without their own.
    #[serde(default)]
    pub action: Action,
    /// Environment variable holding the `hash` key (at least 16 bytes).
    /// Read only when some rule hashes; `AUDIT_REDACTION_KEY` when unset.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Custom rules (`[[redaction.rules]]`), applied before the built-ins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            fields: default_fields(),
            detectors: default_detectors(),
            action: Action::default(),
            key_env: None,
            rules: Vec::new(),
        }
    }
}

impl RedactionConfig {
    /// Nothing at all: no fields, no detectors, no rules. For tests and
    /// benchmarks; a deployment should start from [`RedactionConfig::default`].
    pub fn none() -> Self {
        RedactionConfig {
            fields: Vec::new(),
            detectors: Vec::new(),
            action: Action::Mask,
            key_env: None,
            rules: Vec::new(),
        }
    }

    /// Every built-in detector on, default fields, `mask`.
    pub fn all_detectors() -> Self {
        RedactionConfig {
            detectors: Detector::ALL.to_vec(),
            ..RedactionConfig::default()
        }
    }

    /// The environment variable the `hash` key is read from.
    pub fn key_env(&self) -> &str {
        self.key_env.as_deref().unwrap_or(DEFAULT_KEY_ENV)
    }
}

fn default_fields() -> Vec<String> {
    DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect()
}

fn default_detectors() -> Vec<Detector> {
    DEFAULT_DETECTORS.to_vec()
}

/// A built-in detector; its name is also the rule name it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Detector {
    /// E-mail addresses (Unicode letters allowed).
    Email,
    /// Payment card numbers: 13 to 19 digits, confirmed by the Luhn check;
    /// groups may be joined by single separators of one class: spaces,
    /// tabs or dashes, dots, slashes, underscores, newlines, commas, pipes,
    /// colons, tildes.
    PaymentCard,
    /// API key shapes: `sk-…` (OpenAI, Anthropic), Stripe `sk_live_…`,
    /// AWS `AKIA…`/`ASIA…`, GitHub `ghp_…`/`github_pat_…`, Slack `xox?-…`,
    /// Google `AIza…`, Hugging Face `hf_…`, GitLab `glpat-…`, npm `npm_…`,
    /// PyPI `pypi-…`, Shopify `shpat_…`, DigitalOcean `dop_v1_…`, SendGrid
    /// `SG.….…`, Azure `AccountKey=…`, AWS secret keys after an
    /// `aws_secret…` name, JWTs (`eyJ….eyJ….…`), PEM and PGP private key
    /// blocks, and the password in a URL's userinfo.
    ApiKey,
    /// `Bearer <token>` (any case), token of at least 8 characters, and
    /// `Basic <base64 of user:password>`.
    BearerToken,
    /// IBANs of the countries in the IBAN registry, with their exact
    /// length, single separators between characters allowed (also right
    /// after the country code), confirmed by mod 97.
    Iban,
}

impl Detector {
    /// Every detector.
    pub const ALL: [Detector; 5] = [
        Detector::Email,
        Detector::PaymentCard,
        Detector::ApiKey,
        Detector::BearerToken,
        Detector::Iban,
    ];

    /// The rule name: `email`, `payment_card`, `api_key`, `bearer_token`,
    /// `iban`.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::PaymentCard => "payment_card",
            Detector::ApiKey => "api_key",
            Detector::BearerToken => "bearer_token",
            Detector::Iban => "iban",
        }
    }
}

/// What happens to what a rule matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// A stable pseudonym `hmac:<16 hex>`: HMAC-SHA256 under the key from
    /// `key_env`, so one account id still correlates across records.
    Hash,
    /// Replaced by `[REDACTED:<rule>]`.
    #[default]
    Mask,
    /// Removed: a matched field is removed from its object. A detector or
    /// pattern match inside a string removes the whole value: its object
    /// member is removed, an array element becomes `null`, a matched object
    /// key removes that member.
    Drop,
}

/// One `[[redaction.rules]]` entry: either a `pattern` (a regex searched in
/// every string and number value and every key) or `fields` (names whose
/// whole value is redacted, matched like [`RedactionConfig::fields`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Rule name, reported in `_redacted` and in `[REDACTED:<name>]`:
    /// letters, digits, `_`, `-`, `.`; unique among rules and detectors.
    pub name: String,
    /// A regex in the syntax of the `regex` crate.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Field names, instead of a pattern.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// This rule's action; the section's `action` when absent.
    #[serde(default)]
    pub action: Option<Action>,
}
