//! The review tools under hostile records: payloads, agent names and ids
//! written through the real dispatcher and JSONL sink carry HTML, script,
//! terminal escapes and bidirectional overrides, as a model's output or a
//! tool's result can. The HTML report, opened in real headless Chromium,
//! creates no element from them and still runs its own script; the
//! terminal renderings hold no control character.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_audit::jsonl::{FsyncPolicy, JsonlOptions, JsonlSink};
use agent_audit::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_review::{Filter, SourceOptions, StatsBuilder, Timeline, html, load};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";

const SCRIPT: &str = "</script><script>document.title='pwned'</script>";
const IMG: &str = "<img src=x onerror=\"document.title='pwned'\">";
const ESCAPES: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\r\u{202e}gpj.exe";

async fn hostile_trail(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("audit-log.jsonl");
    let dispatcher = Dispatcher::builder()
        .sink(
            SinkOptions::new("jsonl"),
            JsonlSink::new(JsonlOptions::new(&path).fsync(FsyncPolicy::Never)).unwrap(),
        )
        .start()
        .await
        .unwrap();
    let request = Auditor::new(dispatcher.clone()).for_request(Some("req-<i>x</i>\u{1b}[1m"));
    let user = request
        .child_span()
        .with_agent(&format!("user{IMG}{ESCAPES}"));
    user.emit(
        EventType::UserRequest,
        &json!({"content": format!("hi {SCRIPT} {ESCAPES}")}),
    )
    .await
    .unwrap();
    let turn = user.child_span().with_agent("assistant");
    turn.emit(
        EventType::AssistantInput,
        &json!({"model": format!("m{IMG}"), "messages": [{"role": "user", "content": SCRIPT}]}),
    )
    .await
    .unwrap();
    turn.emit(
        EventType::AssistantOutput,
        &json!({"model": format!("m{IMG}"), "content": ESCAPES, "latency_ms": 1.5,
                "tool_calls": [{"id": "c\"1", "name": format!("t{SCRIPT}"), "arguments": {"q": IMG}}]}),
    )
    .await
    .unwrap();
    let tools = turn.child_span().with_agent(&format!("tools{ESCAPES}"));
    tools
        .emit_wait(
            EventType::ToolCall,
            &json!({"tool": format!("t{SCRIPT}"), "call_id": "c\"1", "arguments": {"q": IMG}}),
            AckLevel::Written,
        )
        .await
        .unwrap();
    tools
        .emit(
            EventType::ToolError,
            &json!({"tool": format!("t{SCRIPT}"), "call_id": "c\"1", "error": format!("{IMG}{ESCAPES}"), "duration_ms": 2.0}),
        )
        .await
        .unwrap();
    tools
        .emit(
            EventType::Custom(format!("evil{ESCAPES}").into()),
            &json!({"x": SCRIPT}),
        )
        .await
        .unwrap();
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    path
}

fn chromium_dump(profile: &Path, url: &str) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "chromium is not installed at {CHROMIUM}: run `bash .ci/setup.d/chromium.sh` (scripts/test.sh runs every setup script)"
    );
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    // A watchdog so a hung browser fails the test instead of blocking the
    // suite; not a speed assertion.
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not exit within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium failed: {status}");
    reader.join().unwrap()
}

fn assert_terminal_safe(what: &str, text: &str) {
    for c in text.chars() {
        let bad =
            (c.is_control() && c != '\n') || matches!(c as u32, 0x202A..=0x202E | 0x2066..=0x2069);
        assert!(!bad, "{what} holds U+{:04X}:\n{text}", c as u32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_create_no_markup_and_no_terminal_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_trail(dir.path()).await;
    let request = "req-<i>x</i>\u{1b}[1m";
    let loaded = load(&[&path], SourceOptions::default(), |r| {
        Filter::new().request_id(request).matches(r)
    })
    .unwrap();
    assert_eq!(loaded.entries.len(), 6);

    // Terminal renderings.
    let timeline = Timeline::build(request, &loaded.entries).unwrap();
    assert_terminal_safe("the timeline", &timeline.render_text());
    let mut stats = StatsBuilder::new();
    for e in &loaded.entries {
        stats.add(e);
    }
    let stats = stats.finish();
    assert_eq!(stats.tools.values().map(|t| t.errors).sum::<u64>(), 1);
    assert_terminal_safe("the stats", &stats.render_text());

    // The HTML report in a real browser.
    let page = dir.path().join("report.html");
    html::write_report(&page, &html::render(&timeline, &loaded.entries)).unwrap();
    let dom = chromium_dump(
        &dir.path().join("profile"),
        &format!("file://{}#rec-2", page.display()),
    );
    assert!(
        dom.contains("id=\"record-count\">6<"),
        "not the report:\n{dom}"
    );
    // Only the page's own script element; no element from the records.
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    assert!(
        !dom.contains("<img"),
        "an <img> element was created:\n{dom}"
    );
    assert!(
        !dom.contains("<i>x</i>"),
        "markup from the request id was rendered"
    );
    // An injected script or handler would have set the title.
    let title = &dom[dom.find("<title>").unwrap() + 7..dom.find("</title>").unwrap()];
    assert!(
        title.starts_with("agent-audit: request req-&lt;i&gt;"),
        "title: {title}"
    );
    // The hostile text is there, as text.
    assert!(dom.contains("&lt;img src=x onerror="), "{dom}");
    assert!(dom.contains("&lt;/script&gt;&lt;script&gt;"), "{dom}");
    // And the page's own script still ran: the record in the URL is open.
    let at = dom.find("id=\"rec-2\"").unwrap();
    let tag_start = dom[..at].rfind("<details").unwrap();
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>').unwrap()];
    assert!(tag.contains("open=\"\"") && tag.contains("target"), "{tag}");
}
