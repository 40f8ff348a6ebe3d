//! docs/guarantees.md names, for each promise, the test that proves it.
//! This keeps those names true: every `file.rs::function` it cites (and
//! every `::function` that continues the file cited before it) must be a
//! function in that file.

use std::path::{Path, PathBuf};

#[test]
fn every_test_named_in_the_guarantees_document_exists() {
    let root = agent_audit_tests::workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/guarantees.md"))
        .expect("docs/guarantees.md exists");
    let mut file: Option<PathBuf> = None;
    let mut checked = 0;
    let mut missing = Vec::new();
    for span in doc.split('`').skip(1).step_by(2) {
        let Some((path, name)) = span.split_once("::") else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if !path.is_empty() {
            if !path.ends_with(".rs") {
                // A Rust path such as `agent_audit_tests::secrets::SecretScan`.
                continue;
            }
            file = Some(if path.starts_with("crates/") {
                root.join(path)
            } else {
                root.join("tests/tests").join(path)
            });
        }
        let Some(f) = &file else {
            panic!("`{span}` continues no file");
        };
        let text = std::fs::read_to_string(f)
            .unwrap_or_else(|e| panic!("{} (cited as `{span}`): {e}", rel(&root, f)));
        if !text.contains(&format!("fn {name}(")) {
            missing.push(format!("{}::{name}", rel(&root, f)));
        }
        checked += 1;
    }
    assert!(
        missing.is_empty(),
        "tests named in docs/guarantees.md that do not exist: {missing:#?}"
    );
    assert!(
        checked >= 40,
        "only {checked} test names found in docs/guarantees.md"
    );
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
