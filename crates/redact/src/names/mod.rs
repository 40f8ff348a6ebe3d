//! Field names matched by their parts.
//!
//! A name is folded (fullwidth letters and the like, see
//! [`crate::normalize`]), split into tokens at every character that is not
//! a letter or digit (`_`, `-`, `.`, space…) and at camelCase and
//! PascalCase boundaries (`refreshToken`, `APIKey`, `XMLHttpRequest`),
//! lower-cased, and each token put in canonical form: plurals and
//! spellings of the secret words (`pwd`, `passwd`, `tokens`, `creds`,
//! `cookies`…) become one word, joined compounds are split (`apikey`,
//! `privatekey`, `sessionid`, and any token that ends in a strong secret
//! word: `dbpassword`, `clientsecret`, `accesstoken`).
//!
//! A configured name matches a key when its canonical tokens occur, in
//! order and adjacent, among the key's. For the built-in secret names
//! (those of [`crate::DEFAULT_FIELDS`]), a key whose other tokens say it
//! describes the secret rather than holding it is not matched:
//! `token_count`, `max_tokens`, `prompt_tokens`, `password_length`,
//! `auth_type`, `client_secret_expires_at`, `secret_name`,
//! `api_key_env`. A key that ends with the configured name once `_` and
//! `-` are removed, the rule before token matching, still matches.

mod filter;
mod triggers;

pub(crate) use filter::KeyFilter;
pub(crate) use triggers::{Spelling, spelled, triggers};

/// Strong secret words split off the end of a longer token
/// (`dbpassword` → `db` `password`).
const SUFFIX_WORDS: [&str; 13] = [
    "passwords",
    "password",
    "passwd",
    "passphrase",
    "secrets",
    "secret",
    "tokens",
    "token",
    "credentials",
    "credential",
    "apikeys",
    "apikey",
    "authorization",
];

/// Raw tokens with a canonical form other than themselves.
const CANONICAL: &[(&str, &[&str])] = &[
    ("password", &["password"]),
    ("passwords", &["password"]),
    ("passwd", &["password"]),
    ("pwd", &["password"]),
    ("pw", &["password"]),
    ("passphrase", &["password"]),
    ("passcode", &["password"]),
    // Misspellings and shortenings seen in configuration and code.
    ("pswd", &["password"]),
    ("psw", &["password"]),
    ("passw", &["password"]),
    ("paswd", &["password"]),
    ("pword", &["password"]),
    ("passwrd", &["password"]),
    ("passwort", &["password"]),
    ("kennwort", &["password"]),
    ("contraseña", &["password"]),
    ("contrasena", &["password"]),
    ("senha", &["password"]),
    ("wachtwoord", &["password"]),
    ("motdepasse", &["password"]),
    ("hasło", &["password"]),
    ("haslo", &["password"]),
    ("пароль", &["password"]),
    ("密码", &["password"]),
    ("密碼", &["password"]),
    ("パスワード", &["password"]),
    ("비밀번호", &["password"]),
    ("tokens", &["token"]),
    ("secrets", &["secret"]),
    ("credentials", &["credential"]),
    ("creds", &["credential"]),
    ("cred", &["credential"]),
    ("cookies", &["cookie"]),
    ("keys", &["key"]),
    ("auth", &["authorization"]),
    ("apikey", &["api", "key"]),
    ("apikeys", &["api", "key"]),
    ("accesskey", &["access", "key"]),
    ("secretkey", &["secret", "key"]),
    ("privatekey", &["private", "key"]),
    ("privkey", &["private", "key"]),
    ("priv", &["private"]),
    ("sessionid", &["session", "id"]),
    ("sid", &["session", "id"]),
    ("sessid", &["session", "id"]),
    ("phpsessid", &["session", "id"]),
    ("jsessionid", &["session", "id"]),
    ("sig", &["signature"]),
    ("pincode", &["pin"]),
    ("databaseurl", &["connection", "string"]),
    ("dburl", &["connection", "string"]),
    ("mongouri", &["connection", "string"]),
    ("mongodburi", &["connection", "string"]),
    ("redisurl", &["connection", "string"]),
    ("jdbcurl", &["connection", "string"]),
    ("sessionkey", &["session", "key"]),
    ("setcookie", &["set", "cookie"]),
    ("cardnumber", &["card", "number"]),
    ("cardno", &["card", "number"]),
    ("cardnum", &["card", "number"]),
    ("ccnumber", &["card", "number"]),
    ("ccnum", &["card", "number"]),
    ("creditcard", &["credit", "card"]),
    ("cvc", &["cvv"]),
    ("cvv2", &["cvv"]),
    ("cvc2", &["cvv"]),
    ("totp", &["otp"]),
    ("hotp", &["otp"]),
    ("connectionstring", &["connection", "string"]),
    ("connstring", &["connection", "string"]),
    ("connstr", &["connection", "string"]),
    ("seedphrase", &["seed", "phrase"]),
    ("codes", &["code"]),
];

