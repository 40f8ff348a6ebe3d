//! Database URLs: which engine, and the password kept out of everything
//! shown (errors, notices, logs, `Debug`).

use std::fmt;

/// The database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file (`sqlite://path`, `sqlite:path`).
    Sqlite,
    /// A PostgreSQL server (`postgres://…`, `postgresql://…`).
    Postgres,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        })
    }
}

/// Why a URL cannot be used. Never quotes the URL's password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Neither `sqlite:` nor `postgres://`/`postgresql://`.
    #[error(
        "`{shown}` is not a database URL this sink knows: use sqlite://PATH or postgres://USER@HOST:PORT/DB"
    )]
    UnknownScheme {
        /// The URL with any password masked.
        shown: String,
    },
    /// A SQLite URL without a file (`sqlite://`), or an in-memory one,
    /// which would keep nothing.
    #[error(
        "`{shown}` names no database file: use sqlite://PATH (an in-memory database keeps no trail)"
    )]
    NoFile {
        /// The URL as given.
        shown: String,
    },
}

/// A database URL whose password, if any, is never shown.
///
/// `Display` and `Debug` give the masked form
/// (`postgres://audit:***@db:5432/trail`); [`SqlUrl::scrub`] masks the
/// password in any text (a driver's error message) before it is shown.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlUrl {
    engine: Engine,
    raw: String,
    shown: String,
    /// The password as written and percent-decoded, for [`SqlUrl::scrub`].
    secrets: Vec<String>,
}

impl fmt::Debug for SqlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SqlUrl").field(&self.shown).finish()
    }
}

impl fmt::Display for SqlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl SqlUrl {
    /// Parses a URL; the error shows it masked.
    pub fn parse(url: &str) -> Result<SqlUrl, UrlError> {
        let url = url.trim();
        let (shown, secrets) = mask(url);
        let lower = url.to_ascii_lowercase();
        let engine = if lower.starts_with("sqlite:") {
            Engine::Sqlite
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(UrlError::UnknownScheme { shown });
        };
        let parsed = SqlUrl {
            engine,
            raw: url.to_string(),
            shown,
            secrets,
        };
        if engine == Engine::Sqlite {
            let path = parsed.sqlite_path();
            if path.is_empty() || path == ":memory:" || lower.contains("mode=memory") {
                return Err(UrlError::NoFile {
                    shown: parsed.shown,
                });
            }
        }
        Ok(parsed)
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether the URL carries a password (in its userinfo or as a
    /// parameter whose key ends in `password`, or a `passfile`).
    pub fn has_password(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The URL with its password, for the driver only.
    pub(crate) fn secret(&self) -> &str {
        &self.raw
    }

    /// The file of a SQLite URL (without `sqlite:`, `//` and parameters).
    pub(crate) fn sqlite_path(&self) -> String {
        let rest = &self.raw["sqlite:".len()..];
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let end = rest.find('?').unwrap_or(rest.len());
        rest[..end].to_string()
    }

    /// The file of a SQLite URL, percent-decoded (as the driver opens it).
    pub(crate) fn sqlite_file(&self) -> String {
        percent_decode(&self.sqlite_path())
    }

    /// `text` with the URL's password replaced by `***`, as written and
    /// percent-decoded: a driver may quote either. Only where a password
    /// stands (the URL itself, `user:PASSWORD@`, `password=PASSWORD` and
    /// any key ending in `password`, `passfile=`), never inside other
    /// text: masking a short password everywhere would show it by the
    /// gaps it leaves in the driver's words.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.raw, &self.shown);
        for s in &self.secrets {
            if s.is_empty() {
                continue;
            }
            out = out.replace(&format!(":{s}@"), ":***@");
            out = mask_values(&out, s);
        }
        out
    }
}

/// Whether a query key's value is to be masked: a password of any kind
/// (`password`, `sslpassword`) or a password file.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("password") || key == "passfile"
}

/// `text` with `KEY=secret` masked where KEY is a [`secret_key`].
fn mask_values(text: &str, secret: &str) -> String {
    let needle = format!("={secret}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let before = &rest[..i];
        let key_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |j| j + 1);
        out.push_str(before);
        if secret_key(&before[key_start..]) {
            out.push_str("=***");
        } else {
            out.push_str(&needle);
        }
        rest = &rest[i + needle.len()..];
    }
    out.push_str(rest);
    out
}

