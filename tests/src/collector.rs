//! A real OpenTelemetry collector (rotel, installed by
//! `.ci/setup.d/rotel.sh`) on free loopback ports, whose Python logs
//! processor (`crates/otlp/tests/support/record_processor.py`) appends every log record
//! it receives to a JSON-lines file, and whose trace and metrics processor
//! (`tests/src/telemetry_processor.py`) does the same for spans and
//! metrics; and the small TCP servers the OTLP fault tests need where a
//! real collector cannot misbehave on demand.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The rotel-agent binary; panics with the way to install it when missing.
pub fn rotel_binary() -> PathBuf {
    let p = crate::workspace_root().join(".tools/rotel-agent");
    assert!(
        p.exists(),
        "rotel not installed: {} is missing. Run `bash .ci/setup.d/rotel.sh` (scripts/test.sh does) first.",
        p.display()
    );
    p
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"))
}

/// One rotel process; killed (by pid) when dropped.
pub struct Rotel {
    child: Option<Child>,
    /// gRPC port.
    pub grpc_port: u16,
    /// HTTP port.
    pub http_port: u16,
    /// The processor's output: one JSON line per log record received.
    pub out: PathBuf,
    /// One JSON line per span received.
    pub spans: PathBuf,
    /// One JSON line per metric received.
    pub metrics: PathBuf,
    /// rotel's own logs.
    pub logs: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rotel {
    /// Starts rotel on free ports and waits (up to 30 s) until both listen.
    pub fn start() -> Rotel {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let out = dir.path().join("received.jsonl");
        let spans = dir.path().join("spans.jsonl");
        let metrics = dir.path().join("metrics.jsonl");
        let telemetry = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry_processor.py");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{e}"));
        let grpc_port = free_port();
        let mut http_port = free_port();
        while http_port == grpc_port {
            http_port = free_port();
        }
        // One processor serves both packages' collector tests.
        let processor = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/otlp/tests/support/record_processor.py");
        let console = std::fs::File::create(logs.join("console.log"))
            .unwrap_or_else(|e| panic!("rotel console log: {e}"));
        let console2 = console
            .try_clone()
            .unwrap_or_else(|e| panic!("rotel console log: {e}"));
        let child = Command::new(rotel_binary())
            .arg("start")
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--exporter")
            .arg("blackhole")
            .arg("--otlp-with-logs-processor")
            .arg(&processor)
            .arg("--otlp-with-trace-processor")
            .arg(&telemetry)
            .arg("--otlp-with-metrics-processor")
            .arg(&telemetry)
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(logs.join("rotel-agent.log"))
            .env("AUDIT_ROTEL_OUT", &out)
            .env("AUDIT_ROTEL_SPANS", &spans)
            .env("AUDIT_ROTEL_METRICS", &metrics)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console2)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start rotel ({}): {e}", rotel_binary().display())
            });
        let mut r = Rotel {
            child: Some(child),
            grpc_port,
            http_port,
            out,
            spans,
            metrics,
            logs,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(grpc_port) && up(http_port) {
                return r;
            }
            if let Some(status) = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("rotel exited with {status} before listening: {}", r.log());
            }
            assert!(
                Instant::now() < deadline,
                "rotel did not listen within 30 s: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<grpc port>`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:<http port>/v1/logs`.
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/logs", self.http_port)
    }

    /// Every log record received so far.
    pub fn received(&self) -> Vec<Value> {
        read_lines(&self.out)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        read_lines(&self.spans)
    }

    /// Every metric received so far (one line per metric per export).
    pub fn metrics(&self) -> Vec<Value> {
        read_lines(&self.metrics)
    }

    /// Waits (up to `within`) until at least `n` records arrived; rotel
    /// answers before its processor has written them.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the collector (SIGKILL by pid): a collector that dies.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// rotel's console output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logs.join("console.log")).unwrap_or_default()
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map_while(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP server that accepts connections, reads what is sent and never
/// answers: a collector that hangs (answers after any timeout).
pub struct Silent {
    /// Its port.
    pub port: u16,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    /// Bytes received so far.
    pub received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Silent {
    /// Binds a free loopback port and serves on threads.
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let accepted = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, s) = (accepted.clone(), received.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                a.fetch_add(1, Ordering::Relaxed);
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    // Read (so the client's writes complete) and hold the
                    // connection open without a byte of answer.
                    while !s.load(Ordering::Acquire) {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                r.fetch_add(n as u64, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        Silent {
            port,
            accepted,
            received,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