/// Runs of raw tokens that are one secret word: a password spelled in
/// words, and connection URLs, which hold their credentials
/// (`postgres://user:password@host`): `DATABASE_URL` is a connection
/// string, `token_url` is not.
const JOINS: &[(&[&str], &[&str])] = &[
    (&["pass", "word"], &["password"]),
    (&["pass", "phrase"], &["password"]),
    (&["mot", "de", "passe"], &["password"]),
    (&["conn", "str"], &["connection", "string"]),
    (&["conn", "string"], &["connection", "string"]),
    (&["database", "url"], &["connection", "string"]),
    (&["database", "uri"], &["connection", "string"]),
    (&["db", "url"], &["connection", "string"]),
    (&["db", "uri"], &["connection", "string"]),
    (&["mongodb", "uri"], &["connection", "string"]),
    (&["mongodb", "url"], &["connection", "string"]),
    (&["mongo", "uri"], &["connection", "string"]),
    (&["mongo", "url"], &["connection", "string"]),
    (&["redis", "url"], &["connection", "string"]),
    (&["redis", "uri"], &["connection", "string"]),
    (&["jdbc", "url"], &["connection", "string"]),
    (&["postgres", "url"], &["connection", "string"]),
    (&["postgresql", "url"], &["connection", "string"]),
    (&["mysql", "url"], &["connection", "string"]),
    (&["amqp", "url"], &["connection", "string"]),
    (&["rabbitmq", "url"], &["connection", "string"]),
];

/// Built-in names that match only as whole tokens at the end of a key
/// (`card_pan`, `user_session`, `x_amz_signature`), never by the suffix
/// rule (`japan`, `obsession`) nor before another word (`pan_zoom`,
/// `session_start`, `signature_version`).
const AT_END: [&str; 3] = ["pan", "session", "signature"];

/// Built-in names never matched by the suffix rule: too short or too
/// common inside other words (`spin`, `japan`).
const TOKEN_ONLY: [&str; 4] = ["pin", "pan", "session", "signature"];

/// Words that a trailing number does not change: `password2`, `token1`.
fn numbered_word(head: &str) -> bool {
    !canonical(head).is_empty()
        || SUFFIX_WORDS.contains(&head)
        || matches!(head, "key" | "pin" | "otp" | "pan" | "cookie" | "session")
}

/// One raw token in canonical form: one or more canonical tokens; empty
/// when the token is its own canonical form.
fn canonical(raw: &str) -> &'static [&'static str] {
    CANONICAL
        .iter()
        .find(|(r, _)| *r == raw)
        .map_or(&[], |(_, c)| c)
}

/// Tokens that, beside a built-in secret name, say the value describes the
/// secret: a kind, a size, a time, a place, a name.
const META: [&str; 34] = [
    "type",
    "types",
    "kind",
    "length",
    "len",
    "size",
    "count",
    "counts",
    "limit",
    "limits",
    "expires",
    "expiry",
    "expiration",
    "expired",
    "ttl",
    "lifetime",
    "at",
    "url",
    "uri",
    "endpoint",
    "policy",
    "required",
    "enabled",
    "name",
    "names",
    "file",
    "path",
    "env",
    "scheme",
    "method",
    "mode",
    "provider",
    "status",
    "strength",
];