/// The URL with the password of its userinfo and of any `password=`
/// parameter replaced by `***`, and those passwords (raw and decoded).
fn mask(url: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let mut shown = String::with_capacity(url.len());
    let (head, query) = match url.find('?') {
        Some(i) => (&url[..i], Some(&url[i + 1..])),
        None => (url, None),
    };
    match head.find("://") {
        Some(i) => {
            let after = &head[i + 3..];
            let authority_end = after.find('/').unwrap_or(after.len());
            let authority = &after[..authority_end];
            // The last `@` ends the userinfo: a password may hold `@`
            // unencoded, a host never does.
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    shown.push_str(&head[..i + 3]);
                    match userinfo.find(':') {
                        Some(colon) => {
                            let password = &userinfo[colon + 1..];
                            if !password.is_empty() {
                                add_secret(&mut secrets, password);
                            }
                            shown.push_str(&userinfo[..colon]);
                            shown.push_str(if password.is_empty() { ":" } else { ":***" });
                        }
                        None => shown.push_str(userinfo),
                    }
                    shown.push_str(&authority[at..]);
                    shown.push_str(&after[authority_end..]);
                }
                None => shown.push_str(head),
            }
        }
        None => shown.push_str(head),
    }
    if let Some(query) = query {
        shown.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if secret_key(k) => {
                    if !v.is_empty() {
                        add_secret(&mut secrets, v);
                    }
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        shown.push_str(&parts.join("&"));
    }
    (shown, secrets)
}

fn add_secret(secrets: &mut Vec<String>, raw: &str) {
    secrets.push(raw.to_string());
    let decoded = percent_decode(raw);
    if decoded != raw {
        secrets.push(decoded);
    }
    // Longest first, so that a password holding another's text is masked
    // whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "s3cr%40t-pw";

    #[test]
    fn the_password_is_masked_in_every_form() {
        let u = SqlUrl::parse(&format!("postgres://audit:{PW}@db:5432/trail")).unwrap();
        assert_eq!(u.engine(), Engine::Postgres);
        assert!(u.has_password());
        assert_eq!(u.to_string(), "postgres://audit:***@db:5432/trail");
        assert!(!format!("{u:?}").contains("s3cr"));
        let said = u.scrub(&format!(
            "auth failed for postgres://audit:s3cr@t-pw@db/trail and postgres://audit:{PW}@db:5432/trail, password=s3cr@t-pw"
        ));
        assert!(!said.contains("s3cr"), "{said}");
    }

    /// Finding 8 (issue 12 review): a one- or two-character password is
    /// not masked inside the driver's own words, where the gaps it left
    /// ("***rror communicating with databas***") spelled it.
    #[test]
    fn a_short_password_is_masked_only_where_a_password_stands() {
        for pw in ["e", "e:"] {
            let u = SqlUrl::parse(&format!("postgres://audit:{pw}@db/trail")).unwrap();
            let said = u.scrub("error communicating with database: Connection refused");
            assert_eq!(
                said,
                "error communicating with database: Connection refused"
            );
            let said = u.scrub(&format!("cannot use postgres://audit:{pw}@db/trail"));
            assert_eq!(said, "cannot use postgres://audit:***@db/trail");
        }
    }

    /// Finding 9 (issue 12 review): `sslpassword=` and `passfile=` (any key
    /// ending in `password`) are masked and count as a password.
    #[test]
    fn sslpassword_and_passfile_are_masked() {
        let u = SqlUrl::parse(
            "postgres://db/trail?sslpassword=k3yp4ss&passfile=/home/a/.pgpass-x&user=a",
        )
        .unwrap();
        assert!(u.has_password());
        assert_eq!(
            u.to_string(),
            "postgres://db/trail?sslpassword=***&passfile=***&user=a"
        );
        let said = u.scrub("bad sslpassword=k3yp4ss for user=a");
        assert!(!said.contains("k3yp4ss"), "{said}");
    }

    #[test]
    fn a_password_parameter_is_masked_too() {
        let u =
            SqlUrl::parse("postgresql://db/trail?user=a&password=hunter2&sslmode=disable").unwrap();
        assert!(u.has_password());
        assert_eq!(
            u.to_string(),
            "postgresql://db/trail?user=a&password=***&sslmode=disable"
        );
    }

    #[test]
    fn a_url_without_password_is_shown_whole() {
        let u = SqlUrl::parse("postgres://audit@127.0.0.1:5432/trail").unwrap();
        assert!(!u.has_password());
        assert_eq!(u.to_string(), "postgres://audit@127.0.0.1:5432/trail");
        let s = SqlUrl::parse("sqlite://audit.db").unwrap();
        assert_eq!(s.engine(), Engine::Sqlite);
        assert_eq!(s.sqlite_path(), "audit.db");
        assert_eq!(
            SqlUrl::parse("sqlite:///tmp/a.db?mode=rwc")
                .unwrap()
                .sqlite_path(),
            "/tmp/a.db"
        );
    }

    #[test]
    fn other_schemes_and_memory_are_refused_masked() {
        let e = SqlUrl::parse("mysql://root:topsecret@db/x").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        assert!(matches!(
            SqlUrl::parse("sqlite::memory:"),
            Err(UrlError::NoFile { .. })
        ));
        assert!(matches!(
            SqlUrl::parse("sqlite://"),
            Err(UrlError::NoFile { .. })
        ));
    }
}
