//! A real rotel collector on free loopback ports, started and stopped by
//! pid, with a Python logs processor that appends every log record it
//! receives to a JSON-lines file the tests read.
#![allow(dead_code)]

pub mod certs;
pub mod collector;
pub mod outage;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crate lives in <root>/crates/otlp")
        .to_path_buf()
}

/// The rotel-agent binary installed by `.ci/setup.d/rotel.sh`; panics with
/// instructions when it is missing.
pub fn rotel_binary() -> PathBuf {
    let p = workspace_root().join(".tools/rotel-agent");
    if !p.exists() {
        panic!(
            "rotel not installed: {} is missing. Run `bash .ci/setup.d/rotel.sh` (or scripts/test.sh) first.",
            p.display()
        );
    }
    p
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// One rotel process (or none, between stop and restart) and its output.
pub struct Rotel {
    child: Option<Child>,
    pub grpc_port: u16,
    pub http_port: u16,
    pub out: PathBuf,
    dir: tempfile::TempDir,
    starts: u32,
    processor: Option<PathBuf>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Rotel {
    /// Reserves ports and an output file without starting the collector.
    pub fn unstarted() -> Rotel {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("received.jsonl");
        let grpc_port = free_port();
        let mut http_port = free_port();
        while http_port == grpc_port {
            http_port = free_port();
        }
        Rotel {
            child: None,
            grpc_port,
            http_port,
            out,
            dir,
            starts: 0,
            processor: Some(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/record_processor.py"),
            ),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Starts a collector with another logs processor (or none) and extra
    /// arguments and environment, on free ports.
    pub fn start_with(processor: Option<PathBuf>, args: &[String], env: &[(&str, &str)]) -> Rotel {
        let mut r = Rotel::unstarted();
        r.processor = processor;
        r.args = args.to_vec();
        r.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r.launch();
        r
    }

    /// Starts a collector on free ports and waits until both listen.
    pub fn start() -> Rotel {
        let mut r = Rotel::unstarted();
        r.launch();
        r
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/logs", self.http_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts (or restarts) rotel on this instance's ports.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "rotel already running");
        self.starts += 1;
        let log = self.dir.path().join(format!("rotel-{}.log", self.starts));
        let stdout = std::fs::File::create(&log).expect("log file");
        let stderr = stdout.try_clone().expect("log file");
        let child = Command::new(rotel_binary())
            .arg("start")
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{}", self.grpc_port))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--otlp-grpc-max-recv-msg-size-mib")
            .arg("64")
            .args(if self.args.is_empty() {
                vec!["--exporter".to_string(), "blackhole".to_string()]
            } else {
                self.args.clone()
            })
            .args(self.processor.iter().flat_map(|p| {
                [
                    "--otlp-with-logs-processor".into(),
                    p.clone().into_os_string(),
                ]
            }))
            .arg("--pid-file")
            .arg(self.dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(self.dir.path().join("rotel-agent.log"))
            .env("AUDIT_ROTEL_OUT", &self.out)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start rotel ({}): {e}", rotel_binary().display())
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.grpc_port) && up(self.http_port) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "rotel exited with {status} before listening; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "rotel did not listen on 127.0.0.1:{} and :{} within 30 s; its log:\n{}",
                    self.grpc_port,
                    self.http_port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the collector process is alive (rotel exits when its Python
    /// processor raises).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Graceful stop: SIGTERM by pid, then waits for the process to exit
    /// (rotel drains its pipeline on SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Hard stop: SIGKILL by pid.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every log record the processor wrote so far (a line still being
    /// written at the end is left for the next read).
    pub fn received(&self) -> Vec<Value> {
        let Ok(f) = std::fs::File::open(&self.out) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for line in std::io::BufReader::new(f).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str(&line) {
                Ok(v) => out.push(v),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits until at least `n` records arrived (rotel answers before its
    /// processor runs, so the file lags the acks a little); returns them.
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

    /// Waits until the file stops growing for a moment; returns its records.
    pub fn wait_quiet(&self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut last = usize::MAX;
        loop {
            let got = self.received();
            if got.len() == last || Instant::now() > deadline {
                return got;
            }
            last = got.len();
            std::thread::sleep(Duration::from_millis(400));
        }
    }

    /// The collector's log so far (for failure messages).
    pub fn log(&self) -> String {
        let mut s = String::new();
        for i in 1..=self.starts {
            s.push_str(
                &std::fs::read_to_string(self.dir.path().join(format!("rotel-{i}.log")))
                    .unwrap_or_default(),
            );
        }
        s
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Records by `audit.seq`, with how often each seq arrived.
pub fn by_seq(received: &[Value]) -> BTreeMap<u64, (usize, Value)> {
    let mut map: BTreeMap<u64, (usize, Value)> = BTreeMap::new();
    for r in received {
        let seq = r["attributes"]["audit.seq"]
            .as_u64()
            .expect("audit.seq attribute");
        map.entry(seq)
            .and_modify(|e| e.0 += 1)
            .or_insert((1, r.clone()));
    }
    map
}
