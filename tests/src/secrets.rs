//! The secret scan: proves that no byte a sink wrote contains a secret the
//! tests handed to the runtime (model API keys, OTLP header values).
//!
//! A hit is any run of [`WINDOW`] consecutive bytes of a secret, not only
//! the whole value, so a key that was cut short, split across fields or
//! partly masked (`sk-abc…` followed by most of the key) is still found.
//! Secrets should therefore be random and at least [`WINDOW`] bytes long;
//! [`random_secret`] makes such values.
//!
//! ```
//! use agent_audit_tests::secrets::{SecretScan, random_secret};
//!
//! let key = random_secret("sk-");
//! let scan = SecretScan::new().secret("API key", &key);
//! let leaked = format!(r#"{{"error":"bad key {}…"}}"#, &key[..30]);
//! assert_eq!(scan.scan_bytes("record", leaked.as_bytes()).len(), 1);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Length of the byte runs compared: long enough that a random secret's
/// run never occurs by chance, short enough to catch a key cut in half.
pub const WINDOW: usize = 16;

/// A random secret: `prefix` followed by 40 random hex digits.
pub fn random_secret(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut s = prefix.to_string();
    for _ in 0..40 {
        s.push(char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'));
    }
    s
}

/// One place a secret showed up.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The secret's label.
    pub secret: String,
    /// Where the bytes came from (a file path, "stdout of …").
    pub origin: String,
    /// Byte offset of the match in that source.
    pub offset: usize,
    /// Whether the whole secret is there, not only a run of it.
    pub whole: bool,
    /// The bytes around the match, lossily decoded, with the secret's
    /// run replaced so the report does not leak it further.
    pub context: String,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {} of {}{}: …{}…",
            self.secret,
            self.offset,
            self.origin,
            if self.whole { " (whole value)" } else { "" },
            self.context
        )
    }
}

/// A set of secrets to look for. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct SecretScan {
    secrets: Vec<(String, Vec<u8>)>,
    runs: HashMap<[u8; WINDOW], usize>,
    /// Bytes scanned so far by [`SecretScan::scan_path`] and friends.
    pub scanned_bytes: u64,
    /// Files scanned so far.
    pub scanned_files: u64,
}

impl SecretScan {
    /// An empty scan.
    pub fn new() -> SecretScan {
        SecretScan::default()
    }

    /// Adds a secret to look for. Panics if it is shorter than [`WINDOW`]
    /// bytes: such a value cannot be told apart from chance matches.
    pub fn secret(mut self, label: &str, value: &str) -> SecretScan {
        self.add(label, value);
        self
    }

    /// [`SecretScan::secret`] on a `&mut`.
    pub fn add(&mut self, label: &str, value: &str) {
        let bytes = value.as_bytes().to_vec();
        assert!(
            bytes.len() >= WINDOW,
            "secret {label} is shorter than {WINDOW} bytes; use random_secret()"
        );
        let idx = self.secrets.len();
        for w in bytes.windows(WINDOW) {
            let mut k = [0u8; WINDOW];
            k.copy_from_slice(w);
            self.runs.insert(k, idx);
        }
        self.secrets.push((label.to_string(), bytes));
    }

    /// Every hit in `bytes`; `origin` names them in the report.
    pub fn scan_bytes(&self, origin: &str, bytes: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        if bytes.len() < WINDOW {
            return hits;
        }
        let mut i = 0;
        while i + WINDOW <= bytes.len() {
            let mut k = [0u8; WINDOW];
            k.copy_from_slice(&bytes[i..i + WINDOW]);
            if let Some(&idx) = self.runs.get(&k) {
                let (label, secret) = &self.secrets[idx];
                let whole = bytes.windows(secret.len()).any(|w| w == secret.as_slice());
                let from = i.saturating_sub(40);
                let to = (i + WINDOW + 40).min(bytes.len());
                let mut ctx = bytes[from..to].to_vec();
                for b in &mut ctx[i - from..i - from + WINDOW] {
                    *b = b'#';
                }
                hits.push(Hit {
                    secret: label.clone(),
                    origin: origin.to_string(),
                    offset: i,
                    whole,
                    context: String::from_utf8_lossy(&ctx).into_owned(),
                });
                // One hit per occurrence is enough.
                i += secret.len().max(WINDOW);
                continue;
            }
            i += 1;
        }
        hits
    }

    /// Scans a file, or every file under a directory (recursively).
    pub fn scan_path(&mut self, path: &Path) -> std::io::Result<Vec<Hit>> {
        let mut hits = Vec::new();
        let meta = std::fs::symlink_metadata(path)?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.sort();
            for e in entries {
                hits.extend(self.scan_path(&e)?);
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(path)?;
            self.scanned_bytes += bytes.len() as u64;
            self.scanned_files += 1;
            hits.extend(self.scan_bytes(&path.display().to_string(), &bytes));
        }
        Ok(hits)
    }

    /// Scans captured output (a child's stdout, say).
    pub fn scan_capture(&mut self, origin: &str, bytes: &[u8]) -> Vec<Hit> {
        self.scanned_bytes += bytes.len() as u64;
        self.scanned_files += 1;
        self.scan_bytes(origin, bytes)
    }
}

/// Panics with every hit listed, if there is any.
pub fn assert_no_hits(hits: &[Hit]) {
    if !hits.is_empty() {
        let list: Vec<String> = hits.iter().map(|h| h.to_string()).collect();
        panic!(
            "{} secret leak(s) in what the sinks wrote:\n{}",
            hits.len(),
            list.join("\n")
        );
    }
}
