//! The HTML report, rendered by a real headless Chromium (Debian's
//! `chromium`, installed by `.ci/setup.d/chromium.sh`), holds every record
//! of the request with its payload, keeps redacted values redacted, runs
//! its script, and loads nothing from outside.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_audit_review::{SourceOptions, Timeline, html, load};
use common::*;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium() -> &'static str {
    assert!(
        Path::new(CHROMIUM).exists(),
        "chromium is not installed at {CHROMIUM}: run `bash .ci/setup.d/chromium.sh` (scripts/test.sh runs every setup script)"
    );
    CHROMIUM
}

/// Runs headless Chromium on `url` with `extra` flags and returns its
/// stdout. A watchdog kills a browser that hangs, so the test fails
/// instead of blocking the suite; it is not a speed assertion.
fn run_chromium(profile: &Path, extra: &[String], url: &str) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not exit within 180 s (hung?): {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    stdout
}

/// How the browser serialises text: `&`, `<`, `>` escaped, quotes not.
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

fn leaves<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => m.values().for_each(|x| leaves(x, out)),
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        other => out.push(other),
    }
}

/// The part of the dumped DOM that is record number `k` of the page.
fn record_chunk(dom: &str, k: usize) -> &str {
    let start = dom
        .find(&format!("id=\"rec-{k}\""))
        .unwrap_or_else(|| panic!("rec-{k} missing from the DOM"));
    let start = dom[..start].rfind("<details").unwrap();
    let end = dom[start + 10..]
        .find("<details class=\"record")
        .map_or_else(
            || dom[start..].find("</section>").unwrap() + start,
            |e| e + start + 10,
        );
    &dom[start..end]
}