/// Tokens that, beside `token`, make it a count of language-model tokens.
const TOKEN_USAGE: [&str; 27] = [
    "max",
    "min",
    "total",
    "num",
    "n",
    "number",
    "prompt",
    "completion",
    "input",
    "output",
    "cached",
    "cache",
    "reasoning",
    "usage",
    "used",
    "remaining",
    "budget",
    "per",
    "rate",
    "audio",
    "text",
    "image",
    "accepted",
    "rejected",
    "prediction",
    "estimated",
    "estimate",
];

/// A name's canonical tokens, built into reusable buffers.
#[derive(Default, Debug)]
pub(crate) struct Tokens {
    /// The tokens' text, back to back.
    text: String,
    /// `(start, end)` of each token in `text`.
    spans: Vec<(usize, usize)>,
    /// The raw tokens were one plural `tokens` alone (a count).
    pub lone_tokens: bool,
    /// Scratch: the name's characters, raw token ranges, one lower-cased
    /// raw token.
    chars: Vec<(usize, char)>,
    raw: Vec<(usize, usize)>,
    lower: String,
}

impl Tokens {
    /// Buffers sized for most names, so splitting rarely allocates.
    pub fn new() -> Tokens {
        Tokens {
            text: String::with_capacity(64),
            spans: Vec::with_capacity(8),
            lone_tokens: false,
            chars: Vec::new(),
            raw: Vec::with_capacity(8),
            lower: String::with_capacity(32),
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn get(&self, i: usize) -> &str {
        self.spans.get(i).map_or("", |&(s, e)| &self.text[s..e])
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans.iter().map(|&(s, e)| &self.text[s..e])
    }

    fn push(&mut self, t: &str) {
        let s = self.text.len();
        self.text.push_str(t);
        self.spans.push((s, self.text.len()));
    }

    /// Canonical tokens of `raw`, one raw lower-case token, with `last`
    /// telling whether it ends the name and `first` whether it starts it.
    fn push_raw(&mut self, raw: &str, first: bool, last: bool) {
        let head = raw.trim_end_matches(|c: char| c.is_ascii_digit());
        if head.len() < raw.len() && !head.is_empty() && numbered_word(head) {
            return self.push_raw(head, first, last);
        }
        let c = canonical(raw);
        if !c.is_empty() {
            for t in c {
                self.push(t);
            }
            return;
        }
        // `db_pass`, `smtp_pass`: a final `pass` after another token is a
        // password; `pass` alone (a test that passed) is not.
        if raw == "pass" && last && !first {
            self.push("password");
            return;
        }
        for w in SUFFIX_WORDS {
            if raw.len() > w.len() && raw.ends_with(w) {
                let head = &raw[..raw.len() - w.len()];
                let hc = canonical(head);
                if hc.is_empty() {
                    self.push(head);
                } else {
                    for t in hc {
                        self.push(t);
                    }
                }
                // `secret`, `token`, `credential` and `authorization` are
                // their own canonical form: `clientsecret` is `client`
                // `secret`, not `client` alone.
                match canonical(w) {
                    [] => self.push(w),
                    c => {
                        for t in c {
                            self.push(t);
                        }
                    }
                }
                return;
            }
        }
        self.push(raw);
    }

    /// Splits `name` into canonical tokens, replacing what was there.
    pub fn split(&mut self, name: &str) {
        self.text.clear();
        self.spans.clear();
        self.lone_tokens = false;
        let folded;
        let name = if name.is_ascii() {
            name
        } else {
            folded = crate::normalize::fold_str(name);
            folded.as_str()
        };
        // Raw tokens as (start, end) byte ranges of `name`.
        let mut raw = std::mem::take(&mut self.raw);
        let mut chars = std::mem::take(&mut self.chars);
        let mut lower = std::mem::take(&mut self.lower);
        raw.clear();
        // Once: asked for each token, it read the whole name each time, and
        // a 1 MiB key of 95,000 tokens took 3.4 s to judge instead of 18 ms.
        let ascii = name.is_ascii();
        if ascii {
            // Offsets are indices: no characters to collect.
            let b = name.as_bytes();
            word_spans(b.len(), |k| (k, char::from(b[k])), name.len(), &mut raw);
        } else {
            chars.clear();
            chars.extend(name.char_indices());
            word_spans(chars.len(), |k| chars[k], name.len(), &mut raw);
        }
        let n = raw.len();
        let mut skip = 0;
        for (k, &(s, e)) in raw.iter().enumerate() {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            lower.clear();
            if ascii {
                lower.push_str(&name[s..e]);
                lower.make_ascii_lowercase();
            } else {
                for c in name[s..e].chars() {
                    lower.extend(c.to_lowercase());
                }
            }
            // `pass_word`, `mot_de_passe`, `DATABASE_URL`: one word.
            if let Some((words, c)) = JOINS.iter().find(|(words, _)| {
                words[0] == lower
                    && words.iter().enumerate().skip(1).all(|(j, w)| {
                        raw.get(k + j)
                            .is_some_and(|&(s2, e2)| name[s2..e2].eq_ignore_ascii_case(w))
                    })
            }) {
                for t in *c {
                    self.push(t);
                }
                skip = words.len() - 1;
                continue;
            }
            // `card_no`, `cc_num`: a card number.
            let prev_card = self
                .spans
                .last()
                .is_some_and(|&(a, b)| &self.text[a..b] == "card");
            if prev_card && matches!(lower.as_str(), "no" | "num" | "nr" | "nbr") {
                self.push("number");
                continue;
            }
            if lower == "cc"
                && let Some(&(s2, e2)) = raw.get(k + 1)
                && matches!(
                    name[s2..e2].to_ascii_lowercase().as_str(),
                    "number" | "num" | "no"
                )
            {
                self.push("card");
                continue;
            }
            if n == 1 && lower == "tokens" {
                self.lone_tokens = true;
            }
            self.push_raw(&lower, k == 0, k + 1 == n);
        }
        self.raw = raw;
        self.chars = chars;
        self.lower = lower;
    }
}

/// One configured field name, compiled.
#[derive(Debug)]
pub(crate) struct FieldName {
    /// Canonical tokens.
    pub tokens: Vec<String>,
    /// Lower case, without `_` and `-`: the suffix rule.
    pub joined: Vec<u8>,
    /// A built-in secret name: describing tokens exempt a key.
    pub builtin: bool,
    /// The name holds `token`: model-usage tokens exempt a key too.
    pub is_token: bool,
    /// Matches only at the end of a key ([`AT_END`]).
    pub at_end: bool,
    /// The suffix rule applies (not for [`TOKEN_ONLY`] names).
    pub suffix: bool,
}

impl FieldName {
    /// `None` when the name has no letter or digit.
    pub fn new(name: &str, builtin_names: &[Vec<String>]) -> Option<FieldName> {
        let joined: Vec<u8> = name
            .to_lowercase()
            .bytes()
            .filter(|b| !matches!(b, b'_' | b'-'))
            .collect();
        let mut t = Tokens::default();
        t.split(name);
        if t.len() == 0 || joined.is_empty() {
            return None;
        }
        let tokens: Vec<String> = t.iter().map(str::to_string).collect();
        let builtin = builtin_names.contains(&tokens);
        let is_token = tokens.iter().any(|s| s == "token");
        let one =
            |list: &[&str]| builtin && tokens.len() == 1 && list.contains(&tokens[0].as_str());
        let at_end = one(&AT_END);
        let suffix = !one(&TOKEN_ONLY);
        Some(FieldName {
            tokens,
            joined,
            builtin,
            is_token,
            at_end,
            suffix,
        })
    }

    /// Whether the key split into `key` matches by its parts (the suffix
    /// rule is [`suffix_matches`] on `joined`).
    pub fn matches_tokens(&self, key: &Tokens) -> bool {
        let n = self.tokens.len();
        if key.len() < n {
            return false;
        }
        let last_at = key.len() - n;
        let mut found =
            (0..=last_at).filter(|&at| (0..n).all(|j| key.get(at + j) == self.tokens[j].as_str()));
        if !self.builtin {
            return found.next().is_some();
        }
        if self.is_token && key.lone_tokens {
            return false;
        }
        // A describing word exempts a key only as its last token:
        // `password_policy` describes a password, `password_policy_value`
        // and `password_file_contents` may hold one.
        let final_token = key.get(key.len() - 1);
        if META.contains(&final_token) && !self.tokens.iter().any(|own| own == final_token) {
            return false;
        }
        found.any(|at| {
            if self.at_end && at != last_at {
                return false;
            }
            // `max_tokens`, `prompt_tokens_details`, `tokens_per_second`:
            // the usage word is right beside `token`.
            let usage = self.is_token
                && (at
                    .checked_sub(1)
                    .is_some_and(|b| TOKEN_USAGE.contains(&key.get(b)))
                    || matches!(key.get(at + n), "per" | "usage"));
            !usage
        })
    }
}

/// Whether `key`, ASCII-lower-cased without `_` and `-`, ends with `name`.
pub(crate) fn suffix_matches(key: &str, name: &[u8]) -> bool {
    let mut want = name.iter().rev();
    let mut next = want.next();
    for &b in key.as_bytes().iter().rev() {
        let Some(&w) = next else { return true };
        if b == b'_' || b == b'-' {
            continue;
        }
        if b.to_ascii_lowercase() != w {
            return false;
        }
        next = want.next();
    }
    next.is_none()
}

/// Pushes the byte spans of a name's words: runs of alphanumerics, split
/// where a lower-case letter meets an upper-case one (`apiKey`) and before
/// the last capital of an acronym that starts a word (`HTTPServer`:
/// `HTTP`, `Server`). `unit(k)` is the `k`th character and its byte
/// offset, `end` the name's length in bytes.
fn word_spans(
    len: usize,
    unit: impl Fn(usize) -> (usize, char),
    end: usize,
    raw: &mut Vec<(usize, usize)>,
) {
    let mut start: Option<usize> = None;
    for k in 0..len {
        let (i, c) = unit(k);
        if !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                raw.push((s, i));
            }
            continue;
        }
        match start {
            Some(s) => {
                let prev = unit(k - 1).1;
                let next = (k + 1 < len).then(|| unit(k + 1).1);
                let boundary = (prev.is_lowercase() && c.is_uppercase())
                    || (prev.is_uppercase()
                        && c.is_uppercase()
                        && next.is_some_and(char::is_lowercase));
                if boundary {
                    raw.push((s, i));
                    start = Some(i);
                }
            }
            None => start = Some(i),
        }
    }
    if let Some(s) = start {
        raw.push((s, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(name: &str) -> Vec<String> {
        let mut t = Tokens::default();
        t.split(name);
        t.iter().map(str::to_string).collect()
    }

    #[test]
    fn splits_and_canonicalises() {
        assert_eq!(
            toks("aws_secret_access_key"),
            ["aws", "secret", "access", "key"]
        );
        assert_eq!(toks("refreshToken"), ["refresh", "token"]);
        assert_eq!(toks("APIKey"), ["api", "key"]);
        assert_eq!(toks("X-Api-Key"), ["x", "api", "key"]);
        assert_eq!(toks("xapikey"), ["x", "api", "key"]);
        assert_eq!(toks("DB_PWD"), ["db", "password"]);
        assert_eq!(toks("dbpassword"), ["db", "password"]);
        assert_eq!(toks("clientsecret"), ["client", "secret"]);
        assert_eq!(toks("accesstoken_value"), ["access", "token", "value"]);
        assert_eq!(toks("dbcredential"), ["db", "credential"]);
        assert_eq!(toks("xauthorization"), ["x", "authorization"]);
        assert_eq!(toks("access.tokens"), ["access", "token"]);
        assert_eq!(toks("client secret"), ["client", "secret"]);
        assert_eq!(toks("ｐａｓｓｗｏｒｄ"), ["password"]);
        assert_eq!(toks("user_pass"), ["user", "password"]);
        assert_eq!(toks("pass"), ["pass"]);
        assert_eq!(toks("pass_word"), ["password"]);
        assert_eq!(toks("card_no"), ["card", "number"]);
        assert_eq!(toks("ccNum"), ["card", "number"]);
        assert_eq!(toks("maxTokens"), ["max", "token"]);
        assert_eq!(toks("tokenizer"), ["tokenizer"]);
        assert_eq!(toks("XMLHttpRequest"), ["xml", "http", "request"]);
    }
}
