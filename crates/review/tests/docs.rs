//! Every documented example in `docs/` and the README holds: TOML
//! configuration blocks load through `Config::parse`, Cargo snippets name
//! real features, the schema's record examples parse as schema v1 records
//! and cover every built-in event type, JSON blocks are JSON, Python
//! blocks run on a trail the real runtime wrote, and relative links point
//! at files and headings that exist. (Rust blocks run as doc tests of this
//! crate: see `docs` in its `lib.rs`.)

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_audit::config::Config;
use agent_audit_core::{EventType, StoredRecord};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documents: every Markdown file of `docs/` (and its subfolders) and
/// the README.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    for required in [
        "architecture.md",
        "schema.md",
        "configuration.md",
        "integrating.md",
        "operations.md",
    ] {
        assert!(
            out.contains(&root().join("docs").join(required)),
            "docs/{required} is missing"
        );
    }
    out
}

struct Block {
    doc: PathBuf,
    line: usize,
    lang: String,
    text: String,
}

impl Block {
    fn place(&self) -> String {
        format!(
            "{}:{}",
            self.doc.strip_prefix(root()).unwrap_or(&self.doc).display(),
            self.line
        )
    }
}

fn blocks(doc: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(doc).unwrap();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    doc: doc.to_path_buf(),
                    line: i + 2,
                    lang: info.split([',', ' ']).next().unwrap_or("").to_string(),
                    text: String::new(),
                })
            }
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some(b), _) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{}: unclosed code block", doc.display());
    out
}

fn all_blocks() -> Vec<Block> {
    documents().iter().flat_map(|d| blocks(d)).collect()
}

#[test]
fn every_toml_example_is_a_valid_configuration_or_cargo_snippet() {
    let facade: toml::Table = toml::from_str(
        &std::fs::read_to_string(root().join("crates/agent-audit/Cargo.toml")).unwrap(),
    )
    .unwrap();
    let features: BTreeSet<String> = facade["features"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut failures = Vec::new();
    let mut configs = 0;
    for b in all_blocks().into_iter().filter(|b| b.lang == "toml") {
        if b.text.trim_start().starts_with("# Cargo.toml") {
            let manifest: toml::Table = match toml::from_str(&b.text) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("{}: not TOML: {e}", b.place()));
                    continue;
                }
            };
            let dep = &manifest["dependencies"]["agent-audit"];
            if let Some(list) = dep.get("features").and_then(|f| f.as_array()) {
                for f in list {
                    let f = f.as_str().unwrap();
                    if !features.contains(f) {
                        failures.push(format!("{}: agent-audit has no feature `{f}`", b.place()));
                    }
                }
            }
            continue;
        }
        configs += 1;
        // Errors name "<doc>:<line of the block> block:<line in block>:<col>".
        if let Err(e) = Config::parse(&b.text, &format!("{} block", b.place())) {
            failures.push(e.to_string());
        }
    }
    assert!(configs >= 10, "only {configs} configuration examples found");
    assert!(
        failures.is_empty(),
        "documented TOML that does not load:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_feature_table_matches_the_facade() {
    let facade: toml::Table = toml::from_str(
        &std::fs::read_to_string(root().join("crates/agent-audit/Cargo.toml")).unwrap(),
    )
    .unwrap();
    let features = facade["features"].as_table().unwrap();
    let defaults: BTreeSet<&str> = features["default"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let declared: BTreeSet<&str> = features
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "default")
        .collect();
    // Rows `| `name` | yes/no | ... |` of the table in architecture.md.
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut documented = BTreeSet::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3 && matches!(cells[2], "yes" | "no") {
            let name = cells[1].trim_matches('`');
            assert_eq!(
                cells[2] == "yes",
                defaults.contains(name),
                "docs/architecture.md says feature `{name}` is default: {}, Cargo.toml says otherwise",
                cells[2]
            );
            documented.insert(name);
        }
    }
    assert_eq!(documented, declared, "docs/architecture.md's feature table");
}

#[test]
fn the_schema_shows_a_valid_record_of_every_event_type() {
    let schema = root().join("docs/schema.md");
    let mut seen = BTreeSet::new();
    for b in blocks(&schema).into_iter().filter(|b| b.lang == "json") {
        let record: StoredRecord = serde_json::from_str(&b.text)
            .unwrap_or_else(|e| panic!("{}: not a schema v2 record: {e}", b.place()));
        assert_eq!(record.v, 2, "{}", b.place());
        agent_audit_jsonl::check_schema(&record).unwrap_or_else(|e| panic!("{}: {e}", b.place()));
        assert!(
            record.timestamp().is_some(),
            "{}: ts is not RFC 3339",
            b.place()
        );
        for id in [&record.trace_id, &record.span_id, &record.parent_span_id]
            .into_iter()
            .flatten()
        {
            assert!(
                (id.len() == 32 || id.len() == 16) && id.bytes().all(|c| c.is_ascii_hexdigit()),
                "{}: id {id}",
                b.place()
            );
        }
        assert_eq!(record.prev.len(), 64, "{}: prev", b.place());
        assert!(record.payload.is_object(), "{}", b.place());
        seen.insert(record.event_type.as_str().to_string());
    }
    let missing: Vec<&str> = EventType::BUILT_IN
        .iter()
        .map(EventType::as_str)
        .filter(|t| !seen.contains(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/schema.md lacks an example of {missing:?}"
    );
}

#[test]
fn every_json_example_is_json() {
    for b in all_blocks().into_iter().filter(|b| b.lang == "json") {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&b.text) {
            panic!("{}: not JSON: {e}", b.place());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_python_example_runs_on_a_real_trail() {
    let trail = standard_trail(None).await;
    let lines = std::fs::read_to_string(&trail.path)
        .unwrap()
        .lines()
        .count();
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("python3 is not installed: it runs the documented Python reader (apt-get install python3)");
    let mut ran = 0;
    for b in all_blocks().into_iter().filter(|b| b.lang == "python") {
        let out = Command::new(python)
            .arg("-c")
            .arg(&b.text)
            .current_dir(trail.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            b.place(),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            printed.lines().count(),
            lines,
            "{}: one line per record",
            b.place()
        );
        ran += 1;
    }
    assert!(ran >= 1, "the schema's Python reader was not found");
}

use common::standard_trail;

/// GitHub's heading anchors: lower case, spaces to `-`, other punctuation
/// dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn relative_links_point_at_existing_files_and_headings() {
    let mut failures = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = doc.parent().unwrap().join(file);
            if !path.exists() {
                failures.push(format!("{}: link to missing {target}", doc.display()));
                continue;
            }
            if !anchor.is_empty() {
                let headings: Vec<String> = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|l| slug(l.trim_start_matches('#')))
                    .collect();
                if !headings.iter().any(|h| h == anchor) {
                    failures.push(format!("{}: no heading #{anchor} in {file}", doc.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
