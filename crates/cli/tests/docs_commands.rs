//! Every `agent-audit` command line shown in the README and `docs/` names a
//! real subcommand and only flags that subcommand accepts, checked against
//! the binary's own `--help`. (The commands' behaviour is tested in the
//! other files of this folder; this keeps the documentation from drifting.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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
    out
}

/// The shell code in a Markdown text: fenced blocks other than data and
/// source languages, and inline spans, each with the line it starts on.
fn code(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<(usize, String, bool)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match fence.take() {
                Some((at, body, shell)) => {
                    if shell {
                        out.push((at, body));
                    }
                }
                None => {
                    let lang = info.trim();
                    let shell =
                        !matches!(lang, "yaml" | "yml" | "toml" | "json" | "python" | "rust");
                    fence = Some((n + 1, String::new(), shell));
                }
            }
            continue;
        }
        if let Some((_, body, _)) = &mut fence {
            body.push_str(line);
            body.push('\n');
            continue;
        }
        for (k, span) in line.split('`').enumerate() {
            if k % 2 == 1 {
                out.push((n, span.to_string()));
            }
        }
    }
    out
}

/// `agent-audit <sub> <args>` invocations in a piece of code, with shell
/// line continuations joined.
fn invocations(code: &str) -> Vec<(String, Vec<String>)> {
    let joined = code.replace("\\\n", " ");
    let re = regex::Regex::new(
        r"(?m)(?:^|[\s(])(?:agent-audit|cargo run -p agent-audit-cli --)\s+([a-z][a-z-]*)([^\n|;&#]*)",
    )
    .unwrap();
    re.captures_iter(&joined)
        .map(|c| {
            let args = c[2].split_whitespace().map(str::to_string).collect();
            (c[1].to_string(), args)
        })
        .collect()
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-audit"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "agent-audit {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_documented_command_line_uses_real_subcommands_and_flags() {
    let top = help(&["--help"]);
    let mut subcommands: BTreeMap<String, String> = BTreeMap::new();
    for line in top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
    {
        let Some(name) = line.split_whitespace().next() else {
            break;
        };
        if name == "help" {
            continue;
        }
        subcommands.insert(name.to_string(), help(&[name, "--help"]));
    }
    assert!(subcommands.contains_key("verify"), "{top}");

    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc
            .strip_prefix(root())
            .unwrap_or(&doc)
            .display()
            .to_string();
        for (line, piece) in code(&text) {
            for (sub, args) in invocations(&piece) {
                let Some(sub_help) = subcommands.get(&sub) else {
                    problems.push(format!(
                        "{name}:{line}: `agent-audit {sub}` is no subcommand"
                    ));
                    continue;
                };
                for flag in args.iter().filter(|a| a.starts_with('-')) {
                    let flag = flag.split('=').next().unwrap_or(flag);
                    let known = sub_help
                        .split(|c: char| c.is_whitespace() || c == ',')
                        .any(|w| w == flag);
                    if !known {
                        problems.push(format!(
                            "{name}:{line}: `agent-audit {sub}` has no flag {flag}"
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 20, "only {checked} command lines found");
}

#[test]
fn the_checker_catches_a_made_up_flag() {
    let found = invocations("agent-audit verify --no-such-flag x.jsonl \\\n  --json\n");
    assert_eq!(
        found,
        vec![(
            "verify".to_string(),
            vec![
                "--no-such-flag".to_string(),
                "x.jsonl".to_string(),
                "--json".to_string()
            ]
        )]
    );
    let help = help(&["verify", "--help"]);
    assert!(!help.split_whitespace().any(|w| w == "--no-such-flag"));
}