fn report_for(trail: &Trail, request: &str, out: &Path) -> usize {
    let loaded = load(&[&trail.path], SourceOptions::default(), |r| {
        r.request_id.as_deref() == Some(request)
    })
    .unwrap();
    let timeline = Timeline::build(request, &loaded.entries).unwrap();
    html::write_report(out, &html::render(&timeline, &loaded.entries)).unwrap();
    loaded.entries.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_chromium_with_every_record_of_the_request() {
    let trail = standard_trail(Some(8 * 1024)).await;
    let raw = read_independently(trail.dir.path());
    let work = tempfile::tempdir().unwrap();

    for request in [TUTORIAL_2, MULTI, HTTP] {
        let page = work.path().join(format!("{request}.html"));
        let count = report_for(&trail, request, &page);
        let mine: Vec<&RawRecord> = raw
            .iter()
            .filter(|r| r.str("request_id") == Some(request))
            .collect();
        assert_eq!(count, mine.len());

        // Self-contained: a CSP that forbids loading anything, no source
        // attribute, no link leaving the page.
        let source = std::fs::read_to_string(&page).unwrap();
        assert!(source.contains("content=\"default-src 'none';"));
        assert!(!source.contains(" src="), "{request}: external source");
        assert!(!source.contains("<link"), "{request}: external link");
        for (i, _) in source.match_indices("href=\"") {
            assert!(
                source[i + 6..].starts_with('#'),
                "{request}: link leaves the page"
            );
        }

        // Open the second record through the page's own script (the URL
        // fragment), then dump the DOM the browser built.
        let url = format!("file://{}#rec-1", page.display());
        let profile = work.path().join(format!("profile-{request}"));
        let dom = run_chromium(&profile, &["--dump-dom".into()], &url);
        assert!(
            dom.contains("<span id=\"record-count\">"),
            "{request}: not the report:\n{dom}"
        );
        assert!(
            dom.contains(&format!("<span id=\"record-count\">{}</span>", mine.len())),
            "{request}"
        );

        for (k, r) in mine.iter().enumerate() {
            let chunk = record_chunk(&dom, k);
            assert!(
                chunk.contains(&format!("data-seq=\"{}\"", r.seq())),
                "{request} #{}",
                r.seq()
            );
            assert!(chunk.contains(&format!("data-event-type=\"{}\"", r.event())));
            // Every value of the payload is in the rendered payload, as
            // the file holds it (JSON-encoded), and the exact line too.
            let mut values = Vec::new();
            leaves(r.payload(), &mut values);
            for v in values {
                let text = dom_text(&serde_json::to_string(v).unwrap());
                assert!(
                    chunk.contains(&text),
                    "{request} #{}: payload value {text} missing from\n{chunk}",
                    r.seq()
                );
            }
            assert!(
                chunk.contains(&dom_text(&r.text)),
                "{request} #{}: exact line",
                r.seq()
            );
        }
        // The script ran: record 1 is open and marked, record 0 is not.
        let tag = |k: usize| {
            let chunk = record_chunk(&dom, k);
            chunk[..chunk.find('>').unwrap()].to_string()
        };
        assert!(
            tag(1).contains("open=\"\""),
            "{request}: script did not open rec-1: {}",
            tag(1)
        );
        assert!(tag(1).contains("class=\"record target\""), "{}", tag(1));
        assert!(!tag(0).contains("open"), "{}", tag(0));

        // One waterfall row per span and per step.
        let spans: BTreeSet<&str> = mine.iter().map(|r| r.str("span_id").unwrap()).collect();
        assert_eq!(
            dom.matches("class=\"row span\"").count(),
            spans.len(),
            "{request}"
        );
        for span in &spans {
            assert!(
                dom.contains(&format!("data-span=\"{span}\"")),
                "{request}: span {span}"
            );
        }

        if request == TUTORIAL_2 {
            assert!(
                !dom.contains(EMAIL),
                "the redacted address leaked into the report"
            );
            assert!(dom.contains("[REDACTED:email]"));
            assert!(dom.contains("redacted: email"), "the badge names the rule");
        }
    }

    // A screenshot, kept for a person to look at.
    let page = work.path().join(format!("{HTTP}.html"));
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("review-report.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &work.path().join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1800".into(),
            "--hide-scrollbars".into(),
        ],
        &format!("file://{}#rec-3", page.display()),
    );
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a blank page compresses to a few KB: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

/// Bidi formatting characters (embeddings, overrides, isolates, marks).
const BIDI: [char; 12] = [
    '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}',
];

/// One request of two records whose payload, agent and file name carry
/// every bidi formatting character and C0/C1 controls.
fn hostile_entries(dir: &Path) -> Vec<agent_audit_review::Entry> {
    let bidi: String = BIDI.iter().collect();
    let lines = [
        serde_json::json!({
            "v": 1, "seq": 1, "ts": "2026-11-25T23:32:22.000000000Z", "event_type": "user_request",
            "request_id": "r-bidi", "correlation_id": "r-bidi", "trace_id": null,
            "span_id": "00f067aa0ba902b7", "parent_span_id": null, "agent": "user\u{202e}proxy",
            "payload": {"content": "open invoice_\u{202e}txt.exe", "all": bidi},
            "prev": "0000000000000000000000000000000000000000000000000000000000000000"}),
        serde_json::json!({
            "v": 1, "seq": 2, "ts": "2026-11-25T23:32:23.000000000Z", "event_type": "final_result",
            "request_id": "r-bidi", "correlation_id": "r-bidi", "trace_id": null,
            "span_id": "00f067aa0ba902b7", "parent_span_id": null, "agent": "assistant",
            "payload": {"answer": "ok\u{1b}]0;title\u{7}\u{9b}2J\u{7f}\u{85} done"},
            "prev": "0000000000000000000000000000000000000000000000000000000000000000"}),
    ];
    let file: std::sync::Arc<Path> = std::sync::Arc::from(dir.join("log\u{202e}lmth.jsonl"));
    lines
        .iter()
        .enumerate()
        .map(|(i, v)| agent_audit_review::Entry {
            file: file.clone(),
            line: i as u64 + 1,
            offset: 0,
            log: 0,
            bytes: v.to_string().into_bytes(),
            record: serde_json::from_value(v.clone()).unwrap(),
        })
        .collect()
}

#[test]
fn the_report_shows_bidi_and_control_characters_as_markers_not_their_effect() {
    let dir = tempfile::tempdir().unwrap();
    let entries = hostile_entries(dir.path());
    let timeline = Timeline::build("r-bidi", &entries).unwrap();
    let out = dir.path().join("report.html");
    html::write_report(&out, &html::render(&timeline, &entries)).unwrap();
    let page = std::fs::read_to_string(&out).unwrap();
    let mut live = Vec::new();
    for (i, c) in page.chars().enumerate() {
        if BIDI.contains(&c) || (c.is_control() && c != '\n' && c != '\t') {
            live.push(format!("U+{:04X} at char {i}", c as u32));
        }
    }
    assert!(live.is_empty(), "live in the report's bytes: {live:?}");
    for c in BIDI {
        let marker = format!("&lt;U+{:04X}&gt;", c as u32);
        assert!(page.contains(&marker), "{marker} missing");
    }
    assert!(page.contains("invoice_&lt;U+202E&gt;txt.exe"));
    assert!(page.contains("user&lt;U+202E&gt;proxy"));
    for c in [
        "&lt;U+001B&gt;",
        "&lt;U+0007&gt;",
        "&lt;U+009B&gt;",
        "&lt;U+007F&gt;",
        "&lt;U+0085&gt;",
    ] {
        assert!(page.contains(c), "{c} missing");
    }
}

#[test]
fn the_report_file_is_0600_and_a_symlink_at_its_path_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let entries = hostile_entries(dir.path());
    let timeline = Timeline::build("r-bidi", &entries).unwrap();
    let page = html::render(&timeline, &entries);
    let out = dir.path().join("report.html");
    html::write_report(&out, &page).unwrap();
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");

    let target = dir.path().join("target.txt");
    std::fs::write(&target, b"keep me").unwrap();
    let link = dir.path().join("link.html");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = html::write_report(&link, &page).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A dangling link is refused too: the report would land wherever it points.
    std::fs::remove_file(&target).unwrap();
    assert!(html::write_report(&link, &page).is_err());
    assert!(!target.exists());
}

/// `report --html /dev/null` as root used to replace the device node with a
/// regular file (the report is renamed into place): a FIFO, a socket or a
/// directory at the path is refused, and the node is still there after.
#[test]
fn a_device_fifo_socket_or_directory_at_the_report_path_is_refused_and_left_alone() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let entries = hostile_entries(dir.path());
    let timeline = Timeline::build("r-bidi", &entries).unwrap();
    let page = html::render(&timeline, &entries);

    let fifo = dir.path().join("fifo.html");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let e = html::write_report(&fifo, &page).unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    let sock = dir.path().join("sock.html");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let e = html::write_report(&sock, &page).unwrap_err();
    assert!(e.to_string().contains("socket"), "{e}");
    assert!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .file_type()
            .is_socket()
    );

    let sub = dir.path().join("dir.html");
    std::fs::create_dir(&sub).unwrap();
    let e = html::write_report(&sub, &page).unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
    assert!(sub.is_dir());

    // A character device: /dev/null itself is never touched; the check is
    // made on the entry's type before anything is written.
    let e = html::write_report(Path::new("/dev/null"), &page).unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    assert!(
        std::fs::symlink_metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}
