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
